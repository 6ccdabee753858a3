package sandbox

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Job is one run: a module and its input. Zero limits mean the Config's;
// non-zero limits may only lower them (larger values are clamped).
type Job struct {
	// ModuleID names Module in the compiled-module caches. Use the module's
	// CID string: when it parses as a blob CID the sandbox checks Module
	// against it before compiling. Empty: the CID is computed from Module
	// (costs a SHA-256 of the module per run).
	ModuleID string
	// Module is the WebAssembly binary. It is only read when the module is
	// not cached yet. Either Module or LoadModule must be given.
	Module []byte
	// LoadModule, used when Module is empty, returns the binary; it is
	// called only if the module is not cached yet (and ModuleID is set),
	// so a worker running many jobs of one large module does not read it
	// for every job.
	LoadModule func() ([]byte, error)
	// Input is the job's stdin.
	Input []byte
	// Timeout lowers Config.Timeout for this job: the wall-clock safety net
	// (see WorkBudget for the job's limit).
	Timeout time.Duration
	// WorkBudget lowers Config.WorkBudget for this job: the most standard
	// work units it may spend. A job that needs more stops with
	// StatusWorkLimit, at the same point on every machine.
	WorkBudget uint64
	// MaxMemory lowers Config.MaxMemory for this job.
	MaxMemory uint64
}

// Status is how a job ended.
type Status uint8

// Statuses. The numeric values are stable (they cross the executor pipe).
const (
	StatusOK            Status = iota // exited with status 0 (or returned from _start)
	StatusExit                        // exited with a non-zero status (ExitCode)
	StatusTrap                        // trapped (Message says why)
	StatusTimeout                     // stopped at its time limit
	StatusMemoryLimit                 // tried to grow memory past its cap
	StatusOutputLimit                 // wrote more stdout than its cap
	StatusInvalidModule               // module refused: not a valid WASI command
	StatusMissingImport               // module refused: imports something not provided (Message names it)
	_                                 // 8 is protocol.StatusFetchFailed, which the sandbox never returns
	StatusWorkLimit                   // stopped when its work passed its budget
	numStatus
)

var statusNames = [...]string{
	StatusOK:            "ok",
	StatusExit:          "exit",
	StatusTrap:          "trap",
	StatusTimeout:       "timeout",
	StatusMemoryLimit:   "memory-limit",
	StatusOutputLimit:   "output-limit",
	StatusInvalidModule: "invalid-module",
	StatusMissingImport: "missing-import",
	StatusWorkLimit:     "work-limit",
}

// String returns the status's short name: "ok", "exit", "trap", "timeout",
// "memory-limit", "output-limit", "invalid-module", "missing-import" or
// "work-limit".
func (s Status) String() string {
	if s.valid() {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// valid reports whether s is one of the statuses above.
func (s Status) valid() bool { return s < numStatus && statusNames[s] != "" }

// Result is the outcome of one job.
type Result struct {
	Status Status
	// ExitCode is the job's exit status (0 unless StatusExit).
	ExitCode uint32
	// Stdout is everything the job wrote to stdout (at most the cap; empty
	// after a timeout).
	Stdout []byte
	// Stderr is the start of what the job wrote to stderr, truncated to the
	// cap.
	Stderr []byte
	// Message is a one-line, human-readable cause for failures: the trap
	// reason, the first line of stderr, the missing import's name, the limit
	// that was exceeded. At most MaxMessage bytes of valid UTF-8.
	Message string
	// Duration is the guest's running time: instantiation and _start, not
	// compiling or executor start-up. On Linux it is the CPU time of the
	// thread that ran the guest, so it does not grow with the machine's
	// load; elsewhere it is wall-clock time. After a time-out it is the
	// time limit.
	Duration time.Duration
	// Work is the job's metered work in standard work units (WorkPerSecond
	// of them are a second of a speed-1.0 machine): the same for every run
	// of the job on every machine, whatever its status. After
	// StatusWorkLimit it is the budget; it is 0 after a time-out and for a
	// module refused before it ran.
	Work uint64
}

// MaxMessage bounds Result.Message.
const MaxMessage = 1024

// Err returns nil for StatusOK and otherwise an error wrapping the status's
// sentinel (ErrExit, ErrTrap, ...) whose text is one line naming the cause,
// e.g. "job exited with status 3: bad input" or "time limit 2s exceeded".
func (r Result) Err() error {
	var msg string
	switch r.Status {
	case StatusOK:
		return nil
	case StatusExit:
		msg = fmt.Sprintf("job exited with status %d", r.ExitCode)
		if r.Message != "" {
			msg += ": " + r.Message
		}
		return &JobError{Status: r.Status, msg: msg, sentinel: ErrExit}
	case StatusTrap:
		return &JobError{Status: r.Status, msg: "job trapped: " + orUnknown(r.Message), sentinel: ErrTrap}
	case StatusTimeout:
		return &JobError{Status: r.Status, msg: orDefault(r.Message, "time limit exceeded"), sentinel: ErrTimeout}
	case StatusWorkLimit:
		return &JobError{Status: r.Status, msg: orDefault(r.Message, "work limit exceeded"), sentinel: ErrWorkLimit}
	case StatusMemoryLimit:
		return &JobError{Status: r.Status, msg: orDefault(r.Message, "memory limit exceeded"), sentinel: ErrMemoryLimit}
	case StatusOutputLimit:
		return &JobError{Status: r.Status, msg: orDefault(r.Message, "output limit exceeded"), sentinel: ErrOutputLimit}
	case StatusInvalidModule:
		return &JobError{Status: r.Status, msg: "invalid module: " + orUnknown(r.Message), sentinel: ErrInvalidModule}
	case StatusMissingImport:
		return &JobError{Status: r.Status, msg: "module imports " + orUnknown(r.Message) + ", which the sandbox does not provide", sentinel: ErrMissingImport}
	}
	return &JobError{Status: r.Status, msg: fmt.Sprintf("unknown job status %d", uint8(r.Status)), sentinel: ErrTrap}
}

// JobError is the error Result.Err and Sandbox.Compile return. It unwraps to
// the status's sentinel.
type JobError struct {
	Status   Status
	msg      string
	sentinel error
}

// Error returns the one-line cause.
func (e *JobError) Error() string { return e.msg }

// Unwrap returns the sentinel (ErrExit, ErrTrap, ...).
func (e *JobError) Unwrap() error { return e.sentinel }

func orUnknown(s string) string { return orDefault(s, "unknown cause") }

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// oneLine returns the first non-empty line of b, trimmed, as valid UTF-8 of
// at most MaxMessage bytes.
func oneLine(s string) string {
	for line := range strings.SplitSeq(s, "\n") {
		line = strings.TrimSpace(line)
		if line != "" {
			return clip(line)
		}
	}
	return ""
}

func clip(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= MaxMessage {
		return s
	}
	cut := MaxMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
