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
	OutcomeFailed   Outcome = "failed"       // dropped (silent, cancelled)
	OutcomeTimedOut Outcome = "timed-out"    // ran past the max run time
	OutcomeUnjudged Outcome = "unjudged"     // task failed or aborted before a verdict
)

// Verdict is the judgement on one replica.
type Verdict struct {
	Worker  string  `json:"worker"`
	Outcome Outcome `json:"outcome"`
	Strike  bool    `json:"strike,omitempty"`
	// Work is L = t × rated speed of a reported replica.
	Work Work `json:"work"`
	// EffectiveSpeed is L_ref / t for a replica with the verified result:
	// the speed it actually delivered, judged against the reference.
	EffectiveSpeed protocol.Speed `json:"effective_speed,omitempty"`
	// BilledMicros is the time the consumer pays for (0 unless paid).
	BilledMicros int64 `json:"billed_micros,omitempty"`
}

// Decision is the outcome of Task.Decide.
type Decision struct {
	Kind DecisionKind `json:"kind"`
	// Need is the number of worker replicas to add (DecisionNeed).
	Need int `json:"need,omitempty"`
	// Verifier: the verifier must run the task itself (DecisionNeed);
	// call RequestVerifier, then VerifierResult.
	Verifier bool `json:"verifier,omitempty"`
	// Result and ExitCode are the verified result (DecisionVerified).
	Result   string `json:"result,omitempty"`
	ExitCode int32  `json:"exit_code,omitempty"`
	// Trusted: the reference is the verifier's run; otherwise Reference
	// names the worker whose L is the reference.
	Trusted       bool   `json:"trusted,omitempty"`
	Reference     string `json:"reference,omitempty"`
	ReferenceWork Work   `json:"reference_work"`
	// Verdicts, one per replica in assignment order (final decisions).
	Verdicts []Verdict `json:"verdicts,omitempty"`
	// Reason explains a wait, need or failure.
	Reason string `json:"reason,omitempty"`
}

// Final reports whether the decision is verified or failed.
func (d Decision) Final() bool { return d.Kind == DecisionVerified || d.Kind == DecisionFailed }

type resultKey struct {
	cid  string
	exit int32
}

func (k resultKey) String() string { return fmt.Sprintf("%s/exit=%d", k.cid, k.exit) }

type group struct {
	key    resultKey
	count  int
	owners map[string]bool
}

// Decide is the task's state machine, a pure function of the task (it does
// not modify it). In order:
//
//  1. Aborted → failed.
//  2. The verifier ran (not stopped): wait while a replica is still
//     assigned, then verified: its result is the
//     verified one, its L = t_b × s_b the reference; every reported replica
//     with another result is a culprit (strike, unpaid); one with the
//     verified result is paid iff L_b ≥ t_w × s_w × (1 − tol), i.e. its
//     effective speed L_b/t_w is at most tol below its rated speed.
//  3. A replica still assigned, or the verifier's run pending: if fewer
//     than Replicas replicas are running or reported (some failed or timed
//     out), need the difference now; otherwise wait.
//  4. Otherwise, with R the reported replicas: if |R| < Replicas, need
//     Replicas − |R| more (failed or timed-out replicas are replaced).
//     Else a result k is verified when it is reported by replicas of at
//     least two distinct owners forming a strict majority of R: the
//     reference is the smallest L = t × rated speed among k's replicas;
//     each other replica with k is paid iff L ≤ L_ref × (1 + tol); replicas
//     with another result are culprits. With no such majority: if results
//     differ, the verifier has not run and VerifierTiebreak is set, the
//     verifier runs it; else need the fewest worker replicas that could
//     make the leading result a majority of two or more owners.
//  5. A worker request that would exceed Terms.MaxRuns replicas falls back
//     to the verifier if it has not run and some replica reported (last
//     resort); otherwise the task fails.
func (t *Task) Decide() Decision {
	if t.Aborted != "" {
		return t.failed("aborted: " + t.Aborted)
	}
	running := 0
	for _, r := range t.Runs {
		if r.State == ReplicaAssigned {
			running++
		}
	}
	if v := t.Verifier; v != nil && !v.Stopped && v.ExecMicros <= t.Terms.MaxRunMicros {
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

	var reported []int
	var groups []*group
	for i, r := range t.Runs {
		if r.State != ReplicaReported {
			continue
		}
		reported = append(reported, i)
		k := resultKey{r.Receipt.ResultCID, r.Receipt.ExitCode}
		j := slices.IndexFunc(groups, func(g *group) bool { return g.key == k })
		if j < 0 {
			groups = append(groups, &group{key: k, owners: map[string]bool{}})
			j = len(groups) - 1
		}
		groups[j].count++
		groups[j].owners[ownerOf(r)] = true
	}
	n := len(reported)
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

// failed builds a failed decision: nobody is paid, nobody struck.
func (t *Task) failed(reason string) Decision {
	d := Decision{Kind: DecisionFailed, Reason: reason}
	for _, r := range t.Runs {
		v := Verdict{Worker: r.Worker, Outcome: OutcomeUnjudged}
		switch r.State {
		case ReplicaFailed:
			v.Outcome = OutcomeFailed
		case ReplicaTimedOut:
			v.Outcome = OutcomeTimedOut
		case ReplicaReported:
			v.Work = WorkOf(r.Speed, r.Receipt.ExecMicros)
		}
		d.Verdicts = append(d.Verdicts, v)
	}
	return d
}

// judge fills the verdicts of a verified decision; paid decides whether a
// replica with the verified result meets the speed rule against ref.
func (t *Task) judge(d *Decision, k resultKey, ref Work, paid func(r Replica, l Work) bool) {
	tol := uint64(t.Terms.TolerancePPM)
	for _, r := range t.Runs {
		v := Verdict{Worker: r.Worker}
		switch r.State {
		case ReplicaFailed:
			v.Outcome = OutcomeFailed
		case ReplicaTimedOut:
			v.Outcome = OutcomeTimedOut
		case ReplicaAssigned: // unreachable: Decide waits for running replicas
			v.Outcome = OutcomeUnjudged
		case ReplicaReported:
			tw := r.Receipt.ExecMicros
			v.Work = WorkOf(r.Speed, tw)
			if (resultKey{r.Receipt.ResultCID, r.Receipt.ExitCode}) != k {
				v.Outcome, v.Strike = OutcomeWrong, true
				break
			}
			v.EffectiveSpeed = effectiveSpeed(ref, tw, r.Speed)
			// The speed rule judges the work beyond the slack: what a
			// standard machine does in SlackMicros (not scaled by the
			// worker's own rating, which an inflated rating would exploit).
			if !paid(r, v.Work.sub(WorkOf(protocol.SpeedUnit, t.Terms.SlackMicros))) {
				v.Outcome = OutcomeTooSlow
				break
			}
			v.Outcome = OutcomePaid
			// Billed time: min(t, L_ref × (1 + tol) / s_rated, max run time).
			capped := ref.mul(PPM + tol).div(uint64(r.Speed) * PPM)
			v.BilledMicros = int64(min(uint64(tw), capped, uint64(t.Terms.MaxRunMicros)))
		}
		d.Verdicts = append(d.Verdicts, v)
	}
}

// effectiveSpeed is L_ref / t in milli standard units, saturating; a zero
// time delivers the rated speed if the reference is zero too.
func effectiveSpeed(ref Work, micros int64, rated protocol.Speed) protocol.Speed {
	if micros <= 0 {
		if ref == (Work{}) {
			return rated
		}
		return math.MaxUint32
	}
	return protocol.Speed(min(ref.div(uint64(micros)), math.MaxUint32))
}

func (t *Task) verifiedTrusted(v VerifierRun) Decision {
	k := resultKey{v.ResultCID, v.ExitCode}
	ref := WorkOf(v.Speed, v.ExecMicros)
	d := Decision{Kind: DecisionVerified, Result: k.cid, ExitCode: k.exit, Trusted: true, ReferenceWork: ref}
	low := uint64(PPM - t.Terms.TolerancePPM)
	// s_w = L_b / t_w ≥ s_rated × (1 − tol)  ⟺  L_b × 1e6 ≥ t_w × s_rated × (1e6 − tol)
	lhs := ref.mul(PPM)
	t.judge(&d, k, ref, func(_ Replica, l Work) bool { return lhs.Cmp(l.mul(low)) >= 0 })
	return d
}

func (t *Task) verifiedUntrusted(k resultKey) Decision {
	ref, refWorker := Work{}, ""
	for _, r := range t.Runs {
		if r.State != ReplicaReported || (resultKey{r.Receipt.ResultCID, r.Receipt.ExitCode}) != k {
			continue
		}
		if l := WorkOf(r.Speed, r.Receipt.ExecMicros); refWorker == "" || l.Cmp(ref) < 0 {
			ref, refWorker = l, r.Worker
		}
	}
	d := Decision{Kind: DecisionVerified, Result: k.cid, ExitCode: k.exit, Reference: refWorker, ReferenceWork: ref}
	// L × 1e6 ≤ L_ref × (1e6 + tol)
	bound := ref.mul(PPM + uint64(t.Terms.TolerancePPM))
	t.judge(&d, k, ref, func(_ Replica, l Work) bool { return l.mul(PPM).Cmp(bound) <= 0 })
	return d
}
