package sandbox

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/aspen-market/aspen/internal/wasmmeter"
)

// engine compiles and runs modules with one wazero runtime. Executor
// children and the in-process mode each own one. It is safe for concurrent
// use.
type engine struct {
	rt    wazero.Runtime
	cache wazero.CompilationCache
	wasi  map[string]api.FunctionDefinition
	base  wazero.ModuleConfig
	mem   memPool

	records string        // directory of module records (record.go); "" for none
	warmed  chan struct{} // closed when warm has finished

	mu      sync.Mutex
	max     int
	lru     *list.List               // of *module, most recently used first
	modules map[string]*list.Element // by module ID
	loading map[string]chan struct{} // modules being compiled, closed when done
	closing bool
	jobs    int        // guests running
	idle    *sync.Cond // on mu: jobs dropped to 0, or closing
}

// module is a compiled module, or the reason it was refused.
type module struct {
	id   string
	cm   wazero.CompiledModule
	fail *failure
	refs int  // runs holding cm; guarded by engine.mu
	gone bool // evicted: close cm when refs drops to 0
}

// failure is a job-level refusal found while compiling.
type failure struct {
	status  Status
	message string
}

func (f *failure) result() Result { return Result{Status: f.status, Message: f.message} }

// limits are one job's effective caps.
type limits struct {
	memory uint64 // bytes, multiple of pageSize
	stdout int
	stderr int
	work   uint64 // standard work units, in [1, MaxWorkBudget]
}

// newEngine creates a runtime whose compiled code is cached in cacheDir
// (shared safely between processes) and whose in-memory cache keeps at most
// cached modules. It starts loading the most recently used modules recorded
// in cacheDir in the background (see record.go).
func newEngine(ctx context.Context, cacheDir string, cached int) (*engine, error) {
	rc := wazero.NewRuntimeConfig().WithDebugInfoEnabled(false).WithCoreFeatures(api.CoreFeaturesV2)
	var cache wazero.CompilationCache
	if cacheDir != "" {
		var err error
		if cache, err = wazero.NewCompilationCacheWithDir(cacheDir); err != nil {
			return nil, fmt.Errorf("sandbox: compilation cache %s: %w", cacheDir, err)
		}
		rc = rc.WithCompilationCache(cache)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		_ = rt.Close(ctx)
		return nil, fmt.Errorf("sandbox: instantiate WASI: %w", err)
	}
	e := &engine{
		rt:    rt,
		cache: cache,
		wasi:  rt.Module(wasi_snapshot_preview1.ModuleName).ExportedFunctionDefinitions(),
		base: wazero.NewModuleConfig().
			WithName("").
			WithArgs("job").
			WithStartFunctions(). // run calls _start itself, to time it
			WithOsyield(func() {}),
		warmed:  make(chan struct{}),
		max:     cached,
		lru:     list.New(),
		modules: map[string]*list.Element{},
		loading: map[string]chan struct{}{},
	}
	e.idle = sync.NewCond(&e.mu)
	if cacheDir != "" {
		e.records = filepath.Join(cacheDir, recordsDir)
	}
	go e.warm(min(cached, warmModules))
	return e, nil
}

// waitIdle waits until no guest runs (loading ahead yields to jobs) and
// reports whether the engine is open.
func (e *engine) waitIdle() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for e.jobs > 0 && !e.closing {
		e.idle.Wait()
	}
	return !e.closing
}

// jobStarted and jobDone count running guests for waitIdle.
func (e *engine) jobStarted() {
	e.mu.Lock()
	e.jobs++
	e.mu.Unlock()
}

func (e *engine) jobDone() {
	e.mu.Lock()
	if e.jobs--; e.jobs == 0 {
		e.idle.Broadcast()
	}
	e.mu.Unlock()
}

func (e *engine) close() {
	ctx := context.Background()
	e.mu.Lock()
	e.closing = true
	e.idle.Broadcast()
	e.mu.Unlock()
	<-e.warmed
	e.mu.Lock()
	for el := e.lru.Front(); el != nil; el = el.Next() {
		m := el.Value.(*module)
		m.gone = true
		if m.refs == 0 && m.cm != nil {
			_ = m.cm.Close(ctx)
		}
	}
	e.lru.Init()
	clear(e.modules)
	e.mu.Unlock()
	_ = e.rt.Close(ctx)
	if e.cache != nil {
		_ = e.cache.Close(ctx)
	}
	e.mem.close()
}

// lookup returns the cached module with this ID, holding a reference the
// caller gives back with release.
func (e *engine) lookup(id string) (*module, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	el, ok := e.modules[id]
	if !ok {
		return nil, false
	}
	e.lru.MoveToFront(el)
	m := el.Value.(*module)
	m.refs++
	return m, true
}

// release gives back a reference from lookup or compile.
func (e *engine) release(m *module) {
	e.mu.Lock()
	defer e.mu.Unlock()
	m.refs--
	if m.refs == 0 && m.gone && m.cm != nil {
		_ = m.cm.Close(context.Background())
	}
}

// compile returns the module with this ID, compiling and checking it if it
// is not cached; the caller releases it. memCap is the memory cap its
// initial memory is checked against. A refused module is returned too, with
// fail set (refusals are cached like modules).
func (e *engine) compile(ctx context.Context, id string, bin []byte, memCap uint64) *module {
	m, _ := e.obtain(ctx, id, bin, memCap)
	return m
}

// hasRecord reports whether the module with this ID may be loaded from its
// record (record.go), without its bytes.
func (e *engine) hasRecord(id string) bool {
	if e.records == "" || !recorded(id) {
		return false
	}
	_, err := os.Stat(recordPath(e.records, id))
	return err == nil
}

// obtain returns the module with this ID, held for the caller: from memory,
// else from its record on disk, else compiled and checked from bin. Without
// bin and a usable record, ok is false. One module is compiled once at a
// time: a second caller waits for the first.
func (e *engine) obtain(ctx context.Context, id string, bin []byte, memCap uint64) (m *module, ok bool) {
	for {
		e.mu.Lock()
		if el, ok := e.modules[id]; ok {
			e.lru.MoveToFront(el)
			m := el.Value.(*module)
			m.refs++
			e.mu.Unlock()
			return m, true
		}
		wait, busy := e.loading[id]
		if !busy {
			break
		}
		e.mu.Unlock()
		<-wait
	}
	done := make(chan struct{})
	e.loading[id] = done
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.loading, id)
		close(done)
		switch {
		case !ok:
		case m.fail != nil && m.fail.status == StatusMemoryLimit:
			// Refused under this job's cap only: a job with a larger cap
			// must not find it refused.
			m.refs++
		default:
			e.add(m)
		}
		e.mu.Unlock()
	}()
	if m, ok := e.fromRecord(ctx, id, memCap); ok {
		return m, true
	}
	if bin == nil {
		return nil, false
	}
	m = &module{id: id}
	var wasm []byte
	wasm, m.cm, m.fail = e.check(ctx, bin, memCap)
	if m.fail == nil {
		e.writeRecord(record{id: id, memCap: memCap, wasm: wasm})
	}
	return m, true
}

// add puts a new module in the cache, held once for the caller, and evicts
// the least recently used beyond the limit; e.mu is held.
func (e *engine) add(m *module) {
	e.modules[m.id] = e.lru.PushFront(m)
	m.refs++
	for e.lru.Len() > e.max {
		old := e.lru.Remove(e.lru.Back()).(*module)
		delete(e.modules, old.id)
		old.gone = true
		if old.refs == 0 && old.cm != nil {
			_ = old.cm.Close(context.Background())
		}
	}
}

// check guards bin, meters it, compiles it and refuses what the sandbox
// cannot run (see checkGuarded); wasm is what the guard and the metering
// pass made of bin.
func (e *engine) check(ctx context.Context, bin []byte, memCap uint64) (wasm []byte, cm wazero.CompiledModule, f *failure) {
	wasm, info, err := guard(bin)
	if err != nil {
		return nil, nil, &failure{StatusInvalidModule, clip(strings.TrimPrefix(err.Error(), errMalformed.Error()+": "))}
	}
	if wasm, err = meter(wasm); err != nil {
		return nil, nil, &failure{StatusInvalidModule, clip(strings.TrimPrefix(err.Error(), wasmmeter.ErrMalformed.Error()+": "))}
	}
	info.hasStart = false // exported instead: it runs in run, after the budget is set
	cm, f = e.checkGuarded(ctx, wasm, info, memCap, true)
	return wasm, cm, f
}

// meter instruments a guarded module to count its work (internal/wasmmeter).
func meter(wasm []byte) ([]byte, error) {
	out, _, err := wasmmeter.Instrument(wasm)
	return out, err
}

// errUnmetered reports a compiled module without the work counter, which
// only a damaged module record could give.
var errUnmetered = errors.New("compiled module has no work counter")

// checkGuarded compiles a guarded module and refuses what the sandbox
// cannot run: invalid wasm, anything imported but WASI preview 1
// functions, no _start, and, with trial, initial memory above memCap and
// anything else that fails to link.
func (e *engine) checkGuarded(ctx context.Context, wasm []byte, info moduleInfo, memCap uint64, trial bool) (wazero.CompiledModule, *failure) {
	cm, err := e.rt.CompileModule(ctx, wasm)
	if err != nil {
		return nil, &failure{StatusInvalidModule, oneLine(err.Error())}
	}
	if f := e.checkImports(cm, info.imports); f != nil {
		_ = cm.Close(ctx)
		return nil, f
	}
	start, ok := cm.ExportedFunctions()["_start"]
	if !ok || len(start.ParamTypes()) != 0 || len(start.ResultTypes()) != 0 {
		_ = cm.Close(ctx)
		return nil, &failure{StatusInvalidModule, "no _start function: not a WASI command module"}
	}
	// Instantiate it once without running _start: catches oversized
	// initial memory and anything else that fails to link. Not if it has
	// a start section: that code may only run under a time limit, in run.
	if !trial || info.hasStart {
		return cm, nil
	}
	alloc := &allocator{pool: &e.mem, limit: memCap}
	mod, err := e.instantiate(experimental.WithMemoryAllocator(ctx, alloc), cm, e.base)
	if mod != nil {
		_ = mod.Close(ctx)
	}
	switch {
	case alloc.exceeded:
		_ = cm.Close(ctx)
		return nil, &failure{StatusMemoryLimit, initialMemoryMessage(alloc.requested, memCap)}
	case err != nil:
		_ = cm.Close(ctx)
		msg := oneLine(err.Error())
		if strings.Contains(msg, "import") || strings.Contains(msg, "not instantiated") {
			return nil, &failure{StatusMissingImport, msg}
		}
		return nil, &failure{StatusInvalidModule, msg}
	}
	return cm, nil
}

func (e *engine) checkImports(cm wazero.CompiledModule, imports []wasmImport) *failure {
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		full := mod + "." + name
		if mod != wasi_snapshot_preview1.ModuleName {
			return &failure{StatusMissingImport, clip(full)}
		}
		def, ok := e.wasi[name]
		if !ok {
			return &failure{StatusMissingImport, clip(full)}
		}
		if !slices.Equal(def.ParamTypes(), f.ParamTypes()) || !slices.Equal(def.ResultTypes(), f.ResultTypes()) {
			return &failure{StatusMissingImport, clip(full + " (wrong signature)")}
		}
	}
	// Memories, tables, globals and tags are never provided.
	for _, im := range imports {
		if im.kind != 0 && int(im.kind) < len(importKinds) {
			return &failure{StatusMissingImport, clip(im.module + "." + im.name + " (" + importKinds[im.kind] + ")")}
		}
	}
	for _, m := range cm.ImportedMemories() { // in case the parser missed it
		mod, name, _ := m.Import()
		return &failure{StatusMissingImport, clip(mod + "." + name + " (a memory)")}
	}
	return nil
}

// instantiate is InstantiateModule that also recovers a memory-cap panic
// raised while allocating the initial memory.
func (e *engine) instantiate(ctx context.Context, cm wazero.CompiledModule, cfg wazero.ModuleConfig) (mod api.Module, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = recovered(r)
		}
	}()
	return e.rt.InstantiateModule(ctx, cm, cfg)
}

// recovered turns a panic into an error without a Go stack trace.
func recovered(r any) error {
	if err, ok := r.(error); ok {
		return err
	}
	return fmt.Errorf("internal error: %v", r)
}

// errHostMemory reports that the host, not the job's cap, refused memory:
// the run says nothing about the job and must not be reported as its result.
var errHostMemory = errors.New("host refused memory")

// run instantiates m with input on stdin and runs its _start under lim. The
// error is non-nil (wrapping errHostMemory) only when the host ran out of
// memory below the job's cap.
func (e *engine) run(m *module, input []byte, lim limits) (Result, error) {
	if m.fail != nil {
		return m.fail.result(), nil
	}
	e.jobStarted()
	defer e.jobDone()
	stdout := &capWriter{max: lim.stdout, strict: true}
	stderr := &capWriter{max: lim.stderr}
	clk := &fakeClock{}
	alloc := &allocator{pool: &e.mem, limit: lim.memory}
	cfg := e.base.
		WithStdin(bytes.NewReader(input)).
		WithStdout(stdout).
		WithStderr(stderr).
		WithWalltime(clk.walltime, clockResolution).
		WithNanotime(clk.nanotime, clockResolution).
		WithNanosleep(clk.sleep).
		WithRandSource(newRandSource())
	ctx := experimental.WithMemoryAllocator(context.Background(), alloc)

	// The run is instantiation, the module's start function (if it had a
	// start section: the metering pass exports it instead, so that it runs
	// under the budget) and _start, timed on the thread that runs it (see
	// jobClock). The counter holds the budget not yet spent, in ticks.
	budget := lim.work * wasmmeter.TicksPerUnit
	var counter api.MutableGlobal
	clock := startClock()
	mod, err := e.instantiate(ctx, m.cm, cfg)
	if err == nil {
		var ok bool
		if counter, ok = mod.ExportedGlobal(wasmmeter.CounterExport).(api.MutableGlobal); !ok {
			clock.stop()
			_ = mod.Close(ctx)
			return Result{}, errUnmetered
		}
		counter.Set(budget)
		if start := mod.ExportedFunction(wasmmeter.StartExport); start != nil {
			err = call(ctx, start)
		}
		if err == nil {
			err = call(ctx, mod.ExportedFunction("_start"))
		}
	}
	dur := clock.stop()
	overran := false
	res := Result{Stdout: stdout.buf, Stderr: stderr.buf, Duration: dur}
	if counter != nil {
		left := int64(counter.Get())
		if overran = left < 0; overran {
			res.Work = lim.work
		} else {
			res.Work = (budget - uint64(left) + wasmmeter.TicksPerUnit - 1) / wasmmeter.TicksPerUnit
		}
	}
	if mod != nil {
		_ = mod.Close(ctx)
	}

	var exit *sys.ExitError
	switch {
	case alloc.exceeded && alloc.hostErr != nil:
		return Result{}, fmt.Errorf("%w: growing a job's memory to %s: %w", errHostMemory, formatSize(alloc.requested), alloc.hostErr)
	case overran:
		// However the run ended (the check's unreachable, or anything else
		// between two checks), it spent more than its budget: the same
		// outcome on every machine.
		res.Status = StatusWorkLimit
		res.Message = workLimitMessage(lim.work)
	case alloc.exceeded && alloc.initial && mod == nil:
		// As when compiling under this cap: the message must not depend on
		// whether the module was compiled here under a larger one.
		res.Status = StatusMemoryLimit
		res.Message = initialMemoryMessage(alloc.requested, lim.memory)
	case alloc.exceeded:
		res.Status = StatusMemoryLimit
		res.Message = fmt.Sprintf("memory limit %s exceeded (grow to %s)", formatSize(lim.memory), formatSize(alloc.requested))
	case stdout.exceeded:
		res.Status = StatusOutputLimit
		res.Message = fmt.Sprintf("stdout limit %s exceeded", formatSize(uint64(lim.stdout)))
	case err == nil:
		res.Status = StatusOK
	case errors.As(err, &exit):
		if exit.ExitCode() == 0 {
			res.Status = StatusOK
		} else {
			res.Status = StatusExit
			res.ExitCode = exit.ExitCode()
			res.Message = oneLine(string(stderr.buf))
		}
	default:
		res.Status = StatusTrap
		res.Message = trapMessage(err)
	}
	return res, nil
}

func workLimitMessage(budget uint64) string {
	return fmt.Sprintf("work limit %d exceeded", budget)
}

func initialMemoryMessage(size, limit uint64) string {
	return fmt.Sprintf("initial memory %s exceeds the memory limit %s", formatSize(size), formatSize(limit))
}

// call runs fn, recovering panics.
func call(ctx context.Context, fn api.Function) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = recovered(r)
		}
	}()
	_, err = fn.Call(ctx)
	return err
}

// trapMessage reduces a wazero call error to its cause, e.g. "unreachable".
func trapMessage(err error) string {
	msg := oneLine(err.Error())
	msg = strings.TrimPrefix(msg, "wasm error: ")
	msg = strings.TrimSuffix(msg, " (recovered by wazero)")
	return msg
}

// capWriter keeps at most max bytes. A strict writer stops the guest when
// it would pass the cap; a lenient one drops the excess.
type capWriter struct {
	buf      []byte
	max      int
	strict   bool
	exceeded bool
}

// errOutputCap is panicked by a strict capWriter; wazero turns it into the
// error of the running call.
var errOutputCap = errors.New("output cap reached")

func (w *capWriter) Write(p []byte) (int, error) {
	room := w.max - len(w.buf)
	if len(p) <= room {
		w.buf = append(w.buf, p...)
		return len(p), nil
	}
	w.buf = append(w.buf, p[:room]...)
	if w.strict {
		w.exceeded = true
		panic(errOutputCap)
	}
	return len(p), nil
}
