package verifier

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/aspen-market/aspen/protocol"
)

// /metrics parses with the Prometheus text parser and moves with the
// ledger.
func TestMetricsParseAndMove(t *testing.T) {
	v := startVerifier(t, testConfig(t, t.TempDir()), false)
	scrape := func() map[string]float64 {
		t.Helper()
		w := httptest.NewRecorder()
		v.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		if w.Code != 200 {
			t.Fatalf("/metrics: %d", w.Code)
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(w.Body)
		if err != nil {
			t.Fatalf("metrics do not parse: %v", err)
		}
		out := map[string]float64{}
		for name, f := range fams {
			for _, m := range f.Metric {
				key := name
				for _, l := range m.Label {
					key += "{" + l.GetValue() + "}"
				}
				switch {
				case m.Gauge != nil:
					out[key] = m.Gauge.GetValue()
				case m.Counter != nil:
					out[key] = m.Counter.GetValue()
				}
			}
		}
		return out
	}
	before := scrape()
	if _, ok := before["aspen_verifier_tasks_total{verified}"]; !ok {
		t.Fatalf("no aspen_verifier_tasks_total{verified} in %v", before)
	}
	consumer := peer.ID(protocol.BlobCID([]byte("not a real peer")).Hash())
	if err := v.Credit(context.Background(), consumer, 2_500_000); err != nil {
		t.Fatal(err)
	}
	after := scrape()
	if got := after["aspen_verifier_ledger_micros{consumer}"] - before["aspen_verifier_ledger_micros{consumer}"]; got != 2_500_000 {
		t.Fatalf("consumer balances moved by %v, want 2500000", got)
	}
	if after["aspen_verifier_ledger_total_micros"] != 0 {
		t.Fatalf("ledger total %v, want 0", after["aspen_verifier_ledger_total_micros"])
	}
}
