package verifier

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/verifier/ledger"
)

// maxAssignmentBytes bounds the inline bytes of one assignment, well under
// the 4 MiB frame limit.
const maxAssignmentBytes = 3 << 20

func (v *Verifier) scheduleLoop(ctx context.Context) {
	tick := time.NewTicker(v.cfg.ScheduleInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-v.kickSched:
		case <-tick.C:
		}
		v.scheduleRound(ctx)
	}
}

// building is an assignment being filled during a scheduling round.
type building struct {
	id     protocol.ID
	worker peer.ID
	g      *groupState
	price  protocol.Micros
	tasks  []protocol.AssignedTask
	bytes  int
}

// scheduleRound gives every queued task the worker replicas it needs:
// market selection, escrow, signed assignments batched per worker and
// group, persisted before they are sent.
func (v *Verifier) scheduleRound(ctx context.Context) {
	v.mu.Lock()
	if len(v.queued) == 0 {
		v.mu.Unlock()
		return
	}
	cands := make([]*taskState, 0, len(v.queued))
	consumers := map[string]bool{}
	for t := range v.queued {
		cands = append(cands, t)
		consumers[t.g.rec.Consumer] = true
	}
	v.mu.Unlock()

	// Available balances, read outside the lock. Only this loop moves
	// money out of consumer accounts, so they can only grow meanwhile.
	bal := map[string]protocol.Micros{}
	for c := range consumers {
		b, err := v.led.Balance(acctConsumer(c))
		if err != nil {
			v.log.Error("reading balance", "consumer", c, "err", err)
			continue
		}
		bal[c] = b
	}

	slices.SortFunc(cands, func(a, b *taskState) int {
		if a.g != b.g {
			if a.g.rec.Created != b.g.rec.Created {
				return int(a.g.rec.Created - b.g.rec.Created)
			}
			return strings.Compare(a.g.rec.ID, b.g.rec.ID)
		}
		return int(a.rec.Index) - int(b.rec.Index)
	})

	now := v.nowMs()
	v.mu.Lock()
	trust := v.reps.Trust(v.cfg.Market)
	var (
		batches    = map[[2]string]*building{}
		built      []*building
		escrows    []ledger.Posting
		escrowUndo []func()
		changed    []*taskState
		settled    []*taskState
		noWorkers  = map[*groupState]string{} // groups whose fresh tasks found nobody this round
	)
	for _, t := range cands {
		if _, ok := v.queued[t]; !ok {
			continue
		}
		m := t.rec.M
		d := m.Decide()
		if d.Kind != market.DecisionNeed || d.Verifier {
			if v.advanceLocked(t, now) {
				settled = append(settled, t)
			}
			changed = append(changed, t)
			continue
		}
		fresh := len(m.Runs) == 0
		if why, ok := noWorkers[t.g]; ok && fresh {
			v.waitLocked(t, now, why)
			continue
		}
		c := t.g.rec.Consumer
		per := escrowPerSlot(m)
		live := 0
		for _, r := range m.Runs {
			if r.State == market.ReplicaAssigned || r.State == market.ReplicaReported {
				live++
			}
		}
		slots := max(m.EscrowSlots, live+d.Need) // what Assign may escrow at most
		required := per * protocol.Micros(max(slots-t.rec.EscrowQueued, 0))
		if avail, ok := bal[c]; !ok || avail < required {
			v.waitLocked(t, now, fmt.Sprintf("insufficient funds: escrow needs %s, available %s", required, bal[c]))
			continue
		}
		matches, err := v.book.Select(m.Bid(), d.Need, m.Exclude(), trust, now, v.cfg.Rand)
		if err != nil {
			why := noWorkersReason(err)
			if fresh {
				noWorkers[t.g] = why
			}
			v.waitLocked(t, now, why)
			continue
		}
		for _, mt := range matches {
			// The worker's ID is checked before the market records the run:
			// Replicas must stay aligned with M.Runs.
			wid := peerID(mt.Worker)
			if wid == "" {
				v.book.Release(mt.Worker)
				v.log.Error("book offered a worker with an invalid ID", "worker", mt.Worker, "group", t.rec.Group, "task", t.rec.Index)
				continue
			}
			if _, err := m.Assign(mt, now); err != nil {
				v.book.Release(mt.Worker)
				v.log.Error("assignment refused by the market", "worker", mt.Worker, "group", t.rec.Group, "task", t.rec.Index, "err", err)
				continue
			}
			v.holdLocked(mt.Worker, t, now)
			replica := uint16(len(m.Runs) - 1)
			at := protocol.AssignedTask{Index: t.rec.Index, Replica: replica, Size: t.rec.Size, Inline: t.rec.Inline}
			at.Input = mustCID(t.rec.Input)
			k := [2]string{mt.Worker, t.g.rec.ID}
			b := batches[k]
			cost := 128 + len(at.Inline)
			if b == nil || len(b.tasks) >= protocol.MaxTasksPerMessage || b.bytes+cost > maxAssignmentBytes {
				b = &building{id: protocol.NewID(), worker: wid, g: t.g, price: mt.Price}
				batches[k] = b
				built = append(built, b)
			}
			b.tasks = append(b.tasks, at)
			b.bytes += cost
			t.rec.Replicas = append(t.rec.Replicas, replicaInfo{Assignment: b.id.String()})
			v.trackLocked(t)
			v.stats.replicas.Add(1)
			v.log.Debug("replica selected", "worker", mt.Worker, "group", t.rec.Group, "task", t.rec.Index,
				"replica", replica, "price", mt.Price.String(), "speed", mt.Speed.String())
		}
		if m.EscrowSlots > t.rec.EscrowQueued {
			ps := v.escrowPostingsLocked(t, t.rec.EscrowQueued, m.EscrowSlots)
			escrows = append(escrows, ps...)
			for _, p := range ps {
				bal[c] += p.Entries[0].Amount // negative: the consumer's side
			}
			// Posted in the same transaction as this task's record.
			t, q, p := t, t.rec.EscrowQueued, t.rec.EscrowPosted
			escrowUndo = append(escrowUndo, func() { t.rec.EscrowQueued, t.rec.EscrowPosted = q, p })
			t.rec.EscrowQueued, t.rec.EscrowPosted = m.EscrowSlots, m.EscrowSlots
		}
		v.unqueueLocked(t)
		if fresh && t.rec.SpotCheck && m.Verifier == nil && !m.VerifierPending {
			if err := m.RequestVerifier(); err == nil {
				v.queueSelfLocked(t)
			}
		}
		if d := m.Decide(); d.Kind == market.DecisionNeed && !d.Verifier {
			// Still short (a match was refused): try again next round.
			v.queued[t] = struct{}{}
			t.rec.WaitingSince = now
		}
		changed = append(changed, t)
	}

	var writes []write
	if len(escrows) > 0 {
		// The escrow and the records that account for it commit as one.
		writes = append(writes, write{posts: escrows, after: func(err error) {
			if err == nil {
				return
			}
			v.mu.Lock()
			defer v.mu.Unlock()
			for _, u := range escrowUndo {
				u()
			}
		}})
	}
	var recs []*assignmentRecord
	for _, b := range built {
		rec, err := v.sealAssignmentLocked(b, now)
		if err != nil {
			v.log.Error("sealing assignment", "worker", b.worker.String(), "err", err)
			v.failRefsLocked(b.worker, b.g, b.tasks, "verifier could not sign the assignment", &changed, &settled)
			continue
		}
		v.asgs[b.id] = rec
		recs = append(recs, rec)
		writes = append(writes, v.asgWrite(rec))
		v.log.Info("assignment", "assignment", rec.ID, "worker", rec.Worker, "group", rec.Group,
			"tasks", len(rec.Tasks), "price", b.price.String())
	}
	for _, t := range changed {
		writes = append(writes, v.taskWrites(t)...)
	}
	var pch <-chan error
	if len(writes) > 0 {
		pch = v.per.queue(writes...)
	}
	v.mu.Unlock()

	if pch != nil {
		if err := v.wait(ctx, pch); err != nil {
			if ctx.Err() == nil && v.ctx.Err() == nil {
				v.log.Error("persisting a scheduling round (records and escrow) failed; its assignments are not sent", "err", err)
				v.failAssignments(recs, "verifier could not persist the assignment or post its escrow: "+err.Error())
			}
			return
		}
	}
	v.postSettlements(settled)
	for _, rec := range recs {
		rec := rec
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			v.sendAssignment(v.ctx, rec)
		}()
	}
}

// noWorkersReason turns a selection error into the reason a waiting task
// shows (and fails with after the queue timeout).
func noWorkersReason(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "market: no eligible workers: ")
	s = strings.TrimPrefix(s, "market: ")
	return "no eligible workers: " + s
}

// waitLocked leaves t queued and records why it waits.
func (v *Verifier) waitLocked(t *taskState, now int64, why string) {
	if t.rec.WaitingSince == 0 {
		t.rec.WaitingSince = now
	}
	t.rec.WaitReason = why
}

func (v *Verifier) sealAssignmentLocked(b *building, now int64) (*assignmentRecord, error) {
	g := b.g
	asg := &protocol.Assignment{
		ID: b.id, Worker: b.worker, Consumer: g.consumer, ConsumerAddrs: g.rec.Addrs, Group: g.id,
		Module: g.module, ModuleSize: g.rec.ModuleSize, Price: b.price, TimeoutMillis: g.rec.TimeoutMillis,
		MaxMemory: g.rec.MaxMemory, Issued: now, Expires: now + v.cfg.AssignmentTTL.Milliseconds(), Tasks: b.tasks,
	}
	sealed, err := protocol.Seal(v.key, asg)
	if err != nil {
		return nil, err
	}
	rec := &assignmentRecord{ID: b.id.String(), Worker: b.worker.String(), Group: g.rec.ID,
		Issued: asg.Issued, Expires: asg.Expires, Sealed: sealed}
	for _, t := range b.tasks {
		rec.Tasks = append(rec.Tasks, taskRef{Index: t.Index, Replica: t.Replica})
	}
	return rec, nil
}

// sendAssignment delivers a persisted assignment. A refusal or an
// unreachable worker fails its replicas at once (re-replicated elsewhere,
// nobody charged).
func (v *Verifier) sendAssignment(ctx context.Context, rec *assignmentRecord) {
	// The record's sealed bytes are sent as they are: the verifier sealed
	// them itself (opening them again here would verify its own signature,
	// and sending the decoded assignment would sign it again, ~75 µs on
	// every task's path). The worker verifies them.
	worker, err := peer.Decode(rec.Worker)
	if err != nil {
		v.log.Error("stored assignment names no worker", "assignment", rec.ID, "err", err)
		v.failAssignments([]*assignmentRecord{rec}, "assignment corrupt")
		return
	}
	v.addWorkerAddrs(worker)
	var ack protocol.Ack
	var re *p2p.RemoteError
	for {
		rctx, cancel := context.WithTimeout(ctx, v.cfg.RequestTimeout)
		ack = protocol.Ack{}
		err = v.host.RequestSealed(rctx, worker, protocol.ProtoAssign, rec.Sealed, &ack)
		cancel()
		if ctx.Err() != nil {
			return // shutting down: resent after restart
		}
		// A busy worker is alive and will have room shortly: offer it the
		// same assignment again until it nears expiry, rather than failing
		// the replica (which would exclude the worker from these tasks).
		busy := (errors.As(err, &re) && re.Code == protocol.AckBusy) || (err == nil && !ack.OK && ack.Code == protocol.AckBusy)
		if !busy || v.nowMs()+2*busyRetry.Milliseconds() >= rec.Expires {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(busyRetry):
		}
	}
	switch {
	case err == nil && ack.OK:
	case errors.As(err, &re) && re.Code == protocol.AckReplay:
		// The worker already holds it (an earlier ack was lost).
	case err == nil:
		v.log.Warn("assignment refused", "assignment", rec.ID, "worker", rec.Worker, "code", ack.Code, "reason", ack.Error)
		v.failAssignments([]*assignmentRecord{rec}, fmt.Sprintf("worker refused the assignment: %s", ack.Error))
		return
	case errors.As(err, &re):
		v.log.Warn("assignment refused", "assignment", rec.ID, "worker", rec.Worker, "code", re.Code, "reason", re.Message)
		v.failAssignments([]*assignmentRecord{rec}, fmt.Sprintf("worker refused the assignment: %s", re.Message))
		return
	default:
		v.log.Warn("worker unreachable", "assignment", rec.ID, "worker", rec.Worker, "err", err)
		v.mu.Lock()
		if ws := v.workers[worker]; ws != nil {
			ws.unreachable = true
			v.book.Remove(rec.Worker)
		}
		v.mu.Unlock()
		v.failAssignments([]*assignmentRecord{rec}, fmt.Sprintf("worker unreachable: %v", err))
		return
	}
	v.stats.assignments.Add(1)
	v.mu.Lock()
	if !rec.Acked {
		rec.Acked = true
		if !rec.Done {
			// A key of its own: the (large) assignment record is not
			// rewritten for one flag.
			id, _ := protocol.ParseID(rec.ID)
			v.per.queue(write{ns: nsAck, key: string(id[:]), val: []byte{}})
		}
	}
	v.mu.Unlock()
}

// busyRetry is how long the verifier waits before offering an assignment
// again to a worker that answered it was busy.
const busyRetry = 200 * time.Millisecond

// failAssignments fails every still-running replica of recs (the worker
// never got them): not paid, not charged, re-replicated.
func (v *Verifier) failAssignments(recs []*assignmentRecord, reason string) {
	if len(recs) == 0 {
		return
	}
	v.stats.refused.Add(uint64(len(recs)))
	v.mu.Lock()
	var changed, settled []*taskState
	var writes []write
	for _, rec := range recs {
		id, err := protocol.ParseID(rec.ID)
		if err != nil {
			continue
		}
		if rec.Bench {
			v.benchFailedLocked(id, reason)
			continue
		}
		gid, _ := protocol.ParseID(rec.Group)
		g := v.groups[gid]
		wid := peerID(rec.Worker)
		if g != nil {
			for _, ref := range rec.Tasks {
				t := g.tasks[ref.Index]
				if !t.heldBy(ref.Replica, rec.ID) {
					continue
				}
				if t.rec.M.Runs[ref.Replica].State != market.ReplicaAssigned || t.rec.M.Settled {
					continue
				}
				if err := t.rec.M.Fail(wid.String(), reason); err != nil {
					continue
				}
				v.releaseLocked(wid.String(), t, v.nowMs())
				if v.advanceLocked(t, v.nowMs()) {
					settled = append(settled, t)
				}
				changed = append(changed, t)
			}
		}
		rec.Done = true
		delete(v.asgs, id)
		writes = append(writes, v.asgWrite(rec))
	}
	for _, t := range changed {
		writes = append(writes, v.taskWrites(t)...)
	}
	ch := v.per.queue(writes...)
	v.mu.Unlock()
	if err := v.wait(v.ctx, ch); err == nil {
		v.postSettlements(settled)
	}
	kick(v.kickSched)
}

// failRefsLocked fails replicas that were never put into an assignment.
func (v *Verifier) failRefsLocked(wid peer.ID, g *groupState, tasks []protocol.AssignedTask, reason string, changed, settled *[]*taskState) {
	for _, at := range tasks {
		t := g.tasks[at.Index]
		if t == nil || t.rec.M.Settled {
			continue
		}
		if err := t.rec.M.Fail(wid.String(), reason); err != nil {
			continue
		}
		v.releaseLocked(wid.String(), t, v.nowMs())
		if v.advanceLocked(t, v.nowMs()) {
			*settled = append(*settled, t)
		}
		*changed = append(*changed, t)
	}
}

// addWorkerAddrs tells the host where a worker listens (from its
// registration).
func (v *Verifier) addWorkerAddrs(id peer.ID) {
	v.mu.Lock()
	ws := v.workers[id]
	var addrs []string
	if ws != nil {
		addrs = ws.rec.Addrs
	}
	v.mu.Unlock()
	v.addAddrs(id, addrs)
}

func (v *Verifier) addAddrs(id peer.ID, addrs []string) {
	var mas []ma.Multiaddr
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			continue
		}
		if tr, pid := peer.SplitAddr(a); tr != nil && (pid == "" || pid == id) {
			mas = append(mas, tr)
		}
	}
	if len(mas) > 0 && id != "" {
		v.host.Libp2p().Peerstore().AddAddrs(id, mas, peerstore.AddressTTL)
	}
}

func peerID(s string) peer.ID {
	id, err := peer.Decode(s)
	if err != nil {
		return ""
	}
	return id
}
