package verifier

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
)

// A consumer that never acknowledges its releases: after ReleaseGiveUp
// (on the verifier's clock, moved forward by the test) its group is given
// up on, closed and out of memory, the money untouched; after a restart
// of the verifier, a submit of the group by the consumer brings the
// results back and they are released again.
func TestConsumerNeverAcknowledgingIsGivenUpOn(t *testing.T) {
	var skew atomic.Int64 // the verifier's clock runs this far ahead
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	cfg.ReleaseGiveUp = time.Hour
	v := startVerifier(t, cfg, false)
	port, err := v.Addrs()[0].ValueForProtocol(6) // tcp: restart on the same port
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/" + port}
	a := startWorker(t, workersSandbox, v, "alice", workerPrice, workerBehaviour{})
	b := startWorker(t, workersSandbox, v, "bob", workerPrice, workerBehaviour{})
	waitRated(t, v, a, b)
	c := startConsumer(t, v)
	var down atomic.Bool
	down.Store(true)
	var refused atomic.Int64
	c.host.Handle(protocol.ProtoRelease, func(ctx context.Context, from peer.ID, env *protocol.Envelope) (protocol.Message, error) {
		if down.Load() {
			refused.Add(1)
			return nil, p2p.Refuse(protocol.AckInternal, "disk full")
		}
		return c.handleRelease(ctx, from, env)
	})
	const credited = 10 * protocol.MicrosPerUnit
	credit(t, v, c, credited)
	const n = 3
	gid := submitOK(t, c, defaultGroup(n))

	// Settled and posted, its releases failing until the backoff is at its
	// longest: still kept, as ReleaseGiveUp has not passed.
	open := func(v *Verifier) (tasks int, backoff time.Duration, ok bool) {
		v.mu.Lock()
		defer v.mu.Unlock()
		g := v.groups[gid]
		if g == nil {
			return 0, 0, false
		}
		for _, t := range g.tasks {
			if t.rec.Settlement == nil || !t.rec.Posted {
				return 0, 0, true
			}
		}
		return len(g.tasks), g.backoff, true
	}
	waitFor(t, 90*time.Second, "releases failing at the longest backoff", func() bool {
		tasks, backoff, _ := open(v)
		return tasks == n && backoff == cfg.ReleaseRetryMax
	})
	seen := refused.Load()
	waitFor(t, 10*time.Second, "two more attempts", func() bool { return refused.Load() >= seen+2 })
	if tasks, _, ok := open(v); !ok || tasks != n {
		t.Fatalf("given up before ReleaseGiveUp: %d tasks open (%v)", tasks, ok)
	}
	spent := checkLedger(t, v, c, credited, a, b)
	if spent != n*2000 {
		t.Fatalf("spent %v", spent)
	}

	// ReleaseGiveUp later: given up on at the next retry.
	skew.Store(int64(cfg.ReleaseGiveUp + time.Minute))
	waitFor(t, 10*time.Second, "group given up on", func() bool { _, _, ok := open(v); return !ok })
	st := v.Stats()
	if st.ReleasesGivenUp != 1 || st.TasksUndelivered != n || st.Groups != 0 || st.OpenTasks != 0 {
		t.Fatalf("stats after giving up: %+v", st)
	}
	if got := checkLedger(t, v, c, credited, a, b); got != spent {
		t.Fatalf("giving up moved money: spent %v, was %v", got, spent)
	}
	if len(c.releases(gid)) != 0 {
		t.Fatal("released while the consumer was down")
	}
	// The operator sees it: in the list of all groups and in the group.
	var listed struct{ Groups []GroupInfo }
	req, _ := http.NewRequest("GET", "http://"+v.APIAddr()+"/v1/groups?all=1", nil)
	req.Header.Set("Authorization", "Bearer "+v.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&listed)
	resp.Body.Close()
	if err != nil || len(listed.Groups) != 1 || listed.Groups[0].Undelivered != n || listed.Groups[0].Open || listed.Groups[0].GaveUp == 0 {
		t.Fatalf("GET /v1/groups?all=1: %+v %v", listed, err)
	}
	gi, err := v.Group(gid)
	if err != nil || gi.Undelivered != n || gi.Counts["verified"] != n {
		t.Fatalf("group: %+v %v", gi, err)
	}
	for _, ti := range gi.Tasks {
		if !ti.Undelivered || ti.Released || ti.Charged != 2000 {
			t.Fatalf("task %+v", ti)
		}
	}

	// The verifier restarts (the group stays closed), then the consumer
	// comes back and submits the group again: its results go out.
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	v = startVerifier(t, cfg, false)
	if st := v.Stats(); st.Groups != 0 || st.OpenTasks != 0 {
		t.Fatalf("a given-up group was loaded at start: %+v", st)
	}
	down.Store(false)
	c.mu.Lock()
	sub := *c.last
	c.mu.Unlock()
	sub.Time = time.Now().UnixMilli()
	sub.Tasks = sub.Tasks[:1] // as the node asks: one of the group's tasks
	var ack protocol.Ack
	waitFor(t, 30*time.Second, "the group submitted again (the consumer redials the restarted verifier)", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := c.host.Request(ctx, v.ID(), protocol.ProtoSubmit, &sub, &ack)
		return err == nil
	})
	if !ack.OK || ack.Count != 1 {
		t.Fatalf("submit again: %+v", ack)
	}
	rel := waitReleased(t, c, gid, n)
	for i, r := range rel {
		if r.Outcome != protocol.OutcomeVerified || r.Charged != 2000 {
			t.Fatalf("task %d released again as %+v", i, r)
		}
	}
	waitFor(t, 10*time.Second, "group closed again", func() bool { return v.Stats().Groups == 0 })
	if st := v.Stats(); st.TasksRedelivered != n || st.OpenTasks != 0 {
		t.Fatalf("stats after the consumer came back: %+v", st)
	}
	if gi, err := v.Group(gid); err != nil || gi.Undelivered != 0 || gi.GaveUp != 0 || gi.Counts["verified"] != n {
		t.Fatalf("group after delivery: %+v %v", gi, err)
	}
	if got := checkLedger(t, v, c, credited, a, b); got != spent {
		t.Fatalf("releasing again moved money: spent %v, was %v", got, spent)
	}
}

func TestReleaseGiveUpConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	if cfg.ReleaseGiveUp != 7*24*time.Hour {
		t.Fatalf("default ReleaseGiveUp %v", cfg.ReleaseGiveUp)
	}
	for _, d := range []time.Duration{0, cfg.ReleaseRetryMax, 48 * time.Hour} {
		cfg.ReleaseGiveUp = d
		if err := cfg.Validate(); err != nil {
			t.Errorf("ReleaseGiveUp %v: %v", d, err)
		}
	}
	for _, d := range []time.Duration{-time.Second, cfg.ReleaseRetryMax - 1} {
		cfg.ReleaseGiveUp = d
		if err := cfg.Validate(); err == nil {
			t.Errorf("ReleaseGiveUp %v accepted", d)
		}
	}
}
