package verifier

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
)

// handleSubmit accepts tasks of a job group: validated, refused when the
// consumer cannot cover one task's escrow or no registered worker could
// ever match, persisted durably (group and tasks) before the ack, then
// scheduled. Submits are idempotent on (group, index).
func (v *Verifier) handleSubmit(ctx context.Context, from peer.ID, env *protocol.Envelope) (protocol.Message, error) {
	var sub protocol.Submit
	if err := env.Decode(&sub); err != nil {
		return nil, p2p.Refuse(protocol.AckBadRequest, "%v", err)
	}
	if env.Signer != from || sub.Consumer != from {
		return nil, p2p.Refuse(protocol.AckUnauthorized, "submit signed by %s for consumer %s", env.Signer, sub.Consumer)
	}
	// The consumer is reachable: releases of this group it never
	// acknowledged go out again now, whatever becomes of the submit.
	v.resumeReleases(sub.Group, from, sub.Addrs)
	refuse := func(code protocol.AckCode, format string, a ...any) (protocol.Message, error) {
		msg := fmt.Sprintf(format, a...)
		v.log.Info("submit refused", "consumer", from.String(), "group", sub.Group.String(), "code", code, "reason", msg)
		return &protocol.Ack{Ref: sub.Group, Code: code, Error: msg}, nil
	}
	now := v.now()
	if d := time.UnixMilli(sub.Time).Sub(now); d > protocol.MaxClockSkew {
		return refuse(protocol.AckExpired, "submit time is %v ahead of the verifier's clock", d.Round(time.Second))
	}
	if sub.MaxMemory == 0 {
		sub.MaxMemory = v.cfg.DefaultJobMemory // explicit, so every run has the same cap
	}
	mcfg := v.cfg.Market
	timeout := time.Duration(sub.TimeoutMillis) * time.Millisecond
	switch {
	case protocol.CheckBlobCID(sub.Module) != nil:
		return refuse(protocol.AckBadRequest, "bad module CID")
	case sub.ModuleSize == 0:
		return refuse(protocol.AckBadRequest, "empty module")
	case int(sub.Replicas) < market.MinReplicas || int(sub.Replicas) > mcfg.MaxReplicas:
		return refuse(protocol.AckBadRequest, "%d replicas, want %d to %d", sub.Replicas, market.MinReplicas, mcfg.MaxReplicas)
	case timeout > mcfg.MaxRunTime:
		return refuse(protocol.AckBadRequest, "timeout %v above the maximum running time %v", timeout, mcfg.MaxRunTime)
	case sub.MaxMemory > v.cfg.MaxMemory:
		return refuse(protocol.AckBadRequest, "max memory %d above the limit %d", sub.MaxMemory, v.cfg.MaxMemory)
	case len(sub.Tasks) == 0:
		return refuse(protocol.AckBadRequest, "no tasks")
	}
	for i := range sub.Tasks {
		ti := &sub.Tasks[i]
		if err := protocol.CheckBlobCID(ti.Input); err != nil {
			return refuse(protocol.AckBadRequest, "task %d: %v", ti.Index, err)
		}
		if ti.Size > protocol.MaxBlobSize {
			return refuse(protocol.AckBadRequest, "task %d: input of %d bytes", ti.Index, ti.Size)
		}
	}
	mcfg.MaxRunTime = timeout
	bid := market.Bid{Consumer: from.String(), Group: sub.Group.String(), MaxPrice: sub.MaxPrice, MinSpeed: sub.MinSpeed, Replicas: int(sub.Replicas)}
	if err := bid.Validate(mcfg); err != nil {
		return refuse(protocol.AckBadRequest, "%v", err)
	}
	if sub.MaxPrice <= 0 {
		return refuse(protocol.AckBadRequest, "max price %s per hour can pay no worker", sub.MaxPrice)
	}
	escrowSpeed := max(sub.MinSpeed, mcfg.MinRatedSpeed)
	oneTask := market.ReplicaEscrow(sub.MaxPrice, timeout.Microseconds(), escrowSpeed) * protocol.Micros(sub.Replicas)
	balance, err := v.led.Balance(acctConsumer(from.String()))
	if err != nil {
		return refuse(protocol.AckInternal, "ledger: %v", err)
	}
	if balance < oneTask {
		return refuse(protocol.AckInsufficientFunds, "balance %s cannot cover the escrow of one task (%s = %d replicas × %s/h × %v of standard work at speed %s)",
			balance, oneTask, sub.Replicas, sub.MaxPrice, timeout, escrowSpeed)
	}
	nowMs := now.UnixMilli()

	v.mu.Lock()
	if why := v.noWorkersLocked(bid); why != "" {
		v.mu.Unlock()
		return refuse(protocol.AckNoWorkers, "%s", why)
	}
	g := v.groups[sub.Group]
	known := g != nil
	if g == nil {
		rec, err := v.st.Get(nsGroup, sub.Group[:])
		if err == nil {
			var gr groupRecord
			if err := jsonUnmarshal(rec, &gr); err == nil {
				g, _ = groupFromRecord(gr)
				if g != nil {
					g.rec.Closed = false
				}
			}
		}
	}
	if g == nil {
		g = &groupState{id: sub.Group, consumer: from, module: sub.Module, tasks: map[uint32]*taskState{}, rec: groupRecord{
			ID: sub.Group.String(), Consumer: from.String(), Module: sub.Module.String(), ModuleSize: sub.ModuleSize,
			MaxPrice: sub.MaxPrice, MinSpeed: sub.MinSpeed, Replicas: int(sub.Replicas), TimeoutMillis: sub.TimeoutMillis,
			MaxMemory: sub.MaxMemory, Addrs: sub.Addrs, Created: nowMs,
		}}
		v.log.Info("group submitted", "group", g.rec.ID, "consumer", g.rec.Consumer, "module", g.rec.Module,
			"max_price", sub.MaxPrice.String(), "min_speed", sub.MinSpeed.String(), "replicas", sub.Replicas, "timeout", timeout)
	} else {
		r := g.rec
		switch {
		case r.Consumer != from.String():
			v.mu.Unlock()
			return refuse(protocol.AckUnauthorized, "group %s belongs to another consumer", sub.Group)
		case r.Canceled:
			v.mu.Unlock()
			return refuse(protocol.AckBadRequest, "group %s was canceled", sub.Group)
		case r.Module != sub.Module.String() || r.ModuleSize != sub.ModuleSize || r.MaxPrice != sub.MaxPrice ||
			r.MinSpeed != sub.MinSpeed || r.Replicas != int(sub.Replicas) || r.TimeoutMillis != sub.TimeoutMillis ||
			r.MaxMemory != sub.MaxMemory:
			v.mu.Unlock()
			return refuse(protocol.AckBadRequest, "group %s was submitted with other parameters", sub.Group)
		}
	}
	// Validate every new task before changing anything.
	var fresh []*taskState
	seen := map[uint32]bool{}
	for i := range sub.Tasks {
		ti := &sub.Tasks[i]
		if seen[ti.Index] || g.tasks[ti.Index] != nil || v.taskExistsLocked(g, ti.Index) {
			continue // idempotent
		}
		seen[ti.Index] = true
		mt, err := market.NewTask(bid, int(ti.Index), mcfg)
		if err != nil {
			v.mu.Unlock()
			return refuse(protocol.AckBadRequest, "task %d: %v", ti.Index, err)
		}
		fresh = append(fresh, &taskState{g: g, rec: taskRecord{Group: g.rec.ID, Index: ti.Index, Input: ti.Input.String(),
			Size: ti.Size, Inline: ti.Inline, Created: nowMs, M: mt}})
	}
	if v.openTasks+len(fresh) > v.cfg.MaxOpenTasks {
		v.mu.Unlock()
		return refuse(protocol.AckBusy, "the verifier holds %d open tasks (limit %d)", v.openTasks, v.cfg.MaxOpenTasks)
	}
	if !known {
		v.groups[g.id] = g
	}
	if len(sub.Addrs) > 0 {
		g.rec.Addrs = sub.Addrs
	}
	var writes []write
	for _, t := range fresh {
		t.rec.SpotCheck = market.SpotCheck(v.cfg.Market, v.cfg.Rand) // the secret draw
		g.tasks[t.rec.Index] = t
		g.rec.Tasks++
		v.openTasks++
		writes = append(writes, v.taskWrites(t)...)
	}
	writes = append(writes, v.groupWrite(g))
	ch := v.per.queue(writes...)
	// Scheduling starts while the submit is being made durable: the
	// scheduler's writes are queued after these, so no assignment can be
	// sent before the tasks it carries are durable.
	for _, t := range fresh {
		v.advanceLocked(t, nowMs)
	}
	v.mu.Unlock()
	kick(v.kickSched)
	if err := v.wait(ctx, ch); err != nil {
		v.log.Error("persisting a submit failed", "group", sub.Group.String(), "err", err)
		v.mu.Lock()
		for _, t := range fresh {
			v.unqueueLocked(t)
			for _, r := range t.rec.M.Runs { // scheduled meanwhile: never sent
				if r.State == market.ReplicaAssigned {
					v.releaseLocked(r.Worker, t, v.nowMs())
				}
			}
			if g.tasks[t.rec.Index] == t {
				delete(g.tasks, t.rec.Index)
				g.rec.Tasks--
				v.openTasks--
			}
		}
		v.mu.Unlock()
		return refuse(protocol.AckInternal, "persist: %v", err)
	}
	v.log.Info("tasks accepted", "group", sub.Group.String(), "new", len(fresh), "in_message", len(sub.Tasks))
	return &protocol.Ack{Ref: sub.Group, OK: true, Count: uint32(len(sub.Tasks))}, nil
}

// taskExistsLocked reports whether a task of g is already persisted
// (released tasks are no longer in memory).
func (v *Verifier) taskExistsLocked(g *groupState, index uint32) bool {
	if g.rec.Tasks == len(g.tasks) {
		return false
	}
	_, err := v.st.Get(nsTask, taskKey(g.id, index))
	return err == nil
}

// noWorkersLocked explains why no registered worker could ever take the
// bid ("" when enough could: rated workers that match, and workers still
// being benchmarked whose price matches).
func (v *Verifier) noWorkersLocked(bid market.Bid) string {
	n, registered, expensive, slow, struck := 0, 0, 0, 0, 0
	for _, ws := range v.workers {
		registered++
		price := max(ws.rec.MinPrice, ws.rec.OfferPrice)
		switch {
		case ws.rec.Rep.StruckOut(v.cfg.Market):
			struck++
		case price > bid.MaxPrice:
			expensive++
		case ws.rec.Speed != 0 && ws.rec.Speed < bid.MinSpeed:
			slow++
		default:
			n++
		}
	}
	if n >= bid.Replicas {
		return ""
	}
	return fmt.Sprintf("%d of %d registered workers could take it, %d replicas needed (%d too expensive, %d too slow, %d struck out)",
		n, registered, bid.Replicas, expensive, slow, struck)
}

// handleCancel cancels a group's unfinished tasks: their escrow is
// refunded and a Release with OutcomeCanceled follows.
func (v *Verifier) handleCancel(ctx context.Context, from peer.ID, env *protocol.Envelope) (protocol.Message, error) {
	var c protocol.Cancel
	if err := env.Decode(&c); err != nil {
		return nil, p2p.Refuse(protocol.AckBadRequest, "%v", err)
	}
	if env.Signer != from || c.Consumer != from {
		return nil, p2p.Refuse(protocol.AckUnauthorized, "cancel signed by %s for consumer %s", env.Signer, c.Consumer)
	}
	now := v.nowMs()
	v.mu.Lock()
	g := v.groups[c.Group]
	if g == nil {
		v.mu.Unlock()
		if _, err := v.st.Get(nsGroup, c.Group[:]); err == nil {
			return &protocol.Ack{Ref: c.Group, OK: true}, nil // finished already
		}
		return &protocol.Ack{Ref: c.Group, Code: protocol.AckUnknown, Error: "unknown group"}, nil
	}
	if g.consumer != from {
		v.mu.Unlock()
		return &protocol.Ack{Ref: c.Group, Code: protocol.AckUnauthorized, Error: "not your group"}, nil
	}
	g.rec.Canceled = true
	var settled []*taskState
	writes := []write{v.groupWrite(g)}
	n := 0
	for _, t := range g.tasks {
		if t.rec.M.Settled {
			continue
		}
		if err := t.rec.M.Abort("canceled by the consumer"); err != nil {
			continue
		}
		// Work already reported and verified is released and paid as the
		// consumer agreed; the rest is canceled and refunded.
		if t.rec.M.Decide().Kind != market.DecisionVerified {
			t.rec.Outcome, t.rec.Reason = protocol.OutcomeCanceled, "canceled by the consumer"
		}
		v.settleLocked(t, now)
		settled = append(settled, t)
		writes = append(writes, v.taskWrites(t)...)
		n++
	}
	ch := v.per.queue(writes...)
	v.mu.Unlock()
	v.log.Info("group canceled", "group", c.Group.String(), "consumer", from.String(), "tasks", n)
	if err := v.persistThenSettle(ctx, ch, settled); err != nil {
		return &protocol.Ack{Ref: c.Group, Code: protocol.AckInternal, Error: err.Error()}, nil
	}
	return &protocol.Ack{Ref: c.Group, OK: true, Count: uint32(n)}, nil
}
