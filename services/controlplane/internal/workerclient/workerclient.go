// Package workerclient keeps one gRPC connection per worker for the control
// plane, authenticated with the cluster's shared secret.
package workerclient

import (
	"fmt"
	"sync"

	"github.com/opensandbox/opensandbox/services/shared/grpcx"
	"github.com/opensandbox/opensandbox/services/shared/proto/workerv1"
	"google.golang.org/grpc"
)

// Pool hands out clients by worker address.
type Pool struct {
	opts grpcx.DialOptions

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn // by address
}

// New returns an empty pool dialing with opts.
func New(opts grpcx.DialOptions) *Pool {
	return &Pool{opts: opts, conns: map[string]*grpc.ClientConn{}}
}

// Client returns the client of the worker at addr (host:port); connections
// are made lazily and reused.
func (p *Pool) Client(addr string) (workerv1.SandboxWorkerClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cc, ok := p.conns[addr]
	if !ok {
		var err error
		if cc, err = grpcx.NewClient(addr, p.opts); err != nil {
			return nil, fmt.Errorf("worker %s: %w", addr, err)
		}
		p.conns[addr] = cc
	}
	return workerv1.NewSandboxWorkerClient(cc), nil
}

// Forget closes the connection to addr (a worker that left).
func (p *Pool) Forget(addr string) {
	p.mu.Lock()
	cc, ok := p.conns[addr]
	delete(p.conns, addr)
	p.mu.Unlock()
	if ok {
		cc.Close()
	}
}

// Close closes every connection.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, cc := range p.conns {
		cc.Close()
		delete(p.conns, addr)
	}
}
