package verifier

import (
	"context"
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
)

// handleReceipt takes a worker's results for one assignment: only from
// the assignment's worker, only for replicas of that assignment, only the
// first receipt of each replica. Results are fed to the market; verified
// tasks are settled and released; the receipt is acknowledged once the
// tasks are durable. The ack carries the worker's current rating.
func (v *Verifier) handleReceipt(ctx context.Context, from peer.ID, env *protocol.Envelope) (protocol.Message, error) {
	var rc protocol.Receipt
	if err := env.Decode(&rc); err != nil {
		return nil, p2p.Refuse(protocol.AckBadRequest, "%v", err)
	}
	if env.Signer != from || rc.Worker != from {
		return nil, p2p.Refuse(protocol.AckUnauthorized, "receipt signed by %s for worker %s", env.Signer, rc.Worker)
	}
	v.stats.receipts.Add(1)
	now := v.nowMs()
	v.mu.Lock()
	ws := v.workers[from]
	if ws != nil {
		v.seenLocked(ws, now)
	}
	a := v.asgs[rc.Assignment]
	if a == nil {
		rating := v.ratingFor(ws)
		v.mu.Unlock()
		if ws != nil && v.knownAssignment(rc.Assignment) {
			// A replay for a finished assignment: acknowledge, ignore.
			return &protocol.Ack{Ref: rc.Assignment, OK: true, Data: rating}, nil
		}
		return nil, p2p.Refuse(protocol.AckUnknown, "unknown assignment %s", rc.Assignment)
	}
	if a.Worker != from.String() {
		v.mu.Unlock()
		return nil, p2p.Refuse(protocol.AckUnauthorized, "assignment %s is not yours", rc.Assignment)
	}
	if a.Group != rc.Group.String() {
		v.mu.Unlock()
		return nil, p2p.Refuse(protocol.AckBadRequest, "assignment %s is for group %s", rc.Assignment, a.Group)
	}
	if a.Bench {
		return v.benchReceiptLocked(ctx, ws, a, &rc, now) // unlocks
	}
	g := v.groups[rc.Group]
	inAsg := map[taskRef]bool{}
	for _, r := range a.Tasks {
		inAsg[r] = true
	}
	bound := v.receiptBounds(ws, a, &rc, now)
	var busy int64
	if ws != nil && g != nil {
		var ts []*taskState
		for i := range rc.Results {
			if t := g.tasks[rc.Results[i].Index]; t != nil {
				ts = append(ts, t)
			}
		}
		// Before its first receipt of the module the worker was fetching
		// and compiling it: not a measure of its speed.
		busy = v.busyLocked(ws, ts, ws.moduleSinceLocked(g.module, now), now)
	}
	slot := slotShares(busy, rc.Results)
	var changed, settled []*taskState
	seen := map[*taskState]bool{}
	for i := range rc.Results {
		res := &rc.Results[i]
		ref := taskRef{Index: res.Index, Replica: res.Replica}
		if !inAsg[ref] {
			v.log.Warn("receipt for a replica not in its assignment", "worker", from.String(), "assignment", a.ID,
				"task", res.Index, "replica", res.Replica)
			continue
		}
		if g == nil {
			continue
		}
		t := g.tasks[res.Index]
		if !t.heldBy(res.Replica, a.ID) {
			continue // released long ago
		}
		run := t.rec.M.Runs[res.Replica]
		if run.Worker != from.String() || run.State != market.ReplicaAssigned || t.rec.M.Settled {
			continue // not the first receipt: ignored
		}
		if err := v.recordResultLocked(t, from, res, bound(res), slot(res), now); err != nil {
			v.log.Warn("receipt result refused", "worker", from.String(), "group", t.rec.Group, "task", res.Index, "err", err)
			continue
		}
		if share := slot(res); ws != nil && share > 0 && busy > 0 {
			ws.noteExec(uint64(share)) // the queue depth follows observed busy time, not reports
		}
		if !seen[t] {
			seen[t] = true
			changed = append(changed, t)
		}
	}
	if ws != nil {
		v.updateBookLocked(ws, now) // the queue depth follows the run times
	}
	for _, t := range changed {
		if v.advanceLocked(t, now) {
			settled = append(settled, t)
		}
	}
	var writes []write
	for _, t := range changed {
		writes = append(writes, v.taskWrites(t)...)
	}
	if ws != nil && ws.dirty {
		ws.dirty = false
		writes = append(writes, v.workerWrite(ws))
	}
	rating := v.ratingFor(ws)
	ch := v.per.queue(writes...)
	v.mu.Unlock()
	if err := v.persistThenSettle(ctx, ch, settled); err != nil {
		return nil, p2p.Refuse(protocol.AckInternal, "persist: %v", err)
	}
	return &protocol.Ack{Ref: rc.Assignment, OK: true, Count: uint32(len(changed)), Data: rating}, nil
}

// receiptBounds returns, for each result of rc, the longest run time the
// verifier can believe (market.Receipt.WindowMicros): the window it
// observed between issuing the assignment and receiving the receipt, plus
// one millisecond for its clock's resolution. The results of one receipt
// ran on at most the worker's registered slots at once, so together they
// must fit in slots × window: when their claims add up to more, each
// result's bound is its proportional share of slots × window, which is
// below its claim, and every claim of the receipt is refused as
// impossible.
func (v *Verifier) receiptBounds(ws *workerState, a *assignmentRecord, rc *protocol.Receipt, now int64) func(*protocol.TaskResult) int64 {
	window := max(now-a.Issued, 0)*1000 + 1000
	slots := int64(1)
	if ws != nil {
		slots = int64(max(ws.rec.Slots, 1))
	}
	var claimed uint64
	for i := range rc.Results {
		claimed += min(rc.Results[i].ExecMicros, 1<<40)
	}
	capacity := uint64(window) * uint64(min(slots, int64(len(rc.Results))))
	if claimed <= capacity {
		return func(*protocol.TaskResult) int64 { return window }
	}
	v.log.Warn("receipt claims more run time than its window holds", "worker", a.Worker, "assignment", a.ID,
		"claimed_us", claimed, "window_us", window, "slots", slots)
	return func(res *protocol.TaskResult) int64 {
		share := int64(market.MulDiv(min(res.ExecMicros, 1<<40), capacity, claimed))
		return max(min(share, int64(min(res.ExecMicros, 1<<40))-1), 1)
	}
}

// slotShares splits the busy slot time the verifier observed behind a
// receipt (µs, market.Book.BusyFor) over its results in proportion to
// their metered work (evenly when none reports work): each replica's share
// is the time it is judged and rated on (market.Receipt.SlotMicros).
func slotShares(slot int64, results []protocol.TaskResult) func(*protocol.TaskResult) int64 {
	var total uint64
	for i := range results {
		total += min(results[i].Work, 1<<50)
	}
	return func(res *protocol.TaskResult) int64 {
		if total == 0 {
			return slot / int64(max(len(results), 1))
		}
		return int64(min(market.MulDiv(uint64(max(slot, 0)), min(res.Work, 1<<50), total), 1<<62))
	}
}

// recordResultLocked feeds one replica's result to the market, with the
// run time the verifier can believe for it (receiptBounds) and its share
// of the observed busy slot time (slotShares).
func (v *Verifier) recordResultLocked(t *taskState, worker peer.ID, res *protocol.TaskResult, window, slot int64, now int64) error {
	w := worker.String()
	info := &t.rec.Replicas[res.Replica]
	if len(res.Inline) > 0 {
		if err := protocol.VerifyBlob(res.Result, res.Inline); err != nil {
			return v.failReplicaLocked(t, w, fmt.Sprintf("inline result does not match its CID: %v", err))
		}
		out, err := protocol.DecodeOutput(res.Inline)
		if err != nil {
			return v.failReplicaLocked(t, w, fmt.Sprintf("inline result does not decode: %v", err))
		}
		if out.Status != res.Status || out.ExitCode != res.ExitCode {
			return v.failReplicaLocked(t, w, "receipt status differs from its output")
		}
	}
	info.Status, info.ExitCode, info.Size, info.ExecMicros, info.Work = res.Status, res.ExitCode, res.ResultSize, res.ExecMicros, res.Work
	if res.Result.Defined() {
		info.Result = res.Result.String()
	}
	info.Inline = res.Inline
	switch {
	case res.Status == protocol.StatusFetchFailed:
		return v.failReplicaLocked(t, w, "worker could not fetch the job's blobs")
	case !res.Result.Defined() && res.Status != protocol.StatusTimeout:
		return v.failReplicaLocked(t, w, "receipt without a result")
	}
	rc := market.Receipt{ExitCode: int32(res.ExitCode), Work: res.Work, ExecMicros: int64(min(res.ExecMicros, 1<<62)),
		WindowMicros: window, SlotMicros: slot}
	if res.Status == protocol.StatusTimeout {
		rc.Stopped = true
	} else {
		rc.ResultCID = res.Result.String()
	}
	if err := t.rec.M.Receipt(w, rc, now); err != nil {
		return err
	}
	v.releaseLocked(w, t, now)
	v.log.Debug("replica reported", "worker", w, "group", t.rec.Group, "task", t.rec.Index, "replica", res.Replica,
		"status", res.Status.String(), "result", info.Result, "work", res.Work, "exec_us", res.ExecMicros, "window_us", window)
	return nil
}

// failReplicaLocked fails a running replica (not paid, not charged).
func (v *Verifier) failReplicaLocked(t *taskState, worker, reason string) error {
	if err := t.rec.M.Fail(worker, reason); err != nil {
		return err
	}
	v.releaseLocked(worker, t, v.nowMs())
	v.log.Warn("replica failed", "worker", worker, "group", t.rec.Group, "task", t.rec.Index, "reason", reason)
	return nil
}

// knownAssignment reports whether an assignment was ever issued.
func (v *Verifier) knownAssignment(id protocol.ID) bool {
	_, err := v.st.Get(nsAssign, id[:])
	return err == nil
}

func mustCID(s string) cid.Cid {
	c, err := cid.Decode(s)
	if err != nil {
		return cid.Undef
	}
	return c
}
