package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"

	"github.com/opensandbox/opensandbox/services/agent/internal/proc"
	"github.com/opensandbox/opensandbox/services/agent/internal/ringbuf"
	"github.com/opensandbox/opensandbox/services/agent/internal/term"
	"github.com/opensandbox/opensandbox/services/shared/agentapi"
)

// Terminal defaults and bounds (a winsize holds 16-bit values).
const (
	defaultCols = 80
	defaultRows = 24
	maxDim      = 4096
)

func validSize(cols, rows int) bool {
	return cols >= 1 && rows >= 1 && cols <= maxDim && rows <= maxDim
}

// defaultShell is bash where the image has it, else sh.
func defaultShell() string {
	if fi, err := os.Stat("/bin/bash"); err == nil && fi.Mode()&0o111 != 0 {
		return "/bin/bash"
	}
	return "/bin/sh"
}

func (s *Server) createPTY(w http.ResponseWriter, r *http.Request) {
	var req agentapi.PTYRequest
	if err := readJSON(w, r, 1<<20, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", "invalid pty request: "+err.Error())
		return
	}
	if req.Cols == 0 {
		req.Cols = defaultCols
	}
	if req.Rows == 0 {
		req.Rows = defaultRows
	}
	if !validSize(req.Cols, req.Rows) {
		writeError(w, http.StatusBadRequest, "invalid_argument", "cols and rows must be between 1 and 4096")
		return
	}
	if req.Shell == "" {
		req.Shell = defaultShell()
	}
	env := proc.MergeEnv(os.Environ(), req.Envs)
	if _, ok := req.Envs["TERM"]; !ok {
		env = proc.MergeEnv(env, map[string]string{"TERM": "xterm-256color"})
	}
	if proc.Getenv(env, "PATH") == "" {
		env = append(env, "PATH="+proc.DefaultPath)
	}
	sess, err := s.ptys.Start(term.Spec{Shell: req.Shell, Env: env, Dir: s.resolve(req.Cwd), Cols: req.Cols, Rows: req.Rows})
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, os.ErrPermission):
		writeError(w, http.StatusBadRequest, "invalid_argument", "cannot start shell: "+err.Error())
		return
	case errors.Is(err, term.ErrTooMany):
		writeError(w, http.StatusTooManyRequests, "too_many_sessions", err.Error())
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	s.log.Info("pty session started", "session_id", sess.ID, "pid", sess.PID, "shell", sess.Shell)
	writeJSON(w, http.StatusCreated, sess.Info())
}

func (s *Server) session(w http.ResponseWriter, r *http.Request) (*term.Session, bool) {
	if sess, ok := s.ptys.Get(r.PathValue("id")); ok {
		return sess, true
	}
	writeError(w, http.StatusNotFound, "pty_not_found", "no such terminal session")
	return nil, false
}

func (s *Server) listPTY(w http.ResponseWriter, r *http.Request) {
	out := []agentapi.PTYInfo{}
	for _, sess := range s.ptys.List() {
		out = append(out, sess.Info())
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getPTY(w http.ResponseWriter, r *http.Request) {
	if sess, ok := s.session(w, r); ok {
		writeJSON(w, http.StatusOK, sess.Info())
	}
}

// waitPTY answers once the shell has ended, with the final byte counts.
func (s *Server) waitPTY(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.session(w, r)
	if !ok {
		return
	}
	select {
	case <-sess.Done():
		writeJSON(w, http.StatusOK, sess.Info())
	case <-r.Context().Done():
	}
}

func (s *Server) resizePTY(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.session(w, r)
	if !ok {
		return
	}
	var size agentapi.Size
	if err := readJSON(w, r, 1<<12, &size); err != nil || !validSize(size.Cols, size.Rows) {
		writeError(w, http.StatusBadRequest, "invalid_argument", "body must be {\"cols\": 1..4096, \"rows\": 1..4096}")
		return
	}
	if err := sess.Resize(size.Cols, size.Rows); errors.Is(err, term.ErrEnded) {
		writeError(w, http.StatusConflict, "pty_ended", "the shell has exited")
		return
	} else if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *Server) deletePTY(w http.ResponseWriter, r *http.Request) {
	if !s.ptys.Remove(r.PathValue("id")) {
		writeError(w, http.StatusNotFound, "pty_not_found", "no such terminal session")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// attachPTY switches the connection to frames both ways: terminal output
// (scrollback first) and finally the exit code out, keystrokes and resizes in.
func (s *Server) attachPTY(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.session(w, r)
	if !ok {
		return
	}
	if r.Header.Get("Upgrade") != agentapi.UpgradeProtocol {
		writeError(w, http.StatusBadRequest, "invalid_argument", "attach needs Upgrade: "+agentapi.UpgradeProtocol)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+agentapi.UpgradeProtocol+"\r\n\r\n"); err != nil {
		return
	}
	reader := sess.Attach()
	defer sess.Detach(reader)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()

	inputDone := make(chan struct{})
	go func() {
		defer close(inputDone)
		defer cancel() // the worker hung up: stop sending too
		s.ptyInput(ctx, sess, agentapi.NewFrameReader(brw.Reader))
	}()
	s.ptyOutput(ctx, sess, reader, bufio.NewWriterSize(conn, 64<<10))
	conn.Close() // ends the input loop
	<-inputDone
}

func (s *Server) ptyInput(ctx context.Context, sess *term.Session, fr *agentapi.FrameReader) {
	for {
		typ, payload, err := fr.Next()
		if err != nil {
			return
		}
		switch typ {
		case agentapi.FrameData:
			if err := sess.Write(ctx, payload); err != nil {
				if !errors.Is(err, term.ErrEnded) {
					return
				}
				// Keystrokes after the exit are dropped; the exit frame follows.
			}
		case agentapi.FrameResize:
			var size agentapi.Size
			if json.Unmarshal(payload, &size) == nil && validSize(size.Cols, size.Rows) {
				sess.Resize(size.Cols, size.Rows)
			}
		}
	}
}

func (s *Server) ptyOutput(ctx context.Context, sess *term.Session, reader *ringbuf.Reader, bw *bufio.Writer) {
	buf := make([]byte, 32<<10)
	for {
		n, err := reader.Read(buf)
		if n == 0 && err == nil {
			// Nothing at hand: send what is buffered, then wait.
			if bw.Flush() != nil {
				return
			}
			n, err = reader.ReadContext(ctx, buf)
		}
		if err == io.EOF {
			<-sess.Done()
			b, _ := json.Marshal(agentapi.Exit{ExitCode: sess.ExitCode()})
			if agentapi.WriteFrame(bw, agentapi.FrameExit, b) == nil {
				bw.Flush()
			}
			return
		}
		if err != nil { // replaced by a newer attach, or the worker hung up
			bw.Flush()
			return
		}
		if agentapi.WriteFrame(bw, agentapi.FrameData, buf[:n]) != nil {
			return
		}
	}
}
