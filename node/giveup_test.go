package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/aspen-market/aspen/node"
	"github.com/aspen-market/aspen/verifier"
)

// spinModule is a WASI command that counts to 1.5e9 and exits 0 without
// output (about a second).
var spinModule = []byte("\x00asm\x01\x00\x00\x00" +
	"\x01\x04\x01\x60\x00\x00" + // type 0: () -> ()
	"\x03\x02\x01\x00" + // one function of type 0
	"\x07\x0a\x01\x06_start\x00\x00" + // export _start
	"\x0a\x19\x01\x17\x01\x01\x7f" + // code: one i32 local
	"\x03\x40\x20\x00\x41\x01\x6a\x22\x00" + // loop: i = i + 1
	"\x41\x80\xde\xa0\xcb\x05\x49\x0d\x00\x0b\x0b") // br_if i < 1500000000

// The consumer's node is down while its group finishes; the verifier
// gives up on delivering the results. When the node starts again it asks
// for the group and gets them.
func TestNodeGetsResultsTheVerifierGaveUpOn(t *testing.T) {
	nw := startNetwork(t, func(c *verifier.Config) {
		c.ReleaseRetryMin, c.ReleaseRetryMax, c.ReleaseGiveUp = 50*time.Millisecond, 200*time.Millisecond, time.Second
	})
	nw.waitRated(t)
	ctx := context.Background()
	if err := nw.v.Credit(ctx, nw.consumer.ID(), 100_000_000); err != nil {
		t.Fatal(err)
	}
	spec := node.GroupSpec{Module: spinModule, Inputs: [][]byte{[]byte("warm")}, MaxPrice: 5_000_000, Replicas: 2, Timeout: time.Minute}
	// The workers fetch the module from the consumer once: after this
	// group they have it.
	warm, err := nw.consumer.SubmitGroup(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first group verified", 2*time.Minute, func() bool {
		g, err := nw.consumer.Group(warm)
		return err == nil && g.Done && g.Verified == 1
	})
	spec.Inputs = [][]byte{[]byte("a"), []byte("b")}
	id, err := nw.consumer.SubmitGroup(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	cfg := nw.nodeConfig("consumer", node.RoleConsumer)
	if err := nw.consumer.Close(); err != nil { // long before the jobs end
		t.Fatal(err)
	}
	waitFor(t, "the verifier giving up on the group", 2*time.Minute, func() bool { return nw.v.Stats().ReleasesGivenUp == 1 })
	if gi, err := nw.v.Group(id); err != nil || gi.Open || gi.Undelivered != 2 {
		t.Fatalf("verifier's view: %+v %v", gi, err)
	}

	n2 := startNode(t, cfg)
	waitFor(t, "the results after the node's restart", time.Minute, func() bool {
		g, err := n2.Group(id)
		return err == nil && g.Done
	})
	page, err := n2.ResultsSince(ctx, id, 0, 0, 0)
	if err != nil || len(page.Results) != 2 || !page.Done || page.Group.Verified != 2 {
		t.Fatalf("results: %+v %v", page, err)
	}
	// The group reserved finish numbers 1–2 durably at creation; after a
	// restart numbering resumes above them (numbers a client may have read
	// before a power loss are never reused).
	for _, r := range page.Results {
		if r.Seq <= 2 {
			t.Errorf("task %d numbered %d after the restart: numbering did not resume above the durable mark 2", r.Index, r.Seq)
		}
		if r.State != node.TaskVerified || r.Status != "ok" || r.Charged == 0 {
			t.Fatalf("result %+v", r)
		}
	}
	if st := nw.v.Stats(); st.TasksRedelivered != 2 {
		t.Fatalf("verifier stats: %+v", st)
	}
	waitFor(t, "the group closed on the verifier", 30*time.Second, func() bool {
		gi, err := nw.v.Group(id)
		return err == nil && !gi.Open && gi.Undelivered == 0
	})
}
