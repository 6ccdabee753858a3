package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aspen-market/aspen/internal/wasmasm"
	"github.com/aspen-market/aspen/protocol"
)

func run(t *testing.T, s *Sandbox, job Job) Result {
	t.Helper()
	r, err := s.Run(context.Background(), job)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return r
}

func guestJob(t *testing.T, input string) Job {
	return Job{ModuleID: "guest", Module: guestWasm(t, "guest"), Input: []byte(input)}
}

func wantStatus(t *testing.T, r Result, want Status) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("status %s (%q, exit %d, stderr %q), want %s", r.Status, r.Message, r.ExitCode, r.Stderr, want)
	}
}

func TestEcho(t *testing.T) {
	for _, iso := range isolations {
		t.Run(iso.String(), func(t *testing.T) {
			s := newSandbox(t, iso, nil)
			r := run(t, s, guestJob(t, "echo hello, world"))
			wantStatus(t, r, StatusOK)
			if string(r.Stdout) != "hello, world" || string(r.Stderr) != "echoed\n" {
				t.Fatalf("stdout %q stderr %q", r.Stdout, r.Stderr)
			}
			if r.Duration <= 0 || r.Err() != nil {
				t.Fatalf("duration %v err %v", r.Duration, r.Err())
			}
		})
	}
}

func TestTinyModule(t *testing.T) {
	for _, iso := range isolations {
		t.Run(iso.String(), func(t *testing.T) {
			s := newSandbox(t, iso, nil)
			for range 3 { // the first compiles, the others hit the cache
				r := run(t, s, Job{Module: tinyHello()})
				wantStatus(t, r, StatusOK)
				if string(r.Stdout) != "hi\n" {
					t.Fatalf("stdout %q", r.Stdout)
				}
			}
		})
	}
}

// TestDeterminism runs a job that reads every source of variation a
// program has (clocks, sleeps, randomness, environment, files, scheduling)
// several times, in both isolation modes, and wants identical stdout.
func TestDeterminism(t *testing.T) {
	escape := filepath.Join(t.TempDir(), "escaped")
	input := "probe " + escape
	var outs []string
	for _, iso := range isolations {
		s := newSandbox(t, iso, nil)
		for range 2 {
			r := run(t, s, guestJob(t, input))
			wantStatus(t, r, StatusOK)
			outs = append(outs, string(r.Stdout))
		}
	}
	for i, o := range outs[1:] {
		if o != outs[0] {
			t.Fatalf("run %d differs:\n%s\nvs first:\n%s", i+1, o, outs[0])
		}
	}
	out := outs[0]
	for _, want := range []string{
		"args=[job]\n", "environ=[]\n", "now=2022-01-01T00:00:00", "slept=true\n",
		"after=2022-01-01T01:10:00", "readdir=true\n", "readfile=true\n", "create=true\n",
		"writefile=true\n", "mkdir=true\n", "envkeys=0\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("probe output lacks %q:\n%s", want, out)
		}
	}
	for _, p := range []string{escape, escape + ".d"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("guest left %s on the host (stat: %v)", p, err)
		}
	}
	t.Logf("probe output:\n%s", out)
}

func TestExitStatus(t *testing.T) {
	for _, iso := range isolations {
		t.Run(iso.String(), func(t *testing.T) {
			s := newSandbox(t, iso, nil)
			r := run(t, s, guestJob(t, "exit 3 bad input"))
			wantStatus(t, r, StatusExit)
			if r.ExitCode != 3 || r.Message != "bad input" {
				t.Fatalf("exit %d message %q", r.ExitCode, r.Message)
			}
			err := r.Err()
			if !errors.Is(err, ErrExit) || err.Error() != "job exited with status 3: bad input" {
				t.Fatalf("Err() = %v", err)
			}

			r = run(t, s, guestJob(t, "panic oops"))
			wantStatus(t, r, StatusExit)
			if r.ExitCode != 2 || r.Message != "panic: guest panicked: oops" {
				t.Fatalf("panic: exit %d message %q", r.ExitCode, r.Message)
			}

			r = run(t, s, guestJob(t, "exit 0 fine"))
			wantStatus(t, r, StatusOK)
		})
	}
}

func TestProcExit(t *testing.T) {
	mod := func(status int32) []byte {
		return startModule([]wasmasm.Import{wasmasm.FuncImport("wasi_snapshot_preview1", "proc_exit", 0)},
			[]wasmasm.FuncType{tProcExit}, wasmasm.NewCode().I32Const(status).Call(0).Body())
	}
	s := newSandbox(t, Subprocess, nil)
	wantStatus(t, run(t, s, Job{Module: mod(0)}), StatusOK)
	r := run(t, s, Job{Module: mod(7)})
	wantStatus(t, r, StatusExit)
	if r.ExitCode != 7 || r.Err().Error() != "job exited with status 7" {
		t.Fatalf("exit %d, err %v", r.ExitCode, r.Err())
	}
}

func TestTraps(t *testing.T) {
	recursive := wasmasm.Module{
		Types:   []wasmasm.FuncType{tVoid},
		Funcs:   []uint32{0},
		Exports: []wasmasm.Export{wasmasm.FuncExport("_start", 0)},
		Codes:   [][]byte{wasmasm.NewCode().Call(0).Body()},
	}.Bytes()
	cases := []struct {
		name   string
		module []byte
		want   string
	}{
		{"unreachable", startModule(nil, nil, wasmasm.NewCode(wasmasm.OpUnreachable).Body()), "unreachable"},
		{"divide", startModule(nil, nil, wasmasm.NewCode().I32Const(1).I32Const(0).Op(wasmasm.OpI32DivS, wasmasm.OpDrop).Body()), "integer divide by zero"},
		{"recursion", recursive, "stack overflow"},
	}
	for _, iso := range isolations {
		s := newSandbox(t, iso, nil)
		for _, c := range cases {
			t.Run(iso.String()+"/"+c.name, func(t *testing.T) {
				r := run(t, s, Job{Module: c.module})
				wantStatus(t, r, StatusTrap)
				if r.Message != c.want {
					t.Fatalf("message %q, want %q", r.Message, c.want)
				}
				if err := r.Err(); !errors.Is(err, ErrTrap) || err.Error() != "job trapped: "+c.want {
					t.Fatalf("Err() = %v", err)
				}
			})
		}
	}
}

func TestTimeout(t *testing.T) {
	s := newSandbox(t, Subprocess, func(c *Config) { c.Timeout = time.Hour })
	r := run(t, s, Job{ModuleID: "guest", Module: guestWasm(t, "guest"), Input: []byte("loop"), Timeout: 300 * time.Millisecond})
	wantStatus(t, r, StatusTimeout)
	if err := r.Err(); !errors.Is(err, ErrTimeout) || err.Error() != "time limit 300ms exceeded" {
		t.Fatalf("Err() = %v", err)
	}
	// The killed executor is replaced.
	r = run(t, s, guestJob(t, "echo again"))
	wantStatus(t, r, StatusOK)
	if string(r.Stdout) != "again" {
		t.Fatalf("stdout %q", r.Stdout)
	}
}

// TestTableGrowthBounded: table.grow cannot take host memory past the
// table cap; it fails (-1) as the spec allows.
func TestTableGrowthBounded(t *testing.T) {
	bin := wasmasm.Module{
		Types:   []wasmasm.FuncType{tVoid},
		Funcs:   []uint32{0},
		Tables:  [][]byte{wasmasm.Table(wasmasm.FuncRef, wasmasm.Limits(1))}, // one funcref table, min 1, no max
		Exports: []wasmasm.Export{wasmasm.FuncExport("_start", 0)},
		Codes: [][]byte{wasmasm.NewCode().
			Op(wasmasm.OpRefNull, wasmasm.FuncRef).I32Const(100_000_000).Op(wasmasm.OpPrefixFC, 15, 0). // table.grow 0 (ref.null, 1e8)
			I32Const(-1).Op(wasmasm.OpI32Ne).
			If().Op(wasmasm.OpUnreachable).End(). // trap when it grew
			Body()},
	}.Bytes()
	for _, iso := range isolations {
		s := newSandbox(t, iso, nil)
		wantStatus(t, run(t, s, Job{Module: bin}), StatusOK)
	}
}

// TestCompileTimeout: a module whose compile runs too long is refused, and
// the executor is replaced.
func TestCompileTimeout(t *testing.T) {
	wasm := guestWasm(t, "guest")
	s := newSandbox(t, Subprocess, func(c *Config) { c.CacheDir = t.TempDir(); c.CompileTimeout = 100 * time.Millisecond })
	err := s.Compile(context.Background(), "guest", wasm)
	if !errors.Is(err, ErrInvalidModule) || err.Error() != "invalid module: compiling took longer than 100ms" {
		t.Fatalf("Compile: %v", err)
	}
	r := run(t, s, Job{ModuleID: "guest", Module: wasm, Input: []byte("echo")})
	wantStatus(t, r, StatusInvalidModule)
	// The sandbox still serves: a tiny module compiles within the 100 ms
	// once the executor replacing the killed one is up. (Waiting for it
	// keeps the new process's start-up, slow under -race on a loaded
	// machine, out of that 100 ms.)
	if err := s.WaitWarm(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, run(t, s, Job{Module: tinyHello()}), StatusOK)
}

// TestStartSection: a start section runs only under the time limit, never
// while compiling.
func TestStartSection(t *testing.T) {
	loop := wasmasm.NewCode().Loop().Br(0).End().Body()
	start := uint32(0)
	m := wasmasm.Module{
		Types:   []wasmasm.FuncType{tVoid},
		Funcs:   []uint32{0, 0},
		Exports: []wasmasm.Export{wasmasm.FuncExport("_start", 1)},
		Start:   &start,
		Codes:   [][]byte{loop, wasmasm.NewCode().Body()},
	}.Bytes()
	s := newSandbox(t, Subprocess, nil)
	if err := s.Compile(context.Background(), "", m); err != nil {
		t.Fatal(err)
	}
	r := run(t, s, Job{Module: m, Timeout: 200 * time.Millisecond})
	wantStatus(t, r, StatusTimeout)
}

func TestInProcessTimeout(t *testing.T) {
	s := newSandbox(t, InProcess, nil)
	r := run(t, s, Job{ModuleID: "guest", Module: guestWasm(t, "guest"), Input: []byte("spin 300000000"), Timeout: 20 * time.Millisecond})
	wantStatus(t, r, StatusTimeout)
	// The abandoned guest still holds its slot; wait for it to end.
	s.inproc.slots <- struct{}{}
	<-s.inproc.slots
	r = run(t, s, guestJob(t, "echo after"))
	wantStatus(t, r, StatusOK)
}

func TestMemoryLimit(t *testing.T) {
	grow := startModule(nil, nil, wasmasm.NewCode().
		Loop().
		I32Const(16).MemoryGrow(). // 16 pages
		I32Const(-1).Op(wasmasm.OpI32Ne).
		BrIf(0).
		End().
		Body())
	for _, iso := range isolations {
		t.Run(iso.String(), func(t *testing.T) {
			s := newSandbox(t, iso, func(c *Config) { c.MaxMemory = 512 << 20 })
			r := run(t, s, Job{ModuleID: "guest", Module: guestWasm(t, "guest"), Input: []byte("alloc"), MaxMemory: 64 << 20})
			wantStatus(t, r, StatusMemoryLimit)
			if err := r.Err(); !errors.Is(err, ErrMemoryLimit) || !strings.HasPrefix(err.Error(), "memory limit 64MiB exceeded") {
				t.Fatalf("Err() = %v", err)
			}
			r = run(t, s, Job{Module: grow, MaxMemory: 1 << 20})
			wantStatus(t, r, StatusMemoryLimit)
			if r.Message != "memory limit 1MiB exceeded (grow to 1088KiB)" {
				t.Fatalf("message %q", r.Message)
			}
			// The job cap is per job: the same module runs under the config cap.
			r = run(t, s, guestJob(t, "echo ok"))
			wantStatus(t, r, StatusOK)
		})
	}
}

func TestInitialMemoryTooBig(t *testing.T) {
	big := wasmasm.Module{
		Types:   []wasmasm.FuncType{tVoid},
		Funcs:   []uint32{0},
		Memory:  wasmasm.Limits(5000), // 312.5 MiB
		Exports: []wasmasm.Export{wasmasm.FuncExport("_start", 0)},
		Codes:   [][]byte{wasmasm.NewCode().Body()},
	}.Bytes()
	for _, iso := range isolations {
		s := newSandbox(t, iso, nil)
		err := s.Compile(context.Background(), "", big)
		if !errors.Is(err, ErrMemoryLimit) {
			t.Fatalf("%s: Compile: %v", iso, err)
		}
		if got := err.Error(); got != "initial memory 320000KiB exceeds the memory limit 256MiB" {
			t.Fatalf("%s: message %q", iso, got)
		}
		r := run(t, s, Job{Module: big})
		wantStatus(t, r, StatusMemoryLimit)
	}
}

func TestOutputLimits(t *testing.T) {
	for _, iso := range isolations {
		t.Run(iso.String(), func(t *testing.T) {
			s := newSandbox(t, iso, func(c *Config) { c.MaxStdout = 1 << 20; c.MaxStderr = 1000 })
			r := run(t, s, guestJob(t, "spew"))
			wantStatus(t, r, StatusOutputLimit)
			if len(r.Stdout) != 1<<20 {
				t.Fatalf("kept %d bytes of stdout", len(r.Stdout))
			}
			if err := r.Err(); !errors.Is(err, ErrOutputLimit) || err.Error() != "stdout limit 1MiB exceeded" {
				t.Fatalf("Err() = %v", err)
			}
			r = run(t, s, guestJob(t, "stderr"))
			wantStatus(t, r, StatusOK)
			if len(r.Stderr) != 1000 || string(r.Stdout) != "ok\n" {
				t.Fatalf("stderr %d bytes, stdout %q", len(r.Stderr), r.Stdout)
			}
		})
	}
}

func TestRefusedModules(t *testing.T) {
	hello := tinyHello()
	empty := wasmasm.NewCode().Body()
	// importing imports im (not a function) and exports an empty _start.
	importing := func(im wasmasm.Import) []byte {
		return wasmasm.Module{
			Types: []wasmasm.FuncType{tVoid}, Imports: []wasmasm.Import{im},
			Funcs: []uint32{0}, Exports: []wasmasm.Export{wasmasm.FuncExport("_start", 0)}, Codes: [][]byte{empty},
		}.Bytes()
	}
	cases := []struct {
		name   string
		module []byte
		status Status
		msg    string
	}{
		{"garbage", []byte("definitely not wasm"), StatusInvalidModule, ""},
		{"truncated", hello[:len(hello)/2], StatusInvalidModule, ""},
		{"magic only", []byte("\x00asm"), StatusInvalidModule, ""},
		{"env import", startModule([]wasmasm.Import{wasmasm.FuncImport("env", "foo", 0)}, []wasmasm.FuncType{tVoid}, empty), StatusMissingImport, "env.foo"},
		{"unknown wasi function", startModule([]wasmasm.Import{wasmasm.FuncImport("wasi_snapshot_preview1", "no_such_call", 0)}, []wasmasm.FuncType{tVoid}, empty), StatusMissingImport, "wasi_snapshot_preview1.no_such_call"},
		{"wrong signature", startModule([]wasmasm.Import{wasmasm.FuncImport("wasi_snapshot_preview1", "fd_write", 0)}, []wasmasm.FuncType{tVoid}, empty), StatusMissingImport, "wasi_snapshot_preview1.fd_write (wrong signature)"},
		{"imported memory", importing(wasmasm.Import{Module: "env", Name: "memory", Kind: wasmasm.KindMemory, Desc: wasmasm.Limits(1)}),
			StatusMissingImport, "env.memory (a memory)"},
		{"imported global", importing(wasmasm.Import{Module: "env", Name: "g", Kind: wasmasm.KindGlobal, Desc: []byte{wasmasm.I32, 0}}),
			StatusMissingImport, "env.g (a global)"},
		{"imported table", importing(wasmasm.Import{Module: "env", Name: "table", Kind: wasmasm.KindTable, Desc: wasmasm.Table(wasmasm.FuncRef, wasmasm.Limits(1))}),
			StatusMissingImport, "env.table (a table)"},
		{"no _start", wasmasm.Module{
			Types: []wasmasm.FuncType{tVoid}, Funcs: []uint32{0}, Exports: []wasmasm.Export{wasmasm.FuncExport("main", 0)}, Codes: [][]byte{empty},
		}.Bytes(), StatusInvalidModule, "no _start function: not a WASI command module"},
	}
	sentinel := map[Status]error{StatusInvalidModule: ErrInvalidModule, StatusMissingImport: ErrMissingImport}
	for _, iso := range isolations {
		s := newSandbox(t, iso, nil)
		for _, c := range cases {
			t.Run(iso.String()+"/"+c.name, func(t *testing.T) {
				err := s.Compile(context.Background(), "", c.module)
				if !errors.Is(err, sentinel[c.status]) {
					t.Fatalf("Compile: %v, want %v", err, sentinel[c.status])
				}
				r := run(t, s, Job{Module: c.module})
				wantStatus(t, r, c.status)
				if c.msg != "" && r.Message != c.msg {
					t.Fatalf("message %q, want %q", r.Message, c.msg)
				}
				if r.Message == "" || strings.Contains(r.Message, "\n") || err.Error() != r.Err().Error() {
					t.Fatalf("message %q, Compile %q, Err %q", r.Message, err, r.Err())
				}
				t.Logf("%s", err)
			})
		}
	}
	s := newSandbox(t, Subprocess, nil)
	if _, err := s.Run(context.Background(), Job{}); !errors.Is(err, ErrInvalidJob) {
		t.Fatalf("Run without module: %v", err)
	}
	if err := s.Compile(context.Background(), "", nil); !errors.Is(err, ErrInvalidJob) {
		t.Fatalf("Compile without module: %v", err)
	}
	if _, err := s.Run(context.Background(), Job{Module: hello, MaxMemory: 100}); !errors.Is(err, ErrInvalidJob) {
		t.Fatalf("Run with MaxMemory below a page: %v", err)
	}
}

func TestModuleIDMustMatchCID(t *testing.T) {
	hello := tinyHello()
	other := protocol.BlobCID([]byte("something else")).String()
	for _, iso := range isolations {
		s := newSandbox(t, iso, nil)
		_, err := s.Run(context.Background(), Job{ModuleID: other, Module: hello})
		if !errors.Is(err, ErrInvalidJob) || !errors.Is(err, protocol.ErrCIDMismatch) {
			t.Fatalf("%s: Run: %v", iso, err)
		}
		if err := s.Compile(context.Background(), other, hello); !errors.Is(err, protocol.ErrCIDMismatch) {
			t.Fatalf("%s: Compile: %v", iso, err)
		}
		// The executor is still usable, and the right CID works.
		r := run(t, s, Job{ModuleID: protocol.BlobCID(hello).String(), Module: hello})
		wantStatus(t, r, StatusOK)
	}
}

func TestConcurrentJobs(t *testing.T) {
	for _, iso := range isolations {
		t.Run(iso.String(), func(t *testing.T) {
			s := newSandbox(t, iso, func(c *Config) { c.Slots = 2 })
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for i := range 8 {
				wg.Go(func() {
					want := fmt.Sprintf("job %d", i)
					r, err := s.Run(context.Background(), guestJob(t, "echo "+want))
					if err == nil && (r.Status != StatusOK || string(r.Stdout) != want) {
						err = fmt.Errorf("job %d: %s %q", i, r.Status, r.Stdout)
					}
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestContextCancel(t *testing.T) {
	for _, iso := range isolations {
		s := newSandbox(t, iso, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := s.Run(ctx, Job{ModuleID: "guest", Module: guestWasm(t, "guest"), Input: []byte("spin 400000000")})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: Run: %v", iso, err)
		}
		if iso == InProcess { // wait for the abandoned guest
			s.inproc.slots <- struct{}{}
			<-s.inproc.slots
		}
		wantStatus(t, run(t, s, guestJob(t, "echo ok")), StatusOK)
	}
}

func TestLifecycle(t *testing.T) {
	cfg := DefaultConfig()
	cfg.CacheDir = sharedCacheDir
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(context.Background(), Job{Module: tinyHello()}); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Run before Start: %v", err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(context.Background(), Job{Module: tinyHello()}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v", err)
	}
	if err := s.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v", err)
	}

	bad := DefaultConfig()
	bad.Slots = 0
	if _, err := New(bad); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New with 0 slots: %v", err)
	}
}

// TestCloseStopsRunningJob: Close interrupts a job in flight.
func TestCloseStopsRunningJob(t *testing.T) {
	s := newSandbox(t, Subprocess, nil)
	sent := make(chan struct{})
	testHookRunSent = func() { close(sent) }
	defer func() { testHookRunSent = nil }()
	errc := make(chan error, 1)
	go func() {
		_, err := s.Run(context.Background(), guestJob(t, "loop"))
		errc <- err
	}()
	<-sent
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("Run during Close: %v", err)
	}
}

// TestExecutorCrash: a child that dies mid-job is an infrastructure error,
// and the next job gets a fresh child.
func TestExecutorCrash(t *testing.T) {
	s := newSandbox(t, Subprocess, nil)
	guestWasm(t, "guest")
	sent := make(chan struct{})
	testHookRunSent = func() { close(sent) }
	defer func() { testHookRunSent = nil }()
	errc := make(chan error, 1)
	go func() {
		_, err := s.Run(context.Background(), guestJob(t, "loop"))
		errc <- err
	}()
	<-sent
	testHookRunSent = nil
	s.execs[0].kill()
	err := <-errc
	if !errors.Is(err, ErrExecutor) || !strings.Contains(err.Error(), "signal: killed") {
		t.Fatalf("Run with crashed child: %v", err)
	}
	wantStatus(t, run(t, s, guestJob(t, "echo ok")), StatusOK)
}

func TestBadExecutable(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Executable = "/bin/true"
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Start(context.Background())
	if !errors.Is(err, ErrExecutor) || !strings.Contains(err.Error(), "RunChildIfRequested") {
		t.Fatalf("Start: %v", err)
	}
}

func TestNiceness(t *testing.T) {
	s := newSandbox(t, Subprocess, func(c *Config) { c.Nice = 19 })
	pid := s.execs[0].proc.Pid
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, task := range tasks {
		var tid int
		fmt.Sscan(task.Name(), &tid)
		prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
		if err != nil {
			continue // thread ended
		}
		if nice := 20 - prio; nice != 19 { // the raw syscall returns 20 - nice
			t.Errorf("thread %d of executor %d has niceness %d", tid, pid, nice)
		}
	}
}

// TestDiskCache: a second sandbox on the same cache directory finds the
// module compiled by the first, and a time limit shorter than the compile
// is not spent compiling.
func TestDiskCache(t *testing.T) {
	dir := t.TempDir()
	wasm := guestWasm(t, "guest")
	s := newSandbox(t, Subprocess, func(c *Config) { c.CacheDir = dir })
	t0 := time.Now()
	if err := s.Compile(context.Background(), "guest", wasm); err != nil {
		t.Fatal(err)
	}
	coldCompile := time.Since(t0)
	s.Close()
	entries, _ := os.ReadDir(dir)
	if len(entries) == 0 {
		t.Fatal("cache directory is empty")
	}
	s = newSandbox(t, Subprocess, func(c *Config) { c.CacheDir = dir })
	if err := s.Compile(context.Background(), "guest", wasm); err != nil {
		t.Fatal(err)
	}

	if testing.Short() {
		return
	}
	s = newSandbox(t, Subprocess, func(c *Config) { c.CacheDir = t.TempDir() })
	r := run(t, s, Job{ModuleID: "guest", Module: wasm, Input: []byte("echo x"), Timeout: coldCompile / 2})
	wantStatus(t, r, StatusOK)
}

func TestTemporaryCacheRemoved(t *testing.T) {
	s := newSandbox(t, Subprocess, func(c *Config) { c.CacheDir = "" })
	dir := s.tmpDir
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, run(t, s, Job{Module: tinyHello()}), StatusOK)
	s.Close()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary cache %s not removed: %v", dir, err)
	}
}

func TestModuleCacheEviction(t *testing.T) {
	s := newSandbox(t, InProcess, func(c *Config) { c.CachedModules = 2 })
	mods := [][]byte{
		tinyHello(),
		startModule(nil, nil, wasmasm.NewCode().Body()),
		startModule(nil, nil, wasmasm.NewCode().I32Const(1).Op(wasmasm.OpDrop).Body()),
	}
	for round := range 2 {
		for i, m := range mods {
			r := run(t, s, Job{Module: m})
			wantStatus(t, r, StatusOK)
			if i == 0 && string(r.Stdout) != "hi\n" {
				t.Fatalf("round %d: stdout %q", round, r.Stdout)
			}
		}
	}
	if n := s.inproc.eng.lru.Len(); n != 2 {
		t.Fatalf("%d modules cached, want 2", n)
	}
}

func TestStatusStrings(t *testing.T) {
	for st := StatusOK; st < numStatus; st++ {
		if st == 8 { // protocol.StatusFetchFailed: never a sandbox result
			if st.valid() || st.String() != "status(8)" {
				t.Errorf("status 8 is %q", st)
			}
			continue
		}
		if strings.HasPrefix(st.String(), "status(") {
			t.Errorf("status %d has no name", st)
		}
		err := Result{Status: st}.Err()
		if (st == StatusOK) != (err == nil) {
			t.Errorf("%s: Err() = %v", st, err)
		}
	}
	if Status(200).String() != "status(200)" {
		t.Error(Status(200).String())
	}
}

// TestLoadModuleOnlyWhenNotCached: a job may name its module and give a
// loader instead of the bytes; the loader runs only when no cache holds
// the module, and its failure is the job's error.
func TestLoadModuleOnlyWhenNotCached(t *testing.T) {
	hello := tinyHello()
	id := protocol.BlobCID(hello).String()
	for _, iso := range isolations {
		t.Run(iso.String(), func(t *testing.T) {
			s := newSandbox(t, iso, func(c *Config) { c.CacheDir = t.TempDir() }) // no cache holds it yet
			loads := 0
			load := func() ([]byte, error) { loads++; return hello, nil }
			for range 3 {
				r := run(t, s, Job{ModuleID: id, LoadModule: load})
				wantStatus(t, r, StatusOK)
				if string(r.Stdout) != "hi\n" {
					t.Fatalf("stdout %q", r.Stdout)
				}
			}
			if loads != 1 {
				t.Fatalf("module loaded %d times, want once", loads)
			}
			boom := errors.New("boom")
			other := protocol.BlobCID([]byte("not cached")).String()
			_, err := s.Run(context.Background(), Job{ModuleID: other, LoadModule: func() ([]byte, error) { return nil, boom }})
			if !errors.Is(err, boom) {
				t.Fatalf("Run with a failing loader: %v", err)
			}
			// A loader returning bytes of another module is caught by the CID check.
			_, err = s.Run(context.Background(), Job{ModuleID: other, LoadModule: func() ([]byte, error) { return hello, nil }})
			if !errors.Is(err, protocol.ErrCIDMismatch) {
				t.Fatalf("Run with a lying loader: %v", err)
			}
			// The sandbox is still usable.
			wantStatus(t, run(t, s, Job{ModuleID: id, LoadModule: load}), StatusOK)
			if _, err := s.Run(context.Background(), Job{}); !errors.Is(err, ErrInvalidJob) {
				t.Fatalf("Run without a module: %v", err)
			}
		})
	}
}
