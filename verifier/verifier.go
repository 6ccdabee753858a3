package verifier

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/sandbox"
	"github.com/aspen-market/aspen/store"
	"github.com/aspen-market/aspen/verifier/ledger"
)

// Paths inside the data directory.
const (
	KeyFile     = "identity.key"
	DeskKeyFile = "bench-desk.key"
	TokenFile   = "operator.token"
	AddrFile    = "operator.addr"
	StoreDir    = "store"
	CacheDir    = "wasm-cache"
	ConfigFile  = "verifier.json"
)

// Verifier is the running verifier service. Create it with New, bring it
// online with Start and stop it with Close. Its methods are safe for
// concurrent use.
type Verifier struct {
	cfg  Config
	log  *slog.Logger
	key  crypto.PrivKey
	id   peer.ID
	st   *store.Store
	led  *ledger.Ledger
	host *p2p.Host
	// desk is the benchmark desk: a second identity, with its own key and
	// host, that appears as the consumer of benchmark assignments and
	// serves their blobs, so a worker cannot tell a benchmark from a real
	// job by its consumer.
	desk *p2p.Host

	benchOnce sync.Once // loads the benchmark kernel (benchModule)
	benchMod  []byte
	benchCID  cid.Cid
	benchErr  error
	run       Runner
	token     string
	per       *persister
	lq        *ledgerQueue

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	stateMu   sync.Mutex // guards started, closed
	started   bool
	closed    bool
	closeOnce sync.Once
	closeErr  error

	stats counters

	api     *http.Server
	apiAddr string

	kickSched   chan struct{}
	kickRelease chan struct{}
	kickSelf    chan struct{}

	// mu guards everything below.
	mu        sync.Mutex
	startedAt int64 // unix ms of Start: grace for workers' first heartbeat
	workers   map[peer.ID]*workerState
	reps      market.Reputations // points into workers[*].rec.Rep
	book      *market.Book
	groups    map[protocol.ID]*groupState
	asgs      map[protocol.ID]*assignmentRecord // open (not done) assignments
	benches   map[protocol.ID]*benchRecord
	preparing int                     // workers whose benchmark is being prepared (benchBusy)
	running   map[protocol.ID]int     // running replicas per open assignment
	queued    map[*taskState]struct{} // tasks that need worker replicas
	selfQ     []*taskState            // tasks the verifier must run itself
	openTasks int
	// carries are the sub-micro remainders of settled charges per
	// (consumer, payee) pair (market.Carries), persisted in nsCarry.
	carries market.Carries
}

type workerState struct {
	id          peer.ID
	rec         workerRecord
	lastSeen    int64 // unix ms of the last message; 0: not heard from since Start
	unreachable bool  // an assignment could not be delivered; cleared by a heartbeat
	dirty       bool  // rec changed and is not yet queued for persistence
	hbRating    int64 // RatingIssued last handed out on a heartbeat ack
	benchBusy   bool  // a benchmark is being prepared
	execMicros  int64 // average busy slot time per replica observed (0: none yet); sets its queue depth
	// held are the replicas it holds, in assignment order, and inSlots
	// how many of them are in its slots (held.go).
	held    []heldReplica
	inSlots int
	// modules are, for the modules it has reported results of since the
	// verifier started (bounded), when the first such receipt arrived:
	// before it, the worker was fetching and compiling the module, which
	// is not its speed (held.go).
	modules map[cid.Cid]int64
}

// maxModulesSeen bounds workerState.modules; past it the map starts over.
const maxModulesSeen = 256

// moduleSinceLocked returns when the worker's first receipt for module m
// arrived, noting now if this is the first.
func (ws *workerState) moduleSinceLocked(m cid.Cid, now int64) int64 {
	if at, ok := ws.modules[m]; ok {
		return at
	}
	if ws.modules == nil || len(ws.modules) >= maxModulesSeen {
		ws.modules = map[cid.Cid]int64{}
	}
	ws.modules[m] = now
	return now
}

type groupState struct {
	id        protocol.ID
	consumer  peer.ID
	module    cid.Cid
	rec       groupRecord
	tasks     map[uint32]*taskState // tasks not yet released
	releasing bool
	retryAt   int64 // unix ms: no release attempt before
	backoff   time.Duration
}

type taskState struct {
	g          *groupState
	rec        taskRecord
	selfQueued bool   // in selfQ or running on the verifier
	counted    []bool // replicas counted in Verifier.running
	posting    bool   // settlement queued to the ledger
}

// heldBy reports whether replica i of the task (nil: none) is the one the
// assignment asg gave out; false once the task was released and reloaded.
func (t *taskState) heldBy(i uint16, asg string) bool {
	return t != nil && int(i) < len(t.rec.M.Runs) && int(i) < len(t.rec.Replicas) && t.rec.Replicas[i].Assignment == asg
}

func (t *taskState) key() string { return string(taskKey(t.g.id, t.rec.Index)) }

// New opens the verifier's data directory (creating its identity key and
// operator token on first use), the store and ledger, the sandbox and the
// libp2p host. Start brings it online.
func New(cfg Config) (*Verifier, error) {
	cfg.fill()
	cfg.Market.MinRatedSpeed = cfg.MinRatedSpeed
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("verifier: data dir: %w", err)
	}
	key, err := p2p.LoadOrCreateKey(filepath.Join(cfg.DataDir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("verifier: identity: %w", err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("verifier: identity: %w", err)
	}
	token, err := LoadOrCreateToken(filepath.Join(cfg.DataDir, TokenFile))
	if err != nil {
		return nil, err
	}
	v := &Verifier{
		cfg: cfg, log: cfg.Logger.With("component", "verifier"), key: key, id: id, token: token,
		kickSched: make(chan struct{}, 1), kickRelease: make(chan struct{}, 1), kickSelf: make(chan struct{}, 1),
		workers: map[peer.ID]*workerState{}, reps: market.Reputations{}, book: market.NewBook(), carries: market.Carries{},
		groups: map[protocol.ID]*groupState{}, asgs: map[protocol.ID]*assignmentRecord{},
		benches: map[protocol.ID]*benchRecord{}, queued: map[*taskState]struct{}{}, running: map[protocol.ID]int{},
	}
	ok := false
	defer func() {
		if !ok {
			v.closeParts()
		}
	}()
	scfg := store.DefaultConfig()
	scfg.Dir = filepath.Join(cfg.DataDir, StoreDir)
	scfg.Logger = cfg.Logger
	scfg.MemTableSize = 64 << 20
	scfg.BlockCacheSize = 64 << 20
	scfg.IndexCacheSize = 32 << 20
	scfg.BaseTableSize = 8 << 20
	scfg.ValueThreshold = 64 << 10
	if v.st, err = store.Open(scfg); err != nil {
		return nil, fmt.Errorf("verifier: store: %w", err)
	}
	if v.led, err = ledger.Open(v.st, ledger.Config{Logger: cfg.Logger}); err != nil {
		return nil, fmt.Errorf("verifier: ledger: %w", err)
	}
	v.per = newPersister(v.st, v.led)
	v.lq = newLedgerQueue(v.led)
	if cfg.Runner != nil {
		v.run = cfg.Runner
	} else {
		sbc := cfg.Sandbox
		if sbc.CacheDir == "" {
			sbc.CacheDir = filepath.Join(cfg.DataDir, CacheDir)
		}
		if sbc.Slots < cfg.VerifierSlots {
			sbc.Slots = cfg.VerifierSlots
		}
		sbc.Logger = cfg.Logger
		sb, err := sandbox.New(sbc)
		if err != nil {
			return nil, fmt.Errorf("verifier: sandbox: %w", err)
		}
		v.run = sb
	}
	pcfg := p2p.DefaultConfig()
	pcfg.Key = key
	if len(cfg.Listen) > 0 {
		pcfg.ListenAddrs = cfg.Listen
	}
	pcfg.Blobs = blobStore{v.st}
	pcfg.BlobAuth = v.mainBlobAllowed
	pcfg.RatingSigner = id // gossip admits only offers this verifier rated
	pcfg.Logger = cfg.Logger
	pcfg.RequestTimeout = cfg.RequestTimeout
	pcfg.Now = cfg.Now
	// Nodes behind NAT learn it from the verifier (AutoNAT) and are
	// reached through it (a limited circuit relay, for peers it knows).
	pcfg.NATService = true
	relay := p2p.DefaultRelayLimits()
	relay.AllowReserve = v.relayAllowed
	pcfg.RelayService = &relay
	if v.host, err = p2p.New(pcfg); err != nil {
		return nil, fmt.Errorf("verifier: host: %w", err)
	}
	deskKey, err := p2p.LoadOrCreateKey(filepath.Join(cfg.DataDir, DeskKeyFile))
	if err != nil {
		return nil, fmt.Errorf("verifier: benchmark desk identity: %w", err)
	}
	dcfg := pcfg
	dcfg.Key = deskKey
	dcfg.BlobAuth = v.deskBlobAllowed
	dcfg.ListenAddrs = deskListen(pcfg.ListenAddrs)
	dcfg.NATService, dcfg.RelayService = false, nil
	if v.desk, err = p2p.New(dcfg); err != nil {
		return nil, fmt.Errorf("verifier: benchmark desk host: %w", err)
	}
	ok = true
	return v, nil
}

// relayAllowed says whether p may hold a slot on the verifier's relay: a
// registered worker, or a consumer with money in its account or escrow.
func (v *Verifier) relayAllowed(p peer.ID) bool {
	v.mu.Lock()
	_, ok := v.workers[p]
	v.mu.Unlock()
	if ok {
		return true
	}
	for _, acct := range []string{acctConsumer(p.String()), acctEscrow(p.String())} {
		if b, err := v.led.Balance(acct); err == nil && b > 0 {
			return true
		}
	}
	return false
}

// closeParts closes whatever New opened.
func (v *Verifier) closeParts() error {
	var errs []error
	if v.host != nil {
		errs = append(errs, v.host.Close())
	}
	if v.desk != nil {
		errs = append(errs, v.desk.Close())
	}
	if v.run != nil {
		errs = append(errs, v.run.Close())
	}
	if v.st != nil {
		errs = append(errs, v.st.Close())
	}
	return errors.Join(errs...)
}

// ID is the verifier's peer ID (the key every node pins).
func (v *Verifier) ID() peer.ID { return v.id }

// Addrs are the verifier's listen multiaddrs (transport addresses, without
// the /p2p/ID suffix).
func (v *Verifier) Addrs() []ma.Multiaddr { return v.host.AddrInfo().Addrs }

// AddrInfo is the verifier's peer ID and addrs, to pin in nodes.
func (v *Verifier) AddrInfo() peer.AddrInfo { return v.host.AddrInfo() }

// APIAddr is the operator API's listen address once started ("" if off).
func (v *Verifier) APIAddr() string { return v.apiAddr }

// Token is the operator API's bearer token.
func (v *Verifier) Token() string { return v.token }

// Ledger gives in-process access to the ledger (devnet, tests).
func (v *Verifier) Ledger() *ledger.Ledger { return v.led }

func (v *Verifier) now() time.Time { return v.cfg.Now() }
func (v *Verifier) nowMs() int64   { return v.cfg.Now().UnixMilli() }

// Start loads every open group, task, assignment and benchmark from the
// store, brings the host online, registers the protocol handlers, starts
// the scheduling, sweeping, release and self-run loops and the operator
// API, and resumes every open job.
func (v *Verifier) Start(ctx context.Context) error {
	v.stateMu.Lock()
	if v.closed {
		v.stateMu.Unlock()
		return ErrClosed
	}
	if v.started {
		v.stateMu.Unlock()
		return fmt.Errorf("verifier: already started")
	}
	v.started = true
	v.stateMu.Unlock()

	v.ctx, v.cancel = context.WithCancel(context.Background())
	if s, ok := v.run.(interface{ Start(context.Context) error }); ok && v.cfg.Runner == nil {
		if err := s.Start(v.ctx); err != nil {
			return fmt.Errorf("verifier: start sandbox: %w", err)
		}
	}
	v.wg.Add(2)
	go func() { defer v.wg.Done(); v.per.run(v.ctx) }()
	go func() { defer v.wg.Done(); v.lq.run(v.ctx) }()

	if err := v.load(ctx); err != nil {
		return fmt.Errorf("verifier: resume: %w", err)
	}
	v.host.Handle(protocol.ProtoRegister, v.handleRegister)
	v.host.Handle(protocol.ProtoSubmit, v.handleSubmit)
	v.host.Handle(protocol.ProtoReceipt, v.handleReceipt)
	v.host.Handle(protocol.ProtoHeartbeat, v.handleHeartbeat)
	v.host.Handle(protocol.ProtoCancel, v.handleCancel)
	v.host.Handle(protocol.ProtoStatement, v.handleStatement)
	v.host.OnOffer(v.handleOffer)
	if err := v.desk.Start(v.ctx); err != nil {
		return fmt.Errorf("verifier: start benchmark desk: %w", err)
	}
	if err := v.host.Start(v.ctx); err != nil {
		return fmt.Errorf("verifier: start host: %w", err)
	}
	v.goLoop(v.scheduleLoop)
	v.goLoop(v.sweepLoop)
	v.goLoop(v.releaseLoop)
	for i := 0; i < v.cfg.VerifierSlots; i++ {
		v.goLoop(v.selfLoop)
	}
	v.goLoop(v.resume)
	if v.cfg.APIAddr != "" {
		if err := v.startAPI(); err != nil {
			return err
		}
	}
	v.log.Info("verifier started", "peer", v.id.String(), "addrs", v.host.Addrs(), "api", v.apiAddr)
	return nil
}

func (v *Verifier) goLoop(f func(ctx context.Context)) {
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		f(v.ctx)
	}()
}

// Close stops the loops, the API and the host, waits for everything in
// flight, flushes pending records and closes the sandbox and the store. It
// is safe to call more than once.
func (v *Verifier) Close() error {
	v.closeOnce.Do(func() {
		v.stateMu.Lock()
		v.closed = true
		started := v.started
		v.stateMu.Unlock()
		var errs []error
		if v.api != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			errs = append(errs, v.api.Shutdown(sctx))
			cancel()
		}
		if started {
			errs = append(errs, v.host.Close())
			errs = append(errs, v.desk.Close())
			v.cancel()
			v.wg.Wait()
			v.mu.Lock()
			dirty := v.dirtyWorkersLocked()
			v.mu.Unlock()
			if len(dirty) > 0 {
				errs = append(errs, v.per.write(context.Background(), dirty))
			}
		}
		errs = append(errs, v.closeParts())
		if err := errors.Join(errs...); err != nil {
			v.closeErr = fmt.Errorf("verifier: close: %w", err)
		}
		v.log.Info("verifier closed")
	})
	return v.closeErr
}

// kick wakes a loop without blocking.
func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// wait waits for a persistence or ledger outcome, or for shutdown.
func (v *Verifier) wait(ctx context.Context, ch <-chan error) error {
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-v.ctx.Done():
		return ErrClosed
	}
}

// ---- loading and resuming ----

func (v *Verifier) load(ctx context.Context) error {
	now := v.nowMs()
	v.mu.Lock()
	defer v.mu.Unlock()
	v.startedAt = now
	err := v.st.Scan(nsWorker, nil, func(key, val []byte) error {
		var rec workerRecord
		if err := json.Unmarshal(val, &rec); err != nil {
			return fmt.Errorf("%w: worker %x: %v", ErrCorrupt, key, err)
		}
		id, err := peer.Decode(rec.ID)
		if err != nil {
			return fmt.Errorf("%w: worker id %q: %v", ErrCorrupt, rec.ID, err)
		}
		ws := &workerState{id: id, rec: rec}
		ws.rec.Rep.Worker = rec.ID
		v.workers[id] = ws
		v.reps[rec.ID] = &ws.rec.Rep
		return nil
	})
	if err != nil {
		return err
	}
	err = v.st.Scan(nsCarry, nil, func(key, val []byte) error {
		if len(val) != 8 {
			return fmt.Errorf("%w: carry %q: %d bytes", ErrCorrupt, key, len(val))
		}
		if c := binary.BigEndian.Uint64(val); c != 0 {
			v.carries[string(key)] = c
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = v.st.Scan(nsBench, nil, func(key, val []byte) error {
		var b benchRecord
		if err := json.Unmarshal(val, &b); err != nil {
			return fmt.Errorf("%w: bench %x: %v", ErrCorrupt, key, err)
		}
		id, err := protocol.ParseID(b.Assignment)
		if err != nil {
			return fmt.Errorf("%w: bench: %v", ErrCorrupt, err)
		}
		v.benches[id] = &b
		return nil
	})
	if err != nil {
		return err
	}
	var groups []*groupState
	err = v.st.Scan(nsGroup, nil, func(key, val []byte) error {
		var rec groupRecord
		if err := json.Unmarshal(val, &rec); err != nil {
			return fmt.Errorf("%w: group %x: %v", ErrCorrupt, key, err)
		}
		if rec.Closed {
			return nil
		}
		g, err := groupFromRecord(rec)
		if err != nil {
			return err
		}
		groups = append(groups, g)
		return nil
	})
	if err != nil {
		return err
	}
	for _, g := range groups {
		v.groups[g.id] = g
		released, err := v.releasedTasks(g.id)
		if err != nil {
			return err
		}
		err = v.st.Scan(nsTask, g.id[:], func(key, val []byte) error {
			var rec taskRecord
			if err := decodeTaskRecord(val, &rec); err != nil || rec.M == nil {
				return fmt.Errorf("%w: task %x: %v", ErrCorrupt, key, err)
			}
			if rec.Released || released[rec.Index] {
				return nil
			}
			t := &taskState{g: g, rec: rec}
			g.tasks[rec.Index] = t
			v.openTasks++
			return nil
		})
		if err != nil {
			return err
		}
	}
	err = v.st.Scan(nsAssign, nil, func(key, val []byte) error {
		var rec assignmentRecord
		if err := decodeAssignmentRecord(val, &rec); err != nil {
			return fmt.Errorf("%w: assignment %x: %v", ErrCorrupt, key, err)
		}
		if rec.Done {
			return nil
		}
		id, err := protocol.ParseID(rec.ID)
		if err != nil {
			return fmt.Errorf("%w: assignment: %v", ErrCorrupt, err)
		}
		v.asgs[id] = &rec
		return nil
	})
	if err != nil {
		return err
	}
	// Acknowledgements of open assignments; those of finished ones are
	// dropped.
	var staleAcks []write
	err = v.st.Scan(nsAck, nil, func(key, _ []byte) error {
		var id protocol.ID
		if len(key) != len(id) {
			return fmt.Errorf("%w: assignment ack key %x", ErrCorrupt, key)
		}
		copy(id[:], key)
		if a := v.asgs[id]; a != nil {
			a.Acked = true
		} else {
			staleAcks = append(staleAcks, write{ns: nsAck, key: string(key)})
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(staleAcks) > 0 {
		if err := v.per.write(context.Background(), staleAcks); err != nil {
			return err
		}
	}
	// Rebuild reservations, running counts and the work queues from the
	// tasks; each worker's held replicas in the order they were assigned
	// (held.go), in its slots from now.
	type heldRun struct {
		t      *taskState
		worker string
		at     int64
	}
	var runs []heldRun
	for _, g := range v.groups {
		for _, t := range g.tasks {
			for _, r := range t.rec.M.Runs {
				if r.State == market.ReplicaAssigned && !t.rec.M.Settled {
					runs = append(runs, heldRun{t, r.Worker, r.AssignedAt})
				}
			}
		}
	}
	slices.SortStableFunc(runs, func(a, b heldRun) int { return cmp.Compare(a.at, b.at) })
	for _, r := range runs {
		v.book.Reserve(r.worker)
		v.holdLocked(r.worker, r.t, now)
	}
	for _, g := range v.groups {
		for _, t := range g.tasks {
			v.trackLocked(t)
			v.advanceLocked(t, now)
		}
	}
	// Assignments with no running replica left are over.
	var over []write
	for id, a := range v.asgs {
		if !a.Bench && v.running[id] == 0 {
			a.Done = true
			delete(v.asgs, id)
			over = append(over, v.asgWrite(a))
		}
	}
	if len(over) > 0 {
		v.per.queue(over...)
	}
	for _, ws := range v.workers {
		if ws.rec.Bench != "" {
			if id, err := protocol.ParseID(ws.rec.Bench); err != nil || v.benches[id] == nil {
				ws.rec.Bench = ""
			}
		}
	}
	v.log.Info("state loaded", "workers", len(v.workers), "groups", len(v.groups), "tasks", v.openTasks,
		"assignments", len(v.asgs), "benchmarks", len(v.benches))
	return nil
}

func groupFromRecord(rec groupRecord) (*groupState, error) {
	id, err := protocol.ParseID(rec.ID)
	if err != nil {
		return nil, fmt.Errorf("%w: group: %v", ErrCorrupt, err)
	}
	c, err := peer.Decode(rec.Consumer)
	if err != nil {
		return nil, fmt.Errorf("%w: group consumer: %v", ErrCorrupt, err)
	}
	m, err := cid.Decode(rec.Module)
	if err != nil {
		return nil, fmt.Errorf("%w: group module: %v", ErrCorrupt, err)
	}
	return &groupState{id: id, consumer: c, module: m, rec: rec, tasks: map[uint32]*taskState{}}, nil
}

// releasedTasks returns the indices of group's tasks whose release the
// consumer acknowledged.
func (v *Verifier) releasedTasks(group protocol.ID) (map[uint32]bool, error) {
	out := map[uint32]bool{}
	err := v.st.Scan(nsRel, group[:], func(key, _ []byte) error {
		if len(key) != len(group)+4 {
			return fmt.Errorf("%w: release marker key %x", ErrCorrupt, key)
		}
		out[binary.BigEndian.Uint32(key[len(group):])] = true
		return nil
	})
	return out, err
}

// resume runs once after Start: it re-posts unposted escrows and
// settlements, re-sends assignments that were never acknowledged and
// wakes every loop.
func (v *Verifier) resume(ctx context.Context) {
	v.mu.Lock()
	var escrows []ledger.Posting
	var escrowTasks []*taskState
	for _, g := range v.groups {
		for _, t := range g.tasks {
			// A record says "posted" only in the transaction that posted;
			// should a failed commit ever have been followed by a good one,
			// the ledger is the judge.
			if t.rec.Settlement != nil && t.rec.Posted && t.rec.EscrowQueued > 0 {
				if _, err := v.led.Lookup(settleID(t)); errors.Is(err, ledger.ErrNotFound) {
					v.log.Warn("settlement recorded as posted is not in the ledger; posting it again", "group", t.rec.Group, "task", t.rec.Index)
					t.rec.Posted = false
				}
			}
			if t.rec.EscrowPosted >= t.rec.EscrowQueued {
				continue
			}
			if ps := v.escrowPostingsLocked(t, t.rec.EscrowPosted, t.rec.EscrowQueued); len(ps) > 0 {
				escrows = append(escrows, ps...)
				escrowTasks = append(escrowTasks, t)
			}
		}
	}
	var resend []*assignmentRecord
	for _, a := range v.asgs {
		if !a.Acked && !a.Bench {
			resend = append(resend, a)
		}
	}
	v.mu.Unlock()
	if len(escrows) > 0 {
		err := v.wait(ctx, v.lq.queue(escrows...))
		v.mu.Lock()
		for _, t := range escrowTasks {
			if err == nil {
				t.rec.EscrowPosted = t.rec.EscrowQueued
			}
		}
		v.mu.Unlock()
		if err != nil {
			v.log.Error("re-posting escrow after restart failed", "err", err)
			v.failAssignments(resend, "escrow could not be posted after a restart")
			resend = nil
		}
	}
	for _, a := range resend {
		v.sendAssignment(ctx, a)
	}
	v.retrySettlements()
	kick(v.kickSched)
	kick(v.kickRelease)
	kick(v.kickSelf)
}

// dirtyWorkersLocked returns the writes of every changed worker record.
func (v *Verifier) dirtyWorkersLocked() []write {
	var ws []write
	for _, w := range v.workers {
		if w.dirty {
			w.dirty = false
			ws = append(ws, v.workerWrite(w))
		}
	}
	return ws
}

func (v *Verifier) workerWrite(w *workerState) write {
	return write{ns: nsWorker, key: string(w.id), val: mustJSON(&w.rec)}
}

func (v *Verifier) taskWrite(t *taskState) write {
	return write{ns: nsTask, key: t.key(), val: encodeTaskRecord(&t.rec)}
}

// taskWrites is the task's record and the records of the assignments in
// which it was the last running replica (they are over).
//
// A settled task's ledger posting goes into the same transaction as the
// record that says it is posted (once its escrow is known posted; retried
// by retrySettlements otherwise).
func (v *Verifier) taskWrites(t *taskState) []write {
	if t.rec.Settlement != nil && !t.rec.Posted && !t.posting && t.rec.EscrowPosted >= t.rec.EscrowQueued {
		if p, ok := v.settlePostingLocked(t); ok {
			// The record written says "posted"; in memory the task is
			// posted (and may be released) only once that is durable. A
			// later snapshot written meanwhile says "not posted", which
			// at worst makes a restart post it again (a no-op by ID).
			t.posting = true
			t.rec.Posted = true
			rec := v.taskWrite(t)
			t.rec.Posted = false
			ws := []write{{posts: []ledger.Posting{p}, after: func(err error) {
				v.mu.Lock()
				t.posting = false
				if err == nil {
					t.rec.Posted = true
				}
				v.mu.Unlock()
				if err == nil {
					kick(v.kickRelease)
				}
			}}, rec}
			return append(append(ws, v.carryWrites(t)...), v.overWrites(t)...)
		}
	}
	return append(append([]write{v.taskWrite(t)}, v.carryWrites(t)...), v.overWrites(t)...)
}

// carryWrites are the records of the carries t's settlement touched, at
// their current values (queue order is change order, so the last write of
// a pair is its latest value).
func (v *Verifier) carryWrites(t *taskState) []write {
	s := t.rec.Settlement
	if s == nil || len(s.Carries) == 0 {
		return nil
	}
	ws := make([]write, 0, len(s.Carries))
	for _, k := range slices.Sorted(maps.Keys(s.Carries)) {
		ws = append(ws, write{ns: nsCarry, key: k, val: binary.BigEndian.AppendUint64(nil, v.carries[k])})
	}
	return ws
}

// overWrites are the records of the assignments in which t was the last
// running replica (they are over).
func (v *Verifier) overWrites(t *taskState) []write {
	var ws []write
	for _, id := range v.untrackLocked(t) {
		if a := v.asgs[id]; a != nil {
			a.Done = true
			delete(v.asgs, id)
			ws = append(ws, v.asgWrite(a))
		}
	}
	return ws
}

// trackLocked counts t's running replicas against their assignments.
func (v *Verifier) trackLocked(t *taskState) {
	for len(t.counted) < len(t.rec.M.Runs) {
		t.counted = append(t.counted, false)
	}
	if t.rec.M.Settled {
		return
	}
	for i, r := range t.rec.M.Runs {
		if !t.counted[i] && r.State == market.ReplicaAssigned && i < len(t.rec.Replicas) {
			if id, err := protocol.ParseID(t.rec.Replicas[i].Assignment); err == nil {
				t.counted[i] = true
				v.running[id]++
			}
		}
	}
}

// untrackLocked stops counting t's replicas that are no longer running
// and returns the assignments left with no running replica.
func (v *Verifier) untrackLocked(t *taskState) []protocol.ID {
	var over []protocol.ID
	for i, c := range t.counted {
		if !c || (!t.rec.M.Settled && t.rec.M.Runs[i].State == market.ReplicaAssigned) {
			continue
		}
		t.counted[i] = false
		id, err := protocol.ParseID(t.rec.Replicas[i].Assignment)
		if err != nil {
			continue
		}
		if v.running[id]--; v.running[id] <= 0 {
			delete(v.running, id)
			over = append(over, id)
		}
	}
	return over
}

func (v *Verifier) groupWrite(g *groupState) write {
	return write{ns: nsGroup, key: string(g.id[:]), val: mustJSON(&g.rec)}
}

// asgWrite is the assignment's record. Once it is over only what answers a
// replayed receipt is kept: the signed assignment and its tasks are
// dropped.
func (v *Verifier) asgWrite(a *assignmentRecord) write {
	id, _ := protocol.ParseID(a.ID)
	if a.Done {
		stub := assignmentRecord{ID: a.ID, Worker: a.Worker, Group: a.Group, Bench: a.Bench,
			Issued: a.Issued, Expires: a.Expires, Acked: a.Acked, Done: true}
		return write{ns: nsAssign, key: string(id[:]), val: encodeAssignmentRecord(&stub)}
	}
	return write{ns: nsAssign, key: string(id[:]), val: encodeAssignmentRecord(a)}
}

func (v *Verifier) benchWrite(id protocol.ID, b *benchRecord) write {
	if b == nil {
		return write{ns: nsBench, key: string(id[:])}
	}
	return write{ns: nsBench, key: string(id[:]), val: mustJSON(b)}
}

// blobStore adapts the store to what the blob server reads.
type blobStore struct{ *store.Store }

func (b blobStore) ReadBlob(c cid.Cid) (p2p.BlobReader, error) { return b.OpenBlob(c) }

// deskListen gives the benchmark desk the verifier's listen addresses with
// port 0 (its own ports): it must be reachable the same way.
func deskListen(addrs []string) []string {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			out = append(out, a)
			continue
		}
		var parts []string
		ma.ForEach(m, func(c ma.Component) bool {
			v := c.Value()
			switch c.Protocol().Code {
			case ma.P_TCP, ma.P_UDP:
				v = "0"
			}
			if c.Protocol().Size == 0 {
				parts = append(parts, "/"+c.Protocol().Name)
			} else {
				parts = append(parts, "/"+c.Protocol().Name+"/"+v)
			}
			return true
		})
		out = append(out, strings.Join(parts, ""))
	}
	return out
}
