package node_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	libp2pnet "github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/node"
	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/store"
)

// TestFetchHoldsNoSlot: a one-slot worker gets an assignment whose
// consumer never sends its module, then one whose consumer does. The
// second runs and is reported while the first is still waiting for its
// module: the fetch does not hold the slot. Once the stalling consumer
// gives up, the first is reported as a fetch failure. The test plays the
// verifier (it signs the assignments and takes the receipts).
func TestFetchHoldsNoSlot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vkey, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	ver := clientHost(t, vkey)
	var mu sync.Mutex
	receipts := map[protocol.ID][]protocol.TaskResult{}
	ver.Handle(protocol.ProtoReceipt, func(_ context.Context, _ peer.ID, env *protocol.Envelope) (protocol.Message, error) {
		var rc protocol.Receipt
		if err := env.Decode(&rc); err != nil {
			return nil, err
		}
		mu.Lock()
		receipts[rc.Assignment] = append(receipts[rc.Assignment], rc.Results...)
		mu.Unlock()
		return &protocol.Ack{Ref: rc.Assignment, OK: true}, nil
	})
	receipt := func(id protocol.ID) []protocol.TaskResult {
		mu.Lock()
		defer mu.Unlock()
		return receipts[id]
	}

	// The stalling consumer reads the request and sends nothing until
	// released; the honest one serves its module.
	stall := clientHost(t, nil)
	release := make(chan struct{})
	var stallOnce sync.Once
	stalled := make(chan struct{})
	stall.Libp2p().SetStreamHandler(p2p.ProtoBlobID, func(s libp2pnet.Stream) {
		defer s.Reset()
		stallOnce.Do(func() { close(stalled) })
		<-release
	})
	stCfg := store.DefaultConfig()
	stCfg.Dir = t.TempDir()
	st, err := store.Open(stCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.PutBlob(catModule); err != nil {
		t.Fatal(err)
	}
	hcfg := p2p.DefaultConfig()
	hcfg.Key, _, _ = crypto.GenerateEd25519Key(nil)
	hcfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	hcfg.Blobs = p2p.StoreBlobs(st)
	honest, err := p2p.New(hcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer honest.Close()
	if err := honest.Start(ctx); err != nil {
		t.Fatal(err)
	}

	cfg := node.DefaultConfig()
	cfg.DataDir = filepath.Join(t.TempDir(), "worker")
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.APIAddr = ""
	cfg.Verifier = ver.AddrInfo()
	cfg.Role = node.RoleWorker
	cfg.Slots = 1
	cfg.Logger = quietLogger()
	w := startNode(t, cfg)
	if err := ver.Connect(ctx, nodeInfo(t, w)); err != nil {
		t.Fatal(err)
	}

	assign := func(consumer *p2p.Host, module []byte) protocol.ID {
		t.Helper()
		var addrs []string
		for _, a := range consumer.AddrInfo().Addrs {
			addrs = append(addrs, a.String())
		}
		now := time.Now().UnixMilli()
		in := []byte("hello")
		asg := &protocol.Assignment{ID: protocol.NewID(), Worker: w.ID(), Consumer: consumer.ID(), ConsumerAddrs: addrs,
			Group: protocol.NewID(), Module: protocol.BlobCID(module), ModuleSize: uint64(len(module)), Price: cfg.MinPrice,
			TimeoutMillis: 60_000, MaxMemory: 64 << 20, Issued: now, Expires: now + 60_000,
			Tasks: []protocol.AssignedTask{{Index: 0, Input: protocol.BlobCID(in), Size: uint64(len(in)), Inline: in}}}
		var ack protocol.Ack
		if err := ver.Request(ctx, w.ID(), protocol.ProtoAssign, asg, &ack); err != nil || !ack.OK {
			t.Fatalf("assignment refused: %+v %v", ack, err)
		}
		return asg.ID
	}
	// A module nobody has: its bytes are whatever the stalling consumer
	// would send.
	slow := assign(stall, []byte("\x00asm a module that never arrives"))
	<-stalled // the worker is fetching it
	fast := assign(honest, catModule)
	waitFor(t, "the second assignment reported while the first waits for its module", 20*time.Second, func() bool {
		return len(receipt(fast)) == 1
	})
	if r := receipt(fast)[0]; r.Status != protocol.StatusOK {
		t.Fatalf("second assignment: status %s", r.Status)
	}
	if len(receipt(slow)) != 0 {
		t.Fatal("the stalled assignment was reported before its consumer gave up")
	}
	close(release)
	waitFor(t, "the stalled assignment reported as a fetch failure", time.Minute, func() bool { return len(receipt(slow)) == 1 })
	if r := receipt(slow)[0]; r.Status != protocol.StatusFetchFailed {
		t.Fatalf("stalled assignment: status %s", r.Status)
	}
}
