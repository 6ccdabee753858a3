package node

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/store"
)

func TestFinishSeqVisibleOnlyWhenContiguous(t *testing.T) {
	f := newFinishSeq(5)
	a := f.reserve(2) // 6, 7
	b := f.reserve(1) // 8
	c := f.reserve(3) // 9..11
	if a != 6 || b != 8 || c != 9 || !f.inflight() {
		t.Fatalf("reserved %d %d %d", a, b, c)
	}
	n0 := f.notify
	f.resolve(c, 3) // committed first, but 6..8 are not: nothing readable yet
	if f.visible != 5 || f.notify != n0 {
		t.Fatalf("visible %d after an out-of-order commit", f.visible)
	}
	f.resolve(a, 2)
	if f.visible != 7 {
		t.Fatalf("visible %d, want 7", f.visible)
	}
	select {
	case <-n0:
	default:
		t.Fatal("waiters not woken")
	}
	n1 := f.notify
	f.resolve(b, 1) // abandoned or committed: 8 closes the gap up to 11
	if f.visible != 11 || f.inflight() || len(f.resolved) != 0 {
		t.Fatalf("visible %d, resolved %v", f.visible, f.resolved)
	}
	select {
	case <-n1:
	default:
		t.Fatal("waiters not woken")
	}
	f.resolve(f.reserve(0), 0) // nothing to do
	if f.visible != 11 || f.notify == n1 {
		t.Fatalf("visible %d", f.visible)
	}
}

func FuzzResultsQuery(f *testing.F) {
	for _, s := range []string{"since=0", "since=12&limit=5&wait=30s", "since=007", "since=-1", "since=4294967295&wait=2h",
		"since=1&since=2", "since=3&limit=0", "since=3&limit=99999999999999999999", "since=%20", "wait=1s", "since=1&wait=-0s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		rq, err := parseResultsQuery(q)
		if err != nil {
			return
		}
		// Anything accepted is the one canonical spelling of a cursor, a
		// limit in range and a wait in range.
		if s := q.Get("since"); strconv.FormatUint(uint64(rq.since), 10) != s || len(q["since"]) != 1 {
			t.Fatalf("%q accepted as cursor %d", s, rq.since)
		}
		if rq.limit < 1 || rq.limit > MaxResultsLimit {
			t.Fatalf("limit %d from %q", rq.limit, raw)
		}
		if rq.wait < 0 || rq.wait > MaxResultsWait || (q.Get("wait") == "" && rq.wait != 0) {
			t.Fatalf("wait %v from %q", rq.wait, raw)
		}
		if w := q.Get("wait"); w != "" {
			if d, err := time.ParseDuration(w); err != nil || min(d, MaxResultsWait) != rq.wait {
				t.Fatalf("wait %v from %q", rq.wait, w)
			}
		}
	})
}

// A data directory written before finish numbers existed: final tasks
// without a number get one at start, after the numbered ones, in input
// order, and the cursor reads them.
func TestLoadNumbersFinishedTasks(t *testing.T) {
	scfg := store.DefaultConfig()
	scfg.Dir = t.TempDir()
	st, err := store.Open(scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	id := protocol.NewID()
	g := GroupRecord{ID: id.String(), Tasks: 5, Submitted: 5}
	ts := []TaskRecord{
		{Index: 0, State: TaskFailed, Reason: "no eligible workers"},
		{Index: 1, State: TaskPending},
		{Index: 2, State: TaskCanceled, Seq: 1}, // numbered already (with its index entry)
		{Index: 3, State: TaskFailed, Reason: "refused"},
		{Index: 4, State: TaskFetching},
	}
	err = st.Durable(ctx, func(tx *store.Tx) error {
		if err := tx.Put(nsGroup, id[:], mustJSON(g)); err != nil {
			return err
		}
		return putTasks(tx, id, ts)
	})
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{store: st, ctx: ctx}
	c := newConsumer(n)
	n.c = c
	if _, refetch, pending, err := c.load(); err != nil || len(refetch) != 1 || len(pending) != 1 || pending[0] != id {
		t.Fatalf("load: %v, refetch %v, pending %v", err, refetch, pending)
	}
	page, err := n.ResultsSince(ctx, id, 0, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range page.Results {
		got = append(got, fmt.Sprintf("%d:%d:%s", r.Seq, r.Index, r.State))
	}
	if fmt.Sprint(got) != "[1:2:canceled 2:0:failed 3:3:failed]" || page.Next != "3" || page.Done || page.More {
		t.Fatalf("after load: %v next %s done %v", got, page.Next, page.Done)
	}
	// Numbering is persisted: loading again changes nothing.
	c2 := newConsumer(n)
	n.c = c2
	if _, _, _, err := c2.load(); err != nil {
		t.Fatal(err)
	}
	if page, err = n.ResultsSince(ctx, id, 1, 10, 0); err != nil || len(page.Results) != 2 || page.Results[0].Index != 0 {
		t.Fatalf("second load: %+v %v", page, err)
	}
	// A wait on a running group ends with the node.
	cancel()
	if page, err = n.ResultsSince(context.Background(), id, 3, 10, time.Minute); err != nil || len(page.Results) != 0 || page.Next != "3" {
		t.Fatalf("wait at shutdown: %+v %v", page, err)
	}
}
