package sandbox

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/aspen-market/aspen/examples"
	"github.com/aspen-market/aspen/internal/wasmasm"
)

func TestMain(m *testing.M) {
	RunChildIfRequested() // the test binary is also the executor child
	dir, err := os.MkdirTemp("", "aspen-sandbox-test-")
	if err != nil {
		panic(err)
	}
	wasmDir = dir
	sharedCacheDir = filepath.Join(dir, "cache")
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { os.RemoveAll(dir) }))
}

// wasmDir holds guest modules built once per test run.
var wasmDir string

var builds sync.Map // name → *build

type build struct {
	once sync.Once
	wasm []byte
	err  error
}

// guestWasm returns the module built from ./testdata/guest (name "guest")
// or from examples/NAME, building it with GOOS=wasip1 GOARCH=wasm the first
// time it is asked for in this run.
func guestWasm(t testing.TB, name string) []byte {
	t.Helper()
	v, _ := builds.LoadOrStore(name, &build{})
	b := v.(*build)
	b.once.Do(func() {
		var path string
		if name == "guest" {
			path = filepath.Join(wasmDir, "guest.wasm")
			cmd := exec.Command("go", "build", "-o", path, "./testdata/guest")
			cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				b.err = &buildError{name, string(out), err}
				return
			}
		} else {
			path, b.err = examples.Build(context.Background(), name, wasmDir)
			if b.err != nil {
				return
			}
		}
		b.wasm, b.err = os.ReadFile(path)
	})
	if b.err != nil {
		t.Fatalf("build %s: %v", name, b.err)
	}
	return b.wasm
}

type buildError struct {
	name, out string
	err       error
}

func (e *buildError) Error() string { return e.name + ": " + e.err.Error() + ": " + e.out }

// newSandbox starts a sandbox with test-friendly defaults changed by mod.
func newSandbox(t testing.TB, iso Isolation, mod func(*Config)) *Sandbox {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Isolation = iso
	cfg.Nice = 0
	cfg.CacheDir = sharedCacheDir
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// sharedCacheDir lets the tests of one run share compiled Go modules
// (compiling one takes seconds). Tests of the cache use their own.
var sharedCacheDir string

var isolations = []Isolation{Subprocess, InProcess}

// ---- hand-made test modules, assembled with internal/wasmasm ----

var (
	tFdWrite  = wasmasm.FuncType{Params: []byte{wasmasm.I32, wasmasm.I32, wasmasm.I32, wasmasm.I32}, Results: []byte{wasmasm.I32}}
	tVoid     = wasmasm.FuncType{}
	tProcExit = wasmasm.FuncType{Params: []byte{wasmasm.I32}}
)

// startModule is a module whose _start runs body, with one page of memory
// and the given imports (functions numbered from 0 in order).
func startModule(imports []wasmasm.Import, types []wasmasm.FuncType, body []byte) []byte {
	return wasmasm.Command(types, imports, 1, body)
}

// tinyHello writes "hi\n" to stdout with one fd_write.
func tinyHello() []byte { return helloModule("hi\n") }
