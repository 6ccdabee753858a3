package verifier

import (
	"testing"
	"time"

	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/verifier/ledger"
)

// TestTinyJobsChargeExactMoney: 120 tasks of 100 ms of metered work at
// 0.02 per hour on two workers rated 1.0. Each replica's exact charge is
// 0.556 micro-units, which a floor per charge posted as 0 (the consumer
// paid nothing, the operator's cut was 0). With carries per (consumer,
// payee) the consumer is charged the exact 240 × 0.556 = 133.3 µ within
// one micro-unit per payee (two workers and the operator), the operator's
// 5% is not zero, and the ledger balances.
func TestTinyJobsChargeExactMoney(t *testing.T) {
	v := startVerifier(t, testConfig(t, t.TempDir()), false)
	const price = 20_000 // 0.02 per hour
	a := startWorker(t, workersSandbox, v, "alice", price, workerBehaviour{})
	b := startWorker(t, workersSandbox, v, "bob", price, workerBehaviour{})
	waitRated(t, v, a, b)
	c := startConsumer(t, v)
	const credited = 10 * protocol.MicrosPerUnit
	credit(t, v, c, credited)
	const n = 120
	g := groupSpec{kernel: "primes", inputs: primesInputs(n), maxPrice: price, minSpeed: 500, replicas: 2, timeout: 10 * time.Second}
	gid := submitOK(t, c, g)
	rel := waitReleased(t, c, gid, n)
	for i, r := range rel {
		if r.Outcome != protocol.OutcomeVerified {
			t.Fatalf("task %d: %+v", i, r)
		}
	}
	spent := checkLedger(t, v, c, credited, a, b)
	// Exact: 2n replicas × 20000 µ/h × 0.1 s / 3600 s = 133.33 µ; the
	// operator's 5% = 6.67 µ.
	exact := int64(2*n) * price * jobWork / (1000 * 3600) // picos
	if got := int64(spent) * 1_000_000; got > exact || got <= exact-3_000_000 {
		t.Fatalf("consumer charged %d µ for %d picos of work (verdicts %v)", spent, exact, v.Stats().Verdicts)
	}
	if cut := balance(t, v, ledger.Operator); cut != 6 {
		t.Fatalf("operator cut %d µ, want 6 (exact %d picos)", cut, exact/20)
	}
	t.Logf("%d tiny tasks: charged %d µ (exact %d picos), operator %d µ", n, spent, exact, balance(t, v, ledger.Operator))
}
