package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/aspen-market/aspen/internal/cli"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/sandbox"
)

const execLong = `Runs one job locally in the sandbox a worker uses (an executor child
process): the module gets the input on stdin (FILE, or this command's stdin)
and nothing else. The job's stdout and stderr are copied to ours. If the job
fails (non-zero exit, trap, work, time or memory limit, output limit, invalid
module or missing import) a one-line reason is printed and the exit status is
1. Last, its metered work is printed on stderr, "work: N units (S standard
s)", the same on every machine (with --work, N alone); not after a time-out
or a refused module. Compiled modules are cached in --cache-dir, so the
second run of a module starts at once.

With --output json or yaml, the job's outcome is one record on stdout instead:
status (verified: it exited 0; failed), error, job, exit_code, stdout, stderr,
seconds (the guest's running time) and work (its metered work in units).`

func execCommand() *cobra.Command {
	def := sandbox.DefaultConfig()
	cmd := &cobra.Command{
		Use:     "exec MODULE.wasm [--input FILE]",
		Short:   "run one wasm job locally, exactly as a worker would",
		Long:    execLong,
		Example: `  echo "1 1000000" | aspen-node exec examples/wasm/primes.wasm`,
		Args:    cli.ExactArgs(1, "one MODULE.wasm"),
	}
	fs := cmd.Flags()
	var (
		inputFile = fs.String("input", "", "give the job `FILE` on stdin (default: this command's stdin)")
		budget    = fs.Uint64("work-budget", def.WorkBudget, "work limit in standard `UNITS` (1e9 are a second of a speed-1.0 machine)")
		workOnly  = fs.Bool("work", false, "report the job's work on stderr as the number of units alone")
		timeout   = fs.Duration("timeout", def.Timeout, "wall-clock safety net, e.g. 2s, 10m (the job's limit is its work budget)")
		maxMemory = fs.String("max-memory", "256MiB", "memory cap, e.g. 512KiB, 256MiB, 1GiB or bytes")
		maxStdout = fs.String("max-stdout", "64MiB", "stdout cap; more fails the job")
		cacheDir  = fs.String("cache-dir", defaultExecCache(), "compiled module cache `DIR` (empty: a temporary one)")
		verbose   = fs.BoolP("verbose", "v", false, "report status and guest running time on stderr")
		output    cli.Output
	)
	output.Register(cmd)
	var mem, out uint64
	cmd.PreRunE = func(*cobra.Command, []string) error {
		var err error
		if mem, err = parseSize(*maxMemory); err != nil {
			return cli.Usagef("--max-memory: %v", err)
		}
		if out, err = parseSize(*maxStdout); err != nil || out > 1<<30 {
			return cli.Usagef("--max-stdout: bad size %q (at most 1GiB)", *maxStdout)
		}
		if *timeout <= 0 {
			return cli.Usagef("--timeout must be positive")
		}
		if *budget == 0 || *budget > sandbox.MaxWorkBudget {
			return cli.Usagef("--work-budget must be between 1 and %d", uint64(sandbox.MaxWorkBudget))
		}
		return output.Validate()
	}
	cmd.RunE = func(cmd *cobra.Command, pos []string) error {
		ctx, stdin, stdout, stderr := cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
		lim := execLimits{timeout: *timeout, work: *budget, memory: mem, stdout: out}
		return cli.Exit(execJob(ctx, pos[0], *inputFile, lim, *cacheDir, *verbose, *workOnly, output, stdin, stdout, stderr))
	}
	return cmd
}

// execLimits are exec's job limits.
type execLimits struct {
	timeout        time.Duration
	work           uint64
	memory, stdout uint64
}

func execJob(ctx context.Context, modulePath, inputFile string, lim execLimits, cacheDir string, verbose, workOnly bool,
	output cli.Output, stdin io.Reader, stdout, stderr io.Writer) int {
	def := sandbox.DefaultConfig()
	fail := func(err error) int {
		fmt.Fprintf(stderr, "aspen-node exec: %v\n", err)
		return 1
	}

	module, err := os.ReadFile(modulePath)
	if err != nil {
		return fail(err)
	}
	var input []byte
	if inputFile != "" {
		input, err = os.ReadFile(inputFile)
	} else {
		input, err = io.ReadAll(stdin)
	}
	if err != nil {
		return fail(fmt.Errorf("input: %w", err))
	}

	cfg := def
	cfg.Isolation = sandbox.Subprocess
	cfg.Slots = 1
	cfg.Nice = 0
	cfg.Timeout = lim.timeout
	cfg.WorkBudget = lim.work
	cfg.MaxMemory = lim.memory
	cfg.MaxStdout = int(lim.stdout)
	cfg.CacheDir = cacheDir
	sb, err := sandbox.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "aspen-node exec: %v\n", err)
		return 2
	}
	if err := sb.Start(ctx); err != nil {
		return fail(err)
	}
	defer sb.Close()

	res, err := sb.Run(ctx, sandbox.Job{ModuleID: protocol.BlobCID(module).String(), Module: module, Input: input})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted")
		}
		return fail(err)
	}
	if output.Structured() {
		return writeExecRecord(stdout, stderr, output, res)
	}
	stdout.Write(res.Stdout)
	stderr.Write(res.Stderr)
	if verbose {
		fmt.Fprintf(stderr, "aspen-node exec: %s, exit status %d, guest time %s, stdout %d bytes\n",
			res.Status, res.ExitCode, res.Duration, len(res.Stdout))
	}
	code := 0
	if err := res.Err(); err != nil {
		code = fail(err)
	}
	// The work last, so that a script can take the last line.
	switch res.Status {
	case sandbox.StatusTimeout, sandbox.StatusInvalidModule, sandbox.StatusMissingImport: // nothing was metered
	default:
		if workOnly {
			fmt.Fprintf(stderr, "%d\n", res.Work)
		} else {
			fmt.Fprintf(stderr, "aspen-node exec: work: %d units (%s standard s)\n", res.Work, standardSeconds(res.Work))
		}
	}
	return code
}

// standardSeconds renders work as the exact decimal seconds a speed-1.0
// machine takes for it: 123456789 → "0.123456789".
func standardSeconds(work uint64) string {
	const per = sandbox.WorkPerSecond
	s := fmt.Sprintf("%d.%09d", work/per, work%per)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// execRecord is exec's --output json or yaml.
type execRecord struct {
	Status       string  `json:"status" yaml:"status"` // verified (exited 0) or failed
	Error        string  `json:"error,omitempty" yaml:"error,omitempty"`
	Job          string  `json:"job" yaml:"job"`
	ExitCode     uint32  `json:"exit_code" yaml:"exit_code"`
	Stdout       string  `json:"stdout" yaml:"stdout"`
	StdoutBase64 string  `json:"stdout_base64,omitempty" yaml:"stdout_base64,omitempty"`
	Stderr       string  `json:"stderr,omitempty" yaml:"stderr,omitempty"`
	StderrBase64 string  `json:"stderr_base64,omitempty" yaml:"stderr_base64,omitempty"`
	Seconds      float64 `json:"seconds" yaml:"seconds"`
	Work         uint64  `json:"work" yaml:"work"` // metered, standard units
}

func writeExecRecord(stdout, stderr io.Writer, output cli.Output, res sandbox.Result) int {
	rec := execRecord{Status: inputVerified, Job: res.Status.String(), ExitCode: res.ExitCode, Seconds: res.Duration.Seconds(), Work: res.Work}
	rec.Stdout, rec.StdoutBase64 = textOrBase64(res.Stdout)
	rec.Stderr, rec.StderrBase64 = textOrBase64(res.Stderr)
	code := 0
	if err := res.Err(); err != nil {
		rec.Status, rec.Error, code = inputFailed, err.Error(), 1
	}
	if err := output.Write(stdout, rec, nil); err != nil {
		fmt.Fprintf(stderr, "aspen-node exec: %v\n", err)
		return 1
	}
	return code
}

// defaultExecCache is where exec keeps compiled modules between runs.
func defaultExecCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "aspen", "wasm")
}
