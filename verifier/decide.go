package verifier

import (
	"context"
	"fmt"
	"sort"

	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/verifier/ledger"
)

// Ledger accounts and posting kinds (see docs/ledger.md).
const (
	acctOperator = ledger.Operator
	kindEscrow   = ledger.KindEscrow
	kindSettle   = ledger.KindSettle
)

func acctConsumer(p string) string { return ledger.ConsumerAccount(p) }
func acctEscrow(p string) string   { return ledger.EscrowAccount(p) }
func acctWorker(p string) string   { return ledger.WorkerAccount(p) }

// advanceLocked asks the market what to do with t and does it: queue it
// for worker replicas, queue a verifier run, or settle it. It returns true
// when the task was settled (its settlement must then be posted once the
// task record is durable).
func (v *Verifier) advanceLocked(t *taskState, now int64) (settled bool) {
	m := t.rec.M
	if m.Settled {
		if t.rec.Settlement != nil && !t.rec.Posted {
			return true
		}
		return false
	}
	d := m.Decide()
	switch d.Kind {
	case market.DecisionWait:
		v.unqueueLocked(t)
		if m.VerifierPending && t.rec.Own == nil {
			v.queueSelfLocked(t)
		}
	case market.DecisionNeed:
		if d.Verifier {
			v.unqueueLocked(t)
			if err := m.RequestVerifier(); err != nil {
				v.log.Error("requesting verifier run", "group", t.rec.Group, "task", t.rec.Index, "err", err)
				return false
			}
			v.log.Info("verifier runs task", "group", t.rec.Group, "task", t.rec.Index, "reason", d.Reason)
			v.queueSelfLocked(t)
			return false
		}
		if m.VerifierPending && t.rec.Own == nil {
			v.queueSelfLocked(t)
		}
		if _, ok := v.queued[t]; !ok {
			v.queued[t] = struct{}{}
			if t.rec.WaitingSince == 0 {
				t.rec.WaitingSince = now
			}
			kick(v.kickSched)
		}
	case market.DecisionVerified, market.DecisionFailed:
		v.settleLocked(t, now)
		return true
	}
	return false
}

func (v *Verifier) unqueueLocked(t *taskState) {
	delete(v.queued, t)
	t.rec.WaitingSince, t.rec.WaitReason = 0, ""
}

func (v *Verifier) queueSelfLocked(t *taskState) {
	if t.selfQueued {
		return
	}
	t.selfQueued = true
	v.selfQ = append(v.selfQ, t)
	kick(v.kickSelf)
}

// settleLocked settles a decided task: market settlement, reputations,
// strikes, speed samples, the outcome to release. The ledger posting
// follows once the task record is durable (postSettlements).
func (v *Verifier) settleLocked(t *taskState, now int64) {
	m := t.rec.M
	// Replicas still assigned (abort, cancel) give their reservation back.
	for _, r := range m.Runs {
		if r.State == market.ReplicaAssigned {
			v.releaseLocked(r.Worker, t, now)
		}
	}
	s, err := m.Settle(v.carries)
	if err != nil {
		v.log.Error("settlement refused", "group", t.rec.Group, "task", t.rec.Index, "err", err)
		return
	}
	v.unqueueLocked(t)
	t.rec.Settlement = &s
	t.rec.Finished = now
	d := s.Decision
	if t.rec.Outcome == 0 {
		if d.Kind == market.DecisionVerified {
			t.rec.Outcome = protocol.OutcomeVerified
		} else {
			t.rec.Outcome = protocol.OutcomeFailed
			t.rec.Reason = d.Reason
		}
	}
	if t.rec.EscrowQueued == 0 {
		// Never escrowed (canceled or failed before any replica): no
		// money moved, nothing to post.
		t.rec.Posted = true
	}
	switch t.rec.Outcome {
	case protocol.OutcomeVerified:
		v.stats.verified.Add(1)
	case protocol.OutcomeCanceled:
		v.stats.canceled.Add(1)
	default:
		v.stats.failed.Add(1)
	}
	v.reps.ObserveAll(d, v.cfg.Market)
	for _, vd := range d.Verdicts {
		v.stats.countVerdict(vd.Outcome)
	}
	for i, vd := range d.Verdicts {
		ws := v.workers[peerID(vd.Worker)]
		if ws == nil {
			continue
		}
		ws.dirty = true
		if vd.Strike {
			v.stats.strikes.Add(1)
			why := "wrong result"
			if vd.Outcome == market.OutcomeRefused {
				why = "impossible time: " + m.Runs[i].Reason
			}
			v.log.Warn("strike: "+why, "worker", vd.Worker, "group", t.rec.Group, "task", t.rec.Index,
				"strikes", ws.rec.Rep.Strikes, "verified", d.Result, "trusted", d.Trusted)
			if ws.rec.Rep.StruckOut(v.cfg.Market) {
				v.book.Remove(vd.Worker)
				v.log.Warn("worker struck out", "worker", vd.Worker, "strikes", ws.rec.Rep.Strikes)
			}
		}
		if d.Trusted && i < len(m.Runs) {
			switch vd.Outcome {
			case market.OutcomePaid:
				ws.rec.SpotChecks.Passed++
			case market.OutcomeTooSlow:
				ws.rec.SpotChecks.TooSlow++
			case market.OutcomeWrong:
				ws.rec.SpotChecks.Wrong++
			}
		}
		if vd.Outcome == market.OutcomePaid || vd.Outcome == market.OutcomeTooSlow {
			v.addSpeedSampleLocked(ws, vd.EffectiveSpeed, "observed", now)
		}
		if vd.Outcome == market.OutcomeTooSlow {
			v.log.Warn("replica not paid: too slow", "worker", vd.Worker, "group", t.rec.Group, "task", t.rec.Index,
				"effective_speed", vd.EffectiveSpeed.String(), "rated_speed", m.Runs[i].Speed.String())
		}
		v.renewRatingLocked(ws, now, false)
	}
	v.log.Info("task settled", "group", t.rec.Group, "task", t.rec.Index, "outcome", t.rec.Outcome.String(),
		"reason", t.rec.Reason, "charged", s.Charged.String(), "operator_cut", s.OperatorCut.String(),
		"paid", len(s.Payouts), "replicas", len(m.Runs), "trusted", d.Trusted)
}

// escrowPerSlot is one replica's maximum cost for t.
func escrowPerSlot(m *market.Task) protocol.Micros { return m.ReplicaEscrow() }

// escrowPostingsLocked returns the postings that escrow slots from+1..to
// of t (slot numbers count replica maxima; the first Replicas slots are one
// posting).
func (v *Verifier) escrowPostingsLocked(t *taskState, from, to int) []ledger.Posting {
	m := t.rec.M
	per := escrowPerSlot(m)
	c := t.g.rec.Consumer
	now := v.nowMs()
	mk := func(id string, amount protocol.Micros, memo string) ledger.Posting {
		return ledger.Posting{ID: id, Time: now, Kind: kindEscrow, Memo: memo, Entries: []ledger.Entry{
			{Account: acctConsumer(c), Amount: -amount},
			{Account: acctEscrow(c), Amount: amount},
		}}
	}
	var ps []ledger.Posting
	base := fmt.Sprintf("%s/%s/%d", kindEscrow, t.rec.Group, t.rec.Index)
	if per <= 0 {
		return nil // nothing to escrow (never posted: the ledger refuses zero amounts)
	}
	if from < m.Replicas && to >= m.Replicas {
		ps = append(ps, mk(base, per*protocol.Micros(m.Replicas),
			fmt.Sprintf("task %s/%d: %d replicas × %s", t.rec.Group, t.rec.Index, m.Replicas, per)))
		from = m.Replicas
	}
	for k := max(from, m.Replicas) + 1; k <= to; k++ {
		ps = append(ps, mk(fmt.Sprintf("%s/%d", base, k), per, fmt.Sprintf("task %s/%d: replica slot %d", t.rec.Group, t.rec.Index, k)))
	}
	return ps
}

// settleID is the ledger posting ID of t's settlement.
func settleID(t *taskState) string {
	return fmt.Sprintf("%s/%s/%d", kindSettle, t.rec.Group, t.rec.Index)
}

// settlePostingLocked is the ledger posting of t's settlement: the escrow
// queued for it is released into worker pay, the operator's cut and the
// consumer's refund. ok is false when it cannot be built.
func (v *Verifier) settlePostingLocked(t *taskState) (ledger.Posting, bool) {
	s := t.rec.Settlement
	m := t.rec.M
	c := t.g.rec.Consumer
	escrowed := escrowPerSlot(m) * protocol.Micros(t.rec.EscrowQueued)
	if s.Charged > escrowed {
		v.log.Error("settlement exceeds escrow", "group", t.rec.Group, "task", t.rec.Index,
			"charged", s.Charged.String(), "escrowed", escrowed.String())
		return ledger.Posting{}, false
	}
	p := ledger.Posting{
		ID: settleID(t), Time: v.nowMs(), Kind: kindSettle,
		Memo: fmt.Sprintf("task %s/%d %s", t.rec.Group, t.rec.Index, t.rec.Outcome),
	}
	p.Entries = append(p.Entries, ledger.Entry{Account: acctEscrow(c), Amount: -escrowed})
	if refund := escrowed - s.Charged; refund > 0 {
		p.Entries = append(p.Entries, ledger.Entry{Account: acctConsumer(c), Amount: refund})
	}
	pay := map[string]protocol.Micros{}
	for _, po := range s.Payouts {
		pay[po.Worker] += po.Pay
	}
	workers := make([]string, 0, len(pay))
	for w := range pay {
		workers = append(workers, w)
	}
	sort.Strings(workers)
	for _, w := range workers {
		if pay[w] > 0 {
			p.Entries = append(p.Entries, ledger.Entry{Account: acctWorker(w), Amount: pay[w]})
		}
	}
	if s.OperatorCut > 0 {
		p.Entries = append(p.Entries, ledger.Entry{Account: acctOperator, Amount: s.OperatorCut})
	}
	return p, true
}

// postSettlements posts the settlements of ts (whose records are durable)
// in the background, then marks them posted and wakes the release loop.
func (v *Verifier) postSettlements(ts []*taskState) {
	if len(ts) == 0 {
		return
	}
	v.mu.Lock()
	var ps []ledger.Posting
	var posting []*taskState
	var writes []write
	for _, t := range ts {
		if t.rec.Settlement == nil || t.posting {
			continue
		}
		if t.rec.Posted {
			posting = append(posting, t) // nothing to post, release it
			continue
		}
		p, ok := v.settlePostingLocked(t)
		if !ok {
			continue
		}
		t.posting = true
		ps = append(ps, p)
		posting = append(posting, t)
	}
	v.mu.Unlock()
	if len(posting) == 0 {
		return
	}
	ch := v.lq.queue(ps...)
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		var err error
		select {
		case err = <-ch:
		case <-v.ctx.Done():
			return
		}
		v.mu.Lock()
		for _, t := range posting {
			t.posting = false
			if err == nil && !t.rec.Posted {
				t.rec.Posted = true
				writes = append(writes, v.taskWrites(t)...)
			}
		}
		if len(writes) > 0 {
			v.per.queue(writes...)
		}
		v.mu.Unlock()
		if err != nil {
			v.log.Error("posting settlements failed; will retry", "tasks", len(posting), "err", err)
			return
		}
		kick(v.kickRelease)
	}()
}

// retrySettlements re-posts every settlement not yet posted (after a
// restart or a ledger error).
func (v *Verifier) retrySettlements() {
	var ts []*taskState
	v.mu.Lock()
	for _, g := range v.groups {
		for _, t := range g.tasks {
			if t.rec.Settlement != nil && !t.rec.Posted && !t.posting {
				ts = append(ts, t)
			}
		}
	}
	v.mu.Unlock()
	v.postSettlements(ts)
}

// waitPersist waits for ch and then posts the settlements of settled.
func (v *Verifier) persistThenSettle(ctx context.Context, ch <-chan error, settled []*taskState) error {
	if err := v.wait(ctx, ch); err != nil {
		return err
	}
	v.postSettlements(settled)
	return nil
}
