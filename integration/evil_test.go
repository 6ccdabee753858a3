package integration

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/sandbox"
	"github.com/aspen-market/aspen/store"
)

// An adversarial worker, built in the test from node/p2p, sandbox and
// protocol (never part of a shipped binary). It registers with the real
// verifier process, is benchmarked like anyone else, takes assignments and
// fetches blobs from the real consumer process, and then lies as its
// behaviour says. With the zero behaviour it is an honest worker.

// behaviour says how an evilWorker cheats on real (non-benchmark) jobs.
type behaviour struct {
	// wrongEvery: every wrongEvery-th task (by index, from the first) gets
	// a wrong result; 1 = all of them; 0 = none.
	wrongEvery int
	// ring: do not run anything; report the output and work a colluding
	// ring agreed on (the same wrong answer for the same input on every
	// member) and, as run time, the time it really held the replica (the
	// most it can claim without exceeding the verifier's window).
	ring bool
	// guess: do not run anything; report a guessed result (it cannot see
	// the other replicas' receipts).
	guess bool
	// reportX: report the measured time × reportX.
	reportX float64
	// benchX: report benchmark times × benchX (a sandbagger also lies
	// on its benchmark, to be rated slower).
	benchX float64
	// reportMicros: report this run time, whatever the job took.
	reportMicros uint64
	// beyondWindow: report the time since the assignment arrived plus a
	// minute: more than the verifier can have seen pass.
	beyondWindow bool
	// slowX: really take slowX × the job's time (idle waiting) and report
	// the wall time it took (honest about being slow).
	slowX float64
	// vanish: accept the first real assignment, then disappear (no
	// heartbeats, no receipts, connections closed).
	vanish bool
	// corruptBlobs: serve result blobs with wrong bytes.
	corruptBlobs bool
	// benchLie: report benchmark times divided by benchLie (looks faster
	// than it is when rated).
	benchLie float64
}

type evilWorker struct {
	// desk is the verifier's benchmark desk. A real worker cannot tell it
	// from a consumer; these cheats are given it, the worst case of a
	// cheater that has identified it.
	desk  peer.ID
	t     testing.TB
	label string
	key   crypto.PrivKey
	id    peer.ID
	st    *store.Store
	host  *p2p.Host
	sb    *sandbox.Sandbox
	ver   peer.AddrInfo
	owner string
	price protocol.Micros
	slots uint32
	b     behaviour

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool

	vanished atomic.Bool
	mu       sync.Mutex
	rating   []byte
	accepted map[protocol.ID]bool
	sealed   map[protocol.ID][]byte // verifier-signed assignment envelopes received
	receipts []*protocol.Receipt    // receipts sent for real jobs
	// ranMicros and claimedMicros sum, over the real tasks it answered,
	// the run time its sandbox measured (an honest report) and the time it
	// reported.
	ranMicros, claimedMicros uint64
	real                     int      // real tasks accepted
	lies                     int      // real tasks answered with a lie
	refused                  []string // receipts the verifier refused
	// queue holds accepted assignments: one slot, run in the order they
	// came, as the verifier assumes of a worker with one slot.
	queue chan queued
}

// queued is an accepted assignment and when it arrived.
type queued struct {
	asg     *protocol.Assignment
	bench   bool
	arrived time.Time
}

func startEvil(t testing.TB, label string, ver peer.AddrInfo, desk peer.ID, owner string, price protocol.Micros, slots uint32, b behaviour) *evilWorker {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	w := &evilWorker{t: t, label: label, key: key, sb: evilSandbox(t), ver: ver, desk: desk, owner: owner, price: price, slots: slots, b: b,
		accepted: map[protocol.ID]bool{}, sealed: map[protocol.ID][]byte{}, queue: make(chan queued, 256)}
	w.id, _ = peer.IDFromPrivateKey(key)
	scfg := store.DefaultConfig()
	scfg.Dir = filepath.Join(tmpRoot, "evil", w.id.String())
	scfg.ValueLogGCInterval = 0
	if w.st, err = store.Open(scfg); err != nil {
		t.Fatal(err)
	}
	var blobs p2p.BlobSource = p2p.StoreBlobs(w.st)
	if b.corruptBlobs {
		blobs = corruptSource{blobs}
	}
	w.host = testHost(t, key, blobs, ver)
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.host.Handle(protocol.ProtoAssign, w.handleAssign)
	t.Cleanup(w.close)
	ctx, cancel := context.WithTimeout(w.ctx, 20*time.Second)
	defer cancel()
	if err := w.host.Connect(ctx, ver); err != nil {
		t.Fatalf("%s: connect to the verifier: %v", label, err)
	}
	if err := w.register(ctx); err != nil {
		t.Fatalf("%s: register: %v", label, err)
	}
	w.wg.Add(2)
	go w.heartbeatLoop()
	go w.runLoop()
	return w
}

// runLoop runs the accepted assignments one task at a time, in order.
func (w *evilWorker) runLoop() {
	defer w.wg.Done()
	for {
		select {
		case <-w.ctx.Done():
			return
		case q := <-w.queue:
			w.runAssignment(q)
		}
	}
}

// testHost is a libp2p host on loopback that pins (and so redials) the
// verifier.
func testHost(t testing.TB, key crypto.PrivKey, blobs p2p.BlobSource, ver peer.AddrInfo) *p2p.Host {
	t.Helper()
	cfg := p2p.DefaultConfig()
	cfg.Key = key
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Blobs = blobs
	if ver.ID != "" {
		cfg.Pinned = []peer.AddrInfo{ver}
	}
	cfg.ReconnectMin = 100 * time.Millisecond
	cfg.ReconnectMax = time.Second
	cfg.RequestTimeout = 15 * time.Second
	h, err := p2p.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		h.Close()
		t.Fatal(err)
	}
	return h
}

func (w *evilWorker) close() {
	if w.closed.Swap(true) {
		return
	}
	w.cancel()
	w.wg.Wait()
	w.host.Close()
	w.st.Close()
}

func (w *evilWorker) register(ctx context.Context) error {
	var addrs []string
	for _, a := range w.host.AddrInfo().Addrs {
		addrs = append(addrs, a.String())
	}
	reg := &protocol.Register{Worker: w.id, Owner: w.owner, MinPrice: w.price, Slots: w.slots, Addrs: addrs,
		Nonce: protocol.NewID(), Time: time.Now().UnixMilli()}
	var ack protocol.Ack
	if err := w.host.Request(ctx, w.ver.ID, protocol.ProtoRegister, reg, &ack); err != nil {
		return err
	}
	w.takeRating(ack.Data)
	return nil
}

func (w *evilWorker) takeRating(b []byte) {
	if len(b) == 0 {
		return
	}
	var r protocol.Rating
	signer, err := protocol.OpenAs(b, &r)
	if err != nil || signer != w.ver.ID || r.Worker != w.id {
		return
	}
	w.mu.Lock()
	w.rating = b
	w.mu.Unlock()
}

// rated returns the worker's rating, nil until benchmarked.
func (w *evilWorker) rated() *protocol.Rating {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.rating == nil {
		return nil
	}
	var r protocol.Rating
	if _, err := protocol.OpenAs(w.rating, &r); err != nil {
		return nil
	}
	return &r
}

func (w *evilWorker) heartbeatLoop() {
	defer w.wg.Done()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var seq uint64
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-tick.C:
		}
		if w.vanished.Load() {
			return
		}
		seq++
		w.mu.Lock()
		var holding []protocol.ID
		for id := range w.accepted {
			holding = append(holding, id)
		}
		w.mu.Unlock()
		ctx, cancel := context.WithTimeout(w.ctx, 3*time.Second)
		var ack protocol.Ack
		err := w.host.Request(ctx, w.ver.ID, protocol.ProtoHeartbeat,
			&protocol.Heartbeat{Worker: w.id, Seq: seq, Time: time.Now().UnixMilli(), Capacity: w.slots, Holding: holding}, &ack)
		var re *p2p.RemoteError
		if errors.As(err, &re) && re.Code == protocol.AckUnknown {
			_ = w.register(ctx)
		} else if err == nil {
			w.takeRating(ack.Data)
		}
		cancel()
	}
}

func (w *evilWorker) handleAssign(ctx context.Context, from peer.ID, env *protocol.Envelope) (protocol.Message, error) {
	if env.Signer != w.ver.ID {
		return nil, p2p.Refuse(protocol.AckUnauthorized, "not the verifier")
	}
	var asg protocol.Assignment
	if err := env.Decode(&asg); err != nil {
		return nil, p2p.Refuse(protocol.AckBadRequest, "%v", err)
	}
	if asg.Worker != w.id {
		return nil, p2p.Refuse(protocol.AckUnauthorized, "not for me")
	}
	if w.vanished.Load() {
		return nil, p2p.Refuse(protocol.AckBusy, "gone")
	}
	bench := asg.Consumer == w.desk
	w.mu.Lock()
	dup := w.accepted[asg.ID]
	w.accepted[asg.ID] = true
	w.sealed[asg.ID] = protocol.EnvelopeBytes(env)
	if !bench && !dup {
		w.real += len(asg.Tasks)
	}
	w.mu.Unlock()
	if dup {
		return &protocol.Ack{Ref: asg.ID, OK: true, Count: uint32(len(asg.Tasks))}, nil
	}
	if w.b.vanish && !bench {
		// Accept, then disappear: no receipt, no heartbeat, no connection.
		w.vanished.Store(true)
		go func() {
			for _, c := range w.host.Libp2p().Network().Conns() {
				_ = c.Close()
			}
			w.host.Unhandle(protocol.ProtoAssign)
		}()
		return &protocol.Ack{Ref: asg.ID, OK: true, Count: uint32(len(asg.Tasks))}, nil
	}
	select {
	case w.queue <- queued{asg: &asg, bench: bench, arrived: time.Now()}:
	default:
		return nil, p2p.Refuse(protocol.AckBusy, "queue full")
	}
	return &protocol.Ack{Ref: asg.ID, OK: true, Count: uint32(len(asg.Tasks))}, nil
}

// blob fetches c from the consumer, showing it the sealed assignment (the
// consumer serves its blobs only to the workers its assignments name).
func (w *evilWorker) blob(c cid.Cid, size uint64, asg *protocol.Assignment) ([]byte, error) {
	if _, ok, _ := w.st.HasBlob(c); !ok {
		addAddrs(w.host, asg.Consumer, asg.ConsumerAddrs)
		w.mu.Lock()
		ticket := w.sealed[asg.ID]
		w.mu.Unlock()
		ctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
		defer cancel()
		if _, err := w.host.FetchBlobFor(ctx, c, []peer.ID{asg.Consumer}, w.st, int64(size), p2p.BlobReason{Ticket: ticket}); err != nil {
			return nil, err
		}
	}
	return w.st.GetBlob(c)
}

func addAddrs(h *p2p.Host, id peer.ID, addrs []string) {
	var mas []ma.Multiaddr
	for _, s := range addrs {
		if a, err := ma.NewMultiaddr(s); err == nil {
			mas = append(mas, a)
		}
	}
	if len(mas) > 0 {
		h.Libp2p().Peerstore().AddAddrs(id, mas, 10*time.Minute)
	}
}

// ringOutput is what a colluding ring reports for an input: the same wrong
// output and work on every member, so their results agree.
func ringOutput(in []byte) (protocol.Output, uint64) {
	h := sha256.Sum256(in)
	return protocol.Output{Status: protocol.StatusOK, Stdout: fmt.Appendf(nil, "%d\n", binary.BigEndian.Uint32(h[:4])%100000)},
		1_000_000 + uint64(binary.BigEndian.Uint32(h[4:8])%10_000_000)
}

// guessedOutput is the guesser's answer: something plausible for primes.
func guessedOutput() protocol.Output {
	return protocol.Output{Status: protocol.StatusOK, Stdout: []byte("664579\n")}
}

// runAssignment runs each task and sends one receipt per task.
func (w *evilWorker) runAssignment(q queued) {
	asg, bench := q.asg, q.bench
	for _, at := range asg.Tasks {
		if w.ctx.Err() != nil || w.vanished.Load() {
			return
		}
		in := at.Inline
		var err error
		if len(at.Inline) == 0 && at.Size > 0 {
			in, err = w.blob(at.Input, at.Size, asg)
		}
		var out protocol.Output
		var d time.Duration
		var work uint64
		lie := false
		switch {
		case !bench && w.b.ring:
			out, work = ringOutput(in)
			d, lie = time.Since(q.arrived), true
		case !bench && w.b.guess:
			out, d, lie = guessedOutput(), time.Since(q.arrived), true
		default:
			var mod []byte
			if err == nil {
				mod, err = w.blob(asg.Module, asg.ModuleSize, asg)
			}
			if err != nil {
				out = protocol.Output{Status: protocol.StatusFetchFailed, Message: err.Error()}
				break
			}
			r, err := w.sb.Run(w.ctx, sandbox.Job{ModuleID: asg.Module.String(), Module: mod, Input: in,
				Timeout: protocol.WallClockFactor * time.Duration(asg.TimeoutMillis) * time.Millisecond, MaxMemory: asg.MaxMemory,
				WorkBudget: protocol.WorkBudget(asg.TimeoutMillis)})
			if err != nil {
				return
			}
			out, d, work = r.Output(), r.Duration, r.Work
		}
		if !bench && w.b.wrongEvery > 0 && int(at.Index)%w.b.wrongEvery == 0 {
			out.Stdout = append([]byte("tampered "), out.Stdout...)
			lie = true
		}
		runUs := uint64(max(d.Microseconds(), 1))
		switch {
		case bench && w.b.benchLie > 1:
			d = time.Duration(float64(d) / w.b.benchLie)
		case bench && w.b.benchX > 0:
			d = time.Duration(float64(d) * w.b.benchX)
		case bench:
		case w.b.slowX > 1:
			extra := time.Duration(float64(d) * (w.b.slowX - 1))
			select {
			case <-time.After(extra):
			case <-w.ctx.Done():
				return
			}
			d += extra
		case w.b.reportX > 0:
			d, lie = time.Duration(float64(d)*w.b.reportX), true
		case w.b.reportMicros > 0:
			d, lie = time.Duration(w.b.reportMicros)*time.Microsecond, true
		case w.b.beyondWindow:
			d, lie = time.Since(q.arrived)+time.Minute, true
		}
		enc := protocol.EncodeOutput(&out)
		c, _ := w.st.PutBlob(enc)
		res := protocol.TaskResult{Index: at.Index, Replica: at.Replica, Status: out.Status, ExitCode: out.ExitCode,
			Result: c, ResultSize: uint64(len(enc)), ExecMicros: uint64(max(d.Microseconds(), 1)), Work: work}
		if len(enc) <= protocol.MaxInline {
			res.Inline = enc
		}
		rc := &protocol.Receipt{Worker: w.id, Assignment: asg.ID, Group: asg.Group, Results: []protocol.TaskResult{res}}
		if !bench {
			w.mu.Lock()
			w.receipts = append(w.receipts, rc)
			w.ranMicros += runUs
			w.claimedMicros += res.ExecMicros
			if lie {
				w.lies++
			}
			w.mu.Unlock()
		}
		// As a node does, report in the background and run the next task.
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.sendReceipt(rc)
		}()
	}
}

// sendReceipt delivers a receipt, retrying until the verifier answers.
func (w *evilWorker) sendReceipt(rc *protocol.Receipt) {
	for w.ctx.Err() == nil && !w.vanished.Load() {
		ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
		var ack protocol.Ack
		err := w.host.Request(ctx, w.ver.ID, protocol.ProtoReceipt, rc, &ack)
		cancel()
		if err == nil {
			w.takeRating(ack.Data)
			return
		}
		var re *p2p.RemoteError
		if errors.As(err, &re) && re.Code != protocol.AckInternal {
			w.mu.Lock()
			w.refused = append(w.refused, err.Error())
			w.mu.Unlock()
			return
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-w.ctx.Done():
		}
	}
}

// claims returns the run time the worker's sandbox measured over its
// real tasks and the time it reported for them, µs.
func (w *evilWorker) claims() (ran, claimed uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ranMicros, w.claimedMicros
}

func (w *evilWorker) counts() (real, lies int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.real, w.lies
}

// corruptSource serves every blob with its bytes flipped: a peer that
// serves blobs whose bytes do not match their CID.
type corruptSource struct{ p2p.BlobSource }

func (c corruptSource) ReadBlob(id cid.Cid) (p2p.BlobReader, error) {
	r, err := c.BlobSource.ReadBlob(id)
	if err != nil {
		return nil, err
	}
	return corruptReader{r}, nil
}

type corruptReader struct{ p2p.BlobReader }

func (c corruptReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.BlobReader.ReadAt(p, off)
	for i := 0; i < n; i++ {
		p[i] ^= 0x5a
	}
	return n, err
}

// ---- raw streams: what an attacker can put on the wire ----

// rawExchange opens a stream to p on proto, writes raw bytes and reads one
// reply frame. It returns the decoded Ack (when the reply is one), or the
// error that ended the stream (a reset, for instance).
func rawExchange(h *p2p.Host, p peer.ID, proto string, raw []byte, closeWrite bool) (*protocol.Ack, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := h.Libp2p().NewStream(ctx, p, libp2pproto.ID(proto))
	if err != nil {
		return nil, fmt.Errorf("open stream: %w", err)
	}
	defer s.Reset()
	_ = s.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := s.Write(raw); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	if closeWrite {
		_ = s.CloseWrite()
	}
	frame, err := protocol.ReadFrame(s, protocol.MaxMessageSize)
	if err != nil {
		return nil, fmt.Errorf("read reply: %w", err)
	}
	var ack protocol.Ack
	signer, err := protocol.OpenAs(frame, &ack)
	if err != nil {
		return nil, fmt.Errorf("reply: %w", err)
	}
	if signer != p {
		return nil, fmt.Errorf("reply signed by %s", signer)
	}
	return &ack, nil
}

// frame prefixes b with its u32 length.
func frame(b []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(b)))
	return append(out, b...)
}

// forgedEnvelope builds envelope bytes naming signer as the signer but
// signed with key (which is not signer's): a forged signature.
func forgedEnvelope(key crypto.PrivKey, signer peer.ID, m protocol.Message) []byte {
	var b []byte
	b = append(b, protocol.Version, byte(m.Type()))
	b = binary.BigEndian.AppendUint32(b, uint32(len(signer)))
	b = append(b, signer...)
	body := protocol.Encode(m)
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	b = append(b, body...)
	sig, _ := key.Sign(append([]byte("aspen/v1 envelope\x00"), b...))
	b = binary.BigEndian.AppendUint32(b, uint32(len(sig)))
	return append(b, sig...)
}
