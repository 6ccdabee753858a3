package p2p

import (
	"context"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

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

// rawRequest opens a stream from a to b on proto, writes frame bytes and
// returns the reply frame (or the error).
func rawRequest(t *testing.T, a, b *Host, proto string, raw []byte) ([]byte, error) {
	t.Helper()
	s, err := a.Libp2p().NewStream(context.Background(), b.ID(), libp2pproto.ID(proto))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := s.Write(raw); err != nil {
		return nil, err
	}
	return protocol.ReadFrame(s, protocol.MaxMessageSize)
}

func frameOf(b []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(b)))
	return append(out, b...)
}

func TestRequestForgedSignerRefused(t *testing.T) {
	a, b := newHost(t, nil), newHost(t, nil)
	var calls atomic.Int64
	b.Handle(protocol.ProtoHeartbeat, heartbeatHandler(&calls))
	connect(t, a, b)

	// A heartbeat validly signed by another key, sent by a: refused.
	other := newKey(t)
	oid, _ := peer.IDFromPrivateKey(other)
	reply, err := rawRequest(t, a, b, protocol.ProtoHeartbeat, frameOf(seal(t, other, &protocol.Heartbeat{Worker: oid, Seq: 1})))
	if err != nil {
		t.Fatal(err)
	}
	var ack protocol.Ack
	signer, err := protocol.OpenAs(reply, &ack)
	if err != nil || signer != b.ID() || ack.OK || ack.Code != protocol.AckUnauthorized {
		t.Fatalf("want unauthorized ack from b, got %+v signer %s err %v", ack, signer, err)
	}
	// A forged signature (signer field swapped): refused as bad request.
	reply, err = rawRequest(t, a, b, protocol.ProtoHeartbeat, frameOf(forgedEnvelope(t, a.ID())))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := protocol.OpenAs(reply, &ack); err != nil || ack.Code != protocol.AckBadRequest {
		t.Fatalf("want bad request, got %+v %v", ack, err)
	}
	// An oversized frame header and a truncated frame: stream reset.
	huge := binary.BigEndian.AppendUint32(nil, protocol.MaxMessageSize+1)
	if _, err := rawRequest(t, a, b, protocol.ProtoHeartbeat, huge); err == nil {
		t.Fatal("oversized frame answered")
	}
	if calls.Load() != 0 {
		t.Fatal("handler ran for a refused request")
	}
	// b keeps serving.
	if err := a.Request(context.Background(), b.ID(), protocol.ProtoHeartbeat, &protocol.Heartbeat{Worker: a.ID(), Seq: 3}, &ack); err != nil || !ack.OK {
		t.Fatalf("%+v %v", ack, err)
	}

	// A server answering with someone else's signature: the client refuses it.
	b.Handle(protocol.ProtoStatement, func(ctx context.Context, from peer.ID, env *protocol.Envelope) (protocol.Message, error) {
		return nil, nil
	})
	a.Libp2p().SetStreamHandler(libp2pproto.ID(protocol.ProtoStatement), func(s network.Stream) {
		defer s.Close()
		if _, err := protocol.ReadFrame(s, protocol.MaxMessageSize); err != nil {
			s.Reset()
			return
		}
		_ = writeFrame(s, seal(t, other, &protocol.Statement{Peer: b.ID()}))
	})
	var stmt protocol.Statement
	err = b.Request(context.Background(), a.ID(), protocol.ProtoStatement, &protocol.StatementRequest{Peer: b.ID()}, &stmt)
	if !errors.Is(err, ErrSignerMismatch) {
		t.Fatalf("want signer mismatch, got %v", err)
	}
	// A handler returning nothing answers an internal error.
	err = a.Request(context.Background(), b.ID(), protocol.ProtoStatement, &protocol.StatementRequest{Peer: a.ID()}, &stmt)
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != protocol.AckInternal {
		t.Fatalf("want internal error, got %v", err)
	}
}

func TestRequestHandlerPanicContained(t *testing.T) {
	a, b := newHost(t, nil), newHost(t, nil)
	b.Handle(protocol.ProtoCancel, func(ctx context.Context, from peer.ID, env *protocol.Envelope) (protocol.Message, error) {
		panic("boom")
	})
	connect(t, a, b)
	var ack protocol.Ack
	err := a.Request(context.Background(), b.ID(), protocol.ProtoCancel, &protocol.Cancel{Consumer: a.ID()}, &ack)
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != protocol.AckInternal {
		t.Fatalf("want internal error, got %v", err)
	}
}

// openStreams counts h's open streams to p on proto.
func openStreams(h *Host, p peer.ID, proto string) int {
	n := 0
	for _, c := range h.Libp2p().Network().ConnsToPeer(p) {
		for _, s := range c.GetStreams() {
			if string(s.Protocol()) == proto {
				n++
			}
		}
	}
	return n
}

func TestRequestStreamReuse(t *testing.T) {
	a := newHost(t, nil)
	b := newHost(t, func(c *Config) { c.StreamIdleTimeout = 200 * time.Millisecond })
	b.Handle(protocol.ProtoHeartbeat, heartbeatHandler(nil))
	connect(t, a, b)
	ctx := context.Background()
	var ack protocol.Ack
	seq := uint64(0)
	for range 10 {
		seq++
		if err := a.Request(ctx, b.ID(), protocol.ProtoHeartbeat, &protocol.Heartbeat{Worker: a.ID(), Seq: seq}, &ack); err != nil {
			t.Fatal(err)
		}
	}
	if n := openStreams(b, a.ID(), protocol.ProtoHeartbeat); n != 1 {
		t.Fatalf("10 sequential requests used %d streams", n)
	}
	// b closes the idle stream; the next request still succeeds.
	for range 2 {
		waitFor(t, 5*time.Second, "idle stream closed by server", func() bool {
			return openStreams(b, a.ID(), protocol.ProtoHeartbeat) == 0
		})
		seq++
		if err := a.Request(ctx, b.ID(), protocol.ProtoHeartbeat, &protocol.Heartbeat{Worker: a.ID(), Seq: seq}, &ack); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRequestContextCancel(t *testing.T) {
	a, b := newHost(t, nil), newHost(t, nil)
	release := make(chan struct{})
	b.Handle(protocol.ProtoCancel, func(ctx context.Context, from peer.ID, env *protocol.Envelope) (protocol.Message, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return &protocol.Ack{OK: true}, nil
	})
	connect(t, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var ack protocol.Ack
	err := a.Request(ctx, b.ID(), protocol.ProtoCancel, &protocol.Cancel{Consumer: a.ID()}, &ack)
	close(release)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline exceeded, got %v", err)
	}
}

// A request is bounded by Config.RequestTimeout when the caller's context
// has no deadline, on a fresh stream and on a reused one, and the host
// keeps working afterwards.
func TestRequestTimeout(t *testing.T) {
	a := newHost(t, func(c *Config) { c.RequestTimeout = 300 * time.Millisecond })
	b := newHost(t, nil)
	release := make(chan struct{})
	var stall atomic.Bool
	b.Handle(protocol.ProtoHeartbeat, func(ctx context.Context, from peer.ID, env *protocol.Envelope) (protocol.Message, error) {
		if stall.Load() {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return &protocol.Ack{OK: true}, nil
	})
	connect(t, a, b)
	defer close(release)
	ctx := context.Background()
	var ack protocol.Ack
	seq := uint64(0)
	call := func() error {
		seq++
		return a.Request(ctx, b.ID(), protocol.ProtoHeartbeat, &protocol.Heartbeat{Worker: a.ID(), Seq: seq}, &ack)
	}
	for _, pooled := range []bool{false, true} {
		if pooled {
			stall.Store(false)
			if err := call(); err != nil { // leaves an idle stream in the pool
				t.Fatal(err)
			}
		}
		stall.Store(true)
		start := time.Now()
		err := call()
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrStream) {
			t.Fatalf("pooled %v: want stream error wrapping deadline exceeded, got %v", pooled, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("pooled %v: request took %v with a 300ms timeout", pooled, d)
		}
	}
	stall.Store(false)
	if err := call(); err != nil || !ack.OK {
		t.Fatalf("after timeouts: %+v %v", ack, err)
	}
}
