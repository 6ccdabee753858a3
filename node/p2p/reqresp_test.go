package p2p

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/protocol"
)

// heartbeatHandler acks heartbeats, refusing Seq 0.
func heartbeatHandler(calls *atomic.Int64) Handler {
	return func(ctx context.Context, from peer.ID, env *protocol.Envelope) (protocol.Message, error) {
		if calls != nil {
			calls.Add(1)
		}
		var hb protocol.Heartbeat
		if err := env.Decode(&hb); err != nil {
			return nil, err
		}
		if hb.Worker != from {
			return nil, Refuse(protocol.AckUnauthorized, "heartbeat for %s from %s", hb.Worker, from)
		}
		if hb.Seq == 0 {
			return nil, Refuse(protocol.AckReplay, "seq 0")
		}
		return &protocol.Ack{OK: true, Count: uint32(hb.Seq)}, nil
	}
}

func TestRequestResponse(t *testing.T) {
	a, b := newHost(t, nil), newHost(t, nil)
	var calls atomic.Int64
	b.Handle(protocol.ProtoHeartbeat, heartbeatHandler(&calls))
	connect(t, a, b)
	ctx := context.Background()
	for i := 1; i <= 5; i++ {
		var ack protocol.Ack
		err := a.Request(ctx, b.ID(), protocol.ProtoHeartbeat, &protocol.Heartbeat{Worker: a.ID(), Seq: uint64(i)}, &ack)
		if err != nil {
			t.Fatal(err)
		}
		if !ack.OK || ack.Count != uint32(i) {
			t.Fatalf("ack %+v", ack)
		}
	}
	// Refusal comes back as a RemoteError with the handler's code.
	var ack protocol.Ack
	err := a.Request(ctx, b.ID(), protocol.ProtoHeartbeat, &protocol.Heartbeat{Worker: a.ID()}, &ack)
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != protocol.AckReplay || !errors.Is(err, ErrRemote) {
		t.Fatalf("want replay refusal, got %v", err)
	}
	// Wrong message type for the handler: bad request.
	err = a.Request(ctx, b.ID(), protocol.ProtoHeartbeat, &protocol.Cancel{Consumer: a.ID()}, &ack)
	if !errors.As(err, &re) || re.Code != protocol.AckBadRequest {
		t.Fatalf("want bad request, got %v", err)
	}
	// Unhandled protocol.
	err = a.Request(ctx, b.ID(), protocol.ProtoSubmit, &protocol.Cancel{Consumer: a.ID()}, &ack)
	if !errors.Is(err, ErrStream) {
		t.Fatalf("want stream error, got %v", err)
	}
	// Still serving.
	if err := a.Request(ctx, b.ID(), protocol.ProtoHeartbeat, &protocol.Heartbeat{Worker: a.ID(), Seq: 9}, &ack); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 8 {
		t.Fatalf("handler calls %d", calls.Load())
	}
}
