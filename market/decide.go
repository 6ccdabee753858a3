package market

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/aspen-market/aspen/protocol"
)

// DecisionKind is what the verifier should do next with a task.
type DecisionKind string

// Decision kinds. Verified and Failed are final.
const (
	DecisionWait     DecisionKind = "wait"     // replicas or the verifier's run still pending
	DecisionNeed     DecisionKind = "need"     // add Need worker replicas, or run it on the verifier
	DecisionVerified DecisionKind = "verified" // result known; settle
	DecisionFailed   DecisionKind = "failed"   // no result; settle (full refund)
)

// Outcome is the verdict on one replica.
type Outcome string

// Replica outcomes. Only OutcomePaid is paid.
const (
	OutcomePaid     Outcome = "paid"
	OutcomeTooSlow  Outcome = "too-slow"     // verified result, but slower than the speed rule allows
	OutcomeWrong    Outcome = "wrong-result" // culprit: result differs from the verified one; strike
	OutcomeRefused  Outcome = "refused"      // claimed an impossible time; strike
	OutcomeFailed   Outcome = "failed"       // dropped (silent, cancelled)
	OutcomeTimedOut Outcome = "timed-out"    // ran past the max run time
	OutcomeUnjudged Outcome = "unjudged"     // task failed or aborted before a verdict
)

// Verdict is the judgement on one replica.
type Verdict struct {
	Worker  string  `json:"worker"`
	Outcome Outcome `json:"outcome"`
	Strike  bool    `json:"strike,omitempty"`
	// Work is the replica's metered work, as its receipt reported it.
	Work uint64 `json:"metered_work,omitempty"`
	// EffectiveSpeed is Work ÷ reported time for a replica with the
	// verified result: the speed it claims to have delivered.
	EffectiveSpeed protocol.Speed `json:"effective_speed,omitempty"`
	// BilledMicros is the time the work takes at the rated speed, what the
	// consumer pays for (0 unless paid).
	BilledMicros int64 `json:"billed_micros,omitempty"`
	// TimeMicros, for a replica with the verified result, is the time its
	// speed is observed over (Reputation.ObserveSpeed): its share of the
	// busy slot time the verifier observed (0: not observed, no sample).
	TimeMicros int64 `json:"time_micros,omitempty"`
}

// Decision is the outcome of Task.Decide.
type Decision struct {
	Kind DecisionKind `json:"kind"`
	// Need is the number of worker replicas to add (DecisionNeed).
	Need int `json:"need,omitempty"`
	// Verifier: the verifier must run the task itself (DecisionNeed);
	// call RequestVerifier, then VerifierResult.
	Verifier bool `json:"verifier,omitempty"`
	// Result, ExitCode and Work are the verified result (DecisionVerified).
	Result   string `json:"result,omitempty"`
	ExitCode int32  `json:"exit_code,omitempty"`
	Work     uint64 `json:"metered_work,omitempty"`
	// Trusted: the verified result is the verifier's own run.
	Trusted bool `json:"trusted,omitempty"`
	// Verdicts, one per replica in assignment order (final decisions).
	Verdicts []Verdict `json:"verdicts,omitempty"`
	// Reason explains a wait, need or failure.
	Reason string `json:"reason,omitempty"`
}

// Final reports whether the decision is verified or failed.
func (d Decision) Final() bool { return d.Kind == DecisionVerified || d.Kind == DecisionFailed }

// resultKey is what replicas must agree on: the output's CID, the exit
// code and the metered work. A replica that reports other work for the
// same output disagrees like any wrong result.
type resultKey struct {
	cid  string
	exit int32
	work uint64
}

func (k resultKey) String() string { return fmt.Sprintf("%s/exit=%d/work=%d", k.cid, k.exit, k.work) }

func keyOf(rc *Receipt) resultKey { return resultKey{rc.ResultCID, rc.ExitCode, rc.Work} }

type group struct {
	key    resultKey
	count  int
	owners map[string]bool
}

// Decide is the task's state machine, a pure function of the task (it does
// not modify it). In order:
//
//  1. Aborted → verified if the replicas already reported (or the
//     verifier's run) verify a result, judged as below; else failed.
//  2. The verifier ran (not stopped): wait while a replica is still
//     assigned, then verified with the verifier's (result, exit, work);
//     replicas are judged by the speed rule on their own evidence (judge).
//  3. A replica still assigned, or the verifier's run pending: if fewer
//     than Replicas replicas are running or reported (some failed or timed
//     out), need the difference now; otherwise wait.
//  4. Otherwise, with R the reported replicas: if |R| < Replicas, need
//     Replicas − |R| more (failed, refused or timed-out replicas are
//     replaced). Else a result k = (CID, exit, work) is verified when it is
//     reported by replicas of at least two distinct owners forming a strict
//     majority of R, and replicas are judged (judge). With no majority: if results
//     differ, the verifier has not run and VerifierTiebreak is set, the
//     verifier runs it; else need the fewest worker replicas that could
//     make the leading result a majority of two or more owners.
//  5. A worker request that would exceed Terms.MaxRuns replicas falls back
//     to the verifier if it has not run and some replica reported (last
//     resort); otherwise the task fails.
func (t *Task) Decide() Decision {
	if t.Aborted != "" {
		return t.decideAborted()
	}
	running := 0
	for _, r := range t.Runs {
		if r.State == ReplicaAssigned {
			running++
		}
	}
	if v := t.Verifier; v != nil && !v.Stopped {
		if running > 0 {
			return Decision{Kind: DecisionWait, Reason: fmt.Sprintf("%d replica(s) running", running)}
		}
		return t.verifiedTrusted(*v)
	}
	// Workers of two owners both stopped the job at the max run time: the
	// job itself runs too long (a loop, too much work for its limit). It
	// fails at once rather than going round every worker; nobody is paid.
	if owners := t.stoppedOwners(); owners >= 2 {
		return t.failed(fmt.Sprintf("time limit exceeded: stopped at the max run time (%s) on %d workers",
			time.Duration(t.Terms.MaxRunMicros)*time.Microsecond, owners))
	}
	if running > 0 || t.VerifierPending {
		// Replace failed or timed-out replicas at once, without waiting
		// for the running ones.
		live := running
		for _, r := range t.Runs {
			if r.State == ReplicaReported {
				live++
			}
		}
		if need := t.Replicas - live; need > 0 && len(t.Runs)+need <= t.Terms.MaxRuns {
			return Decision{Kind: DecisionNeed, Need: need,
				Reason: fmt.Sprintf("%d of %d replicas running or reported", live, t.Replicas)}
		}
		if running > 0 {
			return Decision{Kind: DecisionWait, Reason: fmt.Sprintf("%d replica(s) running", running)}
		}
		return Decision{Kind: DecisionWait, Reason: "verifier run pending"}
	}

	groups, n := t.reportedGroups()
	need, reason := 0, ""
	if n < t.Replicas {
		need = t.Replicas - n
		reason = fmt.Sprintf("%d of %d replicas reported", n, t.Replicas)
	} else {
		// Leading result: most replicas, then most owners, then smallest key.
		slices.SortFunc(groups, func(a, b *group) int {
			if a.count != b.count {
				return b.count - a.count
			}
			if len(a.owners) != len(b.owners) {
				return len(b.owners) - len(a.owners)
			}
			return strings.Compare(a.key.String(), b.key.String())
		})
		lead := groups[0]
		if len(lead.owners) >= 2 && 2*lead.count > n {
			return t.verifiedUntrusted(lead.key)
		}
		if len(groups) > 1 {
			reason = fmt.Sprintf("results differ: %s", describeGroups(groups))
			if t.Terms.VerifierTiebreak && t.Verifier == nil {
				return Decision{Kind: DecisionNeed, Verifier: true, Reason: reason}
			}
		} else {
			reason = fmt.Sprintf("%s agreed by only %d owner(s)", lead.key, len(lead.owners))
		}
		need = max(1, 2-len(lead.owners), n-2*lead.count+1)
	}
	if len(t.Runs)+need <= t.Terms.MaxRuns {
		return Decision{Kind: DecisionNeed, Need: need, Reason: reason}
	}
	if n > 0 && t.Verifier == nil {
		return Decision{Kind: DecisionNeed, Verifier: true,
			Reason: fmt.Sprintf("%s; worker replicas exhausted (%d), verifier decides", reason, t.Terms.MaxRuns)}
	}
	return t.failed(fmt.Sprintf("no verified result after %d replica(s): %s", len(t.Runs), reason))
}

// reportedGroups groups the reported replicas by result (CID, exit,
// work), with their counts and owners, in order of first report; n is the
// number of reported replicas.
func (t *Task) reportedGroups() (groups []*group, n int) {
	for _, r := range t.Runs {
		if r.State != ReplicaReported {
			continue
		}
		n++
		k := keyOf(r.Receipt)
		j := slices.IndexFunc(groups, func(g *group) bool { return g.key == k })
		if j < 0 {
			groups = append(groups, &group{key: k, owners: map[string]bool{}})
			j = len(groups) - 1
		}
		groups[j].count++
		groups[j].owners[ownerOf(r)] = true
	}
	return groups, n
}

// decideAborted judges the work already reported when a task is stopped
// (canceled by its consumer, or out of queue time): a valid verifier run,
// or a result reported by replicas of two owners forming a strict majority
// of the reported ones, with at least Replicas reported, is verified and
// its replicas judged and paid as the consumer agreed; replicas still
// running are dropped unjudged (not paid, not held against their worker).
// Otherwise the task fails and the whole escrow is refunded.
func (t *Task) decideAborted() Decision {
	if v := t.Verifier; v != nil && !v.Stopped {
		d := t.verifiedTrusted(*v)
		d.Reason = "aborted after the verifier's run: " + t.Aborted
		return d
	}
	groups, n := t.reportedGroups()
	for _, g := range groups {
		if n >= t.Replicas && len(g.owners) >= 2 && 2*g.count > n {
			d := t.verifiedUntrusted(g.key)
			d.Reason = "aborted after a verified result: " + t.Aborted
			return d
		}
	}
	return t.failed("aborted: " + t.Aborted)
}

// stoppedOwners counts the owners whose workers stopped the job at the
// max run time.
func (t *Task) stoppedOwners() int {
	owners := map[string]bool{}
	for _, r := range t.Runs {
		if r.State == ReplicaTimedOut && r.Receipt != nil && r.Receipt.Stopped {
			owners[ownerOf(r)] = true
		}
	}
	return len(owners)
}

func ownerOf(r Replica) string {
	if r.Owner == "" {
		return "\x00" + r.Worker
	}
	return r.Owner
}

func describeGroups(gs []*group) string {
	parts := make([]string, len(gs))
	for i, g := range gs {
		parts[i] = fmt.Sprintf("%d× %s", g.count, g.key)
	}
	return strings.Join(parts, ", ")
}

// failed builds a failed decision: nobody is paid; a refused replica is
// still struck (its impossible claim is a lie whatever the task's fate).
func (t *Task) failed(reason string) Decision {
	d := Decision{Kind: DecisionFailed, Reason: reason}
	for _, r := range t.Runs {
		v := Verdict{Worker: r.Worker, Outcome: OutcomeUnjudged}
		switch r.State {
		case ReplicaFailed:
			v.Outcome = OutcomeFailed
		case ReplicaTimedOut:
			v.Outcome = OutcomeTimedOut
		case ReplicaRefused:
			v.Outcome, v.Strike, v.Work = OutcomeRefused, true, r.Receipt.Work
		case ReplicaReported:
			v.Work = r.Receipt.Work
		}
		d.Verdicts = append(d.Verdicts, v)
	}
	return d
}

// judge fills the verdicts of a decision verified with result k. A
// replica with another result is a culprit (wrong-result, strike). A
// replica with k is judged by the paper's speed rule on its run time t_i:
// the time it reports (CPU time, which the machine's other load does not
// lengthen), bounded by the window the verifier observed. No lie about t_i
// pays: pay follows the metered work at the rating, and the rating the
// busy time the verifier observed (TimeMicros), never t_i. With c_i =
// max(t_i × s_i − slack, 0), the work its rating s_i says it would do in
// t_i (the slack is what speed 1.0 does in SlackMicros):
//
//   - if some verified replica met its rating (c_min ≤ W), replica i is
//     paid iff c_i × (1 − tol) ≤ W: its effective speed W ÷ t_i is at
//     most tol below its rating;
//   - otherwise (the job ran slower than every rating: metered units cost
//     more time on this job's instructions than on average) it is paid
//     iff c_i × (1 − tol) ≤ c_min: it was at most tol slower, relative to
//     its rating, than the best replica (the paper's untrusted rule).
//
// Together: c_i × (1 − tol) ≤ max(W, c_min). A partner that under-reports
// can only lower c_min, which holds everyone to their own rating.
func (t *Task) judge(d *Decision, k resultKey) {
	low := uint64(PPM - t.Terms.TolerancePPM)
	slack := MaxWork(t.Terms.SlackMicros)
	claimed := func(r Replica) Work { return WorkOf(r.Speed, runMicros(r.Receipt)).sub(Work{Lo: slack}) }
	var cmin Work
	have := false
	for _, r := range t.Runs {
		if r.State == ReplicaReported && keyOf(r.Receipt) == k {
			if c := claimed(r); !have || c.Cmp(cmin) < 0 {
				cmin, have = c, true
			}
		}
	}
	for _, r := range t.Runs {
		v := Verdict{Worker: r.Worker}
		switch r.State {
		case ReplicaFailed:
			v.Outcome = OutcomeFailed
		case ReplicaTimedOut:
			v.Outcome = OutcomeTimedOut
		case ReplicaRefused:
			v.Outcome, v.Strike, v.Work = OutcomeRefused, true, r.Receipt.Work
		case ReplicaAssigned: // unreachable: Decide waits for running replicas
			v.Outcome = OutcomeUnjudged
		case ReplicaReported:
			rc := r.Receipt
			v.Work = rc.Work
			if keyOf(rc) != k {
				v.Outcome, v.Strike = OutcomeWrong, true
				break
			}
			v.TimeMicros = rc.SlotMicros
			v.EffectiveSpeed = effectiveSpeed(rc.Work, runMicros(rc))
			if tooSlow(claimed(r), low, Work{Lo: rc.Work}, cmin, have) {
				v.Outcome = OutcomeTooSlow
				break
			}
			v.Outcome = OutcomePaid
			v.BilledMicros = BilledMicros(rc.Work, r.Speed)
		}
		d.Verdicts = append(d.Verdicts, v)
	}
}

// runMicros is the run time a receipt is judged on: the reported time,
// bounded by the window the verifier observed.
func runMicros(rc *Receipt) int64 {
	if rc.WindowMicros > 0 {
		return min(rc.ExecMicros, rc.WindowMicros)
	}
	return rc.ExecMicros
}

// tooSlow reports whether a replica that claims c (its observed time ×
// rating, less the slack) is more than tol slow: against its own work w
// when some verified replica met its rating (cmin ≤ w) or none was
// observed, c × (10⁶ − tol) > w × 10⁶; against the best replica otherwise,
// c × (10⁶ − tol) > cmin × 10⁶. Exact in 128 bits.
func tooSlow(c Work, low uint64, w, cmin Work, have bool) bool {
	ref := w
	if have && cmin.Cmp(w) > 0 {
		ref = cmin
	}
	return c.mul(low).Cmp(ref.mul(PPM)) > 0
}

// effectiveSpeed is work ÷ time in milli standard units (a speed s does s
// work units per µs), saturating; a zero time counts as 1 µs.
func effectiveSpeed(work uint64, micros int64) protocol.Speed {
	return protocol.Speed(min(work/uint64(max(micros, 1))/protocol.WorkPerMicroPerMilli, math.MaxUint32))
}

func (t *Task) verifiedTrusted(v VerifierRun) Decision {
	k := resultKey{v.ResultCID, v.ExitCode, v.Work}
	d := Decision{Kind: DecisionVerified, Result: k.cid, ExitCode: k.exit, Work: k.work, Trusted: true}
	t.judge(&d, k)
	return d
}

func (t *Task) verifiedUntrusted(k resultKey) Decision {
	d := Decision{Kind: DecisionVerified, Result: k.cid, ExitCode: k.exit, Work: k.work}
	t.judge(&d, k)
	return d
}
