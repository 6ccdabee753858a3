// Package sandbox runs Aspen jobs: a WebAssembly module (WASI preview 1,
// executed by wazero) plus an input. It is shared by workers, which sell the
// runs, and by the verifier, which repeats them.
//
// A job gets its input on stdin and nothing else: argv is the single word
// "job", the environment is empty, there are no files, directories or
// sockets, the wall and monotonic clocks are a fake clock that starts at the
// same instant on every machine and advances by a fixed step per reading
// (sleeps return at once and advance it), random_get returns a fixed
// ChaCha8 stream, and there are no threads. Two runs of the same job
// therefore produce byte-identical stdout on every machine. A job's result
// is its stdout, exit status, (truncated) stderr and metered work: every
// module is instrumented before it is compiled (internal/wasmmeter) so that
// its run counts a weighted sum of the WebAssembly operations it executes,
// the same on every machine, in standard work units (WorkPerSecond of them
// are a second of a speed-1.0 machine).
//
// Limits per job: work (WorkBudget; a job that needs more stops with
// StatusWorkLimit at the same point everywhere), linear memory (MaxMemory),
// wall-clock running time (Timeout, a safety net), stdout (MaxStdout;
// exceeding it fails the job) and stderr (MaxStderr; truncated).
// By default jobs run in a pool of long-lived executor child processes (a
// re-exec of the current binary, see RunChildIfRequested): a child that
// exceeds its time limit is killed with SIGKILL and replaced, which enforces
// the limit without slowing compiled code down, runs jobs at a lower CPU
// priority (Config.Nice) and keeps a sandbox crash from taking the node down.
// InProcess isolation runs jobs in the calling process instead; it cannot
// stop a running guest, so there a time limit only abandons the run.
//
// Compiled modules are cached in memory per executor (keyed by the caller's
// module ID, normally the module's CID) and on disk in Config.CacheDir, so a
// module is compiled once per machine, not once per job. A module whose ID
// is its CID is also recorded there once it passes every check: a new
// executor loads the most recently used ones in the background as it
// starts, and others from their records without the parent's bytes
// (record.go).
//
// The package owns the executor wire protocol between parent and child
// (wire.go); nothing outside the package sees it. docs/sandbox.md describes
// exactly what a job gets and what it is refused.
package sandbox
