package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aspen-market/aspen/protocol"
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

// timingRun runs primes groups with a timing cheat next to h1 until the
// verdict is conclusive and returns the last verdict and how many groups
// it took. The speed rule compares reported work with the smallest on the
// task, so a shared machine's load can swamp a cheat: when the cheat was
// paid on every replica while the honest control h1 was judged too slow on
// more than half of its own, the comparison measured the machine, not the
// cheat, and another group runs (at most three in all). A cheat paid on
// every replica of a group where h1 was mostly paid fails the scenario.
func timingRun(t *testing.T, n *network, e *evilWorker) (v verdict, groups int) {
	t.Helper()
	for groups = 1; ; groups++ {
		v = cheatRun(t, n, 6, e)
		runs, paid, _ := workerRuns(v, e.id.String())
		h1runs, h1paid, _ := workerRuns(v, n.h1.id.String())
		if paid < runs || 2*h1paid >= h1runs || groups == 3 {
			return v, groups
		}
		t.Logf("%s: group %d inconclusive: cheat paid on all %d replicas, honest h1 only on %d of %d (machine load); another group",
			e.label, groups, runs, h1paid, h1runs)
	}
}

// timingCheat runs a worker that lies about time (or is slow) and reports
// how the speed rule judged it.
func timingCheat(t *testing.T, n *network, r *row, b behaviour, what string) {
	e := n.evil(t, "evil", "owner-evil", priceCheap, b)
	defer e.close()
	v, groups := timingRun(t, n, e)
	n.fill(r, v)
	runs, paid, _ := workerRuns(v, e.id.String())
	h1runs, h1paid, _ := workerRuns(v, n.h1.id.String())
	if v.wrongAccepted != 0 || v.verified != v.tasks {
		t.Errorf("verified %d of %d, %d wrong", v.verified, v.tasks, v.wrongAccepted)
	}
	// The speed rule itself (paid only within tolerance of the reference)
	// is checked on every replica by judge. Timings on a shared machine are
	// noisy, so a cheat may fall within the tolerance now and then, but
	// never on every replica of a group where the honest control was paid.
	if paid == runs {
		t.Errorf("%s was paid on all %d replicas (honest h1 %d/%d) in %d group(s)", what, runs, h1paid, h1runs, groups)
	}
	r.Outcome = fmt.Sprintf("%s: unpaid (too-slow) on %d of %d replicas by the speed rule; results correct%s", what, runs-paid, runs, retried(groups))
}

// retried says in a catalogue outcome that inconclusive groups were rerun.
func retried(groups int) string {
	if groups == 1 {
		return ""
	}
	return fmt.Sprintf(" (group %d; %d before it inconclusive under machine load)", groups, groups-1)
}

func scSlowReport(t *testing.T, n *network, r *row) {
	timingCheat(t, n, r, behaviour{reportX: 2}, "reports 2× its real time")
}

func scBenchFastJobSlow(t *testing.T, n *network, r *row) {
	timingCheat(t, n, r, behaviour{slowX: 3}, "benchmarks honestly, runs real jobs 3× slower")
}

func scBenchLie(t *testing.T, n *network, r *row) {
	e := n.evil(t, "evil", "owner-evil", priceCheap, behaviour{benchLie: 3})
	defer e.close()
	n.waitRated(t, e)
	w0, _ := n.v.worker(e.id)
	h1, _ := n.v.worker(n.h1.id)
	v, groups := timingRun(t, n, e)
	n.fill(r, v)
	runs, paid, _ := workerRuns(v, e.id.String())
	w1, _ := n.v.worker(e.id)
	if v.wrongAccepted != 0 {
		t.Errorf("%d wrong", v.wrongAccepted)
	}
	if paid == runs {
		t.Errorf("paid on all %d replicas in %d group(s)", runs, groups)
	}
	r.Outcome = fmt.Sprintf("rated %v by its faked benchmark (h1: %v); on real jobs its work exceeds the reference: unpaid on %d of %d; %d spot checks re-rated it %v%s",
		w0.Speed, h1.Speed, runs-paid, runs, spotChecked(v.vg), w1.Speed, retried(groups))
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
