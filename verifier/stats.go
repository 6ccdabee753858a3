package verifier

import (
	"sync/atomic"

	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/store"
)

// counters are the verifier's event counters (for metrics).
type counters struct {
	assignments, refused, replicas, receipts   atomic.Uint64
	verified, failed, canceled                 atomic.Uint64
	strikes, ownRuns, releases, releaseRetries atomic.Uint64
	benchPassed, benchFailed                   atomic.Uint64
	releasesGivenUp, undelivered, redelivered  atomic.Uint64
	// verdicts counts judged replicas by outcome (market.Outcome order
	// below: paid, too-slow, refused, wrong-result, failed, timed-out,
	// unjudged).
	verdicts [len(verdictNames)]atomic.Uint64
}

// verdictNames are the replica outcomes counted, in counters.verdicts order.
var verdictNames = [...]market.Outcome{market.OutcomePaid, market.OutcomeTooSlow, market.OutcomeRefused,
	market.OutcomeWrong, market.OutcomeFailed, market.OutcomeTimedOut, market.OutcomeUnjudged}

// countVerdict counts one judged replica.
func (c *counters) countVerdict(o market.Outcome) {
	for i, n := range verdictNames {
		if n == o {
			c.verdicts[i].Add(1)
			return
		}
	}
}

// Stats are counters since Start and current gauges, for metrics.
type Stats struct {
	AssignmentsSent    uint64 `json:"assignments_sent"`
	AssignmentsRefused uint64 `json:"assignments_refused"` // refused or undeliverable
	ReplicasAssigned   uint64 `json:"replicas_assigned"`
	Receipts           uint64 `json:"receipts"`
	TasksVerified      uint64 `json:"tasks_verified"`
	TasksFailed        uint64 `json:"tasks_failed"`
	TasksCanceled      uint64 `json:"tasks_canceled"`
	Strikes            uint64 `json:"strikes"`
	VerifierRuns       uint64 `json:"verifier_runs"` // spot checks and tie-breaks
	Releases           uint64 `json:"releases"`
	ReleaseRetries     uint64 `json:"release_retries"`
	BenchmarksPassed   uint64 `json:"benchmarks_passed"`
	BenchmarksFailed   uint64 `json:"benchmarks_failed"`
	// ReleasesGivenUp counts groups given up on after ReleaseGiveUp
	// without an acknowledgement; TasksUndelivered their results, and
	// TasksRedelivered results released again when the consumer came back.
	ReleasesGivenUp  uint64 `json:"releases_given_up"`
	TasksUndelivered uint64 `json:"tasks_undelivered"`
	TasksRedelivered uint64 `json:"tasks_redelivered"`
	// Verdicts counts settled replicas by outcome (paid, too-slow,
	// refused, wrong-result, failed, timed-out, unjudged).
	Verdicts map[string]uint64 `json:"verdicts"`

	Workers     int `json:"workers"`
	LiveWorkers int `json:"live_workers"`
	InBook      int `json:"in_book"`
	Groups      int `json:"groups"`
	OpenTasks   int `json:"open_tasks"`
	QueuedTasks int `json:"queued_tasks"`
	Outstanding int `json:"outstanding_replicas"`

	Store store.Stats `json:"store"` // the store's durable writes, commits and fsyncs
}

// Stats returns the verifier's counters and gauges.
func (v *Verifier) Stats() Stats {
	c := &v.stats
	s := Stats{
		AssignmentsSent: c.assignments.Load(), AssignmentsRefused: c.refused.Load(), ReplicasAssigned: c.replicas.Load(),
		Receipts: c.receipts.Load(), TasksVerified: c.verified.Load(), TasksFailed: c.failed.Load(), TasksCanceled: c.canceled.Load(),
		Strikes: c.strikes.Load(), VerifierRuns: c.ownRuns.Load(), Releases: c.releases.Load(), ReleaseRetries: c.releaseRetries.Load(),
		BenchmarksPassed: c.benchPassed.Load(), BenchmarksFailed: c.benchFailed.Load(),
		ReleasesGivenUp: c.releasesGivenUp.Load(), TasksUndelivered: c.undelivered.Load(), TasksRedelivered: c.redelivered.Load(),
		Store: v.st.Stats(), Verdicts: map[string]uint64{},
	}
	for i, n := range verdictNames {
		s.Verdicts[string(n)] = c.verdicts[i].Load()
	}
	now := v.nowMs()
	v.mu.Lock()
	defer v.mu.Unlock()
	s.Workers, s.InBook, s.Groups, s.OpenTasks, s.QueuedTasks = len(v.workers), len(v.book.Offers), len(v.groups), v.openTasks, len(v.queued)
	for _, ws := range v.workers {
		if v.liveLocked(ws, now) {
			s.LiveWorkers++
		}
	}
	for _, n := range v.book.Reserved {
		s.Outstanding += n
	}
	return s
}
