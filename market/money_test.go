package market

import (
	"fmt"
	"math/big"
	"testing"

	"github.com/aspen-market/aspen/protocol"
	"pgregory.net/rapid"
)

// TestCarriesExactOverManyJobs settles many tiny tasks at random prices,
// speeds and cuts with one set of carries, and checks every account
// against the exact rational total of its work: each (consumer, payee)
// pair's postings are the exact total floored to the micro-unit (less than
// 10⁻⁶ of a micro-unit lost per charge to the pico floor), the operator's
// cut is never zero when the exact cuts add up to a micro-unit, and money
// is conserved: Σ charged = Σ pay + Σ cut and escrowed = charged + refund.
func TestCarriesExactOverManyJobs(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := DefaultConfig()
		cfg.OperatorCutPPM = rapid.SampledFrom([]uint32{0, 1, 50_000, 333_333}).Draw(t, "cut")
		carries := Carries{}
		consumers := []string{"C1", "C2"}
		workers := []string{"W1", "W2", "W3"}
		exact := map[string]*big.Rat{} // pair → exact money in micro-units
		posted := map[string]int64{}
		charges := 0
		var escrowed, charged, refund, pays, cuts protocol.Micros
		n := rapid.IntRange(1, 300).Draw(t, "tasks")
		for i := range n {
			c := rapid.SampledFrom(consumers).Draw(t, "consumer")
			bid := Bid{Consumer: c, Group: "g", MaxPrice: protocol.Micros(rapid.Int64Range(1, 100_000).Draw(t, "max")),
				MinSpeed: protocol.Speed(rapid.Uint32Range(100, 2000).Draw(t, "minspeed")), Replicas: 2}
			task, err := NewTask(bid, i, cfg)
			if err != nil {
				t.Fatal(err)
			}
			work := rapid.Uint64Range(1, 5_000_000).Draw(t, "work") // ≤ 5 ms of standard work
			for j, w := range rapid.Permutation(workers).Draw(t, "pick")[:2] {
				m := Match{Worker: w, Owner: w, Price: protocol.Micros(rapid.Int64Range(0, int64(bid.MaxPrice)).Draw(t, "price")),
					Speed: protocol.Speed(rapid.Uint32Range(uint32(bid.MinSpeed), 3000).Draw(t, "speed"))}
				if _, err := task.Assign(m, 0); err != nil {
					t.Fatal(err)
				}
				tw := max(int64(work/uint64(m.Speed)), 1) // at its rating: always paid
				if err := task.Receipt(w, Receipt{ResultCID: "r", Work: work, ExecMicros: tw, WindowMicros: tw + 1}, 0); err != nil {
					t.Fatalf("receipt %d: %v", j, err)
				}
			}
			s, err := task.Settle(carries)
			if err != nil {
				t.Fatal(err)
			}
			if s.Decision.Kind != DecisionVerified || len(s.Payouts) != 2 {
				t.Fatalf("task %d: %+v", i, s.Decision)
			}
			for _, p := range s.Payouts {
				charges++
				share := new(big.Rat).SetFrac(new(big.Int).Mul(big.NewInt(int64(p.Price)), new(big.Int).SetUint64(p.Work)),
					big.NewInt(int64(p.Speed)*3600*PicosPerMicro))
				cutShare := new(big.Rat).Mul(share, big.NewRat(int64(cfg.OperatorCutPPM), PPM))
				add := func(k string, r *big.Rat, v protocol.Micros) {
					if exact[k] == nil {
						exact[k] = new(big.Rat)
					}
					exact[k].Add(exact[k], r)
					posted[k] += int64(v)
				}
				add(CarryKey(c, p.Worker), new(big.Rat).Sub(share, cutShare), p.Pay)
				add(CarryKey(c, OperatorAccount), cutShare, p.Cut)
			}
			escrowed += s.Escrowed
			charged += s.Charged
			refund += s.Refund
			for _, p := range s.Payouts {
				pays += p.Pay
				cuts += p.Cut
			}
		}
		if charged != pays+cuts || escrowed != charged+refund {
			t.Fatalf("money not conserved: escrowed %s, charged %s = pay %s + cut %s, refund %s", escrowed, charged, pays, cuts, refund)
		}
		// Per pair: exact − (charges × 2 picos of flooring) − 1 µ < posted ≤ exact.
		slack := new(big.Rat).SetFrac64(int64(2*charges), PicosPerMicro)
		for k, ex := range exact {
			got := new(big.Rat).SetInt64(posted[k])
			if got.Cmp(ex) > 0 {
				t.Fatalf("pair %q posted %d µ, above its exact %s", k, posted[k], ex.FloatString(6))
			}
			low := new(big.Rat).Sub(ex, big.NewRat(1, 1))
			low.Sub(low, slack)
			if got.Cmp(low) <= 0 {
				t.Fatalf("pair %q posted %d µ, more than 1 µ below its exact %s", k, posted[k], ex.FloatString(6))
			}
		}
	})
}

// TestThousandTinyJobs is the case: 2,000 jobs of 1 ms of
// standard work at 0.02 per hour, two replicas each, rated 1.0. Each
// replica's exact charge is 0.02 × 1 ms / 1 h = 5.56·10⁻⁹ (0.0056
// micro-units), which a floor per job would post as 0 (0 in total); with
// carries the consumer is charged the exact 22.2 micro-units within one
// micro-unit per payee (W1, W2, the operator), and the operator's 5% is
// not zero.
func TestThousandTinyJobs(t *testing.T) {
	cfg := DefaultConfig()
	carries := Carries{}
	var charged, cut protocol.Micros
	for i := range 2000 {
		task, err := NewTask(Bid{Consumer: "C", Group: "tiny", MaxPrice: 20_000, MinSpeed: 1000, Replicas: 2}, i, cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{"W1", "W2"} {
			if _, err := task.Assign(Match{Worker: w, Owner: w, Price: 20_000, Speed: 1000}, 0); err != nil {
				t.Fatal(err)
			}
			if err := task.Receipt(w, Receipt{ResultCID: "r", Work: 1_000_000, ExecMicros: 1000, WindowMicros: 3000}, 0); err != nil {
				t.Fatal(err)
			}
		}
		s, err := task.Settle(carries)
		if err != nil {
			t.Fatal(err)
		}
		charged += s.Charged
		cut += s.OperatorCut
	}
	// Exact: 4000 replicas × 20000 µ/h × 1 ms = 22.2… µ; the operator's
	// 5% of it = 1.11… µ; payees W1, W2, operator: at most 3 µ short.
	if charged < 22-3 || charged > 22 || cut != 1 {
		t.Fatalf("charged %d µ (exact 22.2), cut %d µ (exact 1.11)", charged, cut)
	}
	fmt.Fprintf(testWriter{t}, "2000 tiny jobs: charged %s, operator cut %s, carries %v\n", charged, cut, carries)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
