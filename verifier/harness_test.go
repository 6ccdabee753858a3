package verifier

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"

	"github.com/aspen-market/aspen/examples"
	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/sandbox"
	"github.com/aspen-market/aspen/store"
)

// cacheDir is the compiled-module cache shared by every sandbox of the
// test run (compiling a Go wasm module takes seconds).
var cacheDir string

// workersSandbox is the in-process sandbox every test worker runs jobs
// in, created once with the module cache warmed.
var workersSandbox *sandbox.Sandbox

func TestMain(m *testing.M) {
	sandbox.RunChildIfRequested() // the test binary is also the executor child
	if os.Getenv(childVerifierEnv) != "" {
		runChildVerifier() // never returns
	}
	dir, err := os.MkdirTemp("", "aspen-verifier-test-")
	if err != nil {
		panic(err)
	}
	cacheDir = filepath.Join(dir, "cache")
	code := func() int {
		defer os.RemoveAll(dir)
		sb, err := startSandbox(sandbox.InProcess, 4)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		workersSandbox = sb
		defer sb.Close()
		// Compile the example modules once into the shared disk cache.
		for _, name := range examples.Names() {
			mod, err := examples.Module(name)
			if err == nil {
				err = sb.Compile(context.Background(), protocol.BlobCID(mod).String(), mod)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "warming the module cache:", err)
				return 1
			}
		}
		return m.Run()
	}()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func startSandbox(iso sandbox.Isolation, slots int) (*sandbox.Sandbox, error) {
	cfg := sandbox.DefaultConfig()
	cfg.Isolation = iso
	cfg.Nice = 0
	cfg.Slots = slots
	cfg.CacheDir = cacheDir
	cfg.Timeout = time.Minute
	s, err := sandbox.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.Start(context.Background()); err != nil {
		return nil, err
	}
	return s, nil
}

// jobTime is the execution time the verifier's reference runs report, and
// jobWork the metered work every run in these tests reports (the verifier's
// and the test workers'), 100 ms of standard work: with ratings clamped to
// 1.0 (testConfig) each honest replica is charged exactly 100 ms at its
// price, whatever the test machine's load. Test workers report their real
// run time, which the verifier bounds by the window it observes.
const (
	jobTime = 100 * time.Millisecond
	jobWork = 100_000_000
)

// fixedRunner is the verifier's real sandbox reporting a fixed duration
// and jobWork.
type fixedRunner struct {
	*sandbox.Sandbox
	d time.Duration
}

func (f fixedRunner) Run(ctx context.Context, job sandbox.Job) (sandbox.Result, error) {
	r, err := f.Sandbox.Run(ctx, job)
	if err == nil && f.d > 0 {
		r.Duration = f.d
	}
	if err == nil {
		r.Work = jobWork
	}
	return r, err
}

func newSandbox(t testing.TB, iso sandbox.Isolation, slots int) *sandbox.Sandbox {
	t.Helper()
	s, err := startSandbox(iso, slots)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testLogger logs through t while the test runs (set VERIFIER_TEST_LOG=1).
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("VERIFIER_TEST_LOG") == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var done atomic.Bool
	t.Cleanup(func() { done.Store(true) })
	return slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		if !done.Load() {
			t.Log(strings.TrimSpace(string(p)))
		}
		return len(p), nil
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// testConfig is a verifier config for tests: loopback, fast loops, short
// heartbeat timeout, no spot checks, fixed reference times.
func testConfig(t testing.TB, dir string) Config {
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.APIAddr = "127.0.0.1:0"
	cfg.Market.SpotCheckPPM = 0
	cfg.Market.HeartbeatTimeout = 3 * time.Second
	cfg.Market.DeadlineSlack = 20 * time.Second
	cfg.BenchmarkWork = 2000
	cfg.BenchmarkTasks = 2
	cfg.BenchmarkRetry = 200 * time.Millisecond
	cfg.ScheduleInterval = 50 * time.Millisecond
	cfg.SweepInterval = 100 * time.Millisecond
	cfg.RestartGrace = time.Second
	cfg.ReleaseRetryMin = 50 * time.Millisecond
	cfg.ReleaseRetryMax = 500 * time.Millisecond
	cfg.RequestTimeout = 10 * time.Second
	// Every worker is rated 1.0 (speeds come from busy slot time, which
	// depends on the test machine), and no test job's claim is too fast.
	cfg.MinRatedSpeed, cfg.MaxRatedSpeed = protocol.SpeedUnit, protocol.SpeedUnit
	cfg.Market.MaxSpeed = 10_000_000
	// Test workers share one sandbox, run a whole assignment in turn and
	// run under the race detector, so a job of a millisecond can wait on
	// others for hundreds: forgive 1 s of busy time (a slow worker in these
	// tests holds its jobs 1.5 s).
	cfg.Market.SpeedSlack = time.Second
	cfg.Logger = testLogger(t)
	return cfg
}

// startVerifier builds and starts a verifier; its sandbox reports jobTime
// unless real is set.
func startVerifier(t testing.TB, cfg Config, real bool) *Verifier {
	t.Helper()
	sb := newSandbox(t, sandbox.Subprocess, 1)
	d := jobTime
	if real {
		d = 0
	}
	cfg.Runner = fixedRunner{sb, d}
	v, err := New(cfg)
	if err != nil {
		sb.Close()
		t.Fatal(err)
	}
	if err := v.Start(context.Background()); err != nil {
		v.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func newKey(t testing.TB) crypto.PrivKey {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// peerHost starts a libp2p host on loopback serving st's blobs, pinned to
// the verifier (so it redials it after a restart).
func peerHost(t testing.TB, key crypto.PrivKey, st *store.Store, ver peer.AddrInfo) *p2p.Host {
	t.Helper()
	cfg := p2p.DefaultConfig()
	cfg.Key = key
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Blobs = blobStore{st}
	cfg.Pinned = []peer.AddrInfo{ver}
	cfg.ReconnectMin = 50 * time.Millisecond
	cfg.ReconnectMax = 500 * time.Millisecond
	cfg.RequestTimeout = 10 * time.Second
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

func openStore(t testing.TB) *store.Store {
	t.Helper()
	cfg := store.DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.ValueLogGCInterval = 0
	st, err := store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ---- a minimal worker ----

// workerBehaviour makes a test worker honest or not.
type workerBehaviour struct {
	// Wrong: return a wrong result for real (non-benchmark) jobs.
	Wrong bool
	// WrongBench: return wrong results for benchmark jobs too.
	WrongBench bool
	// Slow: take Slow × jobTime per real job and report it (0 or 1: honest).
	Slow int
	// Claim: report this run time, whatever the job took.
	Claim time.Duration
	// Vanish: after accepting its first real assignment, stop sending
	// receipts and heartbeats.
	Vanish bool
	// Delay: extra wall-clock time per job.
	Delay time.Duration
	// BusyFirst: answer the first BusyFirst real assignments "busy".
	BusyFirst int32
}

type testWorker struct {
	t    testing.TB
	key  crypto.PrivKey
	id   peer.ID
	st   *store.Store
	host *p2p.Host
	sb   *sandbox.Sandbox
	ver  peer.AddrInfo
	// desk is the verifier's benchmark desk, known to the test worker so
	// that dishonest behaviours can single out benchmarks (the worst case:
	// a cheater that has identified the desk).
	desk  peer.ID
	owner string
	price protocol.Micros
	slots uint32
	b     workerBehaviour

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	vanished atomic.Bool
	mu       sync.Mutex
	rating   []byte
	accepted map[protocol.ID]bool
	modules  map[cid.Cid][]byte
	realJobs int
	busyLeft atomic.Int32
	ran      int
}

// addrInfoer is a verifier, in this process or not.
type addrInfoer interface{ AddrInfo() peer.AddrInfo }

func startWorker(t testing.TB, sb *sandbox.Sandbox, v addrInfoer, owner string, price protocol.Micros, b workerBehaviour) *testWorker {
	t.Helper()
	w := &testWorker{t: t, key: newKey(t), sb: sb, ver: v.AddrInfo(), owner: owner, price: price, slots: 2, b: b,
		accepted: map[protocol.ID]bool{}, modules: map[cid.Cid][]byte{}}
	w.id, _ = peer.IDFromPrivateKey(w.key)
	if vv, ok := v.(*Verifier); ok {
		w.desk = vv.desk.ID()
	}
	w.busyLeft.Store(b.BusyFirst)
	w.st = openStore(t)
	w.host = peerHost(t, w.key, w.st, w.ver)
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.host.Handle(protocol.ProtoAssign, w.handleAssign)
	t.Cleanup(w.stop)
	ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
	defer cancel()
	if err := w.host.Connect(ctx, w.ver); err != nil {
		t.Fatalf("worker connect: %v", err)
	}
	if err := w.register(ctx); err != nil {
		t.Fatalf("register: %v", err)
	}
	w.wg.Add(1)
	go w.heartbeatLoop()
	return w
}

// isBench reports whether an assignment comes from the benchmark desk.
func (w *testWorker) isBench(asg *protocol.Assignment) bool {
	return asg.Consumer == w.desk || asg.Consumer == w.ver.ID
}

func (w *testWorker) stop() {
	w.cancel()
	w.wg.Wait()
	w.host.Close()
	w.st.Close()
}

func (w *testWorker) register(ctx context.Context) error {
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

func (w *testWorker) takeRating(b []byte) {
	if len(b) == 0 {
		return
	}
	var r protocol.Rating
	signer, err := protocol.OpenAs(b, &r)
	if err != nil || signer != w.ver.ID || r.Worker != w.id {
		w.t.Errorf("bad rating from verifier: signer %s err %v", signer, err)
		return
	}
	w.mu.Lock()
	w.rating = b
	w.mu.Unlock()
}

// Rating returns the latest rating the worker received.
func (w *testWorker) Rating() *protocol.Rating {
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

func (w *testWorker) heartbeatLoop() {
	defer w.wg.Done()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var seq uint64
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-tick.C:
		}
		if w.vanished.Load() {
			continue
		}
		seq++
		ctx, cancel := context.WithTimeout(w.ctx, 2*time.Second)
		var ack protocol.Ack
		err := w.host.Request(ctx, w.ver.ID, protocol.ProtoHeartbeat,
			&protocol.Heartbeat{Worker: w.id, Seq: seq, Time: time.Now().UnixMilli(), Capacity: w.slots}, &ack)
		var re *p2p.RemoteError
		if errors.As(err, &re) && re.Code == protocol.AckUnknown {
			_ = w.register(ctx)
		} else if err == nil {
			w.takeRating(ack.Data)
		}
		cancel()
	}
}

func (w *testWorker) handleAssign(ctx context.Context, from peer.ID, env *protocol.Envelope) (protocol.Message, error) {
	if env.Signer != w.ver.ID {
		return nil, p2p.Refuse(protocol.AckUnauthorized, "not the verifier")
	}
	var asg protocol.Assignment
	if err := env.Decode(&asg); err != nil {
		return nil, p2p.Refuse(protocol.AckBadRequest, "%v", err)
	}
	if asg.Worker != w.id || asg.Price < w.price {
		return nil, p2p.Refuse(protocol.AckBadRequest, "not for me")
	}
	if w.vanished.Load() {
		return nil, p2p.Refuse(protocol.AckBusy, "gone")
	}
	if !w.isBench(&asg) && w.busyLeft.Add(-1) >= 0 {
		return nil, p2p.Refuse(protocol.AckBusy, "all slots taken")
	}
	w.mu.Lock()
	dup := w.accepted[asg.ID]
	w.accepted[asg.ID] = true
	if !w.isBench(&asg) {
		w.realJobs += len(asg.Tasks)
	}
	w.mu.Unlock()
	if dup {
		return &protocol.Ack{Ref: asg.ID, OK: true}, nil
	}
	if w.b.Vanish && !w.isBench(&asg) {
		w.vanished.Store(true)
		return &protocol.Ack{Ref: asg.ID, OK: true}, nil
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.runAssignment(&asg)
	}()
	return &protocol.Ack{Ref: asg.ID, OK: true, Count: uint32(len(asg.Tasks))}, nil
}

func (w *testWorker) blob(c cid.Cid, size uint64, from peer.ID, addrs []string) ([]byte, error) {
	w.mu.Lock()
	b, ok := w.modules[c]
	w.mu.Unlock()
	if ok {
		return b, nil
	}
	if _, ok, _ := w.st.HasBlob(c); !ok {
		if pid := from; pid != "" {
			addAddrStrings(w.host, pid, addrs)
		}
		ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
		defer cancel()
		if _, err := w.host.FetchBlob(ctx, c, []peer.ID{from}, w.st, int64(size)); err != nil {
			return nil, err
		}
	}
	return w.st.GetBlob(c)
}

// runAssignment runs each task and sends one receipt per task, retried
// until the verifier acknowledges it.
func (w *testWorker) runAssignment(asg *protocol.Assignment) {
	bench := w.isBench(asg)
	for _, at := range asg.Tasks {
		if w.ctx.Err() != nil || w.vanished.Load() {
			return
		}
		res := protocol.TaskResult{Index: at.Index, Replica: at.Replica}
		mod, err := w.blob(asg.Module, asg.ModuleSize, asg.Consumer, asg.ConsumerAddrs)
		if err == nil {
			w.mu.Lock()
			w.modules[asg.Module] = mod
			w.mu.Unlock()
		}
		in := at.Inline
		if err == nil && len(at.Inline) == 0 && at.Size > 0 {
			in, err = w.blob(at.Input, at.Size, asg.Consumer, asg.ConsumerAddrs)
		}
		var out protocol.Output
		var d time.Duration
		if err != nil {
			out = protocol.Output{Status: protocol.StatusFetchFailed, Message: err.Error()}
		} else {
			r, err := w.sb.Run(w.ctx, sandbox.Job{ModuleID: asg.Module.String(), Module: mod, Input: in,
				Timeout: protocol.WallClockFactor * time.Duration(asg.TimeoutMillis) * time.Millisecond, MaxMemory: asg.MaxMemory,
				WorkBudget: protocol.WorkBudget(asg.TimeoutMillis)})
			if err != nil {
				return
			}
			out, d, res.Work = r.Output(), r.Duration, jobWork
		}
		if w.b.Delay > 0 {
			select {
			case <-time.After(w.b.Delay):
			case <-w.ctx.Done():
				return
			}
		}
		if (!bench && w.b.Wrong) || w.b.WrongBench {
			out.Stdout = append([]byte("forged "), out.Stdout...)
		}
		enc := protocol.EncodeOutput(&out)
		c, _ := w.st.PutBlob(enc)
		res.Status, res.ExitCode, res.Result, res.ResultSize = out.Status, out.ExitCode, c, uint64(len(enc))
		if len(enc) <= protocol.MaxInline {
			res.Inline = enc
		}
		rep := d
		if !bench && w.b.Slow > 1 {
			// Really slow: hold the replica Slow × jobTime and say so.
			rep = time.Duration(w.b.Slow) * jobTime
			select {
			case <-time.After(rep):
			case <-w.ctx.Done():
				return
			}
		}
		if w.b.Claim > 0 {
			rep = w.b.Claim // whatever the window
		}
		res.ExecMicros = uint64(max(rep.Microseconds(), 1))
		w.mu.Lock()
		w.ran++
		w.mu.Unlock()
		w.sendReceipt(&protocol.Receipt{Worker: w.id, Assignment: asg.ID, Group: asg.Group, Results: []protocol.TaskResult{res}})
	}
}

func (w *testWorker) sendReceipt(rc *protocol.Receipt) {
	for w.ctx.Err() == nil && !w.vanished.Load() {
		ctx, cancel := context.WithTimeout(w.ctx, 5*time.Second)
		var ack protocol.Ack
		err := w.host.Request(ctx, w.ver.ID, protocol.ProtoReceipt, rc, &ack)
		cancel()
		if err == nil {
			w.takeRating(ack.Data)
			return
		}
		var re *p2p.RemoteError
		if errors.As(err, &re) && re.Code != protocol.AckInternal {
			w.t.Logf("worker %s: receipt refused: %v", w.id, err)
			return
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-w.ctx.Done():
		}
	}
}

func (w *testWorker) counts() (realJobs, ran int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.realJobs, w.ran
}

// ---- a minimal consumer ----

type testConsumer struct {
	t    testing.TB
	key  crypto.PrivKey
	id   peer.ID
	st   *store.Store
	host *p2p.Host
	ver  peer.AddrInfo

	mu       sync.Mutex
	released map[protocol.ID]map[uint32]protocol.Released
	dups     int
	last     *protocol.Submit
}

func startConsumer(t testing.TB, v addrInfoer) *testConsumer {
	t.Helper()
	c := &testConsumer{t: t, key: newKey(t), ver: v.AddrInfo(), released: map[protocol.ID]map[uint32]protocol.Released{}}
	c.id, _ = peer.IDFromPrivateKey(c.key)
	c.st = openStore(t)
	c.host = peerHost(t, c.key, c.st, c.ver)
	c.host.Handle(protocol.ProtoRelease, c.handleRelease)
	t.Cleanup(func() {
		c.host.Close()
		c.st.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.host.Connect(ctx, c.ver); err != nil {
		t.Fatalf("consumer connect: %v", err)
	}
	return c
}

func (c *testConsumer) handleRelease(ctx context.Context, from peer.ID, env *protocol.Envelope) (protocol.Message, error) {
	if env.Signer != c.ver.ID {
		return nil, p2p.Refuse(protocol.AckUnauthorized, "not the verifier")
	}
	var rel protocol.Release
	if err := env.Decode(&rel); err != nil {
		return nil, p2p.Refuse(protocol.AckBadRequest, "%v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.released[rel.Group]
	if m == nil {
		m = map[uint32]protocol.Released{}
		c.released[rel.Group] = m
	}
	for _, r := range rel.Tasks {
		if _, dup := m[r.Index]; dup {
			c.dups++
			continue
		}
		m[r.Index] = r
	}
	return &protocol.Ack{Ref: rel.Group, OK: true, Count: uint32(len(rel.Tasks))}, nil
}

func (c *testConsumer) releases(g protocol.ID) map[uint32]protocol.Released {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[uint32]protocol.Released{}
	for k, v := range c.released[g] {
		out[k] = v
	}
	return out
}

// groupSpec describes a job group to submit.
type groupSpec struct {
	kernel   string
	inputs   [][]byte
	maxPrice protocol.Micros
	minSpeed protocol.Speed
	replicas uint8
	timeout  time.Duration
}

// submit stores the module and inputs and sends the group; it returns
// the group ID and the verifier's ack (or the refusal as an error).
func (c *testConsumer) submit(ctx context.Context, g groupSpec) (protocol.ID, *protocol.Ack, error) {
	mod, err := examples.Module(g.kernel)
	if err != nil {
		return protocol.ID{}, nil, err
	}
	mc, err := c.st.PutBlob(mod)
	if err != nil {
		return protocol.ID{}, nil, err
	}
	var addrs []string
	for _, a := range c.host.AddrInfo().Addrs {
		addrs = append(addrs, a.String())
	}
	gid := protocol.NewID()
	sub := &protocol.Submit{Consumer: c.id, Group: gid, Module: mc, ModuleSize: uint64(len(mod)), MaxPrice: g.maxPrice,
		MinSpeed: g.minSpeed, Replicas: g.replicas, TimeoutMillis: uint64(g.timeout.Milliseconds()), Addrs: addrs,
		Time: time.Now().UnixMilli()}
	for i, in := range g.inputs {
		ic, err := c.st.PutBlob(in)
		if err != nil {
			return gid, nil, err
		}
		ti := protocol.TaskInput{Index: uint32(i), Input: ic, Size: uint64(len(in))}
		if len(in) <= protocol.MaxInline && i%2 == 0 {
			ti.Inline = in // odd tasks are fetched as blobs
		}
		sub.Tasks = append(sub.Tasks, ti)
	}
	c.mu.Lock()
	c.last = sub
	c.mu.Unlock()
	var ack protocol.Ack
	err = c.host.Request(ctx, c.ver.ID, protocol.ProtoSubmit, sub, &ack)
	return gid, &ack, err
}

func addAddrStrings(h *p2p.Host, id peer.ID, addrs []string) {
	v := &Verifier{host: h}
	v.addAddrs(id, addrs)
}

// expectedOutput runs a job locally for the expected result CID.
func expectedOutput(t testing.TB, sb *sandbox.Sandbox, kernel string, input []byte) (cid.Cid, protocol.Output) {
	t.Helper()
	mod, err := examples.Module(kernel)
	if err != nil {
		t.Fatal(err)
	}
	r, err := sb.Run(context.Background(), sandbox.Job{ModuleID: protocol.BlobCID(mod).String(), Module: mod, Input: input})
	if err != nil {
		t.Fatal(err)
	}
	out := r.Output()
	return protocol.BlobCID(protocol.EncodeOutput(&out)), out
}

func primesInputs(n int) [][]byte {
	var out [][]byte
	for i := 0; i < n; i++ {
		out = append(out, []byte(fmt.Sprintf("%d %d", 1000*i, 1000*i+20000)))
	}
	return out
}

func peerIDFromKey(k crypto.PrivKey) (string, error) {
	id, err := peer.IDFromPrivateKey(k)
	return id.String(), err
}
