package market

import "github.com/aspen-market/aspen/protocol"

// Reputation is the verifier's record of one worker, from which its trust
// rating is computed. Update it with Seen (heartbeats, for uptime) and
// Observe (each verdict, once, when its task is settled).
type Reputation struct {
	Worker      string `json:"worker"`
	Completed   int    `json:"completed"`    // replicas with the verified result (paid or too slow)
	Failures    int    `json:"failures"`     // replicas failed while held (silent, cancelled)
	Strikes     int    `json:"strikes"`      // wrong results
	SpeedChecks int    `json:"speed_checks"` // replicas judged for speed
	SpeedMisses int    `json:"speed_misses"` // of which too slow or timed out
	Uptime      int64  `json:"uptime_ms"`    // observed uptime, ms
	LastSeen    int64  `json:"last_seen"`    // unix ms; 0 = never
	// SpeedWork and SpeedMicros are the fading sums of metered work and
	// bounded time behind the rated speed (ObserveSpeed, RatedSpeed).
	SpeedWork   uint64 `json:"speed_work,omitempty"`
	SpeedMicros uint64 `json:"speed_micros,omitempty"`
}

// ObserveSpeed adds one observation of the worker's speed: work metered
// units done in micros µs, the time being the smaller of what the worker
// reported and what the verifier observed (a receipt's window: the
// verdict's TimeMicros), so a worker
// can make itself look slower only by really being slower as the verifier
// sees it, and never faster than its results arrive. The sums fade so that
// they cover about cfg.SpeedWindow of work: when the work passes the
// window both sums are scaled down in proportion. The rated speed is the
// ratio of the sums, i.e. every observation weighs by its work.
func (r *Reputation) ObserveSpeed(work uint64, micros int64, cfg Config) {
	if work == 0 || micros <= 0 {
		return
	}
	r.SpeedWork += work
	r.SpeedMicros += uint64(micros)
	if w := cfg.SpeedWindow; w > 0 && r.SpeedWork > w {
		r.SpeedMicros = mulDiv(r.SpeedMicros, w, r.SpeedWork)
		r.SpeedWork = w
	}
}

// RatedSpeed is the worker's speed from its observations, work ÷ time,
// clamped to [cfg.MinRatedSpeed, cfg.MaxSpeed]; ok is false without any.
func (r *Reputation) RatedSpeed(cfg Config) (s protocol.Speed, ok bool) {
	if r.SpeedWork == 0 || r.SpeedMicros == 0 {
		return 0, false
	}
	v := r.SpeedWork / r.SpeedMicros / protocol.WorkPerMicroPerMilli
	return protocol.Speed(max(min(v, uint64(cfg.MaxSpeed)), uint64(cfg.MinRatedSpeed))), true
}

// Seen records that the worker was heard from at now: the time since the
// previous contact counts as uptime if it is within the heartbeat timeout.
func (r *Reputation) Seen(now int64, cfg Config) {
	if r.LastSeen != 0 && now > r.LastSeen && now-r.LastSeen <= cfg.HeartbeatTimeout.Milliseconds() {
		r.Uptime += now - r.LastSeen
	}
	r.LastSeen = max(r.LastSeen, now)
}

// Observe applies one verdict about this worker: its outcome to the trust
// rating, and for a replica with the verified result (paid or too slow)
// its work and bounded time to the speed (ObserveSpeed).
func (r *Reputation) Observe(v Verdict, cfg Config) {
	switch v.Outcome {
	case OutcomePaid:
		r.Completed++
		r.SpeedChecks++
		r.ObserveSpeed(v.Work, v.TimeMicros, cfg)
	case OutcomeTooSlow:
		r.Completed++
		r.SpeedChecks++
		r.SpeedMisses++
		r.ObserveSpeed(v.Work, v.TimeMicros, cfg)
	case OutcomeTimedOut:
		r.SpeedChecks++
		r.SpeedMisses++
	case OutcomeWrong, OutcomeRefused:
		r.Strikes++
	case OutcomeFailed:
		r.Failures++
	}
}

// MTTF is the mean time to failure, observed uptime / failures, in ms; ok
// is false while the worker has never failed.
func (r *Reputation) MTTF() (ms int64, ok bool) {
	if r.Failures == 0 {
		return 0, false
	}
	return r.Uptime / int64(r.Failures), true
}

// StruckOut reports whether the worker has cfg.StrikesToExclude strikes or
// more and is excluded from selection.
func (r *Reputation) StruckOut(cfg Config) bool { return r.Strikes >= cfg.StrikesToExclude }

// Rating is the trust rating in ppm (0..1 000 000), the product of three
// factors, each in ppm and floored (P = RatingPrior, T = MaxRunTime in ms,
// S = StrikesToExclude, U = uptime ms, F = failures):
//
//	correctness = (S − strikes) / S                 (0 when struck out)
//	reliability = (U + P·T) / (U + P·T + F·T)        (MTTF/(MTTF+T) with a prior)
//	speed       = (checks − misses + P) / (checks + P)
//
// A newcomer rates 1 000 000; each factor with a zero denominator is 1.
func (r *Reputation) Rating(cfg Config) uint32 {
	if r.StruckOut(cfg) {
		return 0
	}
	ratio := func(num, den uint64) uint64 {
		if den == 0 {
			return PPM
		}
		return mulDiv(num, PPM, den)
	}
	strikes := uint64(max(r.Strikes, 0))
	correct := ratio(uint64(cfg.StrikesToExclude)-strikes, uint64(cfg.StrikesToExclude))
	t := uint64(cfg.MaxRunTime.Milliseconds())
	prior := uint64(cfg.RatingPrior)
	up := uint64(max(r.Uptime, 0)) + prior*t
	reliable := ratio(up, up+uint64(max(r.Failures, 0))*t)
	checks := uint64(max(r.SpeedChecks, 0))
	misses := min(uint64(max(r.SpeedMisses, 0)), checks)
	speed := ratio(checks-misses+prior, checks+prior)
	return uint32(correct * reliable / PPM * speed / PPM)
}

// Reputations holds every worker's reputation by worker id.
type Reputations map[string]*Reputation

// Get returns the worker's reputation, creating an empty one.
func (rs Reputations) Get(worker string) *Reputation {
	r, ok := rs[worker]
	if !ok {
		r = &Reputation{Worker: worker}
		rs[worker] = r
	}
	return r
}

// ObserveAll applies every verdict of a decision to the workers concerned.
func (rs Reputations) ObserveAll(d Decision, cfg Config) {
	for _, v := range d.Verdicts {
		rs.Get(v.Worker).Observe(v, cfg)
	}
}

// Trust returns a TrustFunc for Book.Select under cfg; unknown workers
// rate 1 000 000.
func (rs Reputations) Trust(cfg Config) TrustFunc {
	return func(worker string) (uint32, bool) {
		r, ok := rs[worker]
		if !ok {
			return PPM, false
		}
		return r.Rating(cfg), r.StruckOut(cfg)
	}
}
