package verifier

import (
	"encoding/json"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/protocol"
)

// Giving up on a consumer that never acknowledges its releases.
//
// Releases are retried with backoff. A group whose remaining tasks are
// all settled and posted, the newest of them settled at least
// ReleaseGiveUp ago, and whose releases have failed until the backoff
// reached ReleaseRetryMax, is given up on at its next retry: its tasks
// leave memory with their records unchanged (settled, their release not
// acknowledged: the money moved at settlement, so the ledger is
// untouched), an undelivered record (nsUndelivered) notes the give-up,
// and the group is closed. The clock is the settlement times in the task
// records, so it runs across restarts; the backoff condition means a
// group is never given up on by the first attempt after a restart.
//
// A submit of such a group by its consumer (the node sends one for every
// group with tasks still pending when it starts) loads those tasks back
// and releases them again; the group stays open until they are
// acknowledged or given up on again.

// nsUndelivered holds an undeliveredRecord by group ID for every closed
// group whose consumer never acknowledged some of its results.
const nsUndelivered = "v.undlv"

// undeliveredRecord notes that a group was given up on.
type undeliveredRecord struct {
	Consumer string `json:"consumer"`
	Tasks    int    `json:"tasks"`   // results never acknowledged
	Settled  int64  `json:"settled"` // unix ms: the newest of them was settled
	GaveUp   int64  `json:"gave_up"` // unix ms
}

// giveUpLocked gives up on g when its consumer has not acknowledged its
// releases for ReleaseGiveUp (see above) and returns the writes that
// record it; nil when g is kept.
func (v *Verifier) giveUpLocked(g *groupState, now int64) []write {
	if v.cfg.ReleaseGiveUp <= 0 || g.backoff < v.cfg.ReleaseRetryMax || len(g.tasks) == 0 {
		return nil
	}
	var newest int64
	for _, t := range g.tasks {
		if t.rec.Settlement == nil || !t.rec.Posted || t.rec.Released {
			return nil // still running, posting or being acknowledged
		}
		newest = max(newest, settledAt(t))
	}
	if time.Duration(now-newest)*time.Millisecond < v.cfg.ReleaseGiveUp {
		return nil
	}
	u := undeliveredRecord{Consumer: g.consumer.String(), Tasks: len(g.tasks), Settled: newest, GaveUp: now}
	// The undelivered record goes before the closed group: a crash in
	// between leaves the group open (loaded and retried at start).
	ws := []write{{ns: nsUndelivered, key: string(g.id[:]), val: mustJSON(&u)}}
	for i, t := range g.tasks {
		ws = append(ws, v.overWrites(t)...)
		delete(g.tasks, i)
		v.openTasks--
	}
	g.rec.Closed = true
	ws = append(ws, v.groupWrite(g))
	delete(v.groups, g.id)
	v.stats.releasesGivenUp.Add(1)
	v.stats.undelivered.Add(uint64(u.Tasks))
	v.log.Warn("consumer never acknowledged its results; giving up on delivering them (kept: a submit of the group releases them again)",
		"group", g.rec.ID, "consumer", u.Consumer, "tasks", u.Tasks,
		"unacknowledged_for", (time.Duration(now-newest) * time.Millisecond).Round(time.Second))
	return ws
}

// settledAt is when a settled task was decided.
func settledAt(t *taskState) int64 {
	if t.rec.Finished != 0 {
		return t.rec.Finished
	}
	return t.rec.Created
}

// resumeReleases is called for every submit, before it is checked: the
// consumer is evidently reachable. A group of its that is open and
// waiting to retry a release is retried at once; a closed group it was
// given up on gets its unacknowledged results back into memory and
// released again (whatever the submit's fate: a canceled group, or a
// consumer without funds, still gets its results). addrs are the
// consumer's addresses from the submit (where it is now).
func (v *Verifier) resumeReleases(group protocol.ID, consumer peer.ID, addrs []string) {
	v.mu.Lock()
	if g := v.groups[group]; g != nil {
		if g.consumer == consumer && g.retryAt > 0 {
			if len(addrs) > 0 {
				g.rec.Addrs = addrs
			}
			g.retryAt = 0
			v.mu.Unlock()
			kick(v.kickRelease)
			return
		}
		v.mu.Unlock()
		return
	}
	v.mu.Unlock()
	b, err := v.st.Get(nsUndelivered, group[:])
	if err != nil {
		return // not given up on (the usual case: one point read per submit)
	}
	var u undeliveredRecord
	if err := json.Unmarshal(b, &u); err != nil || u.Consumer != consumer.String() {
		return
	}
	gb, err := v.st.Get(nsGroup, group[:])
	if err != nil {
		return
	}
	var rec groupRecord
	if err := json.Unmarshal(gb, &rec); err != nil {
		return
	}
	g, err := groupFromRecord(rec)
	if err != nil {
		return
	}
	released, err := v.releasedTasks(group)
	if err != nil {
		v.log.Error("reading release markers", "group", rec.ID, "err", err)
		return
	}
	var tasks []*taskState
	err = v.st.Scan(nsTask, group[:], func(_, val []byte) error {
		var tr taskRecord
		if err := decodeTaskRecord(val, &tr); err != nil || tr.M == nil {
			return nil
		}
		if tr.Settlement != nil && tr.Posted && !tr.Released && !released[tr.Index] {
			tasks = append(tasks, &taskState{g: g, rec: tr})
		}
		return nil
	})
	if err != nil {
		v.log.Error("reading undelivered tasks", "group", rec.ID, "err", err)
		return
	}
	v.mu.Lock()
	if v.groups[group] != nil {
		v.mu.Unlock()
		return // reopened meanwhile
	}
	g.rec.Closed = false
	if len(addrs) > 0 {
		g.rec.Addrs = addrs
	}
	for _, t := range tasks {
		g.tasks[t.rec.Index] = t
		v.openTasks++
	}
	v.groups[group] = g
	// The open group goes before the record's removal: a crash in between
	// leaves the group open with a stale record (overwritten or removed
	// the next time).
	v.per.queue(v.groupWrite(g), write{ns: nsUndelivered, key: string(group[:])})
	v.mu.Unlock()
	v.stats.redelivered.Add(uint64(len(tasks)))
	v.log.Info("consumer is back; releasing the results it never acknowledged again", "group", rec.ID,
		"consumer", u.Consumer, "tasks", len(tasks), "gave_up", time.UnixMilli(u.GaveUp).UTC().Format(time.RFC3339))
	kick(v.kickRelease)
}

// undelivered returns the undelivered records of closed groups by group
// ID.
func (v *Verifier) undelivered() (map[string]undeliveredRecord, error) {
	out := map[string]undeliveredRecord{}
	err := v.st.Scan(nsUndelivered, nil, func(key, val []byte) error {
		var u undeliveredRecord
		if len(key) != len(protocol.ID{}) || json.Unmarshal(val, &u) != nil {
			return nil
		}
		var id protocol.ID
		copy(id[:], key)
		out[id.String()] = u
		return nil
	})
	return out, err
}
