package store

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	badger "github.com/dgraph-io/badger/v4"
)

// Group commit.
//
// All record writes go through one committer goroutine, so they never
// conflict with each other. Durable and Update callers hand their function to one committer goroutine. The
// committer takes every request waiting (up to Config.MaxBatch), runs their
// functions one after the other against one shared badger transaction and
// commits it. Update callers return at once; for Durable callers a syncer
// goroutine then fsyncs once for everything committed since its last sync
// (waiting for a round the committer is in the middle of) and only then
// wakes them. While the syncer is in fsync the committer already builds
// the next batch, so under load each fsync covers many writes.
//
// A function that fails must not poison the others sharing its
// transaction. A function that fails before writing anything is simply
// dropped. One that fails after writing (or whose write does not fit) makes
// the committer discard the transaction, re-run the functions that had
// succeeded before it on a fresh transaction and commit them, and then go on
// after the failed one. Functions must therefore depend only on what they
// read through the Tx: they may run more than once, and only their last run
// counts.

// Request states, for the race between a caller giving up and the
// committer taking the request.
const (
	reqQueued int32 = iota
	reqTaken
	reqAbandoned
)

type durableReq struct {
	fn    func(*Tx) error
	sync  bool // Durable: wait for fsync; Update: done at commit
	state atomic.Int32
	done  chan error // buffered(1); receives exactly one result once taken
	// finished is set by the committer when done has been sent; only the
	// committer reads or writes it.
	finished bool
}

func (r *durableReq) finish(err error) {
	r.finished = true
	r.done <- err
}

// Durable runs fn in a read-write transaction and returns only once its
// writes are committed and synced to stable storage (they survive kill -9
// and power loss). Concurrent callers are group-committed: many share one
// transaction and one fsync. fn sees the effects of the Durable calls
// committed before it, runs on the committer goroutine and must be quick.
// fn may be run more than once (only the last run's writes count), so it
// must have no effects besides tx; it must not call Durable itself.
//
// If fn returns an error, nothing it wrote is applied and that error is
// returned. If ctx ends before fn was started, Durable returns ctx.Err()
// and fn is never run; once fn has started Durable waits for the outcome.
func (s *Store) Durable(ctx context.Context, fn func(tx *Tx) error) error {
	return s.submit(ctx, fn, true)
}

// submit queues fn for the committer and waits for its outcome.
func (s *Store) submit(ctx context.Context, fn func(tx *Tx) error, sync bool) error {
	if fn == nil {
		return fmt.Errorf("%w: nil transaction function", ErrInvalid)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-s.closing:
		return ErrClosed
	default:
	}
	r := &durableReq{fn: fn, sync: sync, done: make(chan error, 1)}
	select {
	case s.reqs <- r:
	case <-s.closing:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			return ctx.Err()
		}
		return <-r.done
	case <-s.committerDone:
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			return ErrClosed
		}
		return <-r.done
	}
}

// noneCommitted ends a round that committed nothing (non-nil: nil is the
// round-start marker).
var noneCommitted = []*durableReq{}

// commitLoop is the committer goroutine. Each round it hands the syncer
// the requests it committed, even none; with group commit it also tells
// the syncer first that a round has started (a nil batch, sent only if
// there is room, so the committer never waits for it).
func (s *Store) commitLoop() {
	defer s.wg.Done()
	defer close(s.toSync)
	defer close(s.committerDone)
	batch := make([]*durableReq, 0, s.cfg.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
		case <-s.closing:
			return
		}
		if s.cfg.MaxBatch > 1 {
			select {
			case s.toSync <- nil:
			default:
			}
		}
	drain:
		for len(batch) < s.cfg.MaxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		taken := make([]*durableReq, 0, len(batch))
		for _, r := range batch {
			if r.state.CompareAndSwap(reqQueued, reqTaken) {
				taken = append(taken, r)
			}
		}
		var committed []*durableReq
		if len(taken) > 0 {
			s.runBatch(taken, &committed)
		}
		if committed == nil {
			committed = noneCommitted
		}
		s.toSync <- committed
	}
}

// syncLoop is the syncer goroutine: one fsync round for everything the
// committer handed over since the last round, then the callers are woken.
// If the committer is in the middle of a round when the syncer is ready,
// the syncer waits for that round and syncs it with the rest (up to
// MaxBatch writes): an fsync costs far more than a commit round (on the
// test VM about 0.4 ms of CPU on top of its latency), so syncing without
// the round would only add an fsync for it right after.
func (s *Store) syncLoop() {
	defer s.wg.Done()
	group := s.cfg.MaxBatch > 1 // MaxBatch 1: one sync per write
	var waiting []*durableReq
	inRound, open := false, true
	take := func(b []*durableReq, ok bool) {
		if !ok {
			open = false
			return
		}
		inRound = b == nil
		waiting = append(waiting, b...)
	}
	for open {
		if len(waiting) == 0 || (group && inRound && len(waiting) < s.cfg.MaxBatch) {
			b, ok := <-s.toSync
			take(b, ok)
			continue
		}
	drain:
		for group && open {
			select {
			case b, ok := <-s.toSync:
				take(b, ok)
			default:
				break drain
			}
		}
		if open && group && inRound && len(waiting) < s.cfg.MaxBatch {
			continue
		}
		s.syncWaiting(waiting)
		waiting = nil
	}
	if len(waiting) > 0 {
		s.syncWaiting(waiting)
	}
}

// syncWaiting syncs and wakes the callers of committed requests.
func (s *Store) syncWaiting(waiting []*durableReq) {
	err := s.syncAll()
	if err != nil {
		s.log.Error("sync after group commit failed", "err", err, "writes", len(waiting))
		err = fmt.Errorf("store: committed but not synced, may not survive power loss: %w", err)
	} else {
		s.stats.durableWrites.Add(uint64(len(waiting)))
	}
	for _, r := range waiting {
		r.done <- err
	}
}

// runBatch commits the functions of queue, in order, appending the requests
// whose writes were committed to *committed; every other request is
// finished with its error.
func (s *Store) runBatch(queue []*durableReq, committed *[]*durableReq) {
	conflicts := 0
	for len(queue) > 0 {
		n, conflict := s.round(queue, committed)
		if conflict {
			conflicts++
			if conflicts <= maxConflictRetries {
				continue // re-run the same requests on a fresh snapshot
			}
			for _, r := range queue {
				if !r.finished {
					r.finish(fmt.Errorf("store: durable commit: %w", badger.ErrConflict))
				}
			}
			return
		}
		queue = queue[n:]
	}
}

// round runs the unfinished requests of queue on one transaction and
// commits it. It returns how many requests of queue it consumed (finished or
// committed); conflict reports a write conflict at commit, in which case
// nothing was consumed and the round must be repeated.
func (s *Store) round(queue []*durableReq, committed *[]*durableReq) (consumed int, conflict bool) {
	txn := s.db.NewTransaction(true)
	tx := &Tx{s: s, txn: txn}
	var included []*durableReq
	for i, r := range queue {
		if r.finished {
			continue
		}
		w0 := tx.writes
		err := runFn(r.fn, tx)
		if err == nil {
			err = tx.err
		}
		if err == nil {
			included = append(included, r)
			continue
		}
		if tx.writes == w0 && tx.err == nil {
			r.finish(err) // failed without touching the transaction
			continue
		}
		// r wrote and then failed, or its writes did not fit: drop this
		// transaction and commit the requests before r on their own.
		txn.Discard()
		tooBig := errors.Is(err, badger.ErrTxnTooBig)
		hadIncluded := len(included) > 0
		s.runBatch(included, committed)
		if tooBig && hadIncluded {
			return i, false // r gets a fresh transaction of its own
		}
		r.finish(txErr(err))
		return i + 1, false
	}
	if len(included) == 0 {
		txn.Discard()
		return len(queue), false
	}
	err := txn.Commit()
	if errors.Is(err, badger.ErrConflict) {
		return 0, true
	}
	if err != nil {
		err = fmt.Errorf("store: durable commit: %w", txErr(err))
		for _, r := range included {
			r.finish(err)
		}
		return len(queue), false
	}
	s.stats.commits.Add(1)
	for _, r := range included {
		if r.sync {
			r.finished = true // the syncer sends the result
			*committed = append(*committed, r)
		} else {
			r.finish(nil)
		}
	}
	return len(queue), false
}

// runFn calls fn, turning a panic into an error so one bad caller cannot
// kill the committer.
func runFn(fn func(*Tx) error, tx *Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: panic in Durable function: %v", p)
			tx.writes++ // unknown writes: treat the transaction as dirty
		}
	}()
	return fn(tx)
}
