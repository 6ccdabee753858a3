package verifier

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/aspen-market/aspen/verifier/ledger"
)

// metricsHandler exports the verifier's counters, gauges and ledger totals
// in the Prometheus text format at /metrics.
func (v *Verifier) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&collector{v: v}, prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

type collector struct{ v *Verifier }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("aspen_verifier_"+name, help, labels, nil)
}

var (
	mAssignments = desc("assignments_total", "Assignments signed and sent to workers, by result.", "result")
	mReplicas    = desc("replicas_assigned_total", "Replicas assigned to workers.")
	mReceipts    = desc("receipts_total", "Receipts received from workers.")
	mTasks       = desc("tasks_total", "Tasks decided, by outcome (verified, failed, canceled).", "outcome")
	mStrikes     = desc("strikes_total", "Strikes given to workers (wrong results and impossible claims).")
	mVerdicts    = desc("replicas_judged_total", "Replicas judged when their task settled, by outcome (paid, too-slow, refused, wrong-result, failed, timed-out, unjudged).", "outcome")
	mSpotChecks  = desc("own_runs_total", "Jobs the verifier ran itself (spot-checks and tie-breaks).")
	mReleases    = desc("releases_total", "Release messages delivered to consumers, and retries.", "result")
	mBenchmarks  = desc("benchmarks_total", "Worker benchmarks, by result.", "result")
	mUndelivered = desc("undelivered_tasks_total", "Results whose consumer never acknowledged them within the release give-up time (given_up), and those released again when it came back (redelivered).", "event")
	mWorkers     = desc("workers", "Registered workers, by state (registered, live, in_book).", "state")
	mOpen        = desc("open_tasks", "Tasks not yet decided, by state (open, queued).", "state")
	mOutstanding = desc("outstanding_replicas", "Replicas assigned and not yet reported.")
	mGroups      = desc("groups", "Open job groups.")
	mLedger      = desc("ledger_micros", "Sum of ledger balances by account kind, in micro-units (external is negative: money that came in).", "kind")
	mStore       = desc("store_total", "Store activity: durable writes, group-commit transactions and fsync rounds.", "kind")
	mLedgerTotal = desc("ledger_total_micros", "Sum over all ledger accounts; 0 when money is conserved.")
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mAssignments, mReplicas, mReceipts, mTasks, mStrikes, mVerdicts, mSpotChecks, mReleases, mBenchmarks, mUndelivered, mWorkers, mOpen, mOutstanding, mGroups, mLedger, mLedgerTotal, mStore} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.v.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(mAssignments, s.AssignmentsSent, "sent")
	counter(mAssignments, s.AssignmentsRefused, "refused")
	counter(mReplicas, s.ReplicasAssigned)
	counter(mReceipts, s.Receipts)
	counter(mTasks, s.TasksVerified, "verified")
	counter(mTasks, s.TasksFailed, "failed")
	counter(mTasks, s.TasksCanceled, "canceled")
	counter(mStrikes, s.Strikes)
	for o, n := range s.Verdicts {
		counter(mVerdicts, n, o)
	}
	counter(mSpotChecks, s.VerifierRuns)
	counter(mReleases, s.Releases, "delivered")
	counter(mReleases, s.ReleaseRetries, "retried")
	counter(mBenchmarks, s.BenchmarksPassed, "passed")
	counter(mBenchmarks, s.BenchmarksFailed, "failed")
	counter(mUndelivered, s.TasksUndelivered, "given_up")
	counter(mUndelivered, s.TasksRedelivered, "redelivered")
	gauge(mWorkers, float64(s.Workers), "registered")
	gauge(mWorkers, float64(s.LiveWorkers), "live")
	gauge(mWorkers, float64(s.InBook), "in_book")
	gauge(mOpen, float64(s.OpenTasks), "open")
	gauge(mOpen, float64(s.QueuedTasks), "queued")
	gauge(mOutstanding, float64(s.Outstanding))
	gauge(mGroups, float64(s.Groups))
	counter(mStore, s.Store.DurableWrites, "durable_writes")
	counter(mStore, s.Store.Commits, "commits")
	counter(mStore, s.Store.Syncs, "fsyncs")
	if bals, err := c.v.led.Balances(); err == nil {
		byKind := map[string]int64{}
		var total int64
		for _, b := range bals {
			kind, _, err := ledger.AccountKind(b.Account)
			if err != nil {
				kind = "other"
			}
			byKind[kind] += int64(b.Balance)
			total += int64(b.Balance)
		}
		for _, k := range []string{"external", "consumer", "escrow", "worker", "operator"} {
			gauge(mLedger, float64(byKind[k]), k)
		}
		gauge(mLedgerTotal, float64(total))
	}
}
