package main

import (
	"context"
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
func figLedger(ctx context.Context, e *env) ([]Row, error) {
	n, nBase := 20_000, 2_000
	if e.quick {
		n, nBase = 4_000, 500
	}
	var st *store.Store
	open := func(name string, maxBatch int) (*ledger.Ledger, func(), error) {
		cfg := store.DefaultConfig()
		cfg.Dir = filepath.Join(e.dir, name)
		if maxBatch > 0 {
			cfg.MaxBatch = maxBatch
		}
		var err error
		st, err = store.Open(cfg)
		if err != nil {
			return nil, nil, err
		}
		l, err := ledger.Open(st, ledger.Config{})
		if err != nil {
			st.Close()
			return nil, nil, err
		}
		return l, func() { st.Close() }, nil
	}
	// Profile samples carry part=one-sync|group-commit (the store's
	// goroutines inherit it from Open).
	var base float64
	var err error
	pprof.Do(ctx, pprof.Labels("part", "one-sync"), func(ctx context.Context) {
		var lb *ledger.Ledger
		var closeB func()
		if lb, closeB, err = open("ledger-one-sync", 1); err != nil {
			return
		}
		defer closeB()
		base, err = ledger.SettleBurst(ctx, lb, nBase, 64, "base")
	})
	if err != nil {
		return nil, err
	}
	var rate float64
	var cpu time.Duration
	var s0, s1 store.Stats
	pprof.Do(ctx, pprof.Labels("part", "group-commit"), func(ctx context.Context) {
		var l *ledger.Ledger
		var closeL func()
		if l, closeL, err = open("ledger-group-commit", 0); err != nil {
			return
		}
		defer closeL()
		c0 := cpuTime()
		s0 = st.Stats()
		rate, err = ledger.SettleBurst(ctx, l, n, 64, "run")
		cpu, s1 = cpuTime()-c0, st.Stats()
	})
	if err != nil {
		return nil, err
	}
	row := Row{Figure: "7 ledger: durable settlements/s (fsynced, group-committed, 64 posters)", Value: rate, Unit: "/s"}.
		withBaseline(base, "/s", "one fsync per settlement")
	return []Row{
		row.target("value", ">=", 2000).note("%d settlements, %.0f µs CPU each, %.1f settlements per fsync; baseline %d settlements",
			n, us(cpu)/float64(n), float64(s1.DurableWrites-s0.DurableWrites)/float64(max(s1.Syncs-s0.Syncs, 1)), nBase),
		Row{Figure: "7 ledger: group commit vs one fsync per write", Value: rate, Unit: "/s", Baseline: row.Baseline, BaseUnit: "/s",
			BaseWhat: "one fsync per settlement", Ratio: row.Ratio}.target("ratio", ">=", 20),
	}, nil
}
