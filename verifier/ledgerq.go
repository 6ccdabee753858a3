package verifier

import (
	"context"
	"sync"

	"github.com/aspen-market/aspen/verifier/ledger"
)

// ledgerQueue posts to the ledger in the order postings were queued (so a
// task's escrow is always posted before its settlement). Everything queued
// while a batch is being posted goes into the next batch.
type ledgerQueue struct {
	led *ledger.Ledger

	mu   sync.Mutex
	jobs []ledgerJob
	kick chan struct{}
}

type ledgerJob struct {
	ps   []ledger.Posting
	done chan error
}

func newLedgerQueue(led *ledger.Ledger) *ledgerQueue {
	return &ledgerQueue{led: led, kick: make(chan struct{}, 1)}
}

// queue adds postings (one job: they succeed or fail together) and returns
// a channel receiving the outcome.
func (q *ledgerQueue) queue(ps ...ledger.Posting) <-chan error {
	ch := make(chan error, 1)
	if len(ps) == 0 {
		ch <- nil
		return ch
	}
	q.mu.Lock()
	q.jobs = append(q.jobs, ledgerJob{ps: ps, done: ch})
	q.mu.Unlock()
	kick(q.kick)
	return ch
}

func (q *ledgerQueue) run(ctx context.Context) {
	for {
		select {
		case <-q.kick:
			q.flush(ctx)
		case <-ctx.Done():
			q.flush(context.Background())
			return
		}
	}
}

func (q *ledgerQueue) flush(ctx context.Context) {
	q.mu.Lock()
	jobs := q.jobs
	q.jobs = nil
	q.mu.Unlock()
	if len(jobs) == 0 {
		return
	}
	var all []ledger.Posting
	for _, j := range jobs {
		all = append(all, j.ps...)
	}
	if err := q.led.PostBatch(ctx, all); err == nil {
		for _, j := range jobs {
			j.done <- nil
		}
		return
	}
	// Something failed: post job by job, in order, so one bad job fails
	// alone.
	for _, j := range jobs {
		j.done <- q.led.PostBatch(ctx, j.ps)
	}
}
