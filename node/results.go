package node

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/store"
)

// A group's results are read either in finish order with a cursor
// (GET /v1/groups/{id}/results?since=CURSOR[&limit=N][&wait=D]: only what
// finished after the cursor, optionally waiting for it) or in input order
// (?from=INDEX&limit=N, without since: every task, finished or not).
//
// The cursor is a finish number. Every task that becomes final (verified,
// failed, canceled) gets the group's next finish number in the same
// transaction that records its final state, with an index entry (nsDone:
// group + number → task index), so the order survives a restart and a
// cursor stays valid. Numbers are handed out before that transaction
// commits and transactions may complete out of order, so readers only see
// numbers up to the group's visible mark: every number up to it has
// committed (or was abandoned by a failed commit and left unused). A
// cursor is always a number that was read, so it never names a gap.
//
// A release is readable once committed, before it is synced. So that a
// power loss cannot take a number a client has read and give it to another
// task, numbers are reserved durably per group (nsFinMark, consumer.go):
// one beyond the reservation becomes readable only with the fsync that
// raises it, and after a restart numbering resumes above it.

// Limits of a results request.
const (
	// MaxResultsWait is the longest a results request waits for a task to
	// finish; longer waits are shortened to it.
	MaxResultsWait = time.Minute
	// MaxResultsLimit is the most results in one answer; larger limits
	// are lowered to it.
	MaxResultsLimit     = 10000
	defaultResultsLimit = 1000
	// maxResultsBytes bounds the outputs (stdout and stderr) in one
	// answer of the cursor form; a larger first result is sent alone.
	maxResultsBytes = 8 << 20
)

// finishSeq hands out a group's finish numbers and tracks which are
// readable. Its methods run under consumer.mu.
type finishSeq struct {
	last     uint32          // last number handed out
	visible  uint32          // every number ≤ visible is committed or abandoned
	resolved map[uint32]bool // committed or abandoned numbers above visible+1
	notify   chan struct{}   // closed (and replaced) when visible advances
}

func newFinishSeq(last uint32) finishSeq {
	return finishSeq{last: last, visible: last, notify: make(chan struct{})}
}

// reserve hands out n numbers and returns the first.
func (f *finishSeq) reserve(n int) uint32 {
	first := f.last + 1
	f.last += uint32(n)
	return first
}

// resolve marks n numbers from first as committed or abandoned, advances
// the visible mark as far as every number below it is resolved, and wakes
// the waiters when it moved.
func (f *finishSeq) resolve(first uint32, n int) {
	if n <= 0 {
		return
	}
	end := first + uint32(n-1)
	before := f.visible
	if first == f.visible+1 {
		f.visible = end
	} else {
		if f.resolved == nil {
			f.resolved = map[uint32]bool{}
		}
		for s := first; ; s++ {
			f.resolved[s] = true
			if s == end {
				break
			}
		}
	}
	for f.resolved[f.visible+1] {
		delete(f.resolved, f.visible+1)
		f.visible++
	}
	if f.visible != before {
		close(f.notify)
		f.notify = make(chan struct{})
	}
}

// inflight reports whether numbers were handed out that are not readable
// yet.
func (f *finishSeq) inflight() bool { return f.last != f.visible }

// numberFinished gives final tasks without a finish number (finished
// before numbers existed) the numbers after last, in input order, and
// returns the new last number.
func (c *consumer) numberFinished(id protocol.ID, last uint32, ts []TaskRecord) (uint32, error) {
	for start := 0; start < len(ts); start += 1000 {
		batch := ts[start:min(start+1000, len(ts))]
		for i := range batch {
			last++
			batch[i].Seq = last
		}
		if err := c.n.store.Durable(c.n.ctx, func(tx *store.Tx) error { return putTasks(tx, id, batch) }); err != nil {
			return 0, fmt.Errorf("node: numbering finished tasks: %w", err)
		}
	}
	return last, nil
}

// ResultsPage answers a results request of the cursor form.
type ResultsPage struct {
	// Results are tasks in the order they finished (each with its Seq).
	Results []TaskResult `json:"results"`
	// Next is the cursor to pass as since to get what finished after
	// these (the request's own cursor when there are none).
	Next string `json:"next"`
	// More: more results have finished already (the answer was full).
	More bool `json:"more"`
	// Done: every task of the group is final and listed up to Next;
	// nothing will follow.
	Done bool `json:"done"`
	// Group is the group's progress when the answer was made.
	Group GroupStatus `json:"group"`
}

// resultsQuery is a results request of the cursor form.
type resultsQuery struct {
	since uint32
	limit int
	wait  time.Duration
}

// parseResultsQuery reads since (required: a cursor, 0 for the start),
// limit and wait. A cursor must be written exactly as the node wrote it
// (a decimal number without sign or leading zeros).
func parseResultsQuery(q url.Values) (resultsQuery, error) {
	rq := resultsQuery{limit: defaultResultsLimit}
	one := func(name string) (string, error) {
		vs := q[name]
		if len(vs) > 1 {
			return "", fmt.Errorf("%w: %s given %d times", ErrBadRequest, name, len(vs))
		}
		if len(vs) == 0 {
			return "", nil
		}
		return vs[0], nil
	}
	s, err := one("since")
	if err != nil {
		return rq, err
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || strconv.FormatUint(v, 10) != s {
		return rq, fmt.Errorf("%w: since=%q is not a results cursor (want the \"next\" of an earlier answer, or 0 for the first results)",
			ErrBadRequest, clip(s))
	}
	rq.since = uint32(v)
	if s, err = one("limit"); err != nil {
		return rq, err
	}
	if s != "" {
		l, err := strconv.ParseUint(s, 10, 64)
		if err != nil || l == 0 {
			return rq, fmt.Errorf("%w: limit=%q (want 1 to %d)", ErrBadRequest, clip(s), MaxResultsLimit)
		}
		rq.limit = int(min(l, MaxResultsLimit))
	}
	if s, err = one("wait"); err != nil {
		return rq, err
	}
	if s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return rq, fmt.Errorf("%w: wait=%q (want a duration such as 30s, at most %s)", ErrBadRequest, clip(s), MaxResultsWait)
		}
		rq.wait = min(d, MaxResultsWait)
	}
	return rq, nil
}

// clip shortens a query value quoted back in an error.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func (n *Node) apiResults(w http.ResponseWriter, r *http.Request) {
	id, ok := n.groupID(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	if !q.Has("since") {
		n.apiResultsByIndex(w, q, id)
		return
	}
	rq, err := parseResultsQuery(q)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	page, err := n.ResultsSince(r.Context(), id, rq.since, rq.limit, rq.wait)
	if err != nil {
		writeErr(w, errCode(err), err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// ResultsSince returns up to limit results of a group that finished after
// the cursor since (0: from the first), in the order they finished. When
// none has and wait > 0, it waits up to wait for one (or for ctx or the
// node to end) before answering with none. A cursor beyond the group's
// latest result is refused with ErrBadRequest.
func (n *Node) ResultsSince(ctx context.Context, id protocol.ID, since uint32, limit int, wait time.Duration) (ResultsPage, error) {
	c := n.c
	if c == nil {
		return ResultsPage{}, ErrNotConsumer
	}
	if limit <= 0 || limit > MaxResultsLimit {
		limit = defaultResultsLimit
	}
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	waiting := false
	defer func() {
		if waiting {
			c.waiting.Add(-1)
		}
	}()
	for {
		c.mu.Lock()
		gs := c.groups[id]
		if gs == nil {
			c.mu.Unlock()
			return ResultsPage{}, ErrUnknownGroup
		}
		visible, notify, st := gs.fin.visible, gs.fin.notify, gs.status()
		complete := st.Done
		c.mu.Unlock()
		if since > visible {
			return ResultsPage{}, fmt.Errorf("%w: cursor %d is beyond this group's latest result (%d)", ErrBadRequest, since, visible)
		}
		page, err := n.readFinished(id, since, visible, limit)
		if err != nil {
			return ResultsPage{}, err
		}
		page.Group = st
		page.Done = complete && !page.More
		if len(page.Results) > 0 || complete || timeout == nil {
			return page, nil
		}
		if !waiting {
			waiting = true
			c.waiting.Add(1)
		}
		select {
		case <-notify:
		case <-timeout:
			return page, nil
		case <-n.ctx.Done():
			return page, nil
		case <-ctx.Done():
			return ResultsPage{}, ctx.Err()
		}
	}
}

// readFinished reads the results numbered since+1 .. visible, at most
// limit of them and about maxResultsBytes of output.
func (n *Node) readFinished(id protocol.ID, since, visible uint32, limit int) (ResultsPage, error) {
	page := ResultsPage{Results: []TaskResult{}, Next: strconv.FormatUint(uint64(since), 10)}
	if since >= visible {
		return page, nil
	}
	type entry struct{ seq, index uint32 }
	var es []entry
	err := n.store.View(func(tx *store.Tx) error {
		return tx.ScanWith(nsDone, store.ScanOptions{Prefix: id[:], Start: doneKey(id, since+1)}, func(k, v []byte) error {
			if len(k) != 20 || len(v) != 4 {
				return fmt.Errorf("node: corrupt finish index entry %x", k)
			}
			seq := binary.BigEndian.Uint32(k[16:])
			if seq > visible {
				return store.ErrStop
			}
			if len(es) == limit {
				page.More = true
				return store.ErrStop
			}
			es = append(es, entry{seq, binary.BigEndian.Uint32(v)})
			return nil
		})
	})
	if err != nil {
		return page, err
	}
	bytes := 0
	for i, e := range es {
		b, err := n.store.Get(nsTask, taskKey(id, e.index))
		if err != nil {
			return page, fmt.Errorf("node: task %d (finished %d): %w", e.index, e.seq, err)
		}
		var t TaskRecord
		if err := json.Unmarshal(b, &t); err != nil {
			return page, fmt.Errorf("node: task %d: %w", e.index, err)
		}
		tr, err := n.taskResult(id, t)
		if err != nil {
			return page, fmt.Errorf("node: result of task %d: %w", e.index, err)
		}
		tr.Seq = e.seq
		bytes += len(tr.Stdout) + len(tr.Stderr)
		if i > 0 && bytes > maxResultsBytes {
			page.More = true
			break
		}
		page.Results = append(page.Results, tr)
		page.Next = strconv.FormatUint(uint64(e.seq), 10)
	}
	return page, nil
}

// TaskResult is one entry of GET /v1/groups/{id}/results: a task's state
// and, when verified, its output.
type TaskResult struct {
	Index    uint32          `json:"index"`
	Seq      uint32          `json:"seq,omitempty"` // finish number (0: not final)
	State    string          `json:"state"`
	Reason   string          `json:"reason,omitempty"`
	Status   string          `json:"status,omitempty"`
	ExitCode uint32          `json:"exit_code"`
	Message  string          `json:"message,omitempty"`
	Stdout   []byte          `json:"stdout,omitempty"`
	Stderr   []byte          `json:"stderr,omitempty"`
	Result   string          `json:"result,omitempty"`
	Charged  protocol.Micros `json:"charged"`
}

// taskResult is a task as the results endpoint shows it; a verified
// task's output is read from the store (an error when it cannot be).
func (n *Node) taskResult(id protocol.ID, t TaskRecord) (TaskResult, error) {
	tr := TaskResult{Index: t.Index, Seq: t.Seq, State: t.State, Reason: t.Reason, Charged: t.Charged, Result: t.Result}
	if t.State != TaskVerified {
		return tr, nil
	}
	o, _, err := n.Result(id, t.Index)
	if err != nil {
		return tr, err
	}
	tr.Status, tr.ExitCode, tr.Message, tr.Stdout, tr.Stderr = o.Status.String(), o.ExitCode, o.Message, o.Stdout, o.Stderr
	return tr, nil
}

// apiResultsByIndex answers the input-order form: every task from index
// from, finished or not (the dashboard's view of a group).
func (n *Node) apiResultsByIndex(w http.ResponseWriter, q url.Values, id protocol.ID) {
	from, _ := strconv.ParseUint(q.Get("from"), 10, 32)
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 || limit > MaxResultsLimit {
		limit = defaultResultsLimit
	}
	ts, err := n.tasksFrom(id, uint32(from), limit)
	if err != nil {
		writeErr(w, errCode(err), err)
		return
	}
	out := []TaskResult{}
	for _, t := range ts {
		tr, err := n.taskResult(id, t)
		if err != nil {
			tr.State, tr.Reason = TaskFetching, err.Error()
		}
		out = append(out, tr)
	}
	writeJSON(w, http.StatusOK, out)
}

// tasksFrom returns up to limit tasks of a group from input index from,
// in input order.
func (n *Node) tasksFrom(id protocol.ID, from uint32, limit int) ([]TaskRecord, error) {
	if _, err := n.Group(id); err != nil {
		return nil, err
	}
	var out []TaskRecord
	err := n.store.View(func(tx *store.Tx) error {
		return tx.ScanWith(nsTask, store.ScanOptions{Prefix: id[:], Start: taskKey(id, from)}, func(_, val []byte) error {
			if len(out) == limit {
				return store.ErrStop
			}
			var t TaskRecord
			if err := json.Unmarshal(val, &t); err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	return out, err
}
