package node

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the node's Prometheus metrics, served at /metrics on the
// local API address. Each node has its own registry, so several nodes can
// share a process (the devnet).
type metrics struct {
	reg         *prometheus.Registry
	assignments *prometheus.CounterVec // result: accepted, refused
	jobs        *prometheus.CounterVec // status
	execSeconds prometheus.Histogram   // job execution (CPU) time
	receipts    *prometheus.CounterVec // result: delivered, refused, retried
	releases    *prometheus.CounterVec // outcome
	submitted   prometheus.Counter     // tasks submitted
	fetchBytes  *prometheus.CounterVec // kind: module/input, result
	fetchErrors prometheus.Counter
}

func newMetrics(n *Node) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		assignments: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aspen_node_assignments_total",
			Help: "Assignments received from the verifier, by result (accepted, refused)."}, []string{"result"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aspen_node_jobs_total",
			Help: "Replicas this worker ran, by result status."}, []string{"status"}),
		execSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "aspen_node_job_exec_seconds",
			Help: "Execution time of replicas this worker ran (CPU time of the job).", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 12)}),
		receipts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aspen_node_receipts_total",
			Help: "Receipts sent to the verifier, by result (delivered, refused, retried)."}, []string{"result"}),
		releases: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aspen_node_released_tasks_total",
			Help: "Task verdicts released to this consumer by the verifier, by outcome."}, []string{"outcome"}),
		submitted: prometheus.NewCounter(prometheus.CounterOpts{Name: "aspen_node_submitted_tasks_total",
			Help: "Tasks this consumer submitted to the verifier."}),
		fetchBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aspen_node_blob_fetch_bytes_total",
			Help: "Blob bytes fetched from peers and verified against their CID, by kind (job, result)."}, []string{"kind"}),
		fetchErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "aspen_node_blob_fetch_errors_total",
			Help: "Blob fetches that failed (unreachable peer, wrong bytes, limits)."}),
	}
	m.reg.MustRegister(m.assignments, m.jobs, m.execSeconds, m.receipts, m.releases, m.submitted, m.fetchBytes, m.fetchErrors,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}),
		&nodeCollector{n: n})
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// nodeCollector reports gauges read from the node's state at scrape time.
type nodeCollector struct{ n *Node }

var (
	descTasks  = prometheus.NewDesc("aspen_node_tasks", "Consumer tasks by state (pending, fetching, verified, failed, canceled).", []string{"state"}, nil)
	descHeld   = prometheus.NewDesc("aspen_node_held_replicas", "Replicas a worker holds (accepted, not yet reported).", nil, nil)
	descGossip = prometheus.NewDesc("aspen_node_gossip_messages_total", "Gossip messages by validation result (accepted, rejected, ignored; relay_dropped: over a relay's rate, dropped before validation).", []string{"result"}, nil)
	descTables = prometheus.NewDesc("aspen_node_gossip_table_entries", "Entries of the node's bounded gossip tables (signers: per-signer replay/rate state; relays: per-relay rate state; offers: offers kept).", []string{"table"}, nil)
	descPeers  = prometheus.NewDesc("aspen_node_peers", "Connected peers.", nil, nil)
	descSpeed  = prometheus.NewDesc("aspen_node_rated_speed", "The worker's speed rating from the verifier (1.0 = reference machine).", nil, nil)
	descSpent  = prometheus.NewDesc("aspen_node_spent_micros", "Micro-units this consumer was charged for verified tasks.", nil, nil)
	descStore  = prometheus.NewDesc("aspen_node_store_total", "Store activity: durable writes, group-commit transactions and fsync rounds.", []string{"kind"}, nil)
	descWait   = prometheus.NewDesc("aspen_node_results_waiting", "Results requests of the local API waiting for a task to finish (long polls).", nil, nil)
)

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTasks, descHeld, descGossip, descTables, descPeers, descSpeed, descSpent, descStore, descWait} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	if n.c != nil {
		counts := map[string]int{}
		var spent int64
		n.c.mu.Lock()
		for _, gs := range n.c.groups {
			for k, v := range gs.counts {
				counts[k] += v
			}
			spent += int64(gs.spent)
		}
		n.c.mu.Unlock()
		for _, st := range []string{TaskPending, TaskFetching, TaskVerified, TaskFailed, TaskCanceled} {
			ch <- prometheus.MustNewConstMetric(descTasks, prometheus.GaugeValue, float64(counts[st]), st)
		}
		ch <- prometheus.MustNewConstMetric(descSpent, prometheus.GaugeValue, float64(spent))
		ch <- prometheus.MustNewConstMetric(descWait, prometheus.GaugeValue, float64(n.c.waiting.Load()))
	}
	if n.w != nil {
		free, slots := n.w.capacity()
		ch <- prometheus.MustNewConstMetric(descHeld, prometheus.GaugeValue, float64(slots-free))
		if r, _ := n.w.Rating(); r != nil {
			ch <- prometheus.MustNewConstMetric(descSpeed, prometheus.GaugeValue, float64(r.Speed)/1000)
		}
	}
	gs := n.host.GossipStats()
	ch <- prometheus.MustNewConstMetric(descGossip, prometheus.CounterValue, float64(gs.Accepted), "accepted")
	ch <- prometheus.MustNewConstMetric(descGossip, prometheus.CounterValue, float64(gs.Rejected), "rejected")
	ch <- prometheus.MustNewConstMetric(descGossip, prometheus.CounterValue, float64(gs.Ignored), "ignored")
	ch <- prometheus.MustNewConstMetric(descGossip, prometheus.CounterValue, float64(gs.RelayDropped), "relay_dropped")
	n.offersMu.Lock()
	offers := len(n.offers)
	n.offersMu.Unlock()
	ch <- prometheus.MustNewConstMetric(descTables, prometheus.GaugeValue, float64(gs.Signers), "signers")
	ch <- prometheus.MustNewConstMetric(descTables, prometheus.GaugeValue, float64(gs.Relays), "relays")
	ch <- prometheus.MustNewConstMetric(descTables, prometheus.GaugeValue, float64(offers), "offers")
	ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(len(n.host.Peers())))
	ss := n.store.Stats()
	ch <- prometheus.MustNewConstMetric(descStore, prometheus.CounterValue, float64(ss.DurableWrites), "durable_writes")
	ch <- prometheus.MustNewConstMetric(descStore, prometheus.CounterValue, float64(ss.Commits), "commits")
	ch <- prometheus.MustNewConstMetric(descStore, prometheus.CounterValue, float64(ss.Syncs), "fsyncs")
}
