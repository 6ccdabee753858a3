package verifier

import "slices"

// The time the verifier observes a worker spend on its replicas, the only
// time that judges its speed and rates it (docs/market.md §3, §10): each
// worker's held replicas are kept in the order they were assigned; the
// first Slots of them are in one of its slots, each from the moment it was
// assigned into a free slot or an older replica's release freed one. A
// worker that runs its replicas in order (the node does) is then observed
// exactly, up to the network; one that runs more at once than its slots
// has the extra ones unobserved (not judged on time, not rated).

// heldReplica is one replica a worker holds: of task t, in a slot since
// slot (unix ms) once inSlot.
type heldReplica struct {
	t      *taskState
	slot   int64
	inSlot bool
}

// holdLocked notes that worker w was given a replica of t at now.
func (v *Verifier) holdLocked(w string, t *taskState, now int64) {
	ws := v.workers[peerID(w)]
	if ws == nil {
		return
	}
	h := heldReplica{t: t}
	if ws.inSlots < max(int(ws.rec.Slots), 1) {
		h.slot, h.inSlot = now, true
		ws.inSlots++
	}
	ws.held = append(ws.held, h)
}

// releaseLocked gives back worker w's replica of t (reported, failed,
// timed out or dropped) at now: the book's reservation and its place in
// the worker's slots, which the oldest waiting replica takes.
func (v *Verifier) releaseLocked(w string, t *taskState, now int64) {
	v.book.Release(w)
	ws := v.workers[peerID(w)]
	if ws == nil {
		return
	}
	i := slices.IndexFunc(ws.held, func(h heldReplica) bool { return h.t == t })
	if i < 0 {
		return
	}
	freed := ws.held[i].inSlot
	ws.held = slices.Delete(ws.held, i, i+1)
	if !freed {
		return
	}
	ws.inSlots--
	for j := range ws.held {
		if !ws.held[j].inSlot {
			ws.held[j].slot, ws.held[j].inSlot = now, true
			ws.inSlots++
			break
		}
	}
}

// busyLocked is the busy slot time, in µs up to now, the verifier observed
// the worker spend on the replicas of ts: the time each of them that is in
// a slot has been there, counted from since at the earliest (the first
// receipt of their module, before which the worker was fetching and
// compiling it). For a receipt of several results from one slot, the
// first holds the slot since the batch began and the others took it only
// as each was released, so the sum is the slot's time on the batch.
func (v *Verifier) busyLocked(ws *workerState, ts []*taskState, since, now int64) int64 {
	var busy int64
	for _, h := range ws.held {
		if from := max(h.slot, since); h.inSlot && now > from && slices.Contains(ts, h.t) {
			busy += (now - from) * 1000
		}
	}
	return busy
}
