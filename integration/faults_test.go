package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aspen-market/aspen/client"
	"github.com/aspen-market/aspen/market"
)

// Faults: kill -9 of a worker mid-task, of the consumer mid-group and of
// the verifier mid-settlement, each restarted on the same data directory;
// a worker frozen (cut off) past the heartbeat timeout that comes back.

// metric reads one unlabelled gauge from a node's /metrics.
func metric(nd *nodeProc, name string) float64 {
	req, _ := http.NewRequest("GET", "http://"+nd.apiAddr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+nd.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

// holder waits until one of the honest workers has accepted (persisted) a
// replica of the group that it has not finished yet (it is running or
// queued on it), and returns that worker and the replica's task index.
func (n *network) holder(t *testing.T, gid string) (*nodeProc, uint32) {
	t.Helper()
	var victim *nodeProc
	var index uint32
	waitFor(t, time.Minute, "a worker running a task of "+gid, func() (bool, error) {
		vg, err := n.v.group(gid)
		if err != nil {
			return false, err
		}
		for _, ti := range vg.Tasks {
			for _, rp := range ti.Replicas {
				if rp.State != string(market.ReplicaAssigned) {
					continue
				}
				for _, w := range []*nodeProc{n.h1, n.h2, n.h3} {
					if w.id.String() != rp.Worker {
						continue
					}
					jobs, err := w.client().Jobs(context.Background(), 0)
					if err != nil {
						return false, err
					}
					done := false
					for _, j := range jobs {
						if j.Group == gid && j.Index == ti.Index {
							done = true
						}
					}
					if !done && metric(w, "aspen_node_held_replicas") > 0 {
						victim, index = w, ti.Index
						return true, nil
					}
				}
			}
		}
		return false, nil
	})
	return victim, index
}

// replicaStates counts a worker's replicas of a group by state and how
// many were paid.
func replicaStates(v verdict, id string) (states map[string]int, paid int) {
	states = map[string]int{}
	for _, ti := range v.vg.Tasks {
		for _, rp := range ti.Replicas {
			if rp.Worker == id {
				states[rp.State]++
				if rp.Verdict == string(market.OutcomePaid) {
					paid++
				}
			}
		}
	}
	return
}

func scKillWorker(t *testing.T, n *network, r *row) {
	j := hashchainJob(4, 150_000, priceAll)
	gid := n.submit(t, j)
	victim, _ := n.holder(t, gid)
	victim.kill()
	victim.start()
	n.waitDone(t, gid, 3*time.Minute)
	v := n.judge(t, gid, j)
	n.fill(r, v)
	if v.verified != v.tasks || v.wrongAccepted != 0 {
		t.Errorf("verified %d/%d, %d wrong", v.verified, v.tasks, v.wrongAccepted)
	}
	st, paid := replicaStates(v, victim.id.String())
	resumed := strings.Count(victim.output(), "resumed assignment")
	r.Outcome = fmt.Sprintf("%s killed -9 holding accepted replicas, restarted on its data dir: resumed %d assignment(s) from its store; its replicas %v, %d paid; all %d verified",
		victim.label, resumed, st, paid, v.verified)
}

func scFreezeWorker(t *testing.T, n *network, r *row) {
	j := hashchainJob(3, 150_000, priceAll)
	gid := n.submit(t, j)
	victim, index := n.holder(t, gid)
	victim.freeze()
	waitFor(t, time.Minute, victim.label+" failed for silence", func() (bool, error) {
		vg, err := n.v.group(gid)
		if err != nil {
			return false, err
		}
		for _, ti := range vg.Tasks {
			for _, rp := range ti.Replicas {
				if rp.Worker == victim.id.String() && rp.State == string(market.ReplicaFailed) {
					return true, nil
				}
			}
		}
		return false, nil
	})
	n.waitDone(t, gid, 3*time.Minute)
	victim.thaw()
	// It comes back and reports what it ran: the late receipts are ignored.
	// The replica it held when frozen enters its job history once the
	// verifier has acknowledged that receipt. (Waiting for that replica,
	// rather than for the history to grow past a count read after the
	// thaw, does not race with a receipt sent the moment it resumes.)
	waitFor(t, time.Minute, victim.label+" back and reporting", func() (bool, error) {
		wi, ok := n.v.worker(victim.id)
		if !ok || !wi.Live {
			return false, nil
		}
		jobs, err := victim.client().Jobs(context.Background(), 0)
		if err != nil {
			return false, err
		}
		for _, jr := range jobs {
			if jr.Group == gid && jr.Index == index {
				return true, nil
			}
		}
		return false, nil
	})
	v := n.judge(t, gid, j)
	n.fill(r, v)
	st, paid := replicaStates(v, victim.id.String())
	if v.verified != v.tasks || v.wrongAccepted != 0 {
		t.Errorf("verified %d/%d, %d wrong", v.verified, v.tasks, v.wrongAccepted)
	}
	if st[string(market.ReplicaFailed)] == 0 {
		t.Errorf("%s's replicas %v: none failed", victim.label, st)
	}
	r.Outcome = fmt.Sprintf("%s frozen (SIGSTOP) past the 5 s heartbeat timeout: replicas %v, re-run elsewhere; thawed, its late receipts ignored (%d paid); it serves again",
		victim.label, st, paid)
}

func scKillConsumer(t *testing.T, n *network, r *row) {
	j := hashchainJob(4, 100_000, priceAll)
	gid := n.submit(t, j)
	waitFor(t, 2*time.Minute, "the first task verified", func() (bool, error) {
		vg, err := n.v.group(gid)
		return err == nil && vg.Counts["verified"] >= 1, err
	})
	vg0, _ := n.v.group(gid)
	n.c.kill()
	killedAt := time.Now()
	waitFor(t, 3*time.Minute, "the verifier to finish the group without the consumer", func() (bool, error) {
		vg, err := n.v.group(gid)
		return err == nil && vg.Counts["verified"]+vg.Counts["failed"] == len(j.inputs), err
	})
	down := time.Since(killedAt)
	n.c.start()
	n.waitDone(t, gid, 2*time.Minute)
	v := n.judge(t, gid, j)
	n.fill(r, v)
	if v.verified != v.tasks || v.wrongAccepted != 0 {
		t.Errorf("verified %d/%d, %d wrong", v.verified, v.tasks, v.wrongAccepted)
	}
	// The CLI reads the results back after the restart.
	res, err := n.c.client().Results(context.Background(), gid, 0, 0)
	if err != nil || len(res) != len(j.inputs) {
		t.Errorf("results after restart: %d, %v", len(res), err)
	}
	for _, x := range res {
		if x.State != client.StateVerified {
			t.Errorf("task %d %s", x.Index, x.State)
		}
	}
	during := len(j.inputs) - vg0.Counts["verified"]
	if during == 0 {
		t.Errorf("every task was verified before the consumer was killed")
	}
	r.Outcome = fmt.Sprintf("consumer killed -9 after its first result; %d of %d tasks verified while it was down (%v); restarted on its data dir: releases redelivered, all %d results in order",
		during, len(j.inputs), down.Round(100*time.Millisecond), v.verified)
}

func scKillVerifier(t *testing.T, n *network, r *row) {
	j := primesJob(24, 2_000_000, priceAll)
	gid := n.submit(t, j)
	kills := 0
	for _, at := range []int{2, 10} {
		waitFor(t, 2*time.Minute, fmt.Sprintf("%d tasks settled", at), func() (bool, error) {
			vg, err := n.v.group(gid)
			return err == nil && vg.Counts["verified"] >= at, err
		})
		vg, _ := n.v.group(gid)
		if vg.Counts["verified"] >= len(j.inputs) {
			break
		}
		n.v.restart(true)
		kills++
	}
	n.waitDone(t, gid, 3*time.Minute)
	v := n.judge(t, gid, j)
	n.fill(r, v)
	if v.verified != v.tasks || v.wrongAccepted != 0 {
		t.Errorf("verified %d/%d, %d wrong", v.verified, v.tasks, v.wrongAccepted)
	}
	if kills == 0 {
		t.Errorf("the group finished before the verifier could be killed")
	}
	r.Outcome = fmt.Sprintf("verifier killed -9 %d times while receipts were being settled, restarted on its data dir: all %d verified, each settled once",
		kills, v.verified)
}
