package verifier

import (
	"context"
	"time"

	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/protocol"
)

func (v *Verifier) sweepLoop(ctx context.Context) {
	tick := time.NewTicker(v.cfg.SweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		v.sweep(ctx)
	}
}

// sweep applies the clock: workers silent past the heartbeat timeout leave
// the book and their running replicas fail (re-replicated, not paid, not
// charged); replicas past their deadline time out; benchmarks past their
// timeout are dropped; tasks waiting past the queue timeout fail;
// settlements not yet posted are retried; changed worker records are
// written.
func (v *Verifier) sweep(ctx context.Context) {
	now := v.nowMs()
	hb := v.cfg.Market.HeartbeatTimeout.Milliseconds()
	v.mu.Lock()
	for _, ws := range v.workers {
		if _, inBook := v.book.Offers[ws.id.String()]; inBook && !v.liveLocked(ws, now) {
			v.log.Warn("worker silent", "worker", ws.id.String(), "silent_ms", now-ws.lastSeen)
			v.book.Remove(ws.id.String())
		}
	}
	byName := make(map[string]*workerState, len(v.workers))
	for _, ws := range v.workers {
		byName[ws.rec.ID] = ws
	}
	var changed, settled, unposted []*taskState
	for _, g := range v.groups {
		for _, t := range g.tasks {
			m := t.rec.M
			if m.Settled {
				if t.rec.Settlement != nil && !t.rec.Posted && !t.posting {
					unposted = append(unposted, t)
				}
				continue
			}
			touched := false
			for _, r := range m.Runs {
				if r.State != market.ReplicaAssigned {
					continue
				}
				seen := v.startedAt + v.cfg.RestartGrace.Milliseconds()
				if ws := byName[r.Worker]; ws != nil {
					seen = max(seen, ws.lastSeen)
				}
				_ = m.Heartbeat(r.Worker, min(seen, now))
			}
			for _, d := range m.Sweep(now, v.cfg.Market) {
				v.releaseLocked(d.Worker, t, now)
				v.log.Warn("replica failed", "worker", d.Worker, "group", t.rec.Group, "task", t.rec.Index,
					"state", string(d.State), "reason", d.Reason)
				touched = true
			}
			if _, q := v.queued[t]; q && t.rec.WaitingSince > 0 && now-t.rec.WaitingSince > v.cfg.QueueTimeout.Milliseconds() {
				reason := t.rec.WaitReason
				if reason == "" {
					reason = "no eligible workers"
				}
				if err := m.Abort(reason); err == nil {
					if m.Decide().Kind != market.DecisionVerified {
						t.rec.Outcome, t.rec.Reason = protocol.OutcomeFailed, reason
					}
					v.log.Warn("task failed: waited too long", "group", t.rec.Group, "task", t.rec.Index, "reason", reason)
					touched = true
				}
			}
			if touched {
				if v.advanceLocked(t, now) {
					settled = append(settled, t)
				}
				changed = append(changed, t)
			}
		}
	}
	for id, b := range v.benches {
		if now-b.Issued > v.cfg.BenchmarkTimeout.Milliseconds()+hb {
			v.benchFailedLocked(id, "no receipt before the benchmark timeout")
		}
	}
	writes := v.dirtyWorkersLocked()
	for _, t := range changed {
		writes = append(writes, v.taskWrites(t)...)
	}
	var ch <-chan error
	if len(writes) > 0 {
		ch = v.per.queue(writes...)
	}
	v.mu.Unlock()
	if ch != nil {
		if err := v.wait(ctx, ch); err != nil {
			if ctx.Err() == nil {
				v.log.Error("persisting sweep", "err", err)
			}
			return
		}
	}
	v.postSettlements(settled)
	v.postSettlements(unposted)
	if len(changed) > 0 {
		kick(v.kickSched)
	}
	kick(v.kickRelease)
}
