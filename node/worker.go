package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/sandbox"
	"github.com/aspen-market/aspen/store"
)

// worker takes assignments signed by the pinned verifier, runs them in the
// sandbox and reports receipts.
type worker struct {
	n       *Node
	queue   chan *job
	results chan *finished

	mu      sync.Mutex
	holding map[protocol.ID]*held // accepted assignments not yet fully reported
	rating  []byte                // sealed Rating from the verifier
	parsed  *protocol.Rating
	running int
	hbSeq   uint64

	fetchMu sync.Mutex
	fetches map[cid.Cid]*fetchCall
}

type held struct {
	asg       *protocol.Assignment
	rec       AssignmentRecord
	remaining int
	// persisted is closed once the assignment is committed (nil: it was
	// when loaded). Its jobs start before that; their receipts wait.
	persisted chan struct{}
	dropped   bool // w.mu: could not be persisted; refused, not run or reported
}

type job struct {
	asg *protocol.Assignment
	pos int
	h   *held
	// ticket is the sealed assignment: shown to the consumer, whose blob
	// server serves its module and inputs only to the workers it names.
	ticket []byte
	// fetched: the job's blobs were fetched outside a run slot (prefetch)
	// and fetchErr is how that ended.
	fetched  bool
	fetchErr error
}

type finished struct {
	asg    *protocol.Assignment
	h      *held
	pos    int
	result protocol.TaskResult
	rec    JobRecord
	// blob is a small encoded result not yet stored: report stores the
	// batch's results in one transaction before it sends their receipt.
	blob []byte
}

type fetchCall struct {
	done chan struct{}
	err  error
}

func newWorker(n *Node) *worker {
	depth := n.cfg.Slots * n.cfg.QueueDepth
	return &worker{
		n:       n,
		queue:   make(chan *job, depth),
		results: make(chan *finished, depth),
		holding: map[protocol.ID]*held{},
		fetches: map[cid.Cid]*fetchCall{},
	}
}

func (w *worker) start() error {
	n := w.n
	if b, err := n.store.Get(nsMeta, []byte("rating")); err == nil {
		w.setRating(b)
	}
	if err := w.resume(); err != nil {
		return fmt.Errorf("node: resume assignments: %w", err)
	}
	n.host.Handle(protocol.ProtoAssign, w.handleAssign)
	for i := 0; i < n.cfg.Slots; i++ {
		n.go_(w.runLoop)
	}
	n.go_(w.receiptLoop)
	n.go_(w.registerLoop)
	n.go_(w.heartbeatLoop)
	n.go_(w.offerLoop)
	return nil
}

// resume re-queues every accepted assignment whose tasks were not all
// reported before a restart. Jobs are deterministic, so re-running a task
// whose receipt was lost is safe; the verifier counts the first receipt.
func (w *worker) resume() error {
	var pending []*held
	err := w.n.store.Scan(nsAssignment, nil, func(key, val []byte) error {
		var rec AssignmentRecord
		if err := json.Unmarshal(val, &rec); err != nil {
			return fmt.Errorf("assignment record: %w", err)
		}
		if rec.Reported {
			return nil
		}
		var asg protocol.Assignment
		signer, err := protocol.OpenAs(rec.Sealed, &asg)
		if err != nil || signer != w.n.cfg.Verifier.ID {
			w.n.log.Warn("dropping stored assignment that no longer verifies", "err", err)
			return nil
		}
		h := &held{asg: &asg, rec: rec}
		for i := range asg.Tasks {
			if !rec.Done[uint32(i)] {
				h.remaining++
			}
		}
		pending = append(pending, h)
		return nil
	})
	if err != nil {
		return err
	}
	for _, h := range pending {
		w.holding[h.asg.ID] = h
		w.addConsumerAddrs(h.asg)
		for i := range h.asg.Tasks {
			if !h.rec.Done[uint32(i)] {
				select {
				case w.queue <- &job{asg: h.asg, pos: i, ticket: h.rec.Sealed}:
				default:
					go func(j *job) { w.queue <- j }(&job{asg: h.asg, pos: i, ticket: h.rec.Sealed})
				}
			}
		}
		w.n.log.Info("resumed assignment", "assignment", h.asg.ID.String(), "remaining", h.remaining)
	}
	return nil
}

// updateRating adopts a rating the verifier attached to an
// acknowledgement and persists it; the verifier attaches its current rating
// to every acknowledgement, so an unchanged one costs nothing.
func (w *worker) updateRating(sealed []byte) {
	w.mu.Lock()
	same := bytes.Equal(sealed, w.rating)
	w.mu.Unlock()
	if same || !w.setRating(sealed) {
		return
	}
	_ = w.n.store.Put(nsMeta, []byte("rating"), sealed)
}

// setRating adopts a sealed rating if the pinned verifier signed it for us.
func (w *worker) setRating(sealed []byte) bool {
	var r protocol.Rating
	signer, err := protocol.OpenAs(sealed, &r)
	if err != nil || signer != w.n.cfg.Verifier.ID || r.Worker != w.n.id {
		w.n.log.Warn("ignoring rating not signed by the pinned verifier for us", "err", err)
		return false
	}
	w.mu.Lock()
	w.rating, w.parsed = bytes.Clone(sealed), &r
	w.mu.Unlock()
	return true
}

// value is what a replica of work units at price per hour earns at the
// worker's current rated speed (before the operator's cut, if paid): the
// verifier bills the work at the rating, not at the run's time.
func (w *worker) value(price protocol.Micros, work uint64) protocol.Micros {
	speed := protocol.SpeedUnit
	if r, _ := w.Rating(); r != nil && r.Speed > 0 {
		speed = r.Speed
	}
	return protocol.Micros(market.ChargePicos(price, work, speed) / market.PicosPerMicro)
}

// Rating returns the worker's current rating, if any.
func (w *worker) Rating() (*protocol.Rating, []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.parsed, w.rating
}

func (w *worker) capacity() (free, slots uint32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	total := w.n.cfg.Slots * w.n.cfg.QueueDepth
	used := 0
	for _, h := range w.holding {
		used += h.remaining
	}
	if used > total {
		used = total
	}
	return uint32(total - used), uint32(total)
}

func refuse(ref protocol.ID, code protocol.AckCode, format string, args ...any) *protocol.Ack {
	return &protocol.Ack{Ref: ref, Code: code, Error: fmt.Sprintf(format, args...)}
}

// handleAssign accepts an assignment: only from the pinned verifier, only
// for us, only unexpired and at or above our minimum price. It is
// committed to the store before it is acknowledged.
func (w *worker) handleAssign(ctx context.Context, from peer.ID, env *protocol.Envelope) (protocol.Message, error) {
	msg, err := w.accept(ctx, env)
	if ack, ok := msg.(*protocol.Ack); ok {
		if ack.OK {
			w.n.metrics.assignments.WithLabelValues("accepted").Inc()
		} else {
			w.n.metrics.assignments.WithLabelValues("refused").Inc()
			w.n.log.Info("refused assignment", "code", ack.Code, "reason", ack.Error)
		}
	}
	return msg, err
}

func (w *worker) accept(ctx context.Context, env *protocol.Envelope) (protocol.Message, error) {
	n := w.n
	if env.Signer != n.cfg.Verifier.ID {
		n.log.Warn("refused assignment not signed by the pinned verifier", "signer", env.Signer.String())
		return refuse(protocol.ID{}, protocol.AckUnauthorized, "assignments are accepted only from the pinned verifier"), nil
	}
	var asg protocol.Assignment
	if err := env.Decode(&asg); err != nil {
		return refuse(protocol.ID{}, protocol.AckBadRequest, "%v", err), nil
	}
	now := n.now().UnixMilli()
	switch {
	case asg.Worker != n.id:
		return refuse(asg.ID, protocol.AckUnauthorized, "assignment is for %s", asg.Worker), nil
	case asg.Expires < now:
		return refuse(asg.ID, protocol.AckExpired, "assignment expired %d ms ago", now-asg.Expires), nil
	case asg.Price < n.cfg.MinPrice:
		return refuse(asg.ID, protocol.AckPriceTooLow, "price %s/h below minimum %s/h", asg.Price, n.cfg.MinPrice), nil
	case len(asg.Tasks) == 0:
		return refuse(asg.ID, protocol.AckBadRequest, "assignment has no tasks"), nil
	}
	if asg.MaxMemory > n.cfg.Sandbox.MaxMemory {
		return refuse(asg.ID, protocol.AckBadRequest, "memory %d above this worker's cap %d", asg.MaxMemory, n.cfg.Sandbox.MaxMemory), nil
	}
	w.mu.Lock()
	if _, dup := w.holding[asg.ID]; dup {
		w.mu.Unlock()
		return &protocol.Ack{Ref: asg.ID, OK: true, Count: uint32(len(asg.Tasks))}, nil
	}
	w.mu.Unlock()
	if _, err := n.store.Get(nsAssignment, asg.ID[:]); err == nil {
		// Seen before and finished: a replay. Answer OK without running it
		// again (the verifier may be retrying after a lost ack).
		return &protocol.Ack{Ref: asg.ID, OK: true, Count: uint32(len(asg.Tasks))}, nil
	}
	free, _ := w.capacity()
	if int(free) < len(asg.Tasks) {
		return refuse(asg.ID, protocol.AckBusy, "%d tasks offered, %d free", len(asg.Tasks), free), nil
	}
	sealed := append([]byte(nil), envBytes(env)...)
	rec := AssignmentRecord{Sealed: sealed, Received: now}
	h := &held{asg: &asg, rec: rec, remaining: len(asg.Tasks), persisted: make(chan struct{})}
	w.mu.Lock()
	w.holding[asg.ID] = h
	w.mu.Unlock()
	w.addConsumerAddrs(&asg)
	// The jobs start while the assignment is being made durable (the
	// acknowledgement and every receipt of it wait for that).
	for i := range asg.Tasks {
		select {
		case w.queue <- &job{asg: &asg, pos: i, h: h, ticket: sealed}:
		case <-n.ctx.Done():
			return nil, ErrClosed
		}
	}
	// Committed, not synced: an accepted assignment survives a kill -9 of
	// the worker (the commit is in the OS's page cache) but not a power
	// loss of its machine. That costs nobody but this worker: after such a
	// loss it no longer reports those replicas, so the verifier fails them
	// at their deadline, unpaid, and runs them elsewhere — exactly as for a
	// worker that went silent. An fsync here would sit on every task's
	// path (the receipt waits for this commit).
	err := n.store.Update(func(tx *store.Tx) error {
		return tx.Put(nsAssignment, asg.ID[:], mustJSON(rec))
	})
	if err != nil {
		w.mu.Lock()
		h.dropped = true
		delete(w.holding, asg.ID)
		w.mu.Unlock()
	}
	close(h.persisted)
	if err != nil {
		return refuse(asg.ID, protocol.AckInternal, "persist: %v", err), nil
	}
	n.log.Debug("accepted assignment", "assignment", asg.ID.String(), "tasks", len(asg.Tasks), "price", asg.Price.String())
	return &protocol.Ack{Ref: asg.ID, OK: true, Count: uint32(len(asg.Tasks))}, nil
}

// envBytes re-seals nothing: it rebuilds the exact envelope bytes from a
// verified envelope so it can be stored and re-verified after a restart.
func envBytes(env *protocol.Envelope) []byte { return protocol.EnvelopeBytes(env) }

func (w *worker) addConsumerAddrs(asg *protocol.Assignment) {
	var addrs []ma.Multiaddr
	for _, s := range asg.ConsumerAddrs {
		if a, err := ma.NewMultiaddr(s); err == nil {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) > 0 {
		w.n.host.Libp2p().Peerstore().AddAddrs(asg.Consumer, addrs, 10*time.Minute)
	}
	// A consumer behind NAT is reached through the relays (its announced
	// addresses may predate its reservation).
	w.n.host.AddRelayedAddrs(asg.Consumer, 10*time.Minute)
}

func (w *worker) runLoop() {
	ctx := w.n.ctx
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-w.queue:
			if w.isDropped(j.h) {
				continue
			}
			if !j.fetched && !w.haveBlobs(j) {
				// A fetch never holds a run slot: it goes on outside
				// the slot and the job comes back to the queue after.
				w.prefetch(j)
				continue
			}
			f := w.run(ctx, j)
			if f == nil {
				return
			}
			f.h = j.h
			select {
			case w.results <- f:
			case <-ctx.Done():
				return
			}
		}
	}
}

// haveBlobs reports whether the store holds the job's module and input.
func (w *worker) haveBlobs(j *job) bool {
	asg := j.asg
	t := asg.Tasks[j.pos]
	if _, ok, err := w.n.store.HasBlob(asg.Module); err != nil || !ok {
		return false
	}
	if len(t.Inline) > 0 || t.Size == 0 {
		return true
	}
	_, ok, err := w.n.store.HasBlob(t.Input)
	return err == nil && ok
}

// prefetch fetches a job's module and input (p2p.Config bounds how long
// and how slowly) and puts the job back in the run queue, with the
// outcome; it runs outside the run slots.
func (w *worker) prefetch(j *job) {
	n := w.n
	n.go_(func() {
		asg := j.asg
		t := asg.Tasks[j.pos]
		err := w.fetch(n.ctx, asg.Module, asg.ModuleSize, asg.Consumer, j.ticket)
		if err == nil && len(t.Inline) == 0 && t.Size > 0 {
			err = w.fetch(n.ctx, t.Input, t.Size, asg.Consumer, j.ticket)
		}
		if n.ctx.Err() != nil {
			return // a restart resumes the assignment
		}
		j.fetched, j.fetchErr = true, err
		select {
		case w.queue <- j:
		case <-n.ctx.Done():
		}
	})
}

// run executes one replica. Failures to fetch blobs become a
// StatusFetchFailed result, which is not deterministic and so never counts
// as agreement.
func (w *worker) run(ctx context.Context, j *job) *finished {
	n := w.n
	asg := j.asg
	t := asg.Tasks[j.pos]
	started := n.now()
	out := &protocol.Output{}
	var dur time.Duration
	var work uint64
	// The module is read from the store only if the sandbox has not
	// compiled it yet. Blobs are in the store by now (prefetch), unless
	// the fetch failed.
	err := j.fetchErr
	if err == nil {
		err = w.fetch(ctx, asg.Module, asg.ModuleSize, asg.Consumer, j.ticket)
	}
	var input []byte
	if err == nil {
		if len(t.Inline) > 0 || t.Size == 0 {
			input = t.Inline
		} else {
			input, err = w.blob(ctx, t.Input, t.Size, asg.Consumer, j.ticket)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		out.Status = protocol.StatusFetchFailed
		out.Message = truncate(err.Error(), protocol.MaxTextLen)
		n.log.Warn("could not fetch job blobs", "assignment", asg.ID.String(), "task", t.Index, "err", err)
	} else {
		res, err := n.sb.Run(ctx, sandbox.Job{
			ModuleID:   asg.Module.String(),
			LoadModule: func() ([]byte, error) { return n.store.GetBlob(asg.Module) },
			Input:      input,
			WorkBudget: protocol.WorkBudget(asg.TimeoutMillis),
			Timeout:    protocol.WallClockFactor * time.Duration(asg.TimeoutMillis) * time.Millisecond,
			MaxMemory:  asg.MaxMemory,
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			out.Status = protocol.StatusFetchFailed
			out.Message = truncate("sandbox: "+err.Error(), protocol.MaxTextLen)
			n.log.Error("sandbox failed to run a job", "assignment", asg.ID.String(), "task", t.Index, "err", err)
		} else {
			*out = res.Output()
			dur, work = res.Duration, res.Work
		}
	}
	enc := protocol.EncodeOutput(out)
	var c cid.Cid
	var pending []byte
	if len(enc) <= n.store.InlineMax() {
		c, pending = protocol.BlobCID(enc), enc // stored by report, with its batch
	} else if c, err = n.store.PutBlob(enc); err != nil {
		n.log.Error("storing result", "err", err)
		c = protocol.BlobCID(enc)
	}
	n.metrics.jobs.WithLabelValues(out.Status.String()).Inc()
	if dur > 0 {
		n.metrics.execSeconds.Observe(dur.Seconds())
	}
	execUS := uint64(dur.Microseconds())
	if execUS == 0 && dur > 0 {
		execUS = 1
	}
	r := protocol.TaskResult{
		Index: t.Index, Replica: t.Replica, Status: out.Status, ExitCode: out.ExitCode,
		Result: c, ResultSize: uint64(len(enc)), ExecMicros: execUS, Work: work,
	}
	if len(enc) <= protocol.MaxInline {
		r.Inline = enc
	}
	rec := JobRecord{
		Assignment: asg.ID.String(), Group: asg.Group.String(), Index: t.Index, Replica: t.Replica,
		Consumer: asg.Consumer.String(), Price: asg.Price, Status: out.Status, StatusText: out.Status.String(),
		ExitCode: out.ExitCode, ExecMicros: execUS, Result: c.String(),
		Started: started.UnixMilli(), Finished: n.now().UnixMilli(),
		Work: work, Value: w.value(asg.Price, work),
	}
	return &finished{asg: asg, pos: j.pos, result: r, rec: rec, blob: pending}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// blob returns a blob from the store, fetching it from the consumer when
// missing. Concurrent requests for one CID share a single fetch.
func (w *worker) blob(ctx context.Context, c cid.Cid, size uint64, from peer.ID, ticket []byte) ([]byte, error) {
	if b, err := w.n.store.GetBlob(c); err == nil {
		return b, nil
	}
	if err := w.fetch(ctx, c, size, from, ticket); err != nil {
		return nil, err
	}
	return w.n.store.GetBlob(c)
}

// fetch makes sure the store holds a blob, fetching it from the consumer
// when missing, showing it the sealed assignment (ticket) that names the
// blob. Concurrent requests for one CID share a single fetch.
func (w *worker) fetch(ctx context.Context, c cid.Cid, size uint64, from peer.ID, ticket []byte) error {
	if _, ok, err := w.n.store.HasBlob(c); err == nil && ok {
		return nil
	}
	w.fetchMu.Lock()
	call, ok := w.fetches[c]
	if !ok {
		call = &fetchCall{done: make(chan struct{})}
		w.fetches[c] = call
		go func() {
			fctx, cancel := context.WithTimeout(w.n.ctx, 10*time.Minute)
			var got int64
			got, call.err = w.n.host.FetchBlobFor(fctx, c, []peer.ID{from}, w.n.store, int64(size), p2p.BlobReason{Ticket: ticket})
			if call.err == nil {
				w.n.metrics.fetchBytes.WithLabelValues("job").Add(float64(got))
			} else {
				w.n.metrics.fetchErrors.Inc()
			}
			cancel()
			close(call.done)
			w.fetchMu.Lock()
			delete(w.fetches, c)
			w.fetchMu.Unlock()
		}()
	}
	w.fetchMu.Unlock()
	select {
	case <-call.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if call.err != nil {
		return fmt.Errorf("fetch %s from %s: %w", c, shortID(from), call.err)
	}
	return nil
}

// receiptLinger is how long a finished replica may wait for others of its
// assignment to share its receipt. A receipt goes out at once when every
// replica of its assignment is finished or it is full; otherwise after the
// linger, so tiny jobs are reported in batches (one signature, one
// transaction and one verifier round for many) while a lone or slow job
// is reported as soon as it finishes.
const receiptLinger = 20 * time.Millisecond

// receiptLoop batches finished replicas by assignment and reports them to
// the verifier, retrying until acknowledged.
func (w *worker) receiptLoop() {
	ctx := w.n.ctx
	sem := make(chan struct{}, 32)
	var inflight sync.WaitGroup
	defer inflight.Wait()
	type pendingReceipt struct {
		fs    []*finished
		since time.Time
	}
	pending := map[protocol.ID]*pendingReceipt{}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	send := func(id protocol.ID) bool {
		p := pending[id]
		delete(pending, id)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			defer func() { <-sem }()
			w.report(ctx, p.fs)
		}()
		return true
	}
	// complete: every unreported replica of the assignment is finished.
	complete := func(id protocol.ID, finished int) bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		h := w.holding[id]
		return h == nil || finished >= h.remaining
	}
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-w.results:
			id := f.asg.ID
			p := pending[id]
			if p == nil {
				p = &pendingReceipt{since: time.Now()}
				pending[id] = p
			}
			p.fs = append(p.fs, f)
			if len(p.fs) >= protocol.MaxTasksPerMessage || complete(id, len(p.fs)) {
				if !send(id) {
					return
				}
			}
		case <-timer.C:
		}
		// Send what has lingered long enough; wake up for the next.
		now := time.Now()
		var next time.Duration
		for id, p := range pending {
			if wait := receiptLinger - now.Sub(p.since); wait > 0 {
				if next == 0 || wait < next {
					next = wait
				}
				continue
			}
			if !send(id) {
				return
			}
		}
		if len(pending) > 0 && next > 0 {
			timer.Reset(next)
		}
	}
}

// isDropped reports whether h's assignment could not be persisted.
func (w *worker) isDropped(h *held) bool {
	if h == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return h.dropped
}

func (w *worker) report(ctx context.Context, fs []*finished) {
	n := w.n
	asg := fs[0].asg
	if h := fs[0].h; h != nil && h.persisted != nil {
		select {
		case <-h.persisted:
		case <-ctx.Done():
			return
		}
		if w.isDropped(h) {
			return
		}
	}
	rc := &protocol.Receipt{Worker: n.id, Assignment: asg.ID, Group: asg.Group}
	for _, f := range fs {
		rc.Results = append(rc.Results, f.result)
	}
	// A result that travels inline in the receipt reaches the consumer
	// through the verifier; one that does not is fetched from us, so it
	// must be durable before the receipt says we hold it. The batch's
	// results share one transaction, and one fsync only if needed.
	// The consumer may fetch such a result from us (nsServe), nobody
	// else but the verifier.
	put := func(tx *store.Tx) error {
		for _, f := range fs {
			if f.blob != nil {
				if err := tx.PutBlob(f.result.Result, f.blob); err != nil {
					return err
				}
			}
			if f.result.Inline == nil {
				if err := tx.Put(nsServe, serveKey(f.result.Result, asg.Consumer), nil); err != nil {
					return err
				}
			}
		}
		return nil
	}
	mustSync := false
	for _, f := range fs {
		if f.result.Inline == nil {
			mustSync = true
		}
	}
	var err error
	if mustSync {
		err = n.store.Durable(ctx, put)
	} else {
		err = n.store.Update(put)
	}
	if err != nil {
		if ctx.Err() != nil {
			return // shutting down: run again after a restart
		}
		// The results travel inline in the receipt; report them anyway.
		n.log.Error("storing results", "assignment", asg.ID.String(), "err", err)
	}
	backoff := 200 * time.Millisecond
	for {
		var ack protocol.Ack
		err := n.requestVerifier(ctx, protocol.ProtoReceipt, rc, &ack)
		if err == nil || refusal(err) { // a refusal fills ack in; retrying cannot change it
			if ack.OK {
				n.metrics.receipts.WithLabelValues("delivered").Inc()
			} else {
				n.metrics.receipts.WithLabelValues("refused").Inc()
			}
			if !ack.OK {
				n.log.Warn("verifier refused receipt", "assignment", asg.ID.String(), "code", ack.Code, "err", ack.Error)
			}
			if len(ack.Data) > 0 {
				w.updateRating(ack.Data)
			}
			break
		}
		if ctx.Err() != nil {
			return
		}
		n.metrics.receipts.WithLabelValues("retried").Inc()
		n.log.Warn("receipt not delivered; retrying", "assignment", asg.ID.String(), "err", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
	w.mu.Lock()
	h := w.holding[asg.ID]
	var rec AssignmentRecord
	if h != nil {
		if h.rec.Done == nil {
			h.rec.Done = map[uint32]bool{}
		}
		for _, f := range fs {
			if !h.rec.Done[uint32(f.pos)] {
				h.rec.Done[uint32(f.pos)] = true
				h.remaining--
			}
		}
		if h.remaining <= 0 {
			h.rec.Reported = true
			h.rec.Done = nil
			delete(w.holding, asg.ID)
		}
		rec = h.rec
		rec.Done = copyDone(h.rec.Done)
	}
	w.mu.Unlock()
	now := n.now().UnixMilli()
	// Committed, not synced: it survives a crash of the process; after a
	// power loss the worker at worst runs these replicas again and the
	// verifier ignores the repeated receipt.
	err = n.store.Update(func(tx *store.Tx) error {
		for _, f := range fs {
			if err := tx.Put(nsJob, jobKey(now, asg.ID, f.pos), mustJSON(f.rec)); err != nil {
				return err
			}
		}
		if h != nil {
			return tx.Put(nsAssignment, asg.ID[:], mustJSON(rec))
		}
		return nil
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		n.log.Error("persisting job history", "err", err)
	}
}

func copyDone(m map[uint32]bool) map[uint32]bool {
	if m == nil {
		return nil
	}
	out := make(map[uint32]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// registerLoop registers with the verifier until it answers, then again
// whenever the rating is missing or close to expiry.
func (w *worker) registerLoop() {
	n := w.n
	backoff := 250 * time.Millisecond
	for {
		r, _ := w.Rating()
		wait := backoff
		if r == nil || r.Expires-n.now().UnixMilli() < int64(time.Hour/time.Millisecond) {
			reg := &protocol.Register{Worker: n.id, Owner: n.cfg.Owner, MinPrice: n.cfg.MinPrice,
				Slots: uint32(n.cfg.Slots), Addrs: n.localAddrs(), Nonce: protocol.NewID(), Time: n.now().UnixMilli()}
			var ack protocol.Ack
			err := n.requestVerifier(n.ctx, protocol.ProtoRegister, reg, &ack)
			switch {
			case err != nil:
				n.log.Info("registration not delivered; retrying", "err", err)
			case !ack.OK:
				n.log.Warn("verifier refused registration", "code", ack.Code, "err", ack.Error)
			default:
				if len(ack.Data) > 0 {
					w.updateRating(ack.Data)
				}
				n.log.Info("registered with verifier; awaiting benchmark")
				wait = 30 * time.Second
			}
			if backoff < 10*time.Second {
				backoff *= 2
			}
		} else {
			wait = 5 * time.Minute
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (w *worker) heartbeatLoop() {
	n := w.n
	t := time.NewTicker(n.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		w.mu.Lock()
		w.hbSeq++
		hb := &protocol.Heartbeat{Worker: n.id, Seq: w.hbSeq, Time: n.now().UnixMilli()}
		for id := range w.holding {
			if len(hb.Holding) < protocol.MaxHolding {
				hb.Holding = append(hb.Holding, id)
			}
		}
		w.mu.Unlock()
		free, _ := w.capacity()
		hb.Capacity = free
		var ack protocol.Ack
		if err := n.requestVerifier(n.ctx, protocol.ProtoHeartbeat, hb, &ack); err != nil && n.ctx.Err() == nil {
			n.log.Debug("heartbeat not delivered", "err", err)
		}
	}
}

func (w *worker) offerLoop() {
	n := w.n
	t := time.NewTicker(n.cfg.OfferInterval)
	defer t.Stop()
	for {
		// An expired rating is not quoted: peers would drop the offer.
		if r, sealed := w.Rating(); sealed != nil && r.Expires > n.now().UnixMilli() {
			free, slots := w.capacity()
			// Seq survives restarts (seq.go): peers that saw our earlier
			// offers take a restarted worker's new ones at once.
			seq, err := n.seq.next(n.ctx)
			o := &protocol.Offer{Worker: n.id, Seq: seq, MinPrice: n.cfg.MinPrice, Capacity: free, Slots: slots,
				Rating: sealed, Addrs: n.localAddrs(), Expires: n.now().Add(3 * n.cfg.OfferInterval).UnixMilli()}
			if 3*n.cfg.OfferInterval > protocol.MaxOfferTTL {
				o.Expires = n.now().Add(protocol.MaxOfferTTL).UnixMilli()
			}
			if err == nil {
				err = n.host.PublishOffer(n.ctx, o)
			}
			if err != nil && n.ctx.Err() == nil {
				n.log.Debug("offer not published", "err", err)
			}
		}
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Jobs returns the worker's job history, newest first, at most limit.
func (n *Node) Jobs(limit int) ([]JobRecord, error) {
	if n.w == nil {
		return nil, ErrNotWorker
	}
	var out []JobRecord
	err := n.store.Scan(nsJob, nil, func(_, val []byte) error {
		var r JobRecord
		if err := json.Unmarshal(val, &r); err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, err
}
