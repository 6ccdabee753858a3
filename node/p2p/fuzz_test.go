package p2p

import (
	"encoding/binary"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/protocol"
)

// FuzzGossipValidator feeds arbitrary bytes (and origins) to the topic
// validator: it must never panic, and whatever it accepts must be a
// message of the topic's type signed by the origin.
func FuzzGossipValidator(f *testing.F) {
	key := newKey(f)
	w, _ := peer.IDFromPrivateKey(key)
	o := testOffer(w)
	o.Seq, o.Expires = 7, time.Now().Add(time.Hour).UnixMilli()
	f.Add(seal(f, key, o), uint8(0), true)
	o.Expires = time.Now().Add(5 * time.Minute).UnixMilli()
	f.Add(seal(f, key, o), uint8(0), true)
	b := testBid(w)
	b.Seq, b.Expires = 9, time.Now().Add(5*time.Minute).UnixMilli()
	f.Add(seal(f, key, b), uint8(1), false)
	f.Add([]byte{1, 2, 0, 0, 0, 0}, uint8(1), true)
	f.Add([]byte{}, uint8(0), false)

	cfg := testConfig(f)
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	h, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { h.Close() })
	relay := peer.ID("relay")
	f.Fuzz(func(t *testing.T, data []byte, topic uint8, direct bool) {
		kind := topicKind(topic % uint8(numKinds))
		origin := w
		if env, err := protocol.Open(data); err == nil {
			origin = env.Signer
		}
		from := relay
		if direct {
			from = origin
		}
		m := gossipMsg(topicNames[kind], data, origin, from)
		res := h.validate(kind, from, m)
		if res != pubsub.ValidationAccept {
			return
		}
		switch v := m.ValidatorData.(type) {
		case *protocol.Offer:
			if kind != kindOffer || v.Worker != origin {
				t.Fatalf("accepted offer %+v on %s from %s", v, kind, origin)
			}
		case *protocol.Bid:
			if kind != kindBid || v.Consumer != origin {
				t.Fatalf("accepted bid %+v on %s from %s", v, kind, origin)
			}
		default:
			t.Fatalf("accepted %T", v)
		}
	})
}

// FuzzRequestFrame feeds arbitrary request frames to the request server's
// decision logic: it must never panic and always produce a reply signed by
// the host (an Ack refusal unless the request was a valid heartbeat from
// the stream's peer).
func FuzzRequestFrame(f *testing.F) {
	key := newKey(f)
	w, _ := peer.IDFromPrivateKey(key)
	f.Add(seal(f, key, &protocol.Heartbeat{Worker: w, Seq: 1}))
	f.Add(seal(f, key, &protocol.Cancel{Consumer: w}))
	f.Add(forgedEnvelope(f, w))
	f.Add([]byte{1})
	cfg := testConfig(f)
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	h, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { h.Close() })
	fn := heartbeatHandler(nil)
	f.Fuzz(func(t *testing.T, frame []byte) {
		reply, _ := h.answer(w, protocol.ProtoHeartbeat, frame, fn)
		env, err := protocol.Open(reply)
		if err != nil || env.Signer != h.ID() {
			t.Fatalf("reply not signed by host: %v", err)
		}
		var ack protocol.Ack
		if err := env.Decode(&ack); err != nil {
			t.Fatalf("reply is not an ack: %v", err)
		}
	})
}

// FuzzBlobRequest feeds arbitrary request frames to the blob server's
// request check: never a panic, and an OK range always lies inside the
// blob.
func FuzzBlobRequest(f *testing.F) {
	st := newMemStore()
	data := make([]byte, 1000)
	c := st.put(data)
	req := func(off, n uint64) []byte {
		return protocol.EncodeBlobRequest(&protocol.BlobRequest{CID: c.Bytes(), Offset: off, Length: n})
	}
	f.Add(req(0, 0))
	f.Add(req(999, 1))
	f.Add(req(1000, 0))
	f.Add(req(1001, 0))
	f.Add(req(1, 1<<63))
	f.Add(binary.BigEndian.AppendUint32(nil, 3))
	cfg := testConfig(f)
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Blobs = st
	h, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { h.Close() })
	f.Fuzz(func(t *testing.T, frame []byte) {
		got, off, n, status, _ := h.parseBlobRequest("x", frame)
		if status == protocol.BlobOK && (!got.Equals(c) || off+n > uint64(len(data)) || off+n < off) {
			t.Fatalf("OK for %d+%d of %s", off, n, got)
		}
	})
}
