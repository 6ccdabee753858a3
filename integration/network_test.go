package integration

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"math/bits"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/client"
	"github.com/aspen-market/aspen/examples"
	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/sandbox"
	"github.com/aspen-market/aspen/verifier"
)

// The network every scenario runs on: a verifier process, three honest
// worker processes and a consumer process, all on loopback with their own
// data directories. Prices place them in tiers so that a scenario decides
// which workers a job group may use through its max price:
//
//	tier 0.50: nobody but the scenario's own workers (colluding ring)
//	tier 1.00: h1 and the scenario's adversarial worker(s)
//	tier 2.00: h1, h2, h3 (crash and partition scenarios)
const (
	priceRing  = "0.50"
	priceCheap = "1.00"
	priceAll   = "2.00"
	credit     = "1000"
)

// settings are the verifier's: a secret 25% spot-check rate, tie-breaks by
// the verifier, a 5 s heartbeat timeout, small benchmarks, and the
// production speed rule (15% tolerance, 10 ms of slack): every timing
// cheat is judged as it would be in production.
var settings = verifierSettings{
	SpotCheckRate:    "0.25",
	OperatorCut:      "0.05",
	SpeedTolerance:   "0.15",
	SpeedSlack:       "10ms",
	HeartbeatTimeout: "5s",
	MaxExtraReplicas: 4,
	StrikesToExclude: 3,
	VerifierTiebreak: true,
	VerifierSlots:    1,
	BenchmarkKernel:  "hashchain",
	BenchmarkWork:    30000,
	BenchmarkTasks:   3,
	QueueTimeout:     "10s",
	RestartGrace:     "2s",
	QueueDepth:       16,
}

const (
	spotRatePPM  = 250_000
	tolerancePPM = 150_000 // settings.SpeedTolerance
	slackMicros  = 10_000  // settings.SpeedSlack
	// maxSpeed is the verifier's market.Config.MaxSpeed (its default):
	// a receipt implying more is impossible.
	maxSpeed protocol.Speed = 100_000
	// minSpeed is every test group's min speed: the lowest rating
	// (market.Config.MinRatedSpeed), so that any rated worker may take
	// its tasks. Honest worker processes run their jobs at nice 19 on a
	// machine shared with other builds and are rated on the busy time the
	// verifier observes, replica overheads included: ratings of 0.2–0.7
	// are normal here, and the node's default min speed (0.25) would
	// refuse some of them (README, findings).
	minSpeed = "0.1"
)

type network struct {
	t           testing.TB
	dir         string
	v           *verifierProc
	h1, h2, h3  *nodeProc
	c           *nodeProc
	honestProcs []*nodeProc

	mu     sync.Mutex
	labels map[string]string // peer ID → label, for the report
	// Replicas of the honest worker processes judged by the speed rule
	// or refused, and how many of them were too slow or refused.
	honest honestPay
}

// honestPay counts the honest worker processes' judged replicas (paid,
// too slow or refused) and the ones not paid, with the evidence of each
// one not paid.
type honestPay struct {
	judged, tooSlow, refused int
	// tooSlowOwn of the too slow were judged against their own rating
	// (a replica of the task met its rating); the others against the
	// best replica (none did).
	tooSlowOwn int
	notes      []string
	// overhead is each judged replica's busy slot time beyond the run
	// time it reported, µs (transfer, dispatch, reporting): what the
	// verifier observes that the sandbox did not run.
	overhead []int64
}

// overheads summarises the busy time beyond the run time: median and
// 90th percentile, ms.
func (h honestPay) overheads() string {
	if len(h.overhead) == 0 {
		return "none observed"
	}
	o := slices.Clone(h.overhead)
	slices.Sort(o)
	return fmt.Sprintf("median %.0f ms, 90th percentile %.0f ms", float64(o[len(o)/2])/1000, float64(o[len(o)*9/10])/1000)
}

func (h honestPay) fraction() string {
	if h.judged == 0 {
		return "0/0"
	}
	return fmt.Sprintf("%d/%d (%.2f%%)", h.tooSlow+h.refused, h.judged, 100*float64(h.tooSlow+h.refused)/float64(h.judged))
}

// tooMany: more than 1% of the judged replicas were refused pay.
func (h honestPay) tooMany() bool { return 100*(h.tooSlow+h.refused) > h.judged }

func startNetwork(t testing.TB) *network {
	t.Helper()
	return startNetworkIn(t, "net", settings)
}

// startNetworkIn starts the network in tmpRoot/name with the verifier's
// settings set.
func startNetworkIn(t testing.TB, name string, set verifierSettings) *network {
	t.Helper()
	start := time.Now()
	dir := filepath.Join(tmpRoot, name)
	n := &network{t: t, dir: dir, labels: map[string]string{}}
	n.v = startVerifier(t, filepath.Join(dir, "verifier"), set)
	n.label(n.v.id, "verifier")
	n.h1 = startNode(t, filepath.Join(dir, "h1"), "h1", n.v, nodeOpts{role: "worker", minPrice: priceCheap, owner: "owner-h1", slots: 1})
	n.h2 = startNode(t, filepath.Join(dir, "h2"), "h2", n.v, nodeOpts{role: "worker", minPrice: priceAll, owner: "owner-h2", slots: 1})
	n.h3 = startNode(t, filepath.Join(dir, "h3"), "h3", n.v, nodeOpts{role: "worker", minPrice: priceAll, owner: "owner-h3", slots: 1})
	n.c = startNode(t, filepath.Join(dir, "consumer"), "consumer", n.v, nodeOpts{role: "consumer"})
	n.honestProcs = []*nodeProc{n.h1, n.h2, n.h3, n.c}
	for _, p := range n.honestProcs {
		n.label(p.id, p.label)
	}
	n.waitWorkersLive(t, 90*time.Second)
	n.v.credit(t, n.c.id, credit)
	t.Logf("network up in %s: verifier %s, workers h1 h2 h3, consumer", time.Since(start).Round(time.Millisecond), n.v.addr())
	return n
}

func (n *network) label(id peer.ID, l string) {
	n.mu.Lock()
	n.labels[id.String()] = l
	n.mu.Unlock()
}

func (n *network) name(id string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if l, ok := n.labels[id]; ok {
		return l
	}
	if len(id) > 8 {
		return "…" + id[len(id)-6:]
	}
	return id
}

// waitWorkersLive waits until the verifier rates the honest workers and
// holds their offers as live.
func (n *network) waitWorkersLive(t testing.TB, d time.Duration) {
	t.Helper()
	waitFor(t, d, "h1, h2, h3 rated and live", func() (bool, error) {
		for _, w := range []*nodeProc{n.h1, n.h2, n.h3} {
			wi, ok := n.v.worker(w.id)
			if !ok || !wi.Rated || !wi.InBook || !wi.Live {
				return false, nil
			}
		}
		return true, nil
	})
}

// waitRated waits until the verifier has rated an adversarial worker.
func (n *network) waitRated(t testing.TB, ws ...*evilWorker) {
	t.Helper()
	for _, w := range ws {
		waitFor(t, 90*time.Second, w.label+" rated", func() (bool, error) {
			wi, ok := n.v.worker(w.id)
			return ok && wi.Rated && wi.InBook && w.rated() != nil, nil
		})
	}
}

func (n *network) evil(t testing.TB, label, owner, price string, b behaviour) *evilWorker {
	t.Helper()
	p, err := protocol.ParseAmount(price)
	if err != nil {
		t.Fatal(err)
	}
	w := startEvil(t, label, n.v.addrInfo(), n.v.desk(), owner, p, 1, b)
	n.label(w.id, label)
	return w
}

// ---- job groups ----

type job struct {
	module    []byte
	inputs    [][]byte
	maxPrice  string
	timeout   string
	maxMemory uint64
}

func (j job) tasks() int { return len(j.inputs) }

func primesJob(n, width int, price string) job {
	j := job{module: mustModule("primes"), maxPrice: price, timeout: "1m"}
	for i := range n {
		lo := 1_000_000 + i*width
		j.inputs = append(j.inputs, fmt.Appendf(nil, "%d %d", lo, lo+width))
	}
	return j
}

func hashchainJob(n, rounds int, price string) job {
	j := job{module: mustModule("hashchain"), maxPrice: price, timeout: "1m"}
	for i := range n {
		j.inputs = append(j.inputs, fmt.Appendf(nil, "%d\ninput-%d-%d", rounds, i, time.Now().UnixNano()))
	}
	return j
}

func mustModule(name string) []byte {
	m, err := examples.Module(name)
	if err != nil {
		panic(err)
	}
	return m
}

// submit uploads the module and submits the group through the consumer's
// HTTP API; it returns the group's ID.
func (n *network) submit(t testing.TB, j job) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := n.c.client()
	mod, err := cl.PutBlob(ctx, j.module)
	if err != nil {
		t.Fatalf("upload module: %v", err)
	}
	req := client.SubmitRequest{Name: t.Name(), Module: mod, MaxPrice: j.maxPrice, MinSpeed: minSpeed, Replicas: 2, Timeout: j.timeout, MaxMemory: j.maxMemory}
	for _, in := range j.inputs {
		req.Inputs = append(req.Inputs, client.Input{Data: in})
	}
	resp, err := cl.Submit(ctx, req)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return resp.ID
}

// waitDone waits until every task of the group is final on the consumer
// (verified, failed or canceled) and the verifier has released them all.
func (n *network) waitDone(t testing.TB, gid string, d time.Duration) {
	t.Helper()
	waitFor(t, d, "group "+gid+" done", func() (bool, error) { return n.done(gid) })
}

// done: every task of the group is final on the consumer and the verifier
// has closed the group.
func (n *network) done(gid string) (bool, error) {
	g, err := n.c.client().Group(context.Background(), gid)
	if err != nil || !g.Done {
		return false, err
	}
	vg, err := n.v.group(gid)
	if err != nil {
		return false, err
	}
	return !vg.Open, nil
}

// verdict is how a group ended, from both sides.
type verdict struct {
	tasks         int
	verified      int
	failed        int
	lost          int // accepted but neither verified, failed nor canceled
	wrongAccepted int // verified on the consumer with a result that is not the true one
	wrongIdx      []int
	results       []client.TaskResult
	vg            verifier.GroupInfo
	spent         protocol.Micros
}

var (
	expMu    sync.Mutex
	expected = map[string]truthRun{}
)

// truthRun is a job's true outcome: its output and metered work.
type truthRun struct {
	out  protocol.Output
	work uint64
}

// truth runs a job in the test's own sandbox: the true output.
func truth(t testing.TB, module, input []byte, timeout time.Duration, maxMem uint64) protocol.Output {
	t.Helper()
	return truthOf(t, module, input, timeout, maxMem).out
}

// truthOf runs a job in the test's own sandbox (once per job): the true
// output and the work every honest replica must report.
func truthOf(t testing.TB, module, input []byte, timeout time.Duration, maxMem uint64) truthRun {
	t.Helper()
	mc := protocol.BlobCID(module).String()
	key := mc + "/" + protocol.BlobCID(input).String() + fmt.Sprintf("/%d/%d", maxMem, timeout.Milliseconds())
	expMu.Lock()
	tr, ok := expected[key]
	expMu.Unlock()
	if ok {
		return tr
	}
	r, err := sharedSandbox(t).Run(context.Background(), sandbox.Job{ModuleID: mc, Module: module, Input: input, Timeout: protocol.WallClockFactor * timeout,
		MaxMemory: maxMem, WorkBudget: protocol.WorkBudget(uint64(timeout.Milliseconds()))})
	if err != nil {
		t.Fatalf("reference run: %v", err)
	}
	tr = truthRun{out: r.Output(), work: r.Work}
	expMu.Lock()
	expected[key] = tr
	expMu.Unlock()
	return tr
}

// judge compares what the consumer holds with the truth and with the
// verifier's view, and checks the money of the group.
func (n *network) judge(t testing.TB, gid string, j job) verdict {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := n.c.client()
	rs, err := cl.Results(ctx, gid, 0, 0)
	if err != nil {
		t.Fatalf("results: %v", err)
	}
	g, err := cl.Group(ctx, gid)
	if err != nil {
		t.Fatal(err)
	}
	vg, err := n.v.group(gid)
	if err != nil {
		t.Fatalf("verifier group: %v", err)
	}
	v := verdict{tasks: len(j.inputs), results: rs, vg: vg, spent: g.Spent}
	if len(rs) != len(j.inputs) {
		t.Errorf("consumer lists %d results for %d inputs", len(rs), len(j.inputs))
	}
	tmo := time.Minute
	if d, err := time.ParseDuration(j.timeout); err == nil {
		tmo = d
	}
	vt := map[uint32]verifier.TaskInfo{}
	for _, ti := range vg.Tasks {
		vt[ti.Index] = ti
	}
	for _, r := range rs {
		switch r.State {
		case client.StateVerified:
			v.verified++
			tr := truthOf(t, j.module, j.inputs[r.Index], tmo, j.maxMemory)
			want := tr.out
			if want.Status == protocol.StatusTimeout {
				break // not deterministic: nothing to compare
			}
			wantCID := protocol.BlobCID(protocol.EncodeOutput(&want)).String()
			ti := vt[r.Index]
			if r.Result != wantCID || string(r.Stdout) != string(want.Stdout) || ti.Work != tr.work {
				v.wrongAccepted++
				v.wrongIdx = append(v.wrongIdx, int(r.Index))
			}
			if ti.State != "verified" || ti.Result != r.Result {
				t.Errorf("task %d: consumer holds %s, verifier says %s %s", r.Index, r.Result, ti.State, ti.Result)
			}
		case client.StateFailed, client.StateCanceled:
			v.failed++
		default:
			v.lost++
		}
	}
	n.checkMoney(t, &v)
	return v
}

// checkMoney checks one group's accounts and the verifier's verdicts
// against a restatement of the rules (docs/market.md §2, §3, §7): every
// settled task charged the sum of its paid replicas, escrow = charge +
// refund, the consumer's spend equals the verifier's charges, each task
// settled once, nobody paid for a result that differs from the verified
// one, every refused replica is one that claimed the impossible (and is
// struck), every replica with the verified result was paid or not by the
// speed rule on the time the verifier observed, and what the group was
// charged is the exact price of its paid work within the carries.
func (n *network) checkMoney(t testing.TB, v *verdict) {
	t.Helper()
	var charged protocol.Micros
	for _, ti := range v.vg.Tasks {
		charged += ti.Charged
		n.checkRefusals(t, v.vg, ti)
		if ti.State != "verified" && ti.State != "failed" && ti.State != "canceled" {
			continue
		}
		var sum protocol.Micros
		for _, r := range ti.Replicas {
			sum += r.Charged
		}
		if sum != ti.Charged {
			t.Errorf("task %d: charged %v, replicas charged %v", ti.Index, ti.Charged, sum)
		}
		if ti.Escrowed != 0 && ti.Escrowed != ti.Charged+ti.Refund {
			t.Errorf("task %d: escrowed %v ≠ charged %v + refund %v", ti.Index, ti.Escrowed, ti.Charged, ti.Refund)
		}
		for _, r := range ti.Replicas {
			if (r.Paid > 0 || r.Verdict == string(market.OutcomePaid)) && !agreed(ti, r) {
				t.Errorf("task %d: %s paid %v for a result that is not the verified one", ti.Index, n.name(r.Worker), r.Paid)
			}
		}
		if ti.State == "verified" {
			n.checkSpeedRule(t, v.vg, ti)
		} else {
			for _, r := range ti.Replicas {
				n.countHonest(v.vg, ti, r, "its rating")
			}
		}
	}
	n.checkCharges(t, v.vg)
	if v.spent != charged {
		t.Errorf("consumer spent %v on the group, the verifier charged %v", v.spent, charged)
	}
	js, err := n.v.journal(n.c.id.String())
	if err != nil {
		t.Fatalf("journal: %v", err)
	}
	// Every task whose escrow was posted is settled exactly once; nothing
	// is settled that was not escrowed.
	escrowed, settles := map[string]bool{}, map[string]int{}
	for _, e := range js {
		if rest, ok := strings.CutPrefix(e.ID, "escrow/"+v.vg.ID+"/"); ok && e.Kind == "escrow" {
			idx, _, _ := strings.Cut(rest, "/")
			escrowed[idx] = true
		}
		if idx, ok := strings.CutPrefix(e.ID, "settle/"+v.vg.ID+"/"); ok && e.Kind == "settle" {
			settles[idx]++
		}
	}
	for idx, k := range settles {
		if k > 1 {
			t.Errorf("task %s settled %d times", idx, k)
		}
		if !escrowed[idx] {
			t.Errorf("task %s settled without escrow", idx)
		}
	}
	for idx := range escrowed {
		if settles[idx] != 1 {
			t.Errorf("task %s escrowed, settled %d times", idx, settles[idx])
		}
	}
}

// agreed: the replica reported the verified result (CID and work).
func agreed(ti verifier.TaskInfo, r verifier.ReplicaView) bool {
	return r.Agreed && r.Work == ti.Work
}

// impossible restates docs/market.md §2: what a receipt claimed that the
// verifier must refuse, or "".
func impossible(r verifier.ReplicaView, timeoutMillis uint64) string {
	switch {
	case r.WindowMicros > 0 && r.ExecMicros > uint64(r.WindowMicros):
		return fmt.Sprintf("claimed %dµs in a window of %dµs", r.ExecMicros, r.WindowMicros)
	case r.Work > protocol.WorkBudget(timeoutMillis):
		return fmt.Sprintf("claimed work %d beyond the budget %d", r.Work, protocol.WorkBudget(timeoutMillis))
	case mulGT(r.Work, 1, max(r.ExecMicros, 1), uint64(maxSpeed)*protocol.WorkPerMicroPerMilli):
		return fmt.Sprintf("claimed work %d in %dµs, beyond speed %v", r.Work, r.ExecMicros, maxSpeed)
	}
	return ""
}

// checkRefusals: a replica is refused (and struck) iff its receipt
// claimed the impossible.
func (n *network) checkRefusals(t testing.TB, vg verifier.GroupInfo, ti verifier.TaskInfo) {
	t.Helper()
	for _, r := range ti.Replicas {
		why := impossible(r, vg.TimeoutMillis)
		switch {
		case r.State == string(market.ReplicaRefused) && why == "":
			t.Errorf("task %d: %s refused, but its claim (%dµs, work %d, window %dµs) was possible", ti.Index, n.name(r.Worker), r.ExecMicros, r.Work, r.WindowMicros)
		case r.State == string(market.ReplicaReported) && why != "" && r.Status != protocol.StatusTimeout:
			t.Errorf("task %d: %s accepted although it %s", ti.Index, n.name(r.Worker), why)
		case r.Verdict == string(market.OutcomeRefused) && !r.Strike:
			t.Errorf("task %d: %s refused without a strike", ti.Index, n.name(r.Worker))
		}
	}
}

// checkSpeedRule restates docs/market.md §3 for a verified task: each
// replica with the verified result is judged on its run time t_i, the time
// it reports bounded by the window the verifier observed. With c_i =
// max(t_i × s_i − slack, 0) and c_min the least c_j of the agreeing
// replicas, replica i is paid iff
//
//	c_i × (10⁶ − tol) ≤ max(W, c_min) × 10⁶
//
// It also counts the honest worker processes' judged replicas.
func (n *network) checkSpeedRule(t testing.TB, vg verifier.GroupInfo, ti verifier.TaskInfo) {
	t.Helper()
	w := new(big.Int).SetUint64(ti.Work)
	slack := big.NewInt(int64(slackMicros) * int64(protocol.SpeedUnit) * protocol.WorkPerMicroPerMilli)
	run := func(r verifier.ReplicaView) int64 {
		t := int64(min(r.ExecMicros, 1<<62))
		if r.WindowMicros > 0 {
			t = min(t, r.WindowMicros)
		}
		return t
	}
	claimed := func(r verifier.ReplicaView) *big.Int {
		c := new(big.Int).Mul(big.NewInt(run(r)), big.NewInt(int64(r.RatedSpeed)*protocol.WorkPerMicroPerMilli))
		c.Sub(c, slack)
		if c.Sign() < 0 {
			c.SetInt64(0)
		}
		return c
	}
	var cmin *big.Int
	for _, r := range ti.Replicas {
		if r.State == string(market.ReplicaReported) && agreed(ti, r) {
			if c := claimed(r); cmin == nil || c.Cmp(cmin) < 0 {
				cmin = c
			}
		}
	}
	ref, against := w, "its rating" // max(W, c_min)
	if cmin != nil && cmin.Cmp(w) > 0 {
		ref, against = cmin, "the best replica"
	}
	for _, r := range ti.Replicas {
		n.countHonest(vg, ti, r, against)
		if r.State != string(market.ReplicaReported) || !agreed(ti, r) {
			continue
		}
		want := market.OutcomePaid
		lhs := new(big.Int).Mul(claimed(r), big.NewInt(market.PPM-tolerancePPM))
		if lhs.Cmp(new(big.Int).Mul(ref, big.NewInt(market.PPM))) > 0 {
			want = market.OutcomeTooSlow
		}
		if r.Verdict != string(want) {
			t.Errorf("task %d: %s judged %s, the rule says %s (work %d, rated %v, busy slot time %dµs, reported %dµs)",
				ti.Index, n.name(r.Worker), r.Verdict, want, r.Work, r.RatedSpeed, r.SlotMicros, r.ExecMicros)
		}
	}
}

// countHonest counts a replica of an honest worker process that was
// judged by the speed rule (against its rating or the best replica) or
// refused, and notes the evidence of each one not paid.
func (n *network) countHonest(vg verifier.GroupInfo, ti verifier.TaskInfo, r verifier.ReplicaView, against string) {
	l := n.name(r.Worker)
	if l != "h1" && l != "h2" && l != "h3" {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	switch market.Outcome(r.Verdict) {
	case market.OutcomePaid, market.OutcomeTooSlow, market.OutcomeRefused:
	default:
		return
	}
	n.honest.judged++
	if r.SlotMicros > 0 && r.ExecMicros > 0 {
		n.honest.overhead = append(n.honest.overhead, r.SlotMicros-int64(min(r.ExecMicros, 1<<40)))
	}
	switch market.Outcome(r.Verdict) {
	case market.OutcomeRefused:
		n.honest.refused++
	case market.OutcomeTooSlow:
		n.honest.tooSlow++
		if against == "its rating" {
			n.honest.tooSlowOwn++
		}
	default:
		return
	}
	n.honest.notes = append(n.honest.notes, fmt.Sprintf("%s %s (against %s) on task %d of %s: work %d, rated %v, busy slot time %dµs, reported %dµs, window %dµs",
		l, r.Verdict, against, ti.Index, vg.ID, r.Work, r.RatedSpeed, r.SlotMicros, r.ExecMicros, r.WindowMicros))
}

// checkCharges: what the group was charged for its paid replicas is the
// exact price of their work at each worker's asking price and rated
// speed, Σ p × W ÷ (s × 3600), within the carries: each (consumer, payee)
// pair carries under one micro-unit before and after the group, so the
// total is within one micro-unit per paid worker plus one for the
// operator's cut. Replicas not paid are not charged.
func (n *network) checkCharges(t testing.TB, vg verifier.GroupInfo) {
	t.Helper()
	exact := new(big.Int)
	var posted protocol.Micros
	payees := map[string]bool{}
	for _, ti := range vg.Tasks {
		for _, r := range ti.Replicas {
			if r.Verdict != string(market.OutcomePaid) {
				if r.Charged != 0 {
					t.Errorf("task %d: %s charged %v for a replica not paid (%s)", ti.Index, n.name(r.Worker), r.Charged, r.Verdict)
				}
				continue
			}
			payees[r.Worker] = true
			exact.Add(exact, new(big.Int).SetUint64(uint64(market.ChargePicos(r.Price, r.Work, r.RatedSpeed))))
			posted += r.Charged
		}
	}
	got := new(big.Int).Mul(big.NewInt(int64(posted)), big.NewInt(market.PicosPerMicro))
	bound := big.NewInt(int64(len(payees)+1) * market.PicosPerMicro)
	if len(payees) > 0 && new(big.Int).Sub(got, exact).CmpAbs(bound) >= 0 {
		t.Errorf("the group's paid replicas were charged %v; the exact price of their work is %s picos (carries allow ±%d micro-units)", posted, exact, len(payees)+1)
	}
}

// mulGT reports whether a×b > c×d, exactly (128-bit products).
func mulGT(a, b, c, d uint64) bool {
	hi1, lo1 := bits.Mul64(a, b)
	hi2, lo2 := bits.Mul64(c, d)
	return hi1 > hi2 || hi1 == hi2 && lo1 > lo2
}

// paidSummary says who was paid for a group: per worker, replicas paid of
// replicas run, and why the others were not.
func (n *network) paidSummary(vg verifier.GroupInfo) string {
	type acc struct {
		runs, paid int
		amount     protocol.Micros
		why        map[string]int
		strikes    int
	}
	per := map[string]*acc{}
	for _, ti := range vg.Tasks {
		for _, r := range ti.Replicas {
			l := n.name(r.Worker)
			a := per[l]
			if a == nil {
				a = &acc{why: map[string]int{}}
				per[l] = a
			}
			a.runs++
			if r.Strike {
				a.strikes++
			}
			if r.Paid > 0 || r.Verdict == string(market.OutcomePaid) {
				a.paid++
				a.amount += r.Paid
			} else {
				why := r.Verdict
				if why == "" {
					why = r.State
				}
				a.why[why]++
			}
		}
	}
	names := make([]string, 0, len(per))
	for l := range per {
		names = append(names, l)
	}
	sort.Strings(names)
	var parts []string
	for _, l := range names {
		a := per[l]
		s := fmt.Sprintf("%s %d/%d", l, a.paid, a.runs)
		var whys []string
		for w, k := range a.why {
			whys = append(whys, fmt.Sprintf("%d %s", k, w))
		}
		slices.Sort(whys)
		if a.strikes > 0 {
			whys = append(whys, fmt.Sprintf("%d strikes", a.strikes))
		}
		if len(whys) > 0 {
			s += " (" + strings.Join(whys, ", ") + ")"
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "nobody"
	}
	return strings.Join(parts, "; ")
}

// serving checks that every honest process still answers.
func (n *network) serving() error {
	var errs []error
	for _, p := range n.honestProcs {
		if err := p.serving(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.label, err))
		}
	}
	if !n.v.running() {
		errs = append(errs, errors.New("verifier is not running"))
	} else if _, err := n.v.accounts(); err != nil {
		errs = append(errs, fmt.Errorf("verifier: %w", err))
	}
	return errors.Join(errs...)
}

// spotChecked counts the tasks the verifier also ran.
func spotChecked(vg verifier.GroupInfo) int {
	k := 0
	for _, ti := range vg.Tasks {
		if ti.VerifierRan {
			k++
		}
	}
	return k
}
