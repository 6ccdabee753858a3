package sandbox

import "errors"

// Job failure sentinels. Result.Err and Sandbox.Compile return errors that
// wrap exactly one of them, so callers can branch with errors.Is.
var (
	// ErrExit: the job exited with a non-zero status.
	ErrExit = errors.New("sandbox: job exited with non-zero status")
	// ErrTrap: the job trapped (unreachable, out-of-bounds access, division
	// by zero, stack overflow, ...).
	ErrTrap = errors.New("sandbox: job trapped")
	// ErrTimeout: the job ran past its time limit and was stopped.
	ErrTimeout = errors.New("sandbox: time limit exceeded")
	// ErrWorkLimit: the job's work passed its budget and it was stopped.
	ErrWorkLimit = errors.New("sandbox: work limit exceeded")
	// ErrMemoryLimit: the job tried to grow its memory past its cap.
	ErrMemoryLimit = errors.New("sandbox: memory limit exceeded")
	// ErrOutputLimit: the job wrote more than its stdout cap.
	ErrOutputLimit = errors.New("sandbox: output limit exceeded")
	// ErrInvalidModule: the module bytes are not a valid WASI command module.
	ErrInvalidModule = errors.New("sandbox: invalid module")
	// ErrMissingImport: the module imports something the sandbox does not
	// provide.
	ErrMissingImport = errors.New("sandbox: missing import")
)

// Infrastructure sentinels: Run and Compile return these (wrapped) when the
// sandbox itself, not the job, failed.
var (
	// ErrInvalidConfig: a Config field is out of range.
	ErrInvalidConfig = errors.New("sandbox: invalid config")
	// ErrInvalidJob: a Job is malformed (no module bytes, module bytes that
	// do not match the module ID's CID).
	ErrInvalidJob = errors.New("sandbox: invalid job")
	// ErrNotStarted: Run or Compile was called before Start.
	ErrNotStarted = errors.New("sandbox: not started")
	// ErrClosed: the sandbox is closed.
	ErrClosed = errors.New("sandbox: closed")
	// ErrExecutor: an executor child process failed to start, broke the
	// executor protocol or died unexpectedly. The child is replaced; the job
	// may be retried.
	ErrExecutor = errors.New("sandbox: executor failed")
)
