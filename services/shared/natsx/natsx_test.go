package natsx

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestEmbeddedStreamCollapsesDuplicateIDs(t *testing.T) {
	srv, err := StartEmbedded(EmbeddedOptions{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := Connect(srv.ClientURL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := EnsureEventStream(ctx, js, DefaultStreamLimits)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		msg := nats.NewMsg(EventSubject("eu", "w1"))
		msg.Data = []byte(`{}`)
		msg.Header.Set(jetstream.MsgIDHeader, "event-1")
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("stream has %d messages, want 1 (duplicates collapse)", info.State.Msgs)
	}
}
