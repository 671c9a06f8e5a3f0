package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/auth"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/shared/httpx"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
)

// Fiber locals that carry a checked request into the WebSocket handler,
// which runs after the HTTP handler chain has returned.
const (
	localPTYSandbox = "ptySandboxID"
	localPTYSession = "ptySessionID"
	localPTYContext = "ptyContext"
)

// WebSocket limits: one client message, and how long closing may take.
const (
	maxClientMessage = 1 << 20
	closeGrace       = 5 * time.Second
)

func (h *Handlers) createPTY(c *fiber.Ctx) error {
	id, err := h.sandboxID(c)
	if err != nil {
		return err
	}
	// The body is optional. c.Body() would read a streamed (chunked) body
	// whole into memory; ReadJSON is bounded. Content-Length is -1 when
	// chunked, 0 when there is no body.
	var cfg api.PTYConfig
	if c.Request().Header.ContentLength() != 0 {
		if err := httpx.ReadJSON(c, &cfg); err != nil {
			return err
		}
	}
	s, err := h.ia.CreatePTY(c.UserContext(), id, cfg)
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(s)
}

func (h *Handlers) resizePTY(c *fiber.Ctx) error {
	id, err := h.sandboxID(c)
	if err != nil {
		return err
	}
	var size api.PTYSize
	if err := httpx.ReadJSON(c, &size); err != nil {
		return err
	}
	if err := h.ia.ResizePTY(c.UserContext(), id, c.Params("sessionID"), size.Cols, size.Rows); err != nil {
		return err
	}
	return c.JSON(struct{}{})
}

func (h *Handlers) killPTY(c *fiber.Ctx) error {
	id, err := h.sandboxID(c)
	if err != nil {
		return err
	}
	if err := h.ia.KillPTY(c.UserContext(), id, c.Params("sessionID")); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

// beforeUpgrade answers everything that can fail with a plain HTTP status
// before the WebSocket handshake: authentication has run already (it is
// the router's middleware), then the sandbox and the session must exist.
func (h *Handlers) beforeUpgrade(c *fiber.Ctx) error {
	id, err := h.sandboxID(c)
	if err != nil {
		return err
	}
	sid := c.Params("sessionID")
	if err := h.ia.PTYExists(c.UserContext(), id, sid); err != nil {
		return err
	}
	if !websocket.IsWebSocketUpgrade(c) {
		return fiber.NewError(fiber.StatusUpgradeRequired, "this route is a WebSocket")
	}
	// A browser that sent its token as a subprotocol drops a handshake
	// that does not name it back.
	if p := auth.BearerSubprotocol(c); p != "" {
		c.Set(fiber.HeaderSecWebSocketProtocol, p)
	}
	c.Locals(localPTYSandbox, id)
	c.Locals(localPTYSession, sid)
	c.Locals(localPTYContext, c.UserContext())
	return c.Next()
}

func (h *Handlers) ptySocket() fiber.Handler {
	return websocket.New(h.relayPTY, websocket.Config{ReadBufferSize: 32 << 10, WriteBufferSize: 32 << 10})
}

// relayPTY joins a WebSocket to a terminal session: binary messages are
// keystrokes, text messages control (resize); output goes out as binary
// messages and the shell's exit as a text message before a normal close.
func (h *Handlers) relayPTY(ws *websocket.Conn) {
	id, _ := ws.Locals(localPTYSandbox).(string)
	sid, _ := ws.Locals(localPTYSession).(string)
	ctx, _ := ws.Locals(localPTYContext).(context.Context)
	pty, err := h.ia.AttachPTY(ctx, id, sid)
	if err != nil {
		closeWS(ws, websocket.CloseInternalServerErr, errs.As(err).Message)
		return
	}
	defer pty.Close()
	ws.SetReadLimit(maxClientMessage)

	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		h.ptyToClient(ws, pty)
	}()
	for {
		typ, msg, err := ws.ReadMessage()
		if err != nil {
			break // the client left (or we closed after the exit)
		}
		if typ == websocket.BinaryMessage {
			if _, err := pty.Write(msg); err != nil {
				break
			}
			continue
		}
		var ctl api.PTYControl
		if json.Unmarshal(msg, &ctl) != nil || ctl.Type != "resize" {
			continue // unknown control messages are ignored
		}
		if err := pty.Resize(ctl.Cols, ctl.Rows); err != nil && errs.As(err).Kind != errs.KindInvalid {
			break // a bad size is ignored, a broken session is not
		}
	}
	pty.Close() // detach: the shell keeps running for a later connection
	<-outDone
}

// ptyToClient sends terminal output, then the exit message, then closes.
func (h *Handlers) ptyToClient(ws *websocket.Conn, pty *sandbox.PTYConn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := pty.Read(buf)
		if n > 0 {
			if werr := ws.WriteMessage(websocket.BinaryMessage, buf[:n]); werr != nil {
				return
			}
		}
		if err == io.EOF {
			code, _ := pty.ExitCode()
			b, _ := json.Marshal(api.PTYControl{Type: "exit", ExitCode: &code})
			if ws.WriteMessage(websocket.TextMessage, b) == nil {
				closeWS(ws, websocket.CloseNormalClosure, "")
			}
			return
		}
		if err != nil {
			// Detached: replaced by a newer connection, or the sandbox ended.
			closeWS(ws, websocket.CloseGoingAway, "terminal detached")
			return
		}
	}
}

// closeWS starts the closing handshake and bounds how long the read loop
// waits for the client's answer.
func closeWS(ws *websocket.Conn, code int, text string) {
	ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(closeGrace))
	ws.SetReadDeadline(time.Now().Add(closeGrace))
}
