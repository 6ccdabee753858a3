package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/sandbox"
)

func init() {
	register("exec", command{summary: "run one wasm job locally, exactly as a worker would", run: cmdExec})
}

const execUsage = `usage: aspen-node exec MODULE.wasm [--input FILE] [--timeout DURATION] [--max-memory SIZE]

Runs one job locally in the sandbox a worker uses (an executor child
process): the module gets the input on stdin (FILE, or this command's stdin)
and nothing else. The job's stdout and stderr are copied to ours. If the job
fails (non-zero exit, trap, time or memory limit, output limit, invalid
module or missing import) a one-line reason is printed and the exit status is
1. Compiled modules are cached in --cache-dir, so the second run of a module
starts at once.

flags:
`

func cmdExec(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	def := sandbox.DefaultConfig()
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		inputFile = fs.String("input", "", "give the job `FILE` on stdin (default: this command's stdin)")
		timeout   = fs.Duration("timeout", def.Timeout, "running time limit, e.g. 2s, 10m")
		maxMemory = fs.String("max-memory", "256MiB", "memory cap, e.g. 512KiB, 256MiB, 1GiB or bytes")
		maxStdout = fs.String("max-stdout", "64MiB", "stdout cap; more fails the job")
		cacheDir  = fs.String("cache-dir", defaultExecCache(), "compiled module cache `DIR` (empty: a temporary one)")
		verbose   = fs.Bool("v", false, "report status and guest running time on stderr")
	)
	fs.Usage = func() { fmt.Fprint(stderr, execUsage); fs.PrintDefaults() }
	pos, code := parseArgs(fs, args)
	if code >= 0 {
		return code
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "aspen-node: exec: "+format+"\n", a...)
		fs.Usage()
		return 2
	}
	if len(pos) != 1 {
		return usageErr("want exactly one MODULE.wasm, got %d arguments", len(pos))
	}
	mem, err := parseSize(*maxMemory)
	if err != nil {
		return usageErr("--max-memory: %v", err)
	}
	out, err := parseSize(*maxStdout)
	if err != nil || out > 1<<30 {
		return usageErr("--max-stdout: bad size %q (at most 1GiB)", *maxStdout)
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "aspen-node: exec: %v\n", err)
		return 1
	}

	module, err := os.ReadFile(pos[0])
	if err != nil {
		return fail(err)
	}
	var input []byte
	if *inputFile != "" {
		input, err = os.ReadFile(*inputFile)
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
	cfg.Timeout = *timeout
	cfg.MaxMemory = mem
	cfg.MaxStdout = int(out)
	cfg.CacheDir = *cacheDir
	sb, err := sandbox.New(cfg)
	if err != nil {
		return usageErr("%v", err)
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
	stdout.Write(res.Stdout)
	stderr.Write(res.Stderr)
	if *verbose {
		fmt.Fprintf(stderr, "aspen-node: exec: %s, exit status %d, guest time %s, stdout %d bytes\n",
			res.Status, res.ExitCode, res.Duration, len(res.Stdout))
	}
	if err := res.Err(); err != nil {
		return fail(err)
	}
	return 0
}

// defaultExecCache is where exec keeps compiled modules between runs.
func defaultExecCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "aspen", "wasm")
}
