package ledger

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/store"
)

const benchWriters = 64

// settleBurst posts n settlements (each releasing a small part of a
// pre-funded escrow to a worker, the operator and a refund) from
// benchWriters goroutines and returns settlements per second.
func settleBurst(b *testing.B, l *Ledger, n int, tag string) float64 {
	ctx := context.Background()
	const consumers = 16
	for c := range consumers {
		cons := fmt.Sprintf("%s-c%d", tag, c)
		if err := l.PostBatch(ctx, []Posting{
			CreditPosting(cons, 1, cons, 1<<50),
			escrowPosting(cons, cons, 1<<50),
		}); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range benchWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				cons := fmt.Sprintf("%s-c%d", tag, i%consumers)
				p := settlePosting(fmt.Sprintf("%s/%d", tag, i), cons, 10_000,
					map[string]protocol.Micros{fmt.Sprintf("w%d", i%50): 7_000}, 1_000)
				if _, err := l.Post(ctx, p); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

func benchLedger(b *testing.B, maxBatch int) (*Ledger, *store.Store) {
	st := openStore(b, b.TempDir(), func(c *store.Config) { c.MaxBatch = maxBatch })
	b.Cleanup(func() { _ = st.Close() })
	l, err := Open(st, Config{})
	if err != nil {
		b.Fatal(err)
	}
	return l, st
}

var settleBaseline struct {
	sync.Once
	rate float64
}

// BenchmarkSettlements measures durable settlements per second with 64
// concurrent posters through group commit, against the same posters with
// group commit disabled (one fsync per settlement), measured in the same
// run, and reports both rates and their ratio.
func BenchmarkSettlements(b *testing.B) {
	settleBaseline.Do(func() {
		l, _ := benchLedger(b, 1)
		settleBaseline.rate = settleBurst(b, l, 2000, "base")
	})
	l, st := benchLedger(b, store.DefaultConfig().MaxBatch)
	b.ResetTimer()
	cpu0, s0 := cpuTime(), st.Stats()
	rate := settleBurst(b, l, b.N, fmt.Sprintf("run%d", b.N))
	cpu, s1 := cpuTime()-cpu0, st.Stats()
	b.StopTimer()
	b.ReportMetric(float64(s1.DurableWrites-s0.DurableWrites)/float64(max(s1.Syncs-s0.Syncs, 1)), "writes/sync")
	b.ReportMetric(rate, "settlements/s")
	b.ReportMetric(settleBaseline.rate, "one-sync-per-write/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(rate/settleBaseline.rate, "ratio")
}

// cpuTime is the process's user+system CPU time so far; CPU per operation
// shows the cost of a write independently of how busy the machine is.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
