package market

import (
	"testing"
	"time"

	"pgregory.net/rapid"
)

func TestRatingProperties(t *testing.T) {
	cfg := DefaultConfig()
	rapid.Check(t, func(t *rapid.T) {
		r := Reputation{
			Strikes:     rapid.IntRange(0, 5).Draw(t, "strikes"),
			Failures:    rapid.IntRange(0, 50).Draw(t, "failures"),
			SpeedChecks: rapid.IntRange(0, 100).Draw(t, "checks"),
			Uptime:      rapid.Int64Range(0, 1<<40).Draw(t, "uptime"),
		}
		r.SpeedMisses = rapid.IntRange(0, r.SpeedChecks).Draw(t, "misses")
		base := r.Rating(cfg)
		if base > PPM {
			t.Fatalf("rating %d above 1e6", base)
		}
		if r.StruckOut(cfg) != (r.Strikes >= cfg.StrikesToExclude) || (r.StruckOut(cfg) && base != 0) {
			t.Fatalf("struck-out %v with %d strikes, rating %d", r.StruckOut(cfg), r.Strikes, base)
		}
		// Every bad observation lowers (never raises) the rating; uptime
		// and good checks never lower it.
		worse := []func(*Reputation){
			func(r *Reputation) { r.Observe(Verdict{Outcome: OutcomeWrong}, DefaultConfig()) },
			func(r *Reputation) { r.Observe(Verdict{Outcome: OutcomeFailed}, DefaultConfig()) },
			func(r *Reputation) { r.Observe(Verdict{Outcome: OutcomeTooSlow}, DefaultConfig()) },
			func(r *Reputation) { r.Observe(Verdict{Outcome: OutcomeTimedOut}, DefaultConfig()) },
		}
		for i, f := range worse {
			c := r
			f(&c)
			if got := c.Rating(cfg); got > base {
				t.Fatalf("bad observation %d raised rating %d → %d", i, base, got)
			}
		}
		c := r
		c.Observe(Verdict{Outcome: OutcomePaid}, DefaultConfig())
		c.Uptime += 3_600_000
		if got := c.Rating(cfg); got < base {
			t.Fatalf("good observation lowered rating %d → %d", base, got)
		}
	})
	if got := (&Reputation{}).Rating(cfg); got != PPM {
		t.Fatalf("newcomer rated %d", got)
	}
}

func TestSeenAndMTTF(t *testing.T) {
	cfg := DefaultConfig()
	var r Reputation
	r.Seen(1_000, cfg)
	r.Seen(61_000, cfg)                                     // +1 min
	r.Seen(61_000+cfg.HeartbeatTimeout.Milliseconds(), cfg) // +3 min, still within timeout
	r.Seen(10_000_000, cfg)                                 // a gap: not uptime
	if want := int64(60_000 + 180_000); r.Uptime != want {
		t.Fatalf("uptime %d, want %d", r.Uptime, want)
	}
	if _, ok := r.MTTF(); ok {
		t.Fatal("MTTF without failures")
	}
	r.Observe(Verdict{Outcome: OutcomeFailed}, DefaultConfig())
	r.Observe(Verdict{Outcome: OutcomeFailed}, DefaultConfig())
	if ms, ok := r.MTTF(); !ok || ms != 120_000 {
		t.Fatalf("MTTF %d %v, want 2 min", ms, ok)
	}
	// reliability = (U + 4T) / (U + 4T + 2T) with T = 2 h.
	T := (2 * time.Hour).Milliseconds()
	want := uint32((r.Uptime + 4*T) * PPM / (r.Uptime + 6*T))
	if got := r.Rating(cfg); got != want {
		t.Fatalf("rating %d, want %d", got, want)
	}
	rs := Reputations{}
	rs.Get("w").Observe(Verdict{Outcome: OutcomeWrong}, DefaultConfig())
	rs.Get("w").Observe(Verdict{Outcome: OutcomeWrong}, DefaultConfig())
	rs.Get("w").Observe(Verdict{Outcome: OutcomeWrong}, DefaultConfig())
	if _, out := rs.Trust(cfg)("w"); !out {
		t.Fatal("three strikes not struck out")
	}
	if ppm, out := rs.Trust(cfg)("stranger"); out || ppm != PPM {
		t.Fatal("unknown worker not rated fully")
	}
}
