package agentclient

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/opensandbox/opensandbox/services/shared/agentapi"
	"github.com/opensandbox/opensandbox/services/shared/errs"
)

// CreatePTY starts a shell on a new terminal.
func (c *Client) CreatePTY(ctx context.Context, req agentapi.PTYRequest) (agentapi.PTYInfo, error) {
	var info agentapi.PTYInfo
	err := c.doJSON(ctx, http.MethodPost, "/pty", nil, req, &info)
	return info, err
}

// PTY describes one terminal session.
func (c *Client) PTY(ctx context.Context, id string) (agentapi.PTYInfo, error) {
	var info agentapi.PTYInfo
	err := c.doJSON(ctx, http.MethodGet, "/pty/"+id, nil, nil, &info)
	return info, err
}

// PTYs lists the terminal sessions.
func (c *Client) PTYs(ctx context.Context) ([]agentapi.PTYInfo, error) {
	var out []agentapi.PTYInfo
	err := c.doJSON(ctx, http.MethodGet, "/pty", nil, nil, &out)
	return out, err
}

// WaitPTY blocks until the session's shell has ended and returns its final
// description.
func (c *Client) WaitPTY(ctx context.Context, id string) (agentapi.PTYInfo, error) {
	var info agentapi.PTYInfo
	err := c.doJSON(ctx, http.MethodGet, "/pty/"+id+"/wait", nil, nil, &info)
	return info, err
}

// ResizePTY changes the terminal size.
func (c *Client) ResizePTY(ctx context.Context, id string, size agentapi.Size) error {
	return c.doJSON(ctx, http.MethodPost, "/pty/"+id+"/resize", nil, size, nil)
}

// DeletePTY kills the session's processes and forgets it.
func (c *Client) DeletePTY(ctx context.Context, id string) error {
	return c.doJSON(ctx, http.MethodDelete, "/pty/"+id, nil, nil, nil)
}

// AttachPTY upgrades a connection to the session's frame stream: Data
// frames both ways, Resize to the agent, Exit from it. The connection is
// closed when ctx ends.
func (c *Client) AttachPTY(ctx context.Context, id string) (io.ReadWriteCloser, error) {
	resp, err := c.do(ctx, http.MethodGet, "/pty/"+id+"/attach", nil, nil, http.Header{
		"Connection": {"Upgrade"},
		"Upgrade":    {agentapi.UpgradeProtocol},
	})
	if err != nil {
		return nil, err
	}
	rw, ok := resp.Body.(io.ReadWriteCloser)
	if resp.StatusCode != http.StatusSwitchingProtocols || !ok {
		resp.Body.Close()
		return nil, errs.Internal("attach terminal", fmt.Errorf("agent answered %d without an upgrade", resp.StatusCode))
	}
	return &ctxConn{ReadWriteCloser: rw, stop: context.AfterFunc(ctx, func() { rw.Close() })}, nil
}

// ctxConn is an upgraded connection tied to a context.
type ctxConn struct {
	io.ReadWriteCloser
	stop func() bool
}

func (c *ctxConn) Close() error {
	c.stop()
	return c.ReadWriteCloser.Close()
}
