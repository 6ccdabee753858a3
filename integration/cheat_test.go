package integration

import (
	"fmt"
	"slices"
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

// Timing cheats. Work is metered, so a worker's only free number is the
// time it reports, and the rules (docs/market.md §2, §3, §10) give that
// number no power: a claim longer than the window the verifier observed,
// or implying a speed beyond any machine, is refused and struck; pay is
// price × metered work ÷ rated speed; the speed rule and the rating use
// the busy time the verifier observed the worker hold each replica, never
// its report. Every group's verdicts and charges are checked against a
// restatement of those rules (checkMoney); the scenarios below add what
// each lie must not buy, with figures.

// cheatWidth sizes the timing cheats' primes jobs: about 40 ms of
// standard work, well above the speed slack (10 ms) so the speed rule
// judges them, and long enough that transfer is a small part of the busy
// time the verifier observes.
const cheatWidth = 40_000_000

// sandbagWidth sizes the sandbagger's jobs: about 150 ms of standard work,
// so that 10× its run time is more than the input transfer and queueing
// a window also holds.
const sandbagWidth = 150_000_000

// stats sums one worker's replicas of a group.
type stats struct {
	runs, paid, tooSlow, refused, wrong, strikes int
	work                                         uint64  // metered work of its paid replicas
	exact                                        uint64  // their exact charge, picos
	claimed, slot                                uint64  // Σ reported and Σ observed time of its reported replicas, µs
	claimedWork                                  uint64  // Σ work of those replicas
	slots                                        []int64 // busy slot time of each observed replica, µs
	why                                          []string
}

// medianSlot is the median busy slot time of its observed replicas, ms.
func (st stats) medianSlot() float64 {
	if len(st.slots) == 0 {
		return 0
	}
	o := slices.Clone(st.slots)
	slices.Sort(o)
	return float64(o[len(o)/2]) / 1000
}

func workerStats(v verdict, id string) stats {
	var st stats
	for _, ti := range v.vg.Tasks {
		for _, r := range ti.Replicas {
			if r.Worker != id {
				continue
			}
			st.runs++
			if r.Strike {
				st.strikes++
			}
			switch market.Outcome(r.Verdict) {
			case market.OutcomePaid:
				st.paid++
				st.work += r.Work
				st.exact += uint64(market.ChargePicos(r.Price, r.Work, r.RatedSpeed))
			case market.OutcomeTooSlow:
				st.tooSlow++
			case market.OutcomeRefused:
				st.refused++
				if len(st.why) < 2 {
					st.why = append(st.why, impossible(r, v.vg.TimeoutMillis))
				}
			case market.OutcomeWrong:
				st.wrong++
			}
			if r.SlotMicros > 0 {
				st.slots = append(st.slots, r.SlotMicros)
			}
			if r.ExecMicros > 0 {
				st.claimed += r.ExecMicros
				st.slot += uint64(max(r.SlotMicros, 0))
				st.claimedWork += r.Work
			}
		}
	}
	return st
}

// perStdHour is what a worker was paid per standard hour of work (1.0 ×
// 1 h) on its paid replicas: its asking price ÷ its rated speed, in
// micro-units; 0 when it was paid for nothing.
func (st stats) perStdHour() protocol.Micros {
	if st.work == 0 {
		return 0
	}
	return protocol.Micros(market.MulDiv(st.exact, uint64(market.StandardHour), st.work) / market.PicosPerMicro)
}

// claimSpeed is the speed its claims would rate it at: work ÷ reported
// time.
func (st stats) claimSpeed() protocol.Speed {
	if st.claimed == 0 {
		return 0
	}
	return protocol.Speed(st.claimedWork / st.claimed / protocol.WorkPerMicroPerMilli)
}

func (st stats) String() string {
	return fmt.Sprintf("paid %d of %d (%d too slow, %d refused, %d strikes)", st.paid, st.runs, st.tooSlow, st.refused, st.strikes)
}

// timingGroup runs a primes group of cheatWidth jobs at price with the
// cheats (and whoever else the price admits) and checks that every task
// was verified and no wrong result released.
func timingGroup(t *testing.T, n *network, tasks, width int, price string, es ...*evilWorker) verdict {
	t.Helper()
	n.waitRated(t, es...)
	j := primesJob(tasks, width, price)
	gid := n.submit(t, j)
	n.waitDone(t, gid, 3*time.Minute)
	v := n.judge(t, gid, j)
	for _, e := range es {
		if real, _ := e.counts(); real == 0 {
			t.Fatalf("%s was never given a task", e.label)
		}
	}
	if v.wrongAccepted != 0 || v.verified != v.tasks {
		t.Errorf("verified %d of %d, %d wrong", v.verified, v.tasks, v.wrongAccepted)
	}
	return v
}

// honestPartners sums h1–h3's replicas of a group.
func (n *network) honestPartners(v verdict) stats {
	var all stats
	for _, h := range []*nodeProc{n.h1, n.h2, n.h3} {
		st := workerStats(v, h.id.String())
		all.runs += st.runs
		all.paid += st.paid
		all.tooSlow += st.tooSlow
		all.refused += st.refused
		all.work += st.work
		all.exact += st.exact
	}
	return all
}

// benchOutcome waits until the verifier has rated w or refused its
// benchmark, and returns its record.
func (n *network) benchOutcome(t *testing.T, w *evilWorker) verifier.WorkerInfo {
	t.Helper()
	var wi verifier.WorkerInfo
	waitFor(t, 90*time.Second, w.label+"'s benchmark judged", func() (bool, error) {
		var ok bool
		wi, ok = n.v.worker(w.id)
		return ok && (wi.Rated || wi.BenchFailures > 0), nil
	})
	return wi
}

// checkRatedOnObserved: a worker's rating is metered work over the busy
// time the verifier observed (docs/market.md §10), a work-weighted mean of
// its rating before the group and the speeds observed on its replicas of
// the group with the verified result, W ÷ busy slot time; so it lies
// between the least and the greatest of those (to a milli-unit of
// rounding, within the rating's clamp). A rating read from reported times
// would follow the claims instead. It returns that range.
func (n *network) checkRatedOnObserved(t *testing.T, v verdict, e *evilWorker, before, after protocol.Speed) (lo, hi protocol.Speed) {
	t.Helper()
	lo, hi = before, before
	for _, ti := range v.vg.Tasks {
		if ti.State != "verified" {
			continue
		}
		for _, r := range ti.Replicas {
			if r.Worker != e.id.String() || r.State != string(market.ReplicaReported) || !agreed(ti, r) || r.SlotMicros <= 0 {
				continue
			}
			s := protocol.Speed(r.Work / uint64(r.SlotMicros) / protocol.WorkPerMicroPerMilli)
			lo, hi = min(lo, s), max(hi, s)
		}
	}
	cfg := market.DefaultConfig()
	lo, hi = min(max(lo, cfg.MinRatedSpeed), cfg.MaxSpeed), min(max(hi, cfg.MinRatedSpeed), cfg.MaxSpeed)
	if after+1 < lo || after > hi+1 {
		t.Errorf("%s rated %v after the group: not between its rating before (%v) and the speeds the verifier observed (%v … %v)", e.label, after, before, lo, hi)
	}
	return lo, hi
}

// scSandbag: a sandbagger reports 10× its real time, on its benchmark (to
// be rated slower, and so paid more per unit of work) and on every job.
// Its benchmark claims exceed what the verifier saw pass: refused, struck,
// never rated. The same lie on real jobs (told by a second sandbagger that
// benchmarked honestly, since the first is never given one) is refused on
// every receipt whose claim exceeds its window, each replica replaced on
// an honest worker; whatever is accepted is paid at its rating, which the
// claims do not enter.
func scSandbag(t *testing.T, n *network, r *row) {
	const lie = 10
	a := n.evil(t, "sandbagger", "owner-sandbag", priceCheap, behaviour{benchX: lie, reportX: lie})
	defer a.close()
	b := n.evil(t, "sandbagger-2", "owner-sandbag-2", priceCheap, behaviour{reportX: lie})
	defer b.close()
	wa := n.benchOutcome(t, a)
	var benchNote string
	if wa.Rated {
		// Its benchmark claims fit their windows (a loaded machine can
		// stretch them): rated from them, bounded by what was observed.
		benchNote = fmt.Sprintf("its benchmark claims fit their windows (rated %v, at most the time observed)", wa.Speed)
	} else {
		if wa.Strikes == 0 || wa.InBook {
			t.Errorf("benchmark refused but %d strikes, in the book: %v", wa.Strikes, wa.InBook)
		}
		benchNote = fmt.Sprintf("benchmark claims 10× refused (more time than its window): %d strike, never rated, never given a task", wa.Strikes)
	}
	n.waitRated(t, b)
	before, _ := n.v.worker(b.id)
	v := timingGroup(t, n, 6, sandbagWidth, priceAll, b)
	n.fill(r, v)
	after, _ := n.v.worker(b.id)
	st := workerStats(v, b.id.String())
	if after.Strikes < st.refused && after.Strikes < market.DefaultConfig().StrikesToExclude {
		t.Errorf("%d refusals, %d strikes", st.refused, after.Strikes)
	}
	n.checkRatedOnObserved(t, v, b, before.Speed, after.Speed)
	hp := n.honestPartners(v)
	ran, claimed := b.claims()
	r.Outcome = fmt.Sprintf("%s. On jobs (claimed %.1f s for %.2f s of run time): %d of %d receipts refused and struck (%s), replaced on honest workers, all %d tasks verified; %d accepted, paid %v per standard hour (its asking price at its rating, %v before and %v after; its claims would rate it %v); honest workers paid on %d of %d",
		benchNote, float64(claimed)/1e6, float64(ran)/1e6, st.refused, st.runs, strings.Join(st.why, "; "), v.verified, st.paid, st.perStdHour(), before.Speed, after.Speed, st.claimSpeed(), hp.paid, hp.runs)
}

// scCreep: reports 14% more time than it ran, on every job, over 40 tasks.
// On jobs of milliseconds its claims fit their windows (which hold input
// transfer and queueing) and are accepted; they change nothing: it is paid
// its asking price × work ÷ its rating (checked exactly), and its rating
// is work over the busy time the verifier observed. Its pay per unit of
// work is printed next to h1's at the same asking price; the two differ by
// their ratings, i.e. by how fast the verifier saw each hold its jobs.
func scCreep(t *testing.T, n *network, r *row) {
	e := n.evil(t, "creep", "owner-creep", priceCheap, behaviour{reportX: 1.14})
	defer e.close()
	n.waitRated(t, e)
	before, _ := n.v.worker(e.id)
	j := primesJob(40, primesWidth, priceAll)
	gid := n.submit(t, j)
	n.waitDone(t, gid, 3*time.Minute)
	v := n.judge(t, gid, j)
	n.fill(r, v)
	if v.wrongAccepted != 0 || v.verified != v.tasks {
		t.Errorf("verified %d of %d, %d wrong", v.verified, v.tasks, v.wrongAccepted)
	}
	st := workerStats(v, e.id.String())
	h1 := workerStats(v, n.h1.id.String())
	if st.paid == 0 || h1.paid == 0 {
		t.Fatalf("creep %s, h1 %s: nothing to compare", st, h1)
	}
	// Both ask 1.00/h: per unit of work each is paid 1.00 ÷ its rating
	// (checkMoney: exactly), and the creep's rating follows the busy time
	// the verifier observed, not its claims.
	after, _ := n.v.worker(e.id)
	n.checkRatedOnObserved(t, v, e, before.Speed, after.Speed)
	hi, _ := n.v.worker(n.h1.id)
	ran, claimed := e.claims()
	r.Outcome = fmt.Sprintf("claimed %d ms for %d ms of run time on %d replicas: %d refused (beyond their window), %d accepted; paid on %d, %v per standard hour of work, h1 %v: asking 1.00/h each, each paid 1.00 ÷ its rating, and the ratings follow the busy time the verifier saw (median per replica %.0f ms, h1 %.0f ms): rated %v → %v, h1 %v; its claims would rate it %v; h1 %s",
		claimed/1000, ran/1000, st.runs, st.refused, st.runs-st.refused, st.paid, st.perStdHour(), h1.perStdHour(), st.medianSlot(), h1.medianSlot(), before.Speed, after.Speed, hi.Speed, st.claimSpeed(), h1)
}

// refusedCheat runs a cheat whose every claim is impossible: each receipt
// refused and struck (struck out after three), each replica replaced on an
// honest worker, every task verified; the cheat is paid nothing.
func refusedCheat(t *testing.T, n *network, r *row, b behaviour, what string) {
	e := n.evil(t, "liar", "owner-liar", priceCheap, b)
	defer e.close()
	v := timingGroup(t, n, 6, cheatWidth, priceAll, e)
	n.fill(r, v)
	st := workerStats(v, e.id.String())
	if st.refused != st.runs || st.paid != 0 {
		t.Errorf("%s: %s; want every receipt refused", what, st)
	}
	wi, _ := n.v.worker(e.id)
	hp := n.honestPartners(v)
	r.Outcome = fmt.Sprintf("%s: %d of %d receipts refused and struck (%s), paid nothing, struck out: %v; replicas replaced, all %d tasks verified; honest partners paid on %d of %d",
		what, st.refused, st.runs, strings.Join(st.why, "; "), wi.StruckOut, v.verified, hp.paid, hp.runs)
}

// scUnderReport: reports 1 µs for every job. The paper's rule made it the
// reference and left its honest partner unpaid; here its claim implies a
// speed beyond any machine (100.0).
func scUnderReport(t *testing.T, n *network, r *row) {
	refusedCheat(t, n, r, behaviour{reportMicros: 1}, "reports 1 µs")
}

// scBeyondWindow: claims more time than passed between the verifier
// sending the assignment and receiving the receipt.
func scBeyondWindow(t *testing.T, n *network, r *row) {
	refusedCheat(t, n, r, behaviour{beyondWindow: true}, "claims a minute more than it held each job")
}

// scSlowJobs: benchmarks at full speed, then holds every real job 3×
// longer than it runs and reports the time it held it (honest about
// being slow). The verifier sees the busy time: its rating falls towards
// what it delivers, it is unpaid while its observed speed is more than
// 15% below its current rating, and paid, once it is rated slow, its
// asking price × work ÷ that rating, no more.
func scSlowJobs(t *testing.T, n *network, r *row) {
	e := n.evil(t, "slow", "owner-slow", priceCheap, behaviour{slowX: 3})
	defer e.close()
	n.waitRated(t, e)
	before, _ := n.v.worker(e.id)
	v := timingGroup(t, n, 8, cheatWidth, priceCheap, e)
	n.fill(r, v)
	after, _ := n.v.worker(e.id)
	st := workerStats(v, e.id.String())
	h1 := workerStats(v, n.h1.id.String())
	if 4*uint64(after.Speed) > 3*uint64(before.Speed) {
		t.Errorf("rated %v by its benchmark and %v after holding 8 jobs 3× longer", before.Speed, after.Speed)
	}
	n.checkRatedOnObserved(t, v, e, before.Speed, after.Speed)
	r.Outcome = fmt.Sprintf("rated %v by its benchmark, %v after 8 jobs held 3× longer; %s by the speed rule on observed time; paid %v per standard hour of work, its asking price at its rating (h1 %v)",
		before.Speed, after.Speed, st, st.perStdHour(), h1.perStdHour())
}

// scBenchLie: reports its benchmark 3× faster than it ran (the claims fit
// their windows: they are shorter). Rated 3× too fast, it is judged on
// the busy time the verifier observes: unpaid as too slow until its
// rating, fed by that time, comes down; paid per unit of work at the
// inflated rating, which is less, not more.
func scBenchLie(t *testing.T, n *network, r *row) {
	e := n.evil(t, "evil", "owner-evil", priceCheap, behaviour{benchLie: 3})
	defer e.close()
	n.waitRated(t, e)
	before, _ := n.v.worker(e.id)
	v := timingGroup(t, n, 8, cheatWidth, priceCheap, e)
	n.fill(r, v)
	after, _ := n.v.worker(e.id)
	st := workerStats(v, e.id.String())
	h1 := workerStats(v, n.h1.id.String())
	if 4*uint64(after.Speed) > 3*uint64(before.Speed) {
		t.Errorf("rated %v by its faked benchmark and still %v after 8 jobs", before.Speed, after.Speed)
	}
	n.checkRatedOnObserved(t, v, e, before.Speed, after.Speed)
	r.Outcome = fmt.Sprintf("rated %v by its faked benchmark, %v after 8 jobs judged on observed time; %s; paid %v per standard hour of work (h1 %v)",
		before.Speed, after.Speed, st, st.perStdHour(), h1.perStdHour())
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
