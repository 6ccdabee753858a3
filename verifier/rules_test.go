package verifier

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/protocol"
)

func TestWrongResultIsNeverReleasedAndStruck(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Market.StrikesToExclude = 10
	v := startVerifier(t, cfg, false)
	sb := workersSandbox
	a := startWorker(t, sb, v, "alice", workerPrice, workerBehaviour{})
	m := startWorker(t, sb, v, "mallory", workerPrice, workerBehaviour{Wrong: true})
	waitRated(t, v, a, m)
	c := startConsumer(t, v)
	const credited = 10 * protocol.MicrosPerUnit
	credit(t, v, c, credited)
	g := defaultGroup(3)
	gid := submitOK(t, c, g)
	rel := waitReleased(t, c, gid, 3)
	for i, in := range g.inputs {
		want, _ := expectedOutput(t, sb, "primes", in)
		r := rel[uint32(i)]
		if r.Outcome != protocol.OutcomeVerified || !r.Result.Equals(want) {
			t.Fatalf("task %d: released %+v, want %s", i, r, want)
		}
		if bytes.Contains(r.Inline, []byte("forged")) {
			t.Fatalf("task %d: forged result released", i)
		}
		for _, h := range r.Holders {
			if h == m.id {
				t.Fatalf("task %d: liar listed as holder", i)
			}
		}
	}
	gi, err := v.Group(gid)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range gi.Tasks {
		if !ti.VerifierRan || !ti.Trusted || ti.Strikes != 1 {
			t.Fatalf("task %d: %+v", ti.Index, ti)
		}
		for _, r := range ti.Replicas {
			switch r.Worker {
			case m.id.String():
				if r.Verdict != string(market.OutcomeWrong) || !r.Strike || r.Paid != 0 {
					t.Fatalf("liar's replica %+v", r)
				}
			case a.id.String():
				if r.Verdict != string(market.OutcomePaid) || r.Paid == 0 {
					t.Fatalf("honest replica %+v", r)
				}
			}
		}
	}
	mi := workerInfo(t, v, m)
	if mi.Strikes != 3 || mi.SpotChecks.Wrong != 3 || balance(t, v, acctWorker(m.id.String())) != 0 {
		t.Fatalf("liar %+v", mi)
	}
	if ai := workerInfo(t, v, a); ai.Strikes != 0 || ai.SpotChecks.Passed != 3 {
		t.Fatalf("honest worker %+v", ai)
	}
	// The liar's rating now carries its strikes.
	waitFor(t, 10*time.Second, "renewed rating with strikes", func() bool {
		r := m.Rating()
		return r != nil && r.Strikes == 3
	})
	checkLedger(t, v, c, credited, a, m)
}

func TestSlowWorkerIsNotPaid(t *testing.T) {
	v := startVerifier(t, testConfig(t, t.TempDir()), false)
	sb := workersSandbox
	a := startWorker(t, sb, v, "alice", workerPrice, workerBehaviour{})
	// Holds each real job 15 × 100 ms: its busy time, less the tests' 1 s
	// slack, is 5 × the work's 100 ms at its rating of 1.0.
	s := startWorker(t, sb, v, "sloth", workerPrice, workerBehaviour{Slow: 15})
	waitRated(t, v, a, s)
	if r := s.Rating(); r.Speed != 1000 {
		t.Fatalf("slow worker rated %v on its (honest) benchmark", r.Speed)
	}
	c := startConsumer(t, v)
	const credited = 10 * protocol.MicrosPerUnit
	credit(t, v, c, credited)
	// A first task: each worker's first receipt of the module is not
	// judged on time (its busy time held the module's fetch and compile).
	warm := submitOK(t, c, defaultGroup(1))
	waitReleased(t, c, warm, 1)
	warmPaid := balance(t, v, acctWorker(s.id.String()))
	gid := submitOK(t, c, groupSpec{kernel: "primes", inputs: primesInputs(3)[1:], maxPrice: consumerPrice, minSpeed: 500, replicas: 2, timeout: 10 * time.Second})
	rel := waitReleased(t, c, gid, 2)
	for i, r := range rel {
		// Only the honest replica is charged: 100 ms at 36/h.
		if r.Outcome != protocol.OutcomeVerified || r.Charged != 1000 {
			t.Fatalf("task %d: %+v", i, r)
		}
	}
	gi, err := v.Group(gid)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range gi.Tasks {
		for _, r := range ti.Replicas {
			switch r.Worker {
			case s.id.String():
				if r.Verdict != string(market.OutcomeTooSlow) || r.Paid != 0 || r.Strike {
					t.Fatalf("slow replica %+v", r)
				}
			case a.id.String():
				if r.Verdict != string(market.OutcomePaid) || r.Paid != 950 {
					t.Fatalf("honest replica %+v", r)
				}
			}
		}
		if ti.Refund != ti.Escrowed-1000 {
			t.Fatalf("task %d refund %v of escrow %v", ti.Index, ti.Refund, ti.Escrowed)
		}
	}
	if b := balance(t, v, acctWorker(s.id.String())); b != warmPaid {
		t.Fatalf("slow worker earned %v after its first task", b-warmPaid)
	}
	if si := workerInfo(t, v, s); si.SpeedMisses < 2 || si.Strikes != 0 { // 2, and its first task too when judged slow
		t.Fatalf("slow worker %+v", si)
	}
	spent := checkLedger(t, v, c, credited, a, s)
	if spent != 2*1000+1000+protocol.Micros(warmPaid/950*1000) {
		t.Fatalf("spent %v", spent)
	}
}

func TestVanishingWorkerIsReplaced(t *testing.T) {
	v := startVerifier(t, testConfig(t, t.TempDir()), false)
	sb := workersSandbox
	a := startWorker(t, sb, v, "alice", workerPrice, workerBehaviour{})
	x := startWorker(t, sb, v, "xavier", workerPrice, workerBehaviour{Vanish: true})
	waitRated(t, v, a, x)
	c := startConsumer(t, v)
	const credited = 10 * protocol.MicrosPerUnit
	credit(t, v, c, credited)
	// Only alice and xavier can take it: every task goes to both.
	gid := submitOK(t, c, defaultGroup(3))
	waitFor(t, 30*time.Second, "xavier accepted and vanished", func() bool { return x.vanished.Load() })
	// A third worker joins; xavier's replicas move to it once he is
	// found silent.
	b := startWorker(t, sb, v, "bob", workerPrice, workerBehaviour{})
	waitRated(t, v, b)
	rel := waitReleased(t, c, gid, 3)
	for i, r := range rel {
		if r.Outcome != protocol.OutcomeVerified || r.Charged != 2000 {
			t.Fatalf("task %d: %+v", i, r)
		}
		for _, h := range r.Holders {
			if h == x.id {
				t.Fatalf("vanished worker holds task %d", i)
			}
		}
	}
	gi, err := v.Group(gid)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range gi.Tasks {
		if ti.Agreed != 2 {
			t.Fatalf("task %d: %+v", ti.Index, ti)
		}
		for _, r := range ti.Replicas {
			if r.Worker == x.id.String() && (r.Verdict != string(market.OutcomeFailed) || r.Paid != 0) {
				t.Fatalf("vanished replica %+v", r)
			}
		}
	}
	if b := balance(t, v, acctWorker(x.id.String())); b != 0 {
		t.Fatalf("vanished worker earned %v", b)
	}
	xi := workerInfo(t, v, x)
	if xi.Failures != 3 || xi.Live || xi.InBook {
		t.Fatalf("vanished worker %+v", xi)
	}
	spent := checkLedger(t, v, c, credited, a, b, x)
	if spent != 3*2000 {
		t.Fatalf("spent %v", spent)
	}
}

// midGroup is a verifier closed in the middle of a group: three slow
// workers and a credited consumer used it, and cfg makes the next verifier
// listen on the same port so they find it again.
type midGroup struct {
	cfg      Config
	v1       *Verifier
	c        *testConsumer
	gid      protocol.ID
	workers  []*testWorker
	released int // tasks the consumer had been released when v1 closed
}

const (
	midGroupTasks  = 12
	midGroupCredit = 10 * protocol.MicrosPerUnit
)

// closeMidGroup starts a verifier on dir, runs a group of midGroupTasks
// through it until some tasks are released, and closes it.
func closeMidGroup(t *testing.T, dir string) midGroup {
	t.Helper()
	cfg := testConfig(t, dir)
	// Workers reconnect after the restart within a few seconds (libp2p
	// dial backoff); their replicas must not be failed meanwhile.
	cfg.RestartGrace = 15 * time.Second
	v1 := startVerifier(t, cfg, false)
	// Restart on the same port so workers and the consumer find it again.
	port, err := v1.Addrs()[0].ValueForProtocol(6) // tcp
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/" + port}
	slow := workerBehaviour{Delay: 150 * time.Millisecond}
	var ws []*testWorker
	for _, owner := range []string{"alice", "bob", "dave"} {
		ws = append(ws, startWorker(t, workersSandbox, v1, owner, workerPrice, slow))
	}
	waitRated(t, v1, ws...)
	c := startConsumer(t, v1)
	credit(t, v1, c, midGroupCredit)
	gid := submitOK(t, c, defaultGroup(midGroupTasks))
	waitFor(t, 90*time.Second, "some tasks released", func() bool { return len(c.releases(gid)) >= 2 })
	if err := v1.Close(); err != nil {
		t.Fatal(err)
	}
	mg := midGroup{cfg: cfg, v1: v1, c: c, gid: gid, workers: ws, released: len(c.releases(gid))}
	if mg.released == midGroupTasks {
		t.Fatal("the whole group finished before the restart; make the jobs slower")
	}
	return mg
}

func TestRestartMidGroupLosesNothing(t *testing.T) {
	mg := closeMidGroup(t, t.TempDir())
	v2 := startVerifier(t, mg.cfg, false)
	if v2.ID() != mg.v1.ID() {
		t.Fatal("identity changed across restart")
	}
	// Every task settled exactly once.
	checkResumed(t, v2, mg.c, mg.gid, midGroupTasks, midGroupCredit, mg.workers...)
	gi, err := v2.Group(mg.gid)
	if err != nil {
		t.Fatal(err)
	}
	if gi.Counts["verified"] != midGroupTasks || len(gi.Tasks) != midGroupTasks {
		t.Fatalf("group after restart %+v", gi.Counts)
	}
	t.Logf("%d of %d tasks released before the restart, %d duplicate releases", mg.released, midGroupTasks, mg.c.dups)
}

func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}

// A worker that answers "busy" is offered the assignment again, not
// excluded: with only two workers and two replicas per task, excluding it
// would leave every task short of a second worker.
func TestBusyWorkerIsRetriedNotExcluded(t *testing.T) {
	v := startVerifier(t, testConfig(t, t.TempDir()), false)
	sb := workersSandbox
	a := startWorker(t, sb, v, "alice", workerPrice, workerBehaviour{})
	b := startWorker(t, sb, v, "bob", workerPrice, workerBehaviour{BusyFirst: 2})
	waitRated(t, v, a, b)
	c := startConsumer(t, v)
	const credited = 10 * protocol.MicrosPerUnit
	credit(t, v, c, credited)
	gid := submitOK(t, c, defaultGroup(2))
	rel := waitReleased(t, c, gid, 2)
	for i, r := range rel {
		if r.Outcome != protocol.OutcomeVerified {
			t.Fatalf("task %d: %s %s", i, r.Outcome, r.Reason)
		}
	}
	if _, ran := b.counts(); ran == 0 {
		t.Fatal("the once-busy worker never ran a task")
	}
	checkLedger(t, v, c, credited, a, b)
}
