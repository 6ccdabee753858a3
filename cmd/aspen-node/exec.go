package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/aspen-market/aspen/internal/cli"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/sandbox"
)

const execLong = `Runs one job locally in the sandbox a worker uses (an executor child
process): the module gets the input on stdin (FILE, or this command's stdin)
and nothing else. The job's stdout and stderr are copied to ours. If the job
fails (non-zero exit, trap, time or memory limit, output limit, invalid
module or missing import) a one-line reason is printed and the exit status is
1. Compiled modules are cached in --cache-dir, so the second run of a module
starts at once.

With --output json or yaml, the job's outcome is one record on stdout instead:
status (verified: it exited 0; failed), error, job, exit_code, stdout, stderr
and seconds (the guest's running time).`

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
		timeout   = fs.Duration("timeout", def.Timeout, "running time limit, e.g. 2s, 10m")
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
		return output.Validate()
	}
	cmd.RunE = func(cmd *cobra.Command, pos []string) error {
		ctx, stdin, stdout, stderr := cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
		return cli.Exit(execJob(ctx, pos[0], *inputFile, *timeout, mem, out, *cacheDir, *verbose, output, stdin, stdout, stderr))
	}
	return cmd
}

func execJob(ctx context.Context, modulePath, inputFile string, timeout time.Duration, mem, out uint64, cacheDir string, verbose bool,
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
	cfg.Timeout = timeout
	cfg.MaxMemory = mem
	cfg.MaxStdout = int(out)
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
	if err := res.Err(); err != nil {
		return fail(err)
	}
	return 0
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
}

func writeExecRecord(stdout, stderr io.Writer, output cli.Output, res sandbox.Result) int {
	rec := execRecord{Status: inputVerified, Job: res.Status.String(), ExitCode: res.ExitCode, Seconds: res.Duration.Seconds()}
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
