package integration

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aspen-market/aspen/sandbox"
)

var (
	reportFlag = flag.Bool("report", false, "print the attack catalogue's table (and write it to $ASPEN_REPORT_FILE when set)")
	keepLogs   = flag.Bool("keep-logs", false, "keep the processes' data directories and logs (their path is logged)")
)

// binEnv names a directory holding prebuilt aspen-node and aspen-verifier
// binaries to use instead of building them (they must be built from this
// tree, without -race).
const binEnv = "ASPEN_TEST_BIN"

// tmpRoot is the run's scratch directory: binaries, the shared compiled
// module cache, data directories.
var tmpRoot string

func TestMain(m *testing.M) {
	sandbox.RunChildIfRequested() // the test binary may be a sandbox executor child
	flag.Parse()
	dir, err := os.MkdirTemp("", "aspen-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tmpRoot = dir
	code := m.Run()
	for _, sb := range []*sandbox.Sandbox{testSB, workerSB} {
		if sb != nil {
			sb.Close()
		}
	}
	if *keepLogs {
		fmt.Fprintln(os.Stderr, "integration: kept", dir)
	} else {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds aspen-node and aspen-verifier once per test run, without
// the race detector (wazero compiling a Go module under -race takes ~10 s
// per process), and returns the directory holding them.
func binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if d := os.Getenv(binEnv); d != "" {
			binDir = d
			return
		}
		binDir = filepath.Join(tmpRoot, "bin")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		start := time.Now()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", binDir+string(filepath.Separator),
			"github.com/aspen-market/aspen/cmd/aspen-node", "github.com/aspen-market/aspen/cmd/aspen-verifier")
		cmd.Dir = ".."
		cmd.Env = withoutRace(os.Environ())
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		fmt.Fprintf(os.Stderr, "integration: built aspen-node and aspen-verifier in %s\n", time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// withoutRace drops -race from GOFLAGS so the binaries are never built with
// the race detector, even when the tests are.
func withoutRace(env []string) []string {
	out := env[:0:0]
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "GOFLAGS="); ok {
			var keep []string
			for _, f := range strings.Fields(v) {
				if f != "-race" {
					keep = append(keep, f)
				}
			}
			e = "GOFLAGS=" + strings.Join(keep, " ")
		}
		out = append(out, e)
	}
	return out
}

func nodeBin(t testing.TB) string     { return filepath.Join(binaries(t), "aspen-node") }
func verifierBin(t testing.TB) string { return filepath.Join(binaries(t), "aspen-verifier") }

var (
	sbOnce sync.Once
	testSB *sandbox.Sandbox
	sbErr  error

	wsbOnce  sync.Once
	workerSB *sandbox.Sandbox
	wsbErr   error
)

// sharedSandbox is the sandbox of the test process: the adversarial
// workers run jobs in it and the tests compute expected outputs with it. Its
// executors are the (non-race) aspen-node binary, its module cache the one
// every process of the run shares.
func sharedSandbox(t testing.TB) *sandbox.Sandbox {
	t.Helper()
	sbOnce.Do(func() {
		cfg := sandbox.DefaultConfig()
		cfg.Executable = nodeBin(t)
		cfg.CacheDir = sharedCache()
		cfg.Slots = 2
		cfg.Nice = 0
		cfg.Timeout = 2 * time.Minute
		s, err := sandbox.New(cfg)
		if err != nil {
			sbErr = err
			return
		}
		if err := s.Start(context.Background()); err != nil {
			sbErr = err
			return
		}
		testSB = s
	})
	if sbErr != nil {
		t.Fatal(sbErr)
	}
	return testSB
}

// sharedCache is the compiled-module cache every process of the run uses
// (linked into each data directory), so each module is compiled once.
func sharedCache() string {
	d := filepath.Join(tmpRoot, "wasm-cache")
	_ = os.MkdirAll(d, 0o700)
	return d
}

// evilSandbox is the sandbox the adversarial workers run their jobs in:
// like the test's, but its executors run at the niceness a node's do (19),
// so an in-test worker competes for the CPU as the worker processes do and
// is rated like them.
func evilSandbox(t testing.TB) *sandbox.Sandbox {
	t.Helper()
	wsbOnce.Do(func() {
		cfg := sandbox.DefaultConfig()
		cfg.Executable = nodeBin(t)
		cfg.CacheDir = sharedCache()
		cfg.Slots = 2
		cfg.Timeout = 2 * time.Minute
		s, err := sandbox.New(cfg)
		if err != nil {
			wsbErr = err
			return
		}
		if err := s.Start(context.Background()); err != nil {
			wsbErr = err
			return
		}
		workerSB = s
	})
	if wsbErr != nil {
		t.Fatal(wsbErr)
	}
	return workerSB
}
