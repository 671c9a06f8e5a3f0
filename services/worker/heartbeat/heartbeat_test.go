package heartbeat

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/opensandbox/opensandbox/services/shared/natsx"
	"github.com/opensandbox/opensandbox/services/shared/proto/workerv1"
	"google.golang.org/protobuf/proto"
)

type fakeCount struct{ n atomic.Int32 }

func (f *fakeCount) Count() int { return int(f.n.Load()) }

func TestHeartbeatsOverEmbeddedNATS(t *testing.T) {
	srv, err := natsx.StartEmbedded(natsx.EmbeddedOptions{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := natsx.Connect(srv.ClientURL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	beats := make(chan *workerv1.Heartbeat, 16)
	sub, err := nc.Subscribe(natsx.HeartbeatSubjs, func(m *nats.Msg) {
		var hb workerv1.Heartbeat
		if err := proto.Unmarshal(m.Data, &hb); err != nil {
			t.Error(err)
			return
		}
		if m.Subject != "workers.heartbeat.eu-west.w1" {
			t.Errorf("subject %s", m.Subject)
		}
		beats <- &hb
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	nc.Flush()

	count := &fakeCount{}
	count.n.Store(3)
	hb, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), nc, Config{
		WorkerID: "w1", Region: "eu-west", GRPCAddr: "10.0.0.1:9090", HTTPAddr: "http://10.0.0.1:8081",
		Capacity: 50, Interval: 50 * time.Millisecond, Version: "test",
	}, count)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- hb.Run(ctx) }()
	first := recv(t, beats)
	if first.WorkerId != "w1" || first.Region != "eu-west" || first.GrpcAddr != "10.0.0.1:9090" ||
		first.HttpAddr != "http://10.0.0.1:8081" || first.Capacity != 50 || first.Current != 3 || first.Time == nil {
		t.Fatalf("beat %+v", first)
	}
	if first.MemPct <= 0 || first.MemPct > 100 {
		t.Errorf("mem pct %v", first.MemPct)
	}
	count.n.Store(7) // the real count travels, not a constant
	for deadline := time.Now().Add(5 * time.Second); ; {
		if b := recv(t, beats); b.Current == 7 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("count change never published")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := New(nil, nc, Config{WorkerID: "w"}, count); err == nil {
		t.Fatal("incomplete config accepted")
	}
}

func recv(t *testing.T, c chan *workerv1.Heartbeat) *workerv1.Heartbeat {
	t.Helper()
	select {
	case b := <-c:
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("no heartbeat within 5s")
		return nil
	}
}
