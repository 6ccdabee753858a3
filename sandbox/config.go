package sandbox

import (
	"fmt"
	"log/slog"
	"time"
)

// Isolation selects where jobs run.
type Isolation int

const (
	// Subprocess runs jobs in a pool of executor child processes (the
	// default): hard time limit (SIGKILL), lower CPU priority, crash
	// containment.
	Subprocess Isolation = iota
	// InProcess runs jobs in the calling process. A running guest cannot be
	// stopped: at its time limit Run returns StatusTimeout and abandons the
	// guest, which keeps its slot and CPU until it ends by itself. Use it
	// for benchmarks, comparisons and where subprocesses are impossible.
	InProcess
)

// String returns "subprocess" or "in-process".
func (i Isolation) String() string {
	switch i {
	case Subprocess:
		return "subprocess"
	case InProcess:
		return "in-process"
	}
	return fmt.Sprintf("isolation(%d)", int(i))
}

const (
	pageSize = 65536
	// maxWasmMemory is the largest memory a 32-bit wasm module can have.
	maxWasmMemory = 65536 * pageSize
	// maxOutputCap bounds MaxStdout and MaxStderr.
	maxOutputCap = 1 << 30
	// maxTimeout bounds Config.Timeout.
	maxTimeout = 7 * 24 * time.Hour
)

// WorkPerSecond is the number of standard work units a machine of speed
// 1.0 performs in a second. A job's work (Result.Work) and budget
// (Job.WorkBudget, Config.WorkBudget) are in these units; see
// docs/sandbox.md for what they count and how they were calibrated.
const WorkPerSecond = 1_000_000_000

// MaxWorkBudget bounds Config.WorkBudget and Job.WorkBudget: about 9 years
// of a speed-1.0 machine.
const MaxWorkBudget = 1 << 58

// DefaultWorkBudget is Config.WorkBudget's default: the default time limit,
// 2 hours, of a speed-1.0 machine (7.2e12 units).
const DefaultWorkBudget = 2 * 60 * 60 * WorkPerSecond

// Config configures a Sandbox. Start from DefaultConfig.
type Config struct {
	// MaxMemory caps a job's linear memory in bytes (rounded down to whole
	// 64 KiB wasm pages). Growing past it fails the job with
	// StatusMemoryLimit. At most 4 GiB.
	MaxMemory uint64
	// WorkBudget caps a job's metered work in standard work units (see
	// WorkPerSecond): a job that needs more stops with StatusWorkLimit at
	// the same point on every machine. This is a job's limit; Timeout is
	// only a safety net.
	WorkBudget uint64
	// Timeout caps a job's running time (compile time excluded) on the wall
	// clock: a safety net against a stuck host, not a job's limit (a
	// time-out, unlike a work limit, depends on the machine).
	Timeout time.Duration
	// CompileTimeout caps compiling a module that is not cached yet. A
	// module whose compile runs past it, or crashes the executor, is
	// refused as invalid. Subprocess isolation only.
	CompileTimeout time.Duration
	// MaxStdout caps a job's stdout in bytes; writing more fails the job
	// with StatusOutputLimit.
	MaxStdout int
	// MaxStderr caps the stderr kept from a job; the rest is dropped.
	MaxStderr int
	// CacheDir holds compiled modules across runs and restarts, shared by
	// all executors. Empty: a private temporary directory, removed by Close.
	CacheDir string
	// CachedModules bounds the compiled modules each executor keeps in
	// memory (least recently used are dropped; the disk cache keeps them).
	CachedModules int
	// Isolation selects subprocess executors (default) or in-process runs.
	Isolation Isolation
	// Slots is the number of jobs that run at once (executor processes in
	// Subprocess mode).
	Slots int
	// Nice is the niceness of executor processes, 0 (normal) to 19 (lowest
	// priority, what worker nodes use). Ignored for InProcess.
	Nice int
	// Executable is the program re-executed as executor child; it must call
	// RunChildIfRequested first thing in main (or TestMain). Empty: the
	// current executable (os.Executable).
	Executable string
	// Logger receives executor lifecycle events (spawn, kill, crash) and
	// anything a child writes to its stderr. Nil: discard.
	Logger *slog.Logger
}

// DefaultConfig returns: 256 MiB memory, a work budget of 7.2e12 units
// (2 h of a speed-1.0 machine), 2 h time limit, 2 min compile limit, 64 MiB
// stdout, 64 KiB stderr, a temporary cache directory, 64 cached modules per
// executor, Subprocess isolation, 1 slot, niceness 19.
func DefaultConfig() Config {
	return Config{
		MaxMemory:      256 << 20,
		WorkBudget:     DefaultWorkBudget,
		Timeout:        2 * time.Hour,
		CompileTimeout: 2 * time.Minute,
		MaxStdout:      64 << 20,
		MaxStderr:      64 << 10,
		CachedModules:  64,
		Isolation:      Subprocess,
		Slots:          1,
		Nice:           19,
	}
}

// Validate reports the first out-of-range field, wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, a...)...)
	}
	switch {
	case c.MaxMemory < pageSize || c.MaxMemory > maxWasmMemory:
		return bad("MaxMemory %d outside [64KiB, 4GiB]", c.MaxMemory)
	case c.WorkBudget == 0 || c.WorkBudget > MaxWorkBudget:
		return bad("WorkBudget %d outside [1, %d]", c.WorkBudget, uint64(MaxWorkBudget))
	case c.Timeout <= 0 || c.Timeout > maxTimeout:
		return bad("Timeout %s outside (0, %s]", c.Timeout, maxTimeout)
	case c.CompileTimeout <= 0 || c.CompileTimeout > maxTimeout:
		return bad("CompileTimeout %s outside (0, %s]", c.CompileTimeout, maxTimeout)
	case c.MaxStdout <= 0 || c.MaxStdout > maxOutputCap:
		return bad("MaxStdout %d outside [1, 1GiB]", c.MaxStdout)
	case c.MaxStderr < 0 || c.MaxStderr > maxOutputCap:
		return bad("MaxStderr %d outside [0, 1GiB]", c.MaxStderr)
	case c.CachedModules < 1:
		return bad("CachedModules %d < 1", c.CachedModules)
	case c.Isolation != Subprocess && c.Isolation != InProcess:
		return bad("unknown Isolation %d", int(c.Isolation))
	case c.Slots < 1 || c.Slots > 1024:
		return bad("Slots %d outside [1, 1024]", c.Slots)
	case c.Nice < 0 || c.Nice > 19:
		return bad("Nice %d outside [0, 19]", c.Nice)
	}
	return nil
}

func (c Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// formatSize renders a byte count the way ParseSize-style flags take it:
// 256MiB, 1GiB, 512KiB, or plain bytes.
func formatSize(n uint64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
