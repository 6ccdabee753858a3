package market

import (
	"fmt"
	"time"

	"github.com/aspen-market/aspen/protocol"
)

// PPM is one million parts per million: the denominator of every ratio in
// this package (tolerances, rates, cuts, ratings).
const PPM = 1_000_000

// Config holds every threshold of the market rules. Use DefaultConfig and
// change what you need; Validate before use.
type Config struct {
	// SpeedTolerancePPM is the speed threshold of the paper (15%): a
	// replica is unpaid if its effective speed, metered work ÷ reported
	// time, is below rated × (1 − tol).
	SpeedTolerancePPM uint32
	// SpeedSlack is run time the speed rule forgives: the work a standard
	// machine (speed 1.0) does in SpeedSlack is taken off a replica's work
	// before it is judged. Timers of a busy machine
	// vary by more than the tolerance on jobs of a few milliseconds, and
	// an honest replica should not lose its pay to that. It changes only
	// the paid/too-slow verdict, never the charge (which follows the
	// metered work alone).
	SpeedSlack time.Duration
	// SpotCheckPPM is the secret fraction of tasks the verifier also runs.
	SpotCheckPPM uint32
	// OperatorCutPPM is the operator's share of every charge.
	OperatorCutPPM uint32
	// MaxRunTime sets a task's work budget: what speed 1.0 does in
	// MaxRunTime (protocol.WorkBudget). A job that exhausts it stops with
	// the work-limit status on every replica alike (a verified result).
	MaxRunTime time.Duration
	// HeartbeatTimeout: a worker silent this long while holding a replica
	// is failed for it.
	HeartbeatTimeout time.Duration
	// DeadlineSlack is the wall-clock allowance, beyond MaxRunTime, for
	// fetching blobs and returning the receipt; a replica not reported by
	// assignment + MaxRunTime + DeadlineSlack is timed out.
	DeadlineSlack time.Duration
	// MaxReplicas bounds Bid.Replicas (the minimum is always 2).
	MaxReplicas int
	// MaxExtraReplicas is how many worker replicas a task may use beyond
	// Bid.Replicas (replacing failures and breaking ties) before it fails.
	MaxExtraReplicas int
	// StrikesToExclude: workers with at least this many strikes are never
	// selected again.
	StrikesToExclude int
	// VerifierTiebreak: when workers' results disagree, the verifier runs
	// the task itself (true) rather than another worker (false).
	VerifierTiebreak bool
	// RatingPrior is the weight, in virtual good observations, given to a
	// newcomer's assumed good behaviour in the trust rating (see Reputation).
	RatingPrior int
	// MinRatedSpeed and MaxSpeed bound speeds: no worker is rated below
	// MinRatedSpeed (the escrow covers the budget at it), and a receipt
	// implying a speed above MaxSpeed is impossible (refused, struck).
	MinRatedSpeed protocol.Speed
	MaxSpeed      protocol.Speed
	// SpeedWindow is how much work (standard work units) a worker's rated
	// speed is averaged over: older observations fade as newer work adds
	// up (Reputation.ObserveSpeed).
	SpeedWindow uint64
}

// DefaultConfig returns the defaults: 15% speed tolerance, 10 ms speed
// slack, 5% spot checks,
// 5% operator cut, 2 h max run time, 3 min heartbeat timeout, 10 min deadline
// slack, at most 8 replicas, 4 extra replicas, exclusion at 3 strikes,
// verifier tie-break on, rating prior 4.
func DefaultConfig() Config {
	return Config{
		SpeedTolerancePPM: 150_000,
		SpeedSlack:        10 * time.Millisecond,
		SpotCheckPPM:      50_000,
		OperatorCutPPM:    50_000,
		MaxRunTime:        2 * time.Hour,
		HeartbeatTimeout:  3 * time.Minute,
		DeadlineSlack:     10 * time.Minute,
		MaxReplicas:       8,
		MaxExtraReplicas:  4,
		StrikesToExclude:  3,
		VerifierTiebreak:  true,
		RatingPrior:       4,
		MinRatedSpeed:     100,     // 0.1
		MaxSpeed:          100_000, // 100.0
		SpeedWindow:       600 * protocol.WorkPerSecond,
	}
}

// maxRunTimeLimit bounds MaxRunTime so that every work product
// (speed × microseconds × ppm) stays far inside 128 bits.
const maxRunTimeLimit = 7 * 24 * time.Hour

// Validate reports the first out-of-range field, wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, a...)...)
	}
	switch {
	case c.SpeedTolerancePPM >= PPM:
		return bad("speed tolerance %d ppm must be below %d", c.SpeedTolerancePPM, PPM)
	case c.SpeedSlack < 0 || c.SpeedSlack > time.Minute:
		return bad("speed slack %v must be between 0 and 1m", c.SpeedSlack)
	case c.SpotCheckPPM > PPM:
		return bad("spot-check rate %d ppm above %d", c.SpotCheckPPM, PPM)
	case c.OperatorCutPPM > PPM:
		return bad("operator cut %d ppm above %d", c.OperatorCutPPM, PPM)
	case c.MaxRunTime < time.Microsecond || c.MaxRunTime > maxRunTimeLimit:
		return bad("max run time %v must be between 1µs and %v", c.MaxRunTime, maxRunTimeLimit)
	case c.HeartbeatTimeout < time.Millisecond:
		return bad("heartbeat timeout %v must be at least 1ms", c.HeartbeatTimeout)
	case c.DeadlineSlack < 0:
		return bad("deadline slack %v is negative", c.DeadlineSlack)
	case c.MaxReplicas < MinReplicas || c.MaxReplicas > 64:
		return bad("max replicas %d must be between %d and 64", c.MaxReplicas, MinReplicas)
	case c.MaxExtraReplicas < 0 || c.MaxExtraReplicas > 64:
		return bad("max extra replicas %d must be between 0 and 64", c.MaxExtraReplicas)
	case c.StrikesToExclude < 1:
		return bad("strikes to exclude %d must be at least 1", c.StrikesToExclude)
	case c.RatingPrior < 0 || c.RatingPrior > 1_000_000:
		return bad("rating prior %d must be between 0 and 1000000", c.RatingPrior)
	case c.MinRatedSpeed < 1 || c.MaxSpeed < c.MinRatedSpeed:
		return bad("speeds: min rated %s must be at least 0.001 and at most the max %s", c.MinRatedSpeed, c.MaxSpeed)
	case c.SpeedWindow < protocol.WorkPerSecond:
		return bad("speed window %d work units is below one standard second", c.SpeedWindow)
	}
	return nil
}

// MinReplicas is the least number of replicas of any task: every job runs
// on at least two workers (paper §III-A).
const MinReplicas = 2

func (c Config) maxRunMicros() int64 { return c.MaxRunTime.Microseconds() }
