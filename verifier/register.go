package verifier

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/examples"
	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/sandbox"
)

// DefaultBenchmarkWork is the hashchain round count of one benchmark job:
// about 50–200 ms on a current x86 core.
const DefaultBenchmarkWork = 30_000

// maxSlots bounds the slots a worker may register.
const maxSlots = 4096

// handleRegister records a worker (owner, minimum price, slots, addrs)
// durably and starts its benchmark if it has no valid rating. The ack
// carries the current rating when there is one.
func (v *Verifier) handleRegister(ctx context.Context, from peer.ID, env *protocol.Envelope) (protocol.Message, error) {
	var reg protocol.Register
	if err := env.Decode(&reg); err != nil {
		return nil, p2p.Refuse(protocol.AckBadRequest, "%v", err)
	}
	if env.Signer != from || reg.Worker != from {
		return nil, p2p.Refuse(protocol.AckUnauthorized, "register signed by %s for worker %s", env.Signer, reg.Worker)
	}
	now := v.now()
	if d := time.UnixMilli(reg.Time).Sub(now); d > protocol.MaxClockSkew || -d > protocol.MaxClockSkew {
		return nil, p2p.Refuse(protocol.AckExpired, "register time is %v off the verifier's clock", d.Round(time.Second))
	}
	if reg.Slots < 1 || reg.Slots > maxSlots {
		return nil, p2p.Refuse(protocol.AckBadRequest, "slots %d out of range 1..%d", reg.Slots, maxSlots)
	}
	nowMs := now.UnixMilli()
	v.mu.Lock()
	ws := v.workers[from]
	if ws == nil {
		ws = &workerState{id: from, rec: workerRecord{ID: from.String(), Registered: nowMs}}
		ws.rec.Rep.Worker = from.String()
		v.workers[from] = ws
		v.reps[from.String()] = &ws.rec.Rep
		v.log.Info("worker registered", "worker", from.String(), "owner", reg.Owner, "min_price", reg.MinPrice.String(), "slots", reg.Slots)
	}
	ws.rec.Owner, ws.rec.MinPrice, ws.rec.Slots, ws.rec.Addrs, ws.rec.Updated = reg.Owner, reg.MinPrice, reg.Slots, reg.Addrs, nowMs
	ws.rec.OfferPrice = 0
	ws.unreachable = false
	v.seenLocked(ws, nowMs)
	v.renewRatingLocked(ws, nowMs, false)
	v.updateBookLocked(ws, nowMs)
	ch := v.per.queue(v.workerWrite(ws))
	ws.dirty = false
	rating := v.ratingFor(ws)
	v.mu.Unlock()
	if err := v.wait(ctx, ch); err != nil {
		return nil, p2p.Refuse(protocol.AckInternal, "persist: %v", err)
	}
	v.addAddrs(from, reg.Addrs)
	v.maybeBenchmark(from)
	return &protocol.Ack{Ref: reg.Nonce, OK: true, Data: rating}, nil
}

// ratingFor returns the worker's current sealed rating, if valid.
func (v *Verifier) ratingFor(ws *workerState) []byte {
	if ws == nil || len(ws.rec.Sealed) == 0 || ws.rec.RatingExpiry <= v.nowMs() {
		return nil
	}
	return ws.rec.Sealed
}

// seenLocked records that a worker was heard from.
func (v *Verifier) seenLocked(ws *workerState, now int64) {
	ws.lastSeen = max(ws.lastSeen, now)
	before := ws.rec.Rep.Uptime
	ws.rec.Rep.Seen(now, v.cfg.Market)
	if ws.rec.Rep.Uptime/60_000 != before/60_000 {
		ws.dirty = true // persist uptime about once a minute
	}
}

// liveLocked reports whether the worker heartbeats.
func (v *Verifier) liveLocked(ws *workerState, now int64) bool {
	return ws.lastSeen > 0 && now-ws.lastSeen <= v.cfg.Market.HeartbeatTimeout.Milliseconds() && !ws.unreachable
}

// queueDepth is how many replicas per slot a worker whose recent jobs ran
// for execMicros on average (0: none yet) is offered at once: as many as
// fit in QueueTime, between QueueDepthMin and QueueDepth.
func (v *Verifier) queueDepth(execMicros int64) int {
	d := v.cfg.QueueDepthMin
	if execMicros > 0 {
		d = int(min(v.cfg.QueueTime.Microseconds()/execMicros, int64(v.cfg.QueueDepth)))
	}
	return min(max(d, v.cfg.QueueDepthMin), v.cfg.QueueDepth)
}

// noteExec folds a replica's observed busy slot time into the worker's average (an
// exponentially weighted moving average, weight 1/8).
func (ws *workerState) noteExec(micros uint64) {
	x := int64(min(micros, 1<<40))
	if ws.execMicros == 0 {
		ws.execMicros = max(x, 1)
		return
	}
	ws.execMicros = max(ws.execMicros+(x-ws.execMicros)/8, 1)
}

// updateBookLocked puts the worker in the book when it is rated, live and
// not struck out (capacity slots × queue depth; the book subtracts the
// replicas it holds), and takes it out otherwise.
func (v *Verifier) updateBookLocked(ws *workerState, now int64) {
	w := ws.id.String()
	if ws.rec.Speed == 0 || !v.liveLocked(ws, now) || ws.rec.Rep.StruckOut(v.cfg.Market) {
		v.book.Remove(w)
		return
	}
	price := ws.rec.MinPrice
	if ws.rec.OfferPrice > price {
		price = ws.rec.OfferPrice
	}
	o := market.Offer{Worker: w, Owner: ws.rec.Owner, MinPrice: price, Speed: ws.rec.Speed,
		Capacity: int(ws.rec.Slots) * v.queueDepth(ws.execMicros)}
	if prev, ok := v.book.Offers[w]; ok && prev == o {
		return
	}
	if err := v.book.Upsert(o); err != nil {
		v.log.Error("book update", "worker", w, "err", err)
		return
	}
	kick(v.kickSched)
}

// handleOffer takes a worker's gossiped offer: the book uses the
// verifier's own rating of the worker and the offer's price.
func (v *Verifier) handleOffer(from peer.ID, o *protocol.Offer, raw []byte) {
	now := v.nowMs()
	v.mu.Lock()
	defer v.mu.Unlock()
	ws := v.workers[o.Worker]
	if ws == nil || o.Seq <= ws.rec.OfferSeq && ws.rec.OfferSeq != 0 {
		return
	}
	ws.rec.OfferSeq = o.Seq
	if ws.rec.OfferPrice != o.MinPrice {
		ws.rec.OfferPrice = o.MinPrice
		ws.dirty = true
	}
	v.updateBookLocked(ws, now)
}

// handleHeartbeat records liveness. The ack carries a rating issued since
// the worker's last heartbeat ack (renewals), and unknown workers are told
// to register (AckUnknown).
func (v *Verifier) handleHeartbeat(ctx context.Context, from peer.ID, env *protocol.Envelope) (protocol.Message, error) {
	var hb protocol.Heartbeat
	if err := env.Decode(&hb); err != nil {
		return nil, p2p.Refuse(protocol.AckBadRequest, "%v", err)
	}
	if env.Signer != from || hb.Worker != from {
		return nil, p2p.Refuse(protocol.AckUnauthorized, "heartbeat signed by %s for worker %s", env.Signer, hb.Worker)
	}
	now := v.nowMs()
	v.mu.Lock()
	ws := v.workers[from]
	if ws == nil {
		v.mu.Unlock()
		return nil, p2p.Refuse(protocol.AckUnknown, "worker %s is not registered", from)
	}
	wasLive := v.liveLocked(ws, now)
	ws.unreachable = false
	v.seenLocked(ws, now)
	v.renewRatingLocked(ws, now, false)
	v.updateBookLocked(ws, now)
	var data []byte
	if ws.rec.RatingIssued > ws.hbRating {
		data = v.ratingFor(ws)
		ws.hbRating = ws.rec.RatingIssued
	}
	needBench := ws.rec.Speed == 0 && ws.rec.Bench == "" && !ws.benchBusy && now >= ws.rec.BenchNotUntil
	v.mu.Unlock()
	if !wasLive {
		v.log.Debug("worker live", "worker", from.String())
	}
	if needBench {
		v.maybeBenchmark(from)
	}
	return &protocol.Ack{OK: true, Data: data}, nil
}

// ---- ratings ----

// addSpeedSampleLocked appends a speed observation to the worker's history
// (shown on the dashboards; the rating itself is historySpeed).
func (v *Verifier) addSpeedSampleLocked(ws *workerState, s protocol.Speed, source string, now int64) {
	if s == 0 {
		return
	}
	ws.rec.History = append(ws.rec.History, SpeedSample{Time: now, Speed: v.clampSpeed(s), Source: source})
	if n := len(ws.rec.History); n > 4*v.cfg.SpeedHistory {
		ws.rec.History = slices.Clone(ws.rec.History[n-v.cfg.SpeedHistory:])
	}
	ws.dirty = true
}

func (v *Verifier) clampSpeed(s protocol.Speed) protocol.Speed {
	return min(max(s, v.cfg.MinRatedSpeed), v.cfg.MaxRatedSpeed)
}

// historySpeed is the worker's rated speed: metered work over bounded time
// across its recent verified replicas and benchmarks, weighted by work
// (market.Reputation.RatedSpeed), clamped to the verifier's range; 0
// before any observation.
func (v *Verifier) historySpeed(ws *workerState) protocol.Speed {
	s, ok := ws.rec.Rep.RatedSpeed(v.cfg.Market)
	if !ok {
		return 0
	}
	return v.clampSpeed(s)
}

// renewRatingLocked (re)issues the worker's rating when it has a speed
// history and the rating is missing, past half its lifetime, or out of
// date (speed, strikes or trust changed); force issues it anyway.
func (v *Verifier) renewRatingLocked(ws *workerState, now int64, force bool) {
	speed := v.historySpeed(ws)
	if speed == 0 {
		return
	}
	rel := ws.rec.Rep.Rating(v.cfg.Market)
	half := v.cfg.RatingTTL.Milliseconds() / 2
	stale := len(ws.rec.Sealed) == 0 || now-ws.rec.RatingIssued >= half || ws.rec.Speed != speed ||
		ws.rec.RatedStrikes != uint32(ws.rec.Rep.Strikes) || absDiff(ws.rec.RatedReliability, rel) > 50_000
	if !stale && !force {
		return
	}
	r := &protocol.Rating{Worker: ws.id, Speed: speed, ReliabilityPPM: rel, Strikes: uint32(ws.rec.Rep.Strikes),
		Issued: now, Expires: now + v.cfg.RatingTTL.Milliseconds()}
	sealed, err := protocol.Seal(v.key, r)
	if err != nil {
		v.log.Error("sealing rating", "worker", ws.id.String(), "err", err)
		return
	}
	old := ws.rec.Speed
	ws.rec.Speed, ws.rec.RatingIssued, ws.rec.RatingExpiry, ws.rec.Sealed = speed, now, r.Expires, sealed
	ws.rec.RatedStrikes, ws.rec.RatedReliability = r.Strikes, r.ReliabilityPPM
	ws.dirty = true
	if old != speed {
		v.log.Info("worker rated", "worker", ws.id.String(), "speed", speed.String(), "previous", old.String(),
			"reliability_ppm", rel, "strikes", ws.rec.Rep.Strikes)
	}
	v.updateBookLocked(ws, now)
}

func absDiff(a, b uint32) uint32 {
	if a > b {
		return a - b
	}
	return b - a
}

// ---- benchmarks ----

// maybeBenchmark starts a benchmark of the worker in the background when
// it has no speed history and none is in flight.
func (v *Verifier) maybeBenchmark(id peer.ID) {
	now := v.nowMs()
	v.mu.Lock()
	ws := v.workers[id]
	if ws == nil || len(ws.rec.History) > 0 || ws.rec.Bench != "" || ws.benchBusy || now < ws.rec.BenchNotUntil ||
		ws.rec.Rep.StruckOut(v.cfg.Market) {
		v.mu.Unlock()
		return
	}
	busy := len(v.benches) + v.preparing
	if busy >= v.cfg.MaxBenchmarks {
		v.mu.Unlock()
		v.log.Debug("benchmark deferred: too many in flight", "worker", id.String(), "in_flight", busy)
		return
	}
	ws.benchBusy = true
	v.preparing++
	v.mu.Unlock()
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		err := v.benchmark(v.ctx, ws)
		v.mu.Lock()
		ws.benchBusy = false
		v.preparing--
		if err != nil && v.ctx.Err() == nil {
			ws.rec.BenchFailures++
			ws.rec.BenchNotUntil = v.nowMs() + v.cfg.BenchmarkRetry.Milliseconds()
			ws.dirty = true
			v.log.Warn("benchmark not started", "worker", id.String(), "err", err)
		}
		v.mu.Unlock()
	}()
}

// benchmark prepares fresh random jobs of the benchmark kernel, runs them
// on the verifier for the reference results and times, persists them and
// sends the worker an ordinary assignment (consumer = the verifier).
func (v *Verifier) benchmark(ctx context.Context, ws *workerState) error {
	module, mc, err := v.benchModule()
	if err != nil {
		return err
	}
	aid, gid := protocol.NewID(), protocol.NewID()
	b := &benchRecord{Assignment: aid.String(), Worker: ws.id.String(), Group: gid.String(), Kernel: v.cfg.BenchmarkKernel, Module: mc.String()}
	var tasks []protocol.AssignedTask
	var first [1]byte
	_, _ = rand.Read(first[:])
	base := uint32(first[0])
	for i := 0; i < v.cfg.BenchmarkTasks; i++ {
		input, err := benchInput(v.cfg.BenchmarkKernel, v.cfg.BenchmarkWork)
		if err != nil {
			return err
		}
		ic, err := v.st.PutBlob(input)
		if err != nil {
			return fmt.Errorf("%w: store input: %w", ErrBenchmark, err)
		}
		// One reference run gives the result and the metered work the
		// worker must match; the worker's speed is its own work ÷ time.
		res, err := v.run.Run(ctx, sandbox.Job{ModuleID: mc.String(), Module: module, Input: input,
			Timeout: protocol.WallClockFactor * v.cfg.BenchmarkTimeout, MaxMemory: v.cfg.DefaultJobMemory,
			WorkBudget: protocol.WorkBudget(uint64(v.cfg.BenchmarkTimeout.Milliseconds()))})
		if err != nil {
			return fmt.Errorf("%w: reference run: %w", ErrBenchmark, err)
		}
		if res.Status != sandbox.StatusOK {
			return fmt.Errorf("%w: reference run: %v", ErrBenchmark, res.Err())
		}
		out := res.Output()
		enc := protocol.EncodeOutput(&out)
		rc, err := v.st.PutBlob(enc)
		if err != nil {
			return fmt.Errorf("%w: store result: %w", ErrBenchmark, err)
		}
		bt := benchTask{Index: base + uint32(i), Replica: uint16(i % 2), Input: ic.String(), Result: rc.String(),
			RefMicros: max(res.Duration.Microseconds(), 1), RefWork: res.Work}
		b.Tasks = append(b.Tasks, bt)
		at := protocol.AssignedTask{Index: bt.Index, Replica: bt.Replica, Input: ic, Size: uint64(len(input))}
		if len(input) <= protocol.MaxInline {
			at.Inline = input
		}
		tasks = append(tasks, at)
	}
	now := v.nowMs()
	v.mu.Lock()
	price := ws.rec.MinPrice
	// The benchmark desk, not the verifier, is the consumer: to the worker
	// this is an assignment like any other.
	var addrs []string
	for _, a := range v.desk.AddrInfo().Addrs {
		if len(addrs) < protocol.MaxAddrs {
			addrs = append(addrs, a.String())
		}
	}
	asg := &protocol.Assignment{ID: aid, Worker: ws.id, Consumer: v.desk.ID(), ConsumerAddrs: addrs, Group: gid,
		Module: mc, ModuleSize: uint64(len(module)), Price: price, TimeoutMillis: uint64(v.cfg.BenchmarkTimeout.Milliseconds()), MaxMemory: v.cfg.DefaultJobMemory,
		Issued: now, Expires: now + v.cfg.AssignmentTTL.Milliseconds(), Tasks: tasks}
	sealed, err := protocol.Seal(v.key, asg)
	if err != nil {
		v.mu.Unlock()
		return fmt.Errorf("%w: seal: %w", ErrBenchmark, err)
	}
	b.Issued = now
	rec := &assignmentRecord{ID: aid.String(), Worker: ws.id.String(), Group: gid.String(), Bench: true,
		Issued: now, Expires: asg.Expires, Sealed: sealed}
	for _, t := range tasks {
		rec.Tasks = append(rec.Tasks, taskRef{Index: t.Index, Replica: t.Replica})
	}
	v.benches[aid] = b
	v.asgs[aid] = rec
	ws.rec.Bench = aid.String()
	ch := v.per.queue(v.benchWrite(aid, b), v.asgWrite(rec), v.workerWrite(ws))
	ws.dirty = false
	v.mu.Unlock()
	if err := v.wait(ctx, ch); err != nil {
		return err
	}
	var refs []int64
	for _, t := range b.Tasks {
		refs = append(refs, t.RefMicros)
	}
	v.log.Info("benchmark sent", "worker", ws.id.String(), "assignment", aid.String(), "kernel", b.Kernel,
		"jobs", len(b.Tasks), "reference_us", refs)
	v.sendAssignment(ctx, rec)
	return nil
}

// benchModule loads and stores the benchmark kernel once: every benchmark
// uses the same 2 MB module, so reading and hashing it per benchmark only
// churned memory (1.9 GB allocated for 830 benchmarks in a bench run).
func (v *Verifier) benchModule() ([]byte, cid.Cid, error) {
	v.benchOnce.Do(func() {
		module, err := examples.Module(v.cfg.BenchmarkKernel)
		if err != nil {
			v.benchErr = fmt.Errorf("%w: %w", ErrBenchmark, err)
			return
		}
		mc, err := v.st.PutBlob(module)
		if err != nil {
			v.benchErr = fmt.Errorf("%w: store module: %w", ErrBenchmark, err)
			return
		}
		v.benchMod, v.benchCID = module, mc
	})
	return v.benchMod, v.benchCID, v.benchErr
}

// benchInput generates a fresh random input for a benchmark kernel.
func benchInput(kernel string, work int) ([]byte, error) {
	var seed [16]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, err
	}
	switch kernel {
	case "hashchain":
		return []byte(fmt.Sprintf("%d\n%s", work, hex.EncodeToString(seed[:]))), nil
	case "montecarlo":
		s := uint64(seed[0]) | uint64(seed[1])<<8 | uint64(seed[2])<<16 | uint64(seed[3])<<24
		return []byte(fmt.Sprintf("%d %d", s, work)), nil
	case "primes":
		lo := uint64(seed[0])<<16 | uint64(seed[1])<<8 | uint64(seed[2])
		lo = lo*1000 + 1_000_000
		return []byte(fmt.Sprintf("%d %d", lo, lo+uint64(work))), nil
	}
	return nil, fmt.Errorf("%w: no input generator for kernel %q", ErrBenchmark, kernel)
}

// addrStrings are the verifier's listen addrs as strings.
func (v *Verifier) addrStrings() []string {
	var out []string
	for _, a := range v.Addrs() {
		if len(out) == protocol.MaxAddrs {
			break
		}
		out = append(out, a.String())
	}
	return out
}

// benchReceiptLocked judges a benchmark receipt: every result and its
// metered work must equal the verifier's, and every reported time fit its
// bound (receiptBounds); each job is then an observation of the worker's
// speed, its work over its reported time bounded by the window, and the
// rated speed is their work-weighted ratio
// (market.Reputation.ObserveSpeed). A wrong result or an impossible time
// is a strike and no rating. Called with v.mu held; unlocks.
func (v *Verifier) benchReceiptLocked(ctx context.Context, ws *workerState, a *assignmentRecord, rc *protocol.Receipt, now int64) (protocol.Message, error) {
	b := v.benches[rc.Assignment]
	if b == nil || ws == nil {
		v.mu.Unlock()
		return &protocol.Ack{Ref: rc.Assignment, OK: true}, nil
	}
	var sumRef, sumWorker int64
	wrong, missing := "", 0
	bound := v.receiptBounds(ws, a, rc, now)
	// A first rating from the benchmark: its jobs' reported times, each
	// bounded by what the verifier observed (its window share), since the
	// benchmark's busy time also holds the worker's first fetch and
	// compile of the module. A worker that inflates them gains at most
	// that transfer and compile time, and only until its real jobs, rated
	// on busy slot time alone, outweigh the benchmark.
	for _, r := range rc.Results {
		for i := range b.Tasks {
			t := &b.Tasks[i]
			if t.Index != r.Index || t.Replica != r.Replica || t.Reported {
				continue
			}
			t.Reported, t.WorkerMicros, t.WorkerWork = true, int64(min(r.ExecMicros, 1<<40)), r.Work
			t.SlotMicros = min(t.WorkerMicros, bound(&r))
			if r.Result.Defined() {
				t.WorkerResult = r.Result.String()
			}
			switch win := bound(&r); {
			case wrong != "":
			case t.WorkerResult != t.Result:
				wrong = fmt.Sprintf("job %d: result %s, want %s (status %s)", t.Index, t.WorkerResult, t.Result, r.Status)
			case t.WorkerWork != t.RefWork:
				wrong = fmt.Sprintf("job %d: work %d, want %d", t.Index, t.WorkerWork, t.RefWork)
			case t.WorkerMicros > win:
				wrong = fmt.Sprintf("job %d: claimed %dµs, more than the %dµs the verifier observed", t.Index, t.WorkerMicros, win)
			}
		}
	}
	for _, t := range b.Tasks {
		if !t.Reported {
			missing++
			continue
		}
		sumRef += t.RefMicros
		sumWorker += t.WorkerMicros
	}
	if missing > 0 && wrong == "" {
		// Results come in batches: keep these and wait for the rest.
		ch := v.per.queue(v.benchWrite(rc.Assignment, b))
		rating := v.ratingFor(ws)
		v.mu.Unlock()
		if err := v.wait(ctx, ch); err != nil {
			return nil, p2p.Refuse(protocol.AckInternal, "persist: %v", err)
		}
		return &protocol.Ack{Ref: rc.Assignment, OK: true, Data: rating}, nil
	}
	delete(v.benches, rc.Assignment)
	delete(v.asgs, rc.Assignment)
	a.Done = true
	ws.rec.Bench = ""
	ws.dirty = true
	if wrong != "" {
		v.stats.benchFailed.Add(1)
		v.stats.strikes.Add(1)
		ws.rec.Rep.Strikes++
		ws.rec.BenchFailures++
		ws.rec.BenchNotUntil = now + v.cfg.BenchmarkRetry.Milliseconds()
		v.log.Warn("strike: wrong benchmark result, no rating", "worker", ws.id.String(), "strikes", ws.rec.Rep.Strikes, "detail", wrong)
		v.updateBookLocked(ws, now)
	} else {
		for _, t := range b.Tasks {
			ws.rec.Rep.ObserveSpeed(t.RefWork, max(t.SlotMicros, 1), v.cfg.Market)
		}
		speed := v.historySpeed(ws)
		v.stats.benchPassed.Add(1)
		v.addSpeedSampleLocked(ws, speed, "benchmark", now)
		v.log.Info("benchmark passed", "worker", ws.id.String(), "speed", speed.String(),
			"reference_us", sumRef, "worker_us", sumWorker)
		ws.lastSeen = max(ws.lastSeen, now)
		v.renewRatingLocked(ws, now, true)
	}
	rating := v.ratingFor(ws)
	ws.hbRating = ws.rec.RatingIssued
	ch := v.per.queue(v.benchWrite(rc.Assignment, nil), v.asgWrite(a), v.workerWrite(ws))
	ws.dirty = false
	v.mu.Unlock()
	if err := v.wait(ctx, ch); err != nil {
		return nil, p2p.Refuse(protocol.AckInternal, "persist: %v", err)
	}
	return &protocol.Ack{Ref: rc.Assignment, OK: true, Data: rating}, nil
}

// benchFailedLocked drops a benchmark that could not be delivered or timed
// out; it is retried after BenchmarkRetry.
func (v *Verifier) benchFailedLocked(id protocol.ID, reason string) {
	b := v.benches[id]
	delete(v.benches, id)
	if a := v.asgs[id]; a != nil {
		a.Done = true
		delete(v.asgs, id)
		v.per.queue(v.asgWrite(a))
	}
	v.per.queue(v.benchWrite(id, nil))
	if b == nil {
		return
	}
	ws := v.workers[peerID(b.Worker)]
	if ws == nil {
		return
	}
	if ws.rec.Bench == id.String() {
		ws.rec.Bench = ""
	}
	ws.rec.BenchFailures++
	ws.rec.BenchNotUntil = v.nowMs() + v.cfg.BenchmarkRetry.Milliseconds()
	ws.dirty = true
	v.log.Warn("benchmark failed", "worker", b.Worker, "reason", reason)
}
