package agentclient

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// New returns a client for the agent listening on socket, the path of the
// agent's socket in the sandbox's run directory on the host.
//
// That directory is bind-mounted into the sandbox, which can write it: a
// hostile sandbox may replace its socket with a symlink to another
// sandbox's socket, hoping the worker follows it and runs its owner's
// commands there. Every connection is therefore made without following any
// link in the directory, and without asking who the peer is (SO_PEERCRED
// pids mean nothing across PID namespaces, as under Nomad's Podman driver):
//
//  1. the run directory is opened with O_PATH|O_NOFOLLOW|O_DIRECTORY (the
//     directory itself is the worker's; only its contents are the
//     sandbox's);
//  2. the socket is opened relative to it with O_PATH|O_NOFOLLOW, so a
//     symlink is opened as itself, and it must be a socket;
//  3. the connection goes through /proc/self/fd/<n> of that opened inode,
//     which reaches exactly that socket whatever the path holds by then.
//
// Whatever answers is then something inside this sandbox's own directory:
// at worst a program the sandbox put there in place of its agent, which can
// only lie about that sandbox itself (and every answer is read bounded).
func New(socket string) *Client {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dialAgent(ctx, socket)
	}
	return &Client{http: &http.Client{Transport: &http.Transport{
		DialContext:         dial,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}}
}

// dialAgent connects to the socket at path without following links in its
// directory (see New).
func dialAgent(ctx context.Context, path string) (net.Conn, error) {
	// Dir, not Split: a trailing slash would make O_NOFOLLOW follow.
	dir, name := filepath.Dir(path), filepath.Base(path)
	dirfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("agent socket directory: %w", err)
	}
	defer unix.Close(dirfd)
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("agent socket: %w", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("agent socket: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, fmt.Errorf("agent socket %s is not a socket (mode %#o): refused", path, st.Mode&unix.S_IFMT)
	}
	var d net.Dialer
	return d.DialContext(ctx, "unix", "/proc/self/fd/"+strconv.Itoa(fd))
}
