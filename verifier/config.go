package verifier

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/aspen-market/aspen/market"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/sandbox"
)

// Runner runs jobs on the verifier's own machine (spot checks, tie-breaks,
// benchmark references). *sandbox.Sandbox implements it; tests may wrap it.
type Runner interface {
	Run(ctx context.Context, job sandbox.Job) (sandbox.Result, error)
	Close() error
}

// Config configures a Verifier. Start from DefaultConfig and set DataDir.
type Config struct {
	// DataDir holds the identity key, the store (records, blobs, ledger)
	// and the operator token and address files. Required.
	DataDir string
	// Listen are the libp2p listen multiaddrs.
	Listen []string
	// APIAddr is the operator API's listen address (127.0.0.1:PORT; port 0
	// picks one). "" disables the API.
	APIAddr string
	// MetricsHandler, when set, is served at GET /metrics on the operator
	// API (without the token, as Prometheus scrapes it).
	MetricsHandler http.Handler

	// Market holds the market rules (speed tolerance, spot-check rate,
	// operator cut, max run time, heartbeat timeout, replicas, strikes).
	Market market.Config
	// Sandbox configures the verifier's own job runner.
	Sandbox sandbox.Config
	// Runner, when set, is used instead of a sandbox built from Sandbox.
	// The verifier closes it.
	Runner Runner
	// VerifierSpeed is recorded as the speed of the verifier's own runs;
	// no rule uses it since work is metered (a verified result's work is
	// its metered work, not the verifier's time × speed).
	VerifierSpeed protocol.Speed
	// VerifierSlots bounds the verifier's own concurrent runs.
	VerifierSlots int

	// BenchmarkKernel names the embedded example kernel used to benchmark
	// workers (see package examples); BenchmarkWork sizes its random input
	// so one run takes roughly 50–200 ms on the reference machine.
	BenchmarkKernel string
	BenchmarkWork   int
	// BenchmarkTasks is how many benchmark jobs one benchmark sends.
	BenchmarkTasks int
	// BenchmarkTimeout bounds a benchmark: no receipt by then and it is
	// retried (after BenchmarkRetry).
	BenchmarkTimeout time.Duration
	// BenchmarkRetry is the pause before a failed or lost benchmark is
	// retried.
	BenchmarkRetry time.Duration
	// MaxBenchmarks bounds benchmarks in flight (each costs the verifier
	// reference runs); more registrations are benchmarked later.
	MaxBenchmarks int
	// RatingTTL is how long an issued Rating is valid; ratings are renewed
	// (from the speed history) when half of it has passed.
	RatingTTL time.Duration
	// MinRatedSpeed and MaxRatedSpeed clamp rated speeds. New copies
	// MinRatedSpeed into Market (the escrow covers the budget at it);
	// Market.MaxSpeed, the speed beyond which a receipt is impossible,
	// must be at least MaxRatedSpeed.
	MinRatedSpeed, MaxRatedSpeed protocol.Speed
	// SpeedHistory is how many speed observations the dashboards keep per
	// worker (the rating itself is a work-weighted ratio over
	// Market.SpeedWindow of work).
	SpeedHistory int

	// A worker is offered slots × depth replicas at once, where depth is
	// how many of its recent jobs (an average of the run times its
	// receipts report) fit in QueueTime, kept between QueueDepthMin (also
	// the depth before any receipt) and QueueDepth. Tiny jobs thus travel
	// in large batches while long jobs do not pile up behind each other.
	QueueDepth    int
	QueueDepthMin int
	QueueTime     time.Duration
	// QueueTimeout: a task that finds no eligible worker (or no funds)
	// for this long fails.
	QueueTimeout time.Duration
	// AssignmentTTL is how long a worker may take to accept an assignment.
	AssignmentTTL time.Duration
	// RequestTimeout bounds one request to a peer.
	RequestTimeout time.Duration
	// ScheduleInterval is how often waiting tasks are retried (scheduling
	// also runs at once whenever something changes).
	ScheduleInterval time.Duration
	// SweepInterval is how often silent workers and overdue replicas are
	// checked.
	SweepInterval time.Duration
	// RestartGrace: after a restart, workers holding replicas get this
	// long (plus the heartbeat timeout) to reconnect before their replicas
	// are failed for silence.
	RestartGrace time.Duration
	// ReleaseRetryMin and ReleaseRetryMax bound the backoff of releases
	// a consumer did not acknowledge.
	ReleaseRetryMin, ReleaseRetryMax time.Duration
	// ReleaseGiveUp: a group whose remaining tasks are all settled, the
	// newest of them for this long, and whose releases have failed until
	// the retry backoff reached ReleaseRetryMax, is given up on: those
	// results are left undelivered (the money is settled already), the
	// group is closed and leaves memory. A later submit of the group by
	// its consumer releases them again. 0 never gives up.
	ReleaseGiveUp time.Duration
	// MaxOpenTasks bounds tasks held open at once; submits beyond it are
	// refused with AckBusy.
	MaxOpenTasks int
	// MaxMemory is the largest per-job memory cap a consumer may ask for;
	// it must not exceed Sandbox.MaxMemory (the verifier repeats jobs).
	MaxMemory uint64
	// DefaultJobMemory is the memory cap of a job submitted without one
	// (every replica and the verifier's own run get the same explicit cap,
	// so they fail or succeed alike).
	DefaultJobMemory uint64

	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand is the random source for replica selection and secret spot
	// checks; nil means ChaCha8 seeded from crypto/rand. It is only used
	// under the verifier's lock.
	Rand market.Rand
}

// DefaultConfig returns the defaults: market defaults with a 10 s heartbeat
// timeout, hashchain benchmarks of 3 jobs, 24 h ratings, queue depth 4,
// 10 min queue timeout, API on 127.0.0.1:7340.
func DefaultConfig() Config {
	m := market.DefaultConfig()
	m.HeartbeatTimeout = 10 * time.Second
	m.DeadlineSlack = 2 * time.Minute
	sb := sandbox.DefaultConfig()
	// The verifier is the reference machine: its runs must not be slowed
	// by its own niceness, and it must be able to repeat any job.
	sb.Nice = 0
	sb.MaxMemory = 4 << 30
	// Any job's work budget, and the wall-clock safety net above it.
	sb.WorkBudget = protocol.WorkBudget(uint64(protocol.MaxJobTimeout.Milliseconds()))
	sb.Timeout = protocol.WallClockFactor * protocol.MaxJobTimeout
	return Config{
		Listen:           []string{"/ip4/0.0.0.0/tcp/7400", "/ip4/0.0.0.0/udp/7400/quic-v1"},
		APIAddr:          "127.0.0.1:7340",
		Market:           m,
		Sandbox:          sb,
		VerifierSpeed:    protocol.SpeedUnit,
		VerifierSlots:    1,
		BenchmarkKernel:  "hashchain",
		BenchmarkWork:    DefaultBenchmarkWork,
		BenchmarkTasks:   3,
		BenchmarkTimeout: 2 * time.Minute,
		BenchmarkRetry:   30 * time.Second,
		MaxBenchmarks:    16,
		RatingTTL:        24 * time.Hour,
		MinRatedSpeed:    100,     // 0.1
		MaxRatedSpeed:    100_000, // 100.0
		SpeedHistory:     8,
		QueueDepth:       64,
		QueueDepthMin:    4,
		QueueTime:        2 * time.Second,
		QueueTimeout:     10 * time.Minute,
		AssignmentTTL:    time.Minute,
		RequestTimeout:   30 * time.Second,
		ScheduleInterval: 500 * time.Millisecond,
		SweepInterval:    time.Second,
		RestartGrace:     30 * time.Second,
		ReleaseRetryMin:  500 * time.Millisecond,
		ReleaseRetryMax:  time.Minute,
		ReleaseGiveUp:    7 * 24 * time.Hour,
		MaxOpenTasks:     1_000_000,
		MaxMemory:        4 << 30,
		DefaultJobMemory: 256 << 20,
	}
}

// Validate reports the first missing or out-of-range field, wrapping
// ErrInvalidConfig.
func (c *Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, a...)...)
	}
	if c.DataDir == "" {
		return bad("DataDir is required")
	}
	for _, a := range c.Listen {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return bad("listen address %q: %v", a, err)
		}
	}
	if c.APIAddr != "" {
		host, _, err := net.SplitHostPort(c.APIAddr)
		if err != nil {
			return bad("API address %q: %v", c.APIAddr, err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return bad("API address %q is not a loopback address", c.APIAddr)
		}
	}
	if err := c.Market.Validate(); err != nil {
		return fmt.Errorf("%w: market: %w", ErrInvalidConfig, err)
	}
	if c.Runner == nil {
		if err := c.Sandbox.Validate(); err != nil {
			return fmt.Errorf("%w: sandbox: %w", ErrInvalidConfig, err)
		}
	}
	switch {
	case c.VerifierSpeed == 0:
		return bad("verifier speed is zero")
	case c.VerifierSlots < 1:
		return bad("verifier slots %d", c.VerifierSlots)
	case c.BenchmarkKernel == "":
		return bad("no benchmark kernel")
	case c.BenchmarkWork < 1:
		return bad("benchmark work %d", c.BenchmarkWork)
	case c.BenchmarkTasks < 1 || c.BenchmarkTasks > 64:
		return bad("benchmark tasks %d, want 1..64", c.BenchmarkTasks)
	case c.MaxBenchmarks < 1:
		return bad("max benchmarks %d", c.MaxBenchmarks)
	case c.BenchmarkTimeout <= 0 || c.BenchmarkRetry <= 0:
		return bad("benchmark timeout %v retry %v", c.BenchmarkTimeout, c.BenchmarkRetry)
	case c.RatingTTL < time.Second:
		return bad("rating TTL %v", c.RatingTTL)
	case c.MinRatedSpeed == 0 || c.MaxRatedSpeed < c.MinRatedSpeed || c.Market.MaxSpeed < c.MaxRatedSpeed:
		return bad("rated speed clamp %v..%v (impossible beyond %v)", c.MinRatedSpeed, c.MaxRatedSpeed, c.Market.MaxSpeed)
	case c.SpeedHistory < 1:
		return bad("speed history %d", c.SpeedHistory)
	case c.QueueDepthMin < 1 || c.QueueDepth < c.QueueDepthMin:
		return bad("queue depth %d..%d", c.QueueDepthMin, c.QueueDepth)
	case c.QueueTime <= 0:
		return bad("queue time %v", c.QueueTime)
	case c.QueueTimeout <= 0:
		return bad("queue timeout %v", c.QueueTimeout)
	case c.AssignmentTTL <= 0 || c.RequestTimeout <= 0:
		return bad("assignment TTL %v, request timeout %v", c.AssignmentTTL, c.RequestTimeout)
	case c.ScheduleInterval <= 0 || c.SweepInterval <= 0:
		return bad("schedule interval %v, sweep interval %v", c.ScheduleInterval, c.SweepInterval)
	case c.RestartGrace < 0:
		return bad("restart grace %v", c.RestartGrace)
	case c.ReleaseRetryMin <= 0 || c.ReleaseRetryMax < c.ReleaseRetryMin:
		return bad("release retry %v..%v", c.ReleaseRetryMin, c.ReleaseRetryMax)
	case c.ReleaseGiveUp < 0 || (c.ReleaseGiveUp > 0 && c.ReleaseGiveUp < c.ReleaseRetryMax):
		return bad("release give-up %v (want 0 for never, or at least the release retry maximum %v)", c.ReleaseGiveUp, c.ReleaseRetryMax)
	case c.MaxOpenTasks < 1:
		return bad("max open tasks %d", c.MaxOpenTasks)
	case c.MaxMemory == 0 || c.DefaultJobMemory == 0 || c.DefaultJobMemory > c.MaxMemory:
		return bad("max memory %d, default job memory %d", c.MaxMemory, c.DefaultJobMemory)
	case c.Runner == nil && c.MaxMemory > c.Sandbox.MaxMemory:
		return bad("max memory %d above the sandbox's %d", c.MaxMemory, c.Sandbox.MaxMemory)
	case c.Runner == nil && c.Market.MaxRunTime > c.Sandbox.Timeout:
		return bad("max run time %v above the sandbox's timeout %v", c.Market.MaxRunTime, c.Sandbox.Timeout)
	}
	return nil
}

func (c *Config) fill() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		var seed [32]byte
		if _, err := crand.Read(seed[:]); err != nil {
			binary.LittleEndian.PutUint64(seed[:], uint64(time.Now().UnixNano()))
		}
		c.Rand = rand.New(rand.NewChaCha8(seed))
	}
}
