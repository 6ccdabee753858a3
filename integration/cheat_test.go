package integration

import (
	"fmt"
	"math/bits"
	"strings"
	"testing"
	"time"

	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/verifier"
)

// Cheating workers. Each runs in the test process against the real
// verifier and consumer processes, next to the honest worker h1 in the
// 1.00/h tier, so every task of the scenario's group runs on the cheat and
// on h1.

const primesWidth = 8_000_000

// scBaseline: the honest network maps a job through the CLI.
func scBaseline(t *testing.T, n *network, r *row) {
	j := primesJob(6, primesWidth, priceAll)
	stdout, stderr, code := n.mapCLI(t, j)
	if code != 0 {
		t.Fatalf("aspen-node map exited %d: %s", code, stderr)
	}
	var want strings.Builder
	for _, in := range j.inputs {
		want.Write(truth(t, j.module, in, time.Minute, 0).Stdout)
	}
	if stdout != want.String() {
		t.Errorf("map printed %q, want %q", stdout, want.String())
	}
	gid := n.newestGroup(t)
	n.waitDone(t, gid, time.Minute)
	v := n.judge(t, gid, j)
	n.fill(r, v)
	if v.verified != len(j.inputs) || v.wrongAccepted != 0 {
		t.Errorf("verified %d of %d, %d wrong", v.verified, len(j.inputs), v.wrongAccepted)
	}
	r.Outcome = fmt.Sprintf("all %d verified and printed in order by the CLI; %d spot-checked", v.verified, spotChecked(v.vg))
}

// cheatRun runs a primes group in the 1.00 tier with the given cheat next
// to h1 and returns the verdict.
func cheatRun(t *testing.T, n *network, tasks int, e *evilWorker) verdict {
	t.Helper()
	n.waitRated(t, e)
	j := primesJob(tasks, primesWidth, priceCheap)
	gid := n.submit(t, j)
	n.waitDone(t, gid, 2*time.Minute)
	v := n.judge(t, gid, j)
	if real, _ := e.counts(); real == 0 {
		t.Fatalf("%s was never given a task", e.label)
	}
	return v
}

func scAlwaysWrong(t *testing.T, n *network, r *row) {
	e := n.evil(t, "evil", "owner-evil", priceCheap, behaviour{wrongEvery: 1})
	defer e.close()
	v := cheatRun(t, n, 6, e)
	n.fill(r, v)
	runs, paid, strikes := workerRuns(v, e.id.String())
	if v.wrongAccepted != 0 || paid != 0 || strikes == 0 {
		t.Errorf("wrong accepted %d, cheat paid %d of %d, %d strikes", v.wrongAccepted, paid, runs, strikes)
	}
	if v.verified != v.tasks {
		t.Errorf("verified %d of %d", v.verified, v.tasks)
	}
	wi, _ := n.v.worker(e.id)
	r.Outcome = fmt.Sprintf("caught by verifier tie-break on %d/%d; %d strikes, struck out: %v", strikes, runs, wi.Strikes, wi.StruckOut)
}

func scWrongFraction(t *testing.T, n *network, r *row) {
	e := n.evil(t, "evil", "owner-evil", priceCheap, behaviour{wrongEvery: 2})
	defer e.close()
	v := cheatRun(t, n, 6, e)
	n.fill(r, v)
	runs, paid, strikes := workerRuns(v, e.id.String())
	_, lies := e.counts()
	if v.wrongAccepted != 0 || strikes == 0 || paid > runs-lies {
		t.Errorf("wrong accepted %d; cheat lied %d times of %d, paid %d, %d strikes", v.wrongAccepted, lies, runs, paid, strikes)
	}
	r.Outcome = fmt.Sprintf("lied on %d of %d: each caught by tie-break (%d strikes); paid only for honest answers", lies, runs, strikes)
}

// A timing cheat is judged by the speed rule against the smallest work on
// its task, and work is rated speed × reported time. On a shared 2-core
// machine both factors are noisy: a benchmark taken while another test
// package loads the machine can rate the cheat at half its speed, and a
// busy moment can double one run. Noise of that size can hide a 2× lie or
// convict an honest report, so a group shows the lie caught only on the
// tasks where the lie, not the noise, decided: where the cheat's honest
// work (its honest rating × the time it really measured, which the test
// knows) would have been paid, within the tolerance of h1's work, and the
// work it reported is beyond it. On such a decisive task the cheat must be
// unpaid. The tasks the verifier spot-checked are judged against its own
// run, not h1's, and are left out.

// timingTasks is the size of a timing cheat's group: more tasks than the
// other cheats' six, so that a group has decisive tasks under load.
const timingTasks = 8

// timing is the comparison of a timing cheat with h1 over one group.
type timing struct {
	tasks    int // verified, untrusted tasks run by both the cheat and h1
	decisive int // of those, where an honest report would have been paid and the lie's is not
	paid     int // decisive tasks on which the cheat was paid anyway
}

// compareTiming compares the cheat's replicas of v with h1's. honestSpeed
// is the rating an honest benchmark would have given the replica.
func (n *network) compareTiming(v verdict, e *evilWorker, honestSpeed func(verifier.ReplicaView) uint64) timing {
	var tm timing
	tol := uint64(tolerancePPM)
	for _, ti := range v.vg.Tasks {
		if ti.State != "verified" || ti.Trusted {
			continue
		}
		var cheat, h1 *verifier.ReplicaView
		for i, rp := range ti.Replicas {
			if !rp.Agreed || rp.State != string(market.ReplicaReported) {
				continue
			}
			switch rp.Worker {
			case e.id.String():
				cheat = &ti.Replicas[i]
			case n.h1.id.String():
				h1 = &ti.Replicas[i]
			}
		}
		if cheat == nil || h1 == nil {
			continue
		}
		us, ok := e.honestMicros(cheat.Assignment, ti.Index)
		if !ok {
			continue
		}
		tm.tasks++
		honest := honestSpeed(*cheat) * us
		lied := uint64(cheat.RatedSpeed) * cheat.ExecMicros
		ref := uint64(h1.RatedSpeed) * h1.ExecMicros
		// L ≤ L_ref × (1 + tol): an honest report would have been paid
		// (below h1's work it would have been the reference itself).
		wouldPay := mulLE(honest, market.PPM, ref, market.PPM+tol)
		beyond := !mulLE(lied, market.PPM, ref, market.PPM+tol)
		if wouldPay && beyond {
			tm.decisive++
			if cheat.Paid > 0 {
				tm.paid++
			}
		}
	}
	return tm
}

// mulLE reports whether a×b ≤ c×d, exactly (128-bit products).
func mulLE(a, b, c, d uint64) bool {
	hi1, lo1 := bits.Mul64(a, b)
	hi2, lo2 := bits.Mul64(c, d)
	return hi1 < hi2 || hi1 == hi2 && lo1 <= lo2
}

// timingResult is a timing cheat's last group.
type timingResult struct {
	e      *evilWorker
	v      verdict
	groups int
	bench  protocol.Speed // the cheat's rating by its benchmark
	tm     timing
}

// timingRun runs a primes group with a fresh timing cheat next to h1 until
// a group has a decisive task, at most three groups. Each retry starts a
// new cheat, benchmarked afresh, since a rating skewed by the machine's
// load stays with the worker. honestSpeed is given the cheat's benchmark
// rating and a replica.
func timingRun(t *testing.T, n *network, b behaviour, honestSpeed func(bench protocol.Speed, rp verifier.ReplicaView) uint64) timingResult {
	t.Helper()
	for groups := 1; ; groups++ {
		e := n.evil(t, "evil", "owner-evil", priceCheap, b)
		n.waitRated(t, e)
		w0, _ := n.v.worker(e.id)
		h1, _ := n.v.worker(n.h1.id)
		v := cheatRun(t, n, timingTasks, e)
		tm := n.compareTiming(v, e, func(rp verifier.ReplicaView) uint64 { return honestSpeed(w0.Speed, rp) })
		if tm.decisive > 0 || groups == 3 {
			return timingResult{e: e, v: v, groups: groups, bench: w0.Speed, tm: tm}
		}
		t.Logf("group %d inconclusive: on none of its %d tasks run by both would an honest report have been paid and the lie refused (tolerance %d%%; benchmark ratings %v and h1's %v); a fresh cheat, benchmarked again",
			groups, tm.tasks, tolerancePPM/10_000, w0.Speed, h1.Speed)
		e.close()
		// The closed cheat must leave the book before the next group, or
		// it is assigned replicas it never runs.
		waitFor(t, 30*time.Second, "the closed cheat out of the book", func() (bool, error) {
			wi, ok := n.v.worker(e.id)
			return !ok || !wi.InBook, nil
		})
	}
}

// timingCheat runs a worker that lies about time (or is slow) and reports
// how the speed rule judged it. Its benchmark is honest, so an honest
// report is judged at the rating each replica carries.
func timingCheat(t *testing.T, n *network, r *row, b behaviour, what string) {
	res := timingRun(t, n, b, func(_ protocol.Speed, rp verifier.ReplicaView) uint64 { return uint64(rp.RatedSpeed) })
	defer res.e.close()
	v := res.v
	n.fill(r, v)
	runs, paid, _ := workerRuns(v, res.e.id.String())
	if v.wrongAccepted != 0 || v.verified != v.tasks {
		t.Errorf("verified %d of %d, %d wrong", v.verified, v.tasks, v.wrongAccepted)
	}
	checkTiming(t, what, res)
	r.Outcome = fmt.Sprintf("%s: unpaid (too-slow) on %d of %d replicas by the speed rule, on %d of %d decisive; results correct%s",
		what, runs-paid, runs, res.tm.decisive-res.tm.paid, res.tm.decisive, retried(res.groups))
}

// checkTiming fails the scenario if the cheat was paid on a decisive task,
// or if three groups had none.
func checkTiming(t *testing.T, what string, res timingResult) {
	t.Helper()
	if res.tm.paid > 0 {
		t.Errorf("%s was paid on %d of %d decisive tasks (where its reported work exceeds h1's by more than %d%%)", what, res.tm.paid, res.tm.decisive, tolerancePPM/10_000)
	}
	if res.tm.decisive == 0 {
		t.Errorf("%s: no decisive task in %d groups: the machine's load moved the cheat's honest work or h1's by more than the lie",
			what, res.groups)
	}
}

// retried says in a catalogue outcome that inconclusive groups were rerun.
func retried(groups int) string {
	if groups == 1 {
		return ""
	}
	return fmt.Sprintf(" (group %d, with a cheat benchmarked afresh; %d before it had no decisive task under machine load)", groups, groups-1)
}

func scSlowReport(t *testing.T, n *network, r *row) {
	timingCheat(t, n, r, behaviour{reportX: 2}, "reports 2× its real time")
}

func scBenchFastJobSlow(t *testing.T, n *network, r *row) {
	timingCheat(t, n, r, behaviour{slowX: 3}, "benchmarks honestly, runs real jobs 3× slower")
}

// scBenchLie: the cheat's rating is its lie. An honest benchmark would
// have rated it a third of what it was rated; spot checks re-rate it.
func scBenchLie(t *testing.T, n *network, r *row) {
	const lie = 3
	res := timingRun(t, n, behaviour{benchLie: lie}, func(bench protocol.Speed, _ verifier.ReplicaView) uint64 { return uint64(bench) / lie })
	defer res.e.close()
	v := res.v
	n.fill(r, v)
	runs, paid, _ := workerRuns(v, res.e.id.String())
	h1, _ := n.v.worker(n.h1.id)
	w1, _ := n.v.worker(res.e.id)
	if v.wrongAccepted != 0 {
		t.Errorf("%d wrong", v.wrongAccepted)
	}
	checkTiming(t, "a faked benchmark", res)
	r.Outcome = fmt.Sprintf("rated %v by its faked benchmark (h1: %v); on real jobs its work exceeds the reference: unpaid on %d of %d, on %d of %d decisive; %d spot checks re-rated it %v%s",
		res.bench, h1.Speed, runs-paid, runs, res.tm.decisive-res.tm.paid, res.tm.decisive, spotChecked(v.vg), w1.Speed, retried(res.groups))
}

func scInflate(t *testing.T, n *network, r *row) {
	e := n.evil(t, "evil", "owner-evil", priceCheap, behaviour{reportX: 1.2})
	defer e.close()
	v := cheatRun(t, n, 6, e)
	n.fill(r, v)
	runs, paid, _ := workerRuns(v, e.id.String())
	var over protocol.Micros
	for _, ti := range v.vg.Tasks {
		for _, rp := range ti.Replicas {
			if rp.Worker == e.id.String() && rp.Paid > 0 {
				over += rp.Charged
			}
		}
	}
	r.Outcome = fmt.Sprintf("claims +20%%: paid on %d of %d only where within the %d%% tolerance of the reference (billed %v); never beyond",
		paid, runs, tolerancePPM/10_000, over)
}

func scGuess(t *testing.T, n *network, r *row) {
	e := n.evil(t, "evil", "owner-evil", priceCheap, behaviour{guess: true})
	defer e.close()
	v := cheatRun(t, n, 6, e)
	n.fill(r, v)
	runs, paid, strikes := workerRuns(v, e.id.String())
	if v.wrongAccepted != 0 || paid != 0 {
		t.Errorf("wrong accepted %d, guesser paid %d", v.wrongAccepted, paid)
	}
	r.Outcome = fmt.Sprintf("guessed a result CID without running: differs from h1's, tie-break: %d strikes of %d runs", strikes, runs)
}

// scRing: two workers of different owners who agree on the same wrong
// output. Only the secret spot checks can catch them.
func scRing(t *testing.T, n *network, r *row) {
	a := n.evil(t, "ring-a", "owner-ring-a", priceRing, behaviour{ring: true})
	b := n.evil(t, "ring-b", "owner-ring-b", priceRing, behaviour{ring: true})
	defer a.close()
	defer b.close()
	n.waitRated(t, a, b)
	j := primesJob(16, primesWidth, priceRing)
	gid := n.submit(t, j)
	n.waitDone(t, gid, 2*time.Minute)
	v := n.judge(t, gid, j)
	n.fill(r, v)
	checked := 0
	for _, ti := range v.vg.Tasks {
		if !ti.VerifierRan {
			continue
		}
		checked++
		for _, idx := range v.wrongIdx {
			if uint32(idx) == ti.Index {
				t.Errorf("task %d was spot-checked and still released wrong", idx)
			}
		}
		if ti.Strikes != 2 {
			t.Errorf("spot-checked task %d: %d strikes, want both ring members struck", ti.Index, ti.Strikes)
		}
	}
	if v.wrongAccepted+checked != v.tasks {
		t.Errorf("%d wrong + %d spot-checked ≠ %d tasks", v.wrongAccepted, checked, v.tasks)
	}
	r.Wrong = fmt.Sprintf("%d/%d (%.0f%%; spot-check rate %d%% ⇒ %d%% expected)", v.wrongAccepted, v.tasks,
		100*float64(v.wrongAccepted)/float64(v.tasks), spotRatePPM/10_000, 100-spotRatePPM/10_000)
	wa, _ := n.v.worker(a.id)
	r.Outcome = fmt.Sprintf("undetectable by comparison; the %d spot-checked tasks were released correct and struck both (%d strikes each, struck out: %v)",
		checked, wa.Strikes, wa.StruckOut)
}

// scVanish: a worker accepts tasks and disappears. Once the verifier fails
// it for silence the tasks go to a worker that joins later.
func scVanish(t *testing.T, n *network, r *row) {
	e := n.evil(t, "vanisher", "owner-vanisher", priceCheap, behaviour{vanish: true})
	defer e.close()
	n.waitRated(t, e)
	j := primesJob(4, primesWidth, priceCheap)
	gid := n.submit(t, j)
	waitFor(t, time.Minute, "the vanisher to accept its tasks", func() (bool, error) {
		return e.vanished.Load(), nil
	})
	rescuer := n.evil(t, "rescuer", "owner-rescuer", priceCheap, behaviour{})
	defer rescuer.close()
	n.waitDone(t, gid, 2*time.Minute)
	v := n.judge(t, gid, j)
	n.fill(r, v)
	runs, paid, _ := workerRuns(v, e.id.String())
	var charged protocol.Micros
	for _, ti := range v.vg.Tasks {
		for _, rp := range ti.Replicas {
			if rp.Worker == e.id.String() {
				charged += rp.Charged
			}
		}
	}
	if v.verified != v.tasks || paid != 0 || charged != 0 {
		t.Errorf("verified %d/%d; vanisher paid %d, consumer charged %v for it", v.verified, v.tasks, paid, charged)
	}
	rr, _, _ := workerRuns(v, rescuer.id.String())
	r.Outcome = fmt.Sprintf("silent past the heartbeat timeout: %d replicas failed (unpaid, not charged), re-run on a worker that joined later (%d)", runs, rr)
}
