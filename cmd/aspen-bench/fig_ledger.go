package main

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime/pprof"
	"time"

	"github.com/aspen-market/aspen/store"
	"github.com/aspen-market/aspen/verifier/ledger"
)

// figLedger: durable settlements per second through the ledger's group
// commit (64 concurrent posters, as the verifier's handlers post), against
// the same posters with one fsync per settlement (store MaxBatch 1),
// measured in the same run (the workload of ledger.BenchmarkSettlements).
// The two sides alternate in rounds, so a change of the disk's fsync
// latency or of the machine's load during the figure hits both.
func figLedger(ctx context.Context, e *env) ([]Row, error) {
	n, nBase := 20_000, 2_000
	if e.quick {
		n, nBase = 4_000, 500
	}
	const rounds = 4
	open := func(name string, maxBatch int) (*ledger.Ledger, *store.Store, error) {
		cfg := store.DefaultConfig()
		cfg.Dir = filepath.Join(e.dir, name)
		if maxBatch > 0 {
			cfg.MaxBatch = maxBatch
		}
		st, err := store.Open(cfg)
		if err != nil {
			return nil, nil, err
		}
		l, err := ledger.Open(st, ledger.Config{})
		if err != nil {
			st.Close()
			return nil, nil, err
		}
		return l, st, nil
	}
	// Profile samples carry part=one-sync|group-commit (each store's
	// goroutines inherit it from Open).
	baseLabels, runLabels := pprof.Labels("part", "one-sync"), pprof.Labels("part", "group-commit")
	var lb, l *ledger.Ledger
	var stB, st *store.Store
	var err error
	pprof.Do(ctx, baseLabels, func(context.Context) { lb, stB, err = open("ledger-one-sync", 1) })
	if err != nil {
		return nil, err
	}
	defer stB.Close()
	pprof.Do(ctx, runLabels, func(context.Context) { l, st, err = open("ledger-group-commit", 0) })
	if err != nil {
		return nil, err
	}
	defer st.Close()
	var baseTime, runTime, cpu time.Duration
	s0 := st.Stats()
	for r := range rounds {
		var rate float64
		pprof.Do(ctx, baseLabels, func(ctx context.Context) {
			rate, err = ledger.SettleBurst(ctx, lb, nBase/rounds, 64, fmt.Sprintf("base%d", r))
		})
		if err != nil {
			return nil, err
		}
		baseTime += time.Duration(float64(nBase/rounds) / rate * float64(time.Second))
		pprof.Do(ctx, runLabels, func(ctx context.Context) {
			c0 := cpuTime()
			rate, err = ledger.SettleBurst(ctx, l, n/rounds, 64, fmt.Sprintf("run%d", r))
			cpu += cpuTime() - c0
		})
		if err != nil {
			return nil, err
		}
		runTime += time.Duration(float64(n/rounds) / rate * float64(time.Second))
	}
	s1 := st.Stats()
	base, rate := float64(nBase)/baseTime.Seconds(), float64(n)/runTime.Seconds()
	row := Row{Figure: "7 ledger: durable settlements/s (fsynced, group-committed, 64 posters)", Value: rate, Unit: "/s"}.
		withBaseline(base, "/s", "one fsync per settlement")
	return []Row{
		row.target("value", ">=", 2000).note("%d settlements in %d rounds alternating with the baseline's %d, %.0f µs CPU each, %.1f settlements per fsync",
			n, rounds, nBase, us(cpu)/float64(n), float64(s1.DurableWrites-s0.DurableWrites)/float64(max(s1.Syncs-s0.Syncs, 1))),
		Row{Figure: "7 ledger: group commit vs one fsync per write", Value: rate, Unit: "/s", Baseline: row.Baseline, BaseUnit: "/s",
			BaseWhat: "one fsync per settlement", Ratio: row.Ratio}.target("ratio", ">=", 20),
	}, nil
}
