package ledger

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// SettleBurst posts n settlements from writers goroutines and returns the
// achieved settlements per second. Each settlement is shaped like the
// verifier's: it releases part of a consumer's escrow to a worker, the
// operator and back to the consumer (four accounts). It first funds and
// escrows 16 consumers named after tag. It is the workload of
// BenchmarkSettlements and of cmd/aspen-bench's ledger figure, shared so
// both measure the same thing.
func SettleBurst(ctx context.Context, l *Ledger, n, writers int, tag string) (float64, error) {
	const consumers = 16
	for c := range consumers {
		cons := fmt.Sprintf("%s-c%d", tag, c)
		if err := l.PostBatch(ctx, []Posting{
			CreditPosting(cons, 1, cons, 1<<50),
			{ID: "escrow/" + cons, Time: 1, Kind: KindEscrow, Entries: []Entry{
				{ConsumerAccount(cons), -(1 << 50)}, {EscrowAccount(cons), 1 << 50}}},
		}); err != nil {
			return 0, err
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	start := time.Now()
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				cons := fmt.Sprintf("%s-c%d", tag, i%consumers)
				p := Posting{ID: fmt.Sprintf("settle/%s/%d", tag, i), Time: 2, Kind: KindSettle, Entries: []Entry{
					{EscrowAccount(cons), -10_000},
					{WorkerAccount(fmt.Sprintf("w%d", i%50)), 7_000},
					{Operator, 1_000},
					{ConsumerAccount(cons), 2_000},
				}}
				if _, err := l.Post(ctx, p); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return 0, first
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
