package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aspen-market/aspen/internal/wasmasm"
	"github.com/aspen-market/aspen/internal/wasmmeter"
	"github.com/aspen-market/aspen/protocol"
)

// countdown is a module whose _start counts local 0 down from n, then
// writes "done\n": 2 + 3(n+1) + 5n ticks for the loop, then the write.
func countdown(n int32) []byte {
	var c wasmasm.Code
	c.I32Const(n).LocalSet(0)
	c.Block().Loop()
	c.LocalGet(0).Op(wasmasm.OpI32Eqz).BrIf(1)
	c.LocalGet(0).I32Const(1).Op(wasmasm.OpI32Sub).LocalSet(0).Br(0)
	c.End().End()
	c.I32Const(1).I32Const(0).I32Const(1).I32Const(8).Call(0).Op(wasmasm.OpDrop)
	return wasmasm.Command([]wasmasm.FuncType{tFdWrite}, []wasmasm.Import{wasmasm.FuncImport("wasi_snapshot_preview1", "fd_write", 0)}, 1,
		c.Body(wasmasm.Local{Count: 1, Type: wasmasm.I32}),
		wasmasm.Data{Offset: 0, Bytes: []byte{16, 0, 0, 0, 5, 0, 0, 0}}, wasmasm.Data{Offset: 16, Bytes: []byte("done\n")})
}

// countdownTicks is countdown(n)'s exact cost in ticks.
func countdownTicks(n int64) int64 {
	loop := 2 + 3*(n+1) + 5*n
	write := 4 + wasmmeter.CostHostCall + 1 + wasmmeter.CostPerIOVec
	return loop + int64(write)
}

func ceilUnits(ticks int64) uint64 {
	return uint64((ticks + wasmmeter.TicksPerUnit - 1) / wasmmeter.TicksPerUnit)
}

// TestWorkExact: Result.Work is the module's exact cost, the same in both
// isolations and on every run.
func TestWorkExact(t *testing.T) {
	for _, n := range []int32{0, 1, 1000, 1_000_000} {
		want := ceilUnits(countdownTicks(int64(n)))
		for _, iso := range isolations {
			s := newSandbox(t, iso, nil)
			for range 2 {
				r := run(t, s, Job{Module: countdown(n)})
				wantStatus(t, r, StatusOK)
				if r.Work != want || string(r.Stdout) != "done\n" {
					t.Fatalf("%s, n=%d: work %d, stdout %q; want %d", iso, n, r.Work, r.Stdout, want)
				}
			}
		}
	}
}

// TestWorkLimitExact: a budget of exactly a job's work runs it to the end;
// one unit less stops it with StatusWorkLimit and Work the budget, the
// same in both isolations and on every run.
func TestWorkLimitExact(t *testing.T) {
	mod := countdown(100_000)
	work := ceilUnits(countdownTicks(100_000))
	for _, iso := range isolations {
		s := newSandbox(t, iso, nil)
		for range 2 {
			r := run(t, s, Job{Module: mod, WorkBudget: work})
			wantStatus(t, r, StatusOK)
			if r.Work != work || string(r.Stdout) != "done\n" {
				t.Fatalf("%s: budget %d: work %d, stdout %q", iso, work, r.Work, r.Stdout)
			}
			r = run(t, s, Job{Module: mod, WorkBudget: work - 1})
			wantStatus(t, r, StatusWorkLimit)
			msg := fmt.Sprintf("work limit %d exceeded", work-1)
			if err := r.Err(); !errors.Is(err, ErrWorkLimit) || err.Error() != msg || r.Work != work-1 {
				t.Fatalf("%s: budget %d: Err() = %v, work %d", iso, work-1, err, r.Work)
			}
			// Stopped by the check at the loop's last header: before the
			// write.
			if len(r.Stdout) != 0 {
				t.Fatalf("%s: stdout %q", iso, r.Stdout)
			}
		}
	}
}

// TestWorkLimitStopsForeverLoops: a loop that never ends, in _start, in a
// start section, or in a Go program, stops at its budget in both
// isolations, without a time-out, with the same outcome every run.
func TestWorkLimitStopsForeverLoops(t *testing.T) {
	forever := wasmasm.NewCode().Loop().Br(0).End().Body()
	start := uint32(0)
	inStart := wasmasm.Module{
		Types:   []wasmasm.FuncType{tVoid},
		Funcs:   []uint32{0, 0},
		Exports: []wasmasm.Export{wasmasm.FuncExport("_start", 1)},
		Start:   &start,
		Codes:   [][]byte{forever, wasmasm.NewCode().Body()},
	}.Bytes()
	sandboxes := []*Sandbox{newSandbox(t, Subprocess, nil), newSandbox(t, InProcess, nil)}
	for _, c := range []struct {
		name   string
		job    Job
		budget uint64
	}{
		{"loop", Job{Module: startModule(nil, nil, forever)}, 5_000_000},
		{"start section", Job{Module: inStart}, 5_000_000},
		{"go guest", guestJob(t, "loop"), 20_000_000},
	} {
		c.job.WorkBudget = c.budget
		for _, s := range sandboxes {
			iso := s.cfg.Isolation
			var first Result
			for i := range 2 {
				r := run(t, s, c.job)
				wantStatus(t, r, StatusWorkLimit)
				if r.Work != c.budget || r.Message != fmt.Sprintf("work limit %d exceeded", c.budget) {
					t.Fatalf("%s, %s: work %d, message %q", c.name, iso, r.Work, r.Message)
				}
				if i == 0 {
					first = r
				} else if string(r.Stdout) != string(first.Stdout) || string(r.Stderr) != string(first.Stderr) {
					t.Fatalf("%s, %s: runs differ: %q %q vs %q %q", c.name, iso, r.Stdout, r.Stderr, first.Stdout, first.Stderr)
				}
			}
		}
	}
}

// TestWorkDeterministic: a Go-built guest's work is the same on every run
// and in both isolations, also when it fails.
func TestWorkDeterministic(t *testing.T) {
	for _, input := range []string{"spin 1000000", "exit 3 bad input", "panic"} {
		var works []uint64
		for _, iso := range isolations {
			s := newSandbox(t, iso, nil)
			for range 2 {
				r := run(t, s, guestJob(t, input))
				if r.Work == 0 {
					t.Fatalf("%s %q: no work (%s)", iso, input, r.Status)
				}
				works = append(works, r.Work)
			}
		}
		for _, w := range works[1:] {
			if w != works[0] {
				t.Fatalf("%q: work %v", input, works)
			}
		}
		t.Logf("%q: %d units", input, works[0])
	}
}

// TestJobBudgetOnlyLowers: a job's budget lowers the configured one, never
// raises it.
func TestJobBudgetOnlyLowers(t *testing.T) {
	s := newSandbox(t, InProcess, func(c *Config) { c.WorkBudget = 1000 })
	r := run(t, s, Job{Module: startModule(nil, nil, wasmasm.NewCode().Loop().Br(0).End().Body()), WorkBudget: 1 << 40})
	wantStatus(t, r, StatusWorkLimit)
	if r.Work != 1000 {
		t.Fatalf("work %d", r.Work)
	}
}

// TestCounterOutOfReach: a module cannot name the counter (an index past
// its own globals) nor take its export name; both are refused when
// compiled, and a module with globals of its own runs with them intact.
func TestCounterOutOfReach(t *testing.T) {
	s := newSandbox(t, Subprocess, nil)
	setCounter := startModule(nil, nil, wasmasm.NewCode().I64Const(1<<60).GlobalSet(0).Body())
	exportName := wasmasm.Module{
		Types:   []wasmasm.FuncType{tVoid},
		Funcs:   []uint32{0},
		Globals: []wasmasm.Global{{Type: wasmasm.I64, Mutable: true, Init: []byte{wasmasm.OpI64Const, 0}}},
		Exports: []wasmasm.Export{wasmasm.FuncExport("_start", 0), wasmasm.GlobalExport(wasmmeter.CounterExport, 0)},
		Codes:   [][]byte{wasmasm.NewCode().Body()},
	}.Bytes()
	for _, c := range []struct {
		name string
		bin  []byte
		want string
	}{
		{"global.set of the counter", setCounter, "invalid module: code section: function 0: global index out of range at offset 10"},
		{"its export name", exportName, `invalid module: export section: export name "aspen:work" is reserved by the sandbox`},
	} {
		err := s.Compile(context.Background(), "", c.bin)
		if !errors.Is(err, ErrInvalidModule) || err.Error() != c.want {
			t.Errorf("%s: Compile: %v", c.name, err)
		}
		r := run(t, s, Job{Module: c.bin})
		wantStatus(t, r, StatusInvalidModule)
		if r.Work != 0 {
			t.Errorf("%s: work %d", c.name, r.Work)
		}
	}
	// Its own global (index 0) is its own: set to 5, read back, checked.
	own := wasmasm.Module{
		Types:   []wasmasm.FuncType{tVoid},
		Funcs:   []uint32{0},
		Globals: []wasmasm.Global{{Type: wasmasm.I64, Mutable: true, Init: []byte{wasmasm.OpI64Const, 0}}},
		Exports: []wasmasm.Export{wasmasm.FuncExport("_start", 0)},
		// global 0 = 5; trap unless global 0 == 5 (i64.ne)
		Codes: [][]byte{wasmasm.NewCode().I64Const(5).GlobalSet(0).GlobalGet(0).I64Const(5).Op(0x52).If().Op(wasmasm.OpUnreachable).End().Body()},
	}.Bytes()
	wantStatus(t, run(t, s, Job{Module: own}), StatusOK)
}

// TestTimeoutStaysASafetyNet: the wall clock still stops a job whose
// budget would last longer, with StatusTimeout and no work.
func TestTimeoutStaysASafetyNet(t *testing.T) {
	s := newSandbox(t, Subprocess, nil)
	r := run(t, s, Job{Module: startModule(nil, nil, wasmasm.NewCode().Loop().Br(0).End().Body()), Timeout: 200 * time.Millisecond})
	wantStatus(t, r, StatusTimeout)
	if r.Work != 0 || !strings.Contains(r.Message, "time limit") {
		t.Fatalf("work %d, message %q", r.Work, r.Message)
	}
}

// TestWorkLimitOutput: a work-limited run's output, what replicas compare,
// is the same on every run and says why it stopped.
func TestWorkLimitOutput(t *testing.T) {
	s := newSandbox(t, InProcess, nil)
	job := Job{Module: countdown(1000), WorkBudget: 10}
	a, b := run(t, s, job).Output(), run(t, s, job).Output()
	if a.Status != protocol.StatusWorkLimit || a.Message != "work limit 10 exceeded" ||
		!bytes.Equal(protocol.EncodeOutput(&a), protocol.EncodeOutput(&b)) {
		t.Fatalf("outputs %+v and %+v", a, b)
	}
}
