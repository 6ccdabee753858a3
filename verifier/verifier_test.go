package verifier

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/verifier/ledger"
)

// Prices used by the tests: 36/h makes 100 ms cost exactly 1000 micros.
const (
	workerPrice   protocol.Micros = 36_000_000
	consumerPrice protocol.Micros = 72_000_000
)

func workerInfo(t testing.TB, v *Verifier, w *testWorker) WorkerInfo {
	t.Helper()
	info, err := v.Worker(w.id)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func waitRated(t testing.TB, v *Verifier, ws ...*testWorker) {
	t.Helper()
	for _, w := range ws {
		waitFor(t, 60*time.Second, "worker rated", func() bool {
			return workerInfo(t, v, w).InBook && w.Rating() != nil
		})
	}
}

func TestRegistrationBenchmarkRating(t *testing.T) {
	v := startVerifier(t, testConfig(t, t.TempDir()), true)
	sb := workersSandbox
	w := startWorker(t, sb, v, "alice", workerPrice, workerBehaviour{})
	waitRated(t, v, w)
	r := w.Rating()
	info := workerInfo(t, v, w)
	if r.Speed != info.Speed || r.Speed == 0 {
		t.Fatalf("rating speed %v, verifier says %v", r.Speed, info.Speed)
	}
	// Both sides ran the same jobs on the same machine: the measured speed
	// must be in a plausible band around 1.0.
	if r.Speed < 100 || r.Speed > 10_000 {
		t.Fatalf("implausible speed %v from a real benchmark", r.Speed)
	}
	if r.Expires <= time.Now().UnixMilli() || r.Strikes != 0 || r.ReliabilityPPM != market.PPM {
		t.Fatalf("bad rating %+v", r)
	}
	if len(info.SpeedHistory) != 1 || info.SpeedHistory[0].Source != "benchmark" || info.Strikes != 0 {
		t.Fatalf("worker info %+v", info)
	}
	// Registering again returns the current rating at once.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w.mu.Lock()
	w.rating = nil
	w.mu.Unlock()
	if err := w.register(ctx); err != nil {
		t.Fatal(err)
	}
	if w.Rating() == nil {
		t.Fatal("re-registration did not return the rating")
	}
}

func TestWrongBenchmarkGetsStrikeAndNoRating(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.BenchmarkRetry = time.Hour
	v := startVerifier(t, cfg, false)
	sb := workersSandbox
	// A worker whose every result is wrong, benchmark included.
	w := startWorker(t, sb, v, "mallory", workerPrice, workerBehaviour{Wrong: true, WrongBench: true})
	waitFor(t, 60*time.Second, "benchmark judged", func() bool {
		info := workerInfo(t, v, w)
		return info.Strikes > 0 || info.Rated
	})
	info := workerInfo(t, v, w)
	if info.Rated || info.Strikes != 1 || w.Rating() != nil || info.InBook {
		t.Fatalf("wrong benchmark: %+v, rating %v", info, w.Rating())
	}
}

func credit(t testing.TB, v *Verifier, c *testConsumer, amount protocol.Micros) {
	t.Helper()
	if err := v.Credit(context.Background(), c.id, amount); err != nil {
		t.Fatal(err)
	}
}

func balance(t testing.TB, v *Verifier, acct string) protocol.Micros {
	t.Helper()
	b, err := v.Ledger().Balance(acct)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkLedger checks the ledger's invariants: total zero, consistent with
// its journal, nothing left in the consumer's escrow, and the consumer's
// spending equal to Σ worker pay + operator cut.
func checkLedger(t testing.TB, v *Verifier, c *testConsumer, credited protocol.Micros, workers ...*testWorker) (charged protocol.Micros) {
	t.Helper()
	led := v.Ledger()
	if tot, err := led.Total(); err != nil || tot != 0 {
		t.Fatalf("ledger total %v, %v", tot, err)
	}
	if err := led.Check(); err != nil {
		t.Fatalf("ledger check: %v", err)
	}
	if e := balance(t, v, acctEscrow(c.id.String())); e != 0 {
		t.Fatalf("escrow left: %v", e)
	}
	spent := credited - balance(t, v, acctConsumer(c.id.String()))
	var paid protocol.Micros
	for _, w := range workers {
		paid += balance(t, v, acctWorker(w.id.String()))
	}
	cut := balance(t, v, ledger.Operator)
	if spent != paid+cut {
		t.Fatalf("consumer spent %v, workers got %v, operator %v", spent, paid, cut)
	}
	return spent
}

func submitOK(t testing.TB, c *testConsumer, g groupSpec) protocol.ID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	gid, ack, err := c.submit(ctx, g)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	if !ack.OK || int(ack.Count) != len(g.inputs) {
		t.Fatalf("submit ack %+v", ack)
	}
	return gid
}

func defaultGroup(n int) groupSpec {
	return groupSpec{kernel: "primes", inputs: primesInputs(n), maxPrice: consumerPrice, minSpeed: 500, replicas: 2, timeout: 10 * time.Second}
}

// checkResumed checks a group of n tasks of price 2000 that a restarted
// (or crashed) verifier v finished: every task released verified and
// charged 2000, each settled exactly once, the ledger balanced with the
// consumer credited credited and n*2000 spent.
func checkResumed(t testing.TB, v *Verifier, c *testConsumer, gid protocol.ID, n int, credited protocol.Micros, workers ...*testWorker) {
	t.Helper()
	rel := waitReleased(t, c, gid, n)
	for i, r := range rel {
		if r.Outcome != protocol.OutcomeVerified || r.Charged != 2000 {
			t.Fatalf("task %d: %+v", i, r)
		}
	}
	js, err := v.Journal(ledgerFilterKind())
	if err != nil {
		t.Fatal(err)
	}
	settled := map[string]int{}
	for _, e := range js {
		if e.Kind == kindSettle {
			settled[e.ID]++
		}
	}
	if len(settled) != n {
		t.Fatalf("%d settlements for %d tasks", len(settled), n)
	}
	if spent := checkLedger(t, v, c, credited, workers...); spent != protocol.Micros(n*2000) {
		t.Fatalf("spent %v, want %v", spent, protocol.Micros(n*2000))
	}
}

func waitReleased(t testing.TB, c *testConsumer, gid protocol.ID, n int) map[uint32]protocol.Released {
	t.Helper()
	waitFor(t, 90*time.Second, "group released", func() bool { return len(c.releases(gid)) == n })
	return c.releases(gid)
}

func TestHonestGroupCompletesAndPaysEveryReplica(t *testing.T) {
	v := startVerifier(t, testConfig(t, t.TempDir()), false)
	sb := workersSandbox
	a := startWorker(t, sb, v, "alice", workerPrice, workerBehaviour{})
	b := startWorker(t, sb, v, "bob", workerPrice, workerBehaviour{})
	d := startWorker(t, sb, v, "dave", workerPrice, workerBehaviour{})
	waitRated(t, v, a, b, d)
	c := startConsumer(t, v)
	const credited = 10 * protocol.MicrosPerUnit
	credit(t, v, c, credited)
	g := defaultGroup(5)
	gid := submitOK(t, c, g)
	rel := waitReleased(t, c, gid, 5)
	for i, in := range g.inputs {
		want, out := expectedOutput(t, sb, "primes", in)
		r := rel[uint32(i)]
		if r.Outcome != protocol.OutcomeVerified || !r.Result.Equals(want) || r.Replicas != 2 || len(r.Holders) != 2 {
			t.Fatalf("task %d released %+v, want result %s", i, r, want)
		}
		if len(r.Inline) == 0 || protocol.VerifyBlob(r.Result, r.Inline) != nil {
			t.Fatalf("task %d: inline result missing or wrong", i)
		}
		got, _ := protocol.DecodeOutput(r.Inline)
		if string(got.Stdout) != string(out.Stdout) {
			t.Fatalf("task %d: stdout %q want %q", i, got.Stdout, out.Stdout)
		}
		// 2 replicas × 100 ms at 36/h.
		if r.Charged != 2000 {
			t.Fatalf("task %d charged %v, want 0.002", i, r.Charged)
		}
	}
	gi, err := v.Group(gid)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range gi.Tasks {
		if ti.State != "verified" || ti.Agreed != 2 || len(ti.Replicas) != 2 || ti.Strikes != 0 {
			t.Fatalf("task %+v", ti)
		}
		for _, r := range ti.Replicas {
			if r.Verdict != string(market.OutcomePaid) || r.Paid != 950 || r.Charged != 1000 {
				t.Fatalf("task %d replica %+v not paid in full", ti.Index, r)
			}
		}
		if ti.Refund != ti.Escrowed-ti.Charged || ti.OperatorCut != 100 {
			t.Fatalf("task %d money %+v", ti.Index, ti)
		}
	}
	spent := checkLedger(t, v, c, credited, a, b, d)
	if spent != 5*2000 {
		t.Fatalf("spent %v, want 0.01", spent)
	}
	if cut := balance(t, v, ledger.Operator); cut != 5*100 {
		t.Fatalf("operator cut %v", cut)
	}
	// Statements agree with the ledger.
	st, err := v.Statement(c.id)
	if err != nil {
		t.Fatal(err)
	}
	if st.Spent != spent || st.Balance != credited-spent || st.Escrow != 0 {
		t.Fatalf("consumer statement %+v", st)
	}
	ws, err := v.Statement(a.id)
	if err != nil {
		t.Fatal(err)
	}
	if ws.Earned != balance(t, v, acctWorker(a.id.String())) || ws.Pending != ws.Earned || len(ws.Rating) == 0 {
		t.Fatalf("worker statement %+v", ws)
	}
	// Statement over the wire, signed by the verifier.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wire protocol.Statement
	nonce := protocol.NewID()
	if err := c.host.Request(ctx, v.ID(), protocol.ProtoStatement, &protocol.StatementRequest{Peer: c.id, Nonce: nonce, Time: time.Now().UnixMilli()}, &wire); err != nil {
		t.Fatal(err)
	}
	if wire.Nonce != nonce || wire.Spent != spent {
		t.Fatalf("statement over the wire %+v", wire)
	}
	if c.dups != 0 {
		t.Fatalf("%d duplicate releases", c.dups)
	}
	if st := v.Stats(); st.TasksVerified != 5 || st.ReplicasAssigned != 10 || st.Strikes != 0 || st.BenchmarksPassed != 3 {
		t.Fatalf("stats %+v", st)
	}
	// Each worker's queue depth follows the busy slot time the verifier
	// observed per replica: jobs of a few ms fit many times in the 2 s
	// QueueTime (up to the cap of 64); a worker whose receipts were not
	// observed (its first of the module) or that ran no task keeps the
	// minimum depth.
	for _, w := range []*testWorker{a, b, d} {
		wi, err := v.Worker(w.id)
		if err != nil {
			t.Fatal(err)
		}
		lo, hi := int(wi.Slots)*4, int(wi.Slots)*4
		if real, _ := w.counts(); real > 0 {
			hi = int(wi.Slots) * 64
		}
		if wi.Capacity < lo || wi.Capacity > hi {
			t.Fatalf("worker %s capacity %d, want %d..%d", w.owner, wi.Capacity, lo, hi)
		}
	}
	// Submitting the same group again changes nothing.
	var again protocol.Ack
	if err := c.host.Request(ctx, v.ID(), protocol.ProtoSubmit, c.last, &again); err != nil || !again.OK || again.Count != 5 {
		t.Fatalf("re-submit: %+v %v", again, err)
	}
	if gi, err := v.Group(gid); err != nil || len(gi.Tasks) != 5 || gi.Counts["verified"] != 5 {
		t.Fatalf("group after re-submit: %+v %v", gi.Counts, err)
	}
	if s2 := checkLedger(t, v, c, credited, a, b, d); s2 != spent {
		t.Fatalf("re-submit charged %v more", s2-spent)
	}
}

func TestConsumerWithoutFundsIsRefused(t *testing.T) {
	v := startVerifier(t, testConfig(t, t.TempDir()), false)
	sb := workersSandbox
	a := startWorker(t, sb, v, "alice", workerPrice, workerBehaviour{})
	b := startWorker(t, sb, v, "bob", workerPrice, workerBehaviour{})
	waitRated(t, v, a, b)
	c := startConsumer(t, v)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, _, err := c.submit(ctx, defaultGroup(2))
	var re *p2p.RemoteError
	if !errors.As(err, &re) || re.Code != protocol.AckInsufficientFunds {
		t.Fatalf("submit without funds: %v", err)
	}
	// Funds for less than one task's escrow (2 × 72/h × 10 s = 0.4).
	credit(t, v, c, 399_999)
	_, _, err = c.submit(ctx, defaultGroup(2))
	if !errors.As(err, &re) || re.Code != protocol.AckInsufficientFunds {
		t.Fatalf("submit with too little: %v", err)
	}
	// Nobody asks so little.
	credit(t, v, c, protocol.MicrosPerUnit)
	g := defaultGroup(1)
	g.maxPrice = workerPrice - 1
	_, _, err = c.submit(ctx, g)
	if !errors.As(err, &re) || re.Code != protocol.AckNoWorkers {
		t.Fatalf("submit below every price: %v", err)
	}
	g = defaultGroup(1)
	g.replicas = 1
	_, _, err = c.submit(ctx, g)
	if !errors.As(err, &re) || re.Code != protocol.AckBadRequest {
		t.Fatalf("submit with one replica: %v", err)
	}
	// Nothing was escrowed or charged.
	if bal := balance(t, v, acctConsumer(c.id.String())); bal != protocol.MicrosPerUnit+399_999 {
		t.Fatalf("balance %v", bal)
	}
}

func ledgerFilterKind() ledger.JournalFilter { return ledger.JournalFilter{} }

// A benchmark assignment names the benchmark desk, not the verifier, as its
// consumer, and the desk serves its blobs: workers cannot tell benchmarks
// from real jobs by their consumer.
func TestBenchmarkComesFromTheDesk(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.APIAddr = ""
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if v.desk.ID() == v.ID() {
		t.Fatal("the benchmark desk shares the verifier's identity")
	}
	if got := deskListen([]string{"/ip4/127.0.0.1/tcp/7400", "/ip4/0.0.0.0/udp/7400/quic-v1"}); got[0] != "/ip4/127.0.0.1/tcp/0" || got[1] != "/ip4/0.0.0.0/udp/0/quic-v1" {
		t.Fatalf("deskListen = %v", got)
	}
}

func TestQueueDepthFollowsRunTimes(t *testing.T) {
	v := &Verifier{cfg: DefaultConfig()} // QueueTime 2 s, depth 4..64
	ws := &workerState{}
	if d := v.queueDepth(ws.execMicros); d != 4 {
		t.Fatalf("depth before any receipt %d, want 4", d)
	}
	for range 40 {
		ws.noteExec(1_000) // 1 ms jobs
	}
	if d := v.queueDepth(ws.execMicros); d != 64 {
		t.Fatalf("depth for 1 ms jobs %d, want the cap 64", d)
	}
	for range 80 {
		ws.noteExec(100_000) // 100 ms jobs
	}
	if d := v.queueDepth(ws.execMicros); d < 19 || d > 21 {
		t.Fatalf("depth for 100 ms jobs %d, want about 20", d)
	}
	ws.noteExec(3_600_000_000) // one hour-long job drags the average up at once
	if d := v.queueDepth(ws.execMicros); d != 4 {
		t.Fatalf("depth after a long job %d, want the floor 4", d)
	}
	ws.noteExec(0)
	if ws.execMicros < 1 {
		t.Fatal("average fell to zero")
	}
}
