package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/aspen-market/aspen/protocol"
)

// Sandbox runs jobs. Create it with New, call Start, then Run and Compile
// from any number of goroutines (at most Config.Slots jobs run at once; the
// rest wait), and Close it when done.
type Sandbox struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	started  bool
	closed   bool
	done     chan struct{} // closed by Close
	exe      string
	cacheDir string
	tmpDir   string // removed by Close

	// Subprocess mode.
	idle  chan *executor
	execs []*executor

	// InProcess mode.
	inproc *inProcess
}

// New checks cfg and returns a Sandbox that is not started yet.
func New(cfg Config) (*Sandbox, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Sandbox{cfg: cfg, log: cfg.logger(), done: make(chan struct{})}, nil
}

// Start prepares the cache directory and, for Subprocess isolation, starts
// the executor processes, failing if they do not come up (for example when
// the executable does not call RunChildIfRequested). Executors that die
// later are restarted on demand.
func (s *Sandbox) Start(ctx context.Context) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrClosed
	case s.started:
		return fmt.Errorf("sandbox: already started")
	}
	defer func() {
		if err != nil {
			s.cleanup()
		}
	}()
	s.cacheDir = s.cfg.CacheDir
	if s.cacheDir == "" {
		if s.tmpDir, err = os.MkdirTemp("", "aspen-sandbox-cache-"); err != nil {
			return fmt.Errorf("sandbox: cache directory: %w", err)
		}
		s.cacheDir = s.tmpDir
	} else if err = os.MkdirAll(s.cacheDir, 0o700); err != nil {
		return fmt.Errorf("sandbox: cache directory: %w", err)
	}

	if s.cfg.Isolation == InProcess {
		if s.inproc, err = newInProcess(ctx, s); err != nil {
			return err
		}
		s.started = true
		return nil
	}

	s.exe = s.cfg.Executable
	if s.exe == "" {
		if s.exe, err = os.Executable(); err != nil {
			return fmt.Errorf("%w: find own executable: %w", ErrExecutor, err)
		}
	}
	s.idle = make(chan *executor, s.cfg.Slots)
	s.execs = make([]*executor, s.cfg.Slots)
	errs := make([]error, s.cfg.Slots)
	var wg sync.WaitGroup
	for i := range s.execs {
		e := &executor{s: s, id: i}
		s.execs[i] = e
		wg.Go(func() { errs[i] = e.spawn(ctx) })
	}
	wg.Wait()
	if err = errors.Join(errs...); err != nil {
		return err
	}
	for _, e := range s.execs {
		s.idle <- e
	}
	s.started = true
	s.log.Info("sandbox started", "slots", s.cfg.Slots, "isolation", s.cfg.Isolation.String(),
		"cache", s.cacheDir, "nice", s.cfg.Nice)
	return nil
}

// cleanup stops executors and removes the temporary cache; s.mu is held.
func (s *Sandbox) cleanup() {
	for _, e := range s.execs {
		if e != nil {
			e.stop()
		}
	}
	if s.inproc != nil {
		s.inproc.close()
	}
	if s.tmpDir != "" {
		_ = os.RemoveAll(s.tmpDir)
	}
}

// Close stops every executor (jobs still running end with ErrClosed) and
// removes the temporary cache directory, if any. In InProcess mode guests
// still running are abandoned; the runtime is released when the last ends.
// Close is idempotent.
func (s *Sandbox) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	started := s.started
	s.mu.Unlock()
	if !started {
		return nil
	}
	if s.inproc == nil {
		for _, e := range s.execs {
			e.kill() // interrupts running jobs
		}
		for range s.execs {
			<-s.idle // wait until each is handed back
		}
	}
	s.mu.Lock()
	s.cleanup()
	s.mu.Unlock()
	s.log.Info("sandbox closed")
	return nil
}

func (s *Sandbox) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// state returns ErrNotStarted or ErrClosed when jobs cannot run.
func (s *Sandbox) state() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrClosed
	case !s.started:
		return ErrNotStarted
	}
	return nil
}

// Run runs one job and returns its result. How the job ended is in
// Result.Status (see Result.Err); the error is non-nil only when the job
// could not be run: ctx ended (ctx.Err()), the sandbox is not started or
// closed, the job is malformed (ErrInvalidJob), or an executor failed
// (ErrExecutor; the executor is replaced and the job may be retried).
func (s *Sandbox) Run(ctx context.Context, job Job) (Result, error) {
	if err := s.state(); err != nil {
		return Result{}, err
	}
	src := &moduleSrc{bin: job.Module, load: job.LoadModule}
	if len(job.Module) == 0 && job.LoadModule == nil {
		return Result{}, fmt.Errorf("%w: no module bytes", ErrInvalidJob)
	}
	id := job.ModuleID
	if id == "" {
		bin, err := src.bytes()
		if err != nil {
			return Result{}, err
		}
		id = protocol.BlobCID(bin).String()
	}
	timeout := s.cfg.Timeout
	if job.Timeout > 0 && job.Timeout < timeout {
		timeout = job.Timeout
	}
	lim := limits{memory: s.cfg.MaxMemory, stdout: s.cfg.MaxStdout, stderr: s.cfg.MaxStderr, work: s.cfg.WorkBudget}
	if job.MaxMemory > 0 && job.MaxMemory < lim.memory {
		lim.memory = job.MaxMemory
	}
	if job.WorkBudget > 0 && job.WorkBudget < lim.work {
		lim.work = job.WorkBudget
	}
	lim.memory &^= pageSize - 1
	if lim.memory == 0 {
		return Result{}, fmt.Errorf("%w: MaxMemory %d is less than one 64KiB page", ErrInvalidJob, job.MaxMemory)
	}
	if s.inproc != nil {
		return s.inproc.run(ctx, id, src, job.Input, lim, timeout)
	}
	e, err := s.acquire(ctx)
	if err != nil {
		return Result{}, err
	}
	defer s.release(e)
	return e.run(ctx, id, src, job.Input, lim, timeout)
}

// moduleSrc is a job's module binary, loaded on first use.
type moduleSrc struct {
	bin  []byte
	load func() ([]byte, error)
}

func (m *moduleSrc) bytes() ([]byte, error) {
	if len(m.bin) == 0 && m.load != nil {
		b, err := m.load()
		if err != nil {
			return nil, fmt.Errorf("sandbox: loading the module: %w", err)
		}
		if len(b) == 0 {
			return nil, fmt.Errorf("%w: no module bytes", ErrInvalidJob)
		}
		m.bin, m.load = b, nil
	}
	return m.bin, nil
}

// Compile checks a module and warms the caches with it, so that it can be
// refused before any money is escrowed and its first run pays no compile
// cost. A refused module yields a *JobError wrapping ErrInvalidModule,
// ErrMissingImport or ErrMemoryLimit (initial memory above
// Config.MaxMemory); other errors are as for Run. An empty moduleID means
// the module's CID.
func (s *Sandbox) Compile(ctx context.Context, moduleID string, module []byte) error {
	if err := s.state(); err != nil {
		return err
	}
	if len(module) == 0 {
		return fmt.Errorf("%w: no module bytes", ErrInvalidJob)
	}
	if moduleID == "" {
		moduleID = protocol.BlobCID(module).String()
	}
	if err := checkModuleID(moduleID, module); err != nil {
		return err
	}
	var c compiledMsg
	if s.inproc != nil {
		var err error
		if c, err = s.inproc.compile(ctx, moduleID, module, s.cfg.MaxMemory); err != nil {
			return err
		}
	} else {
		e, err := s.acquire(ctx)
		if err != nil {
			return err
		}
		c, err = e.compile(ctx, moduleID, module, s.cfg.MaxMemory)
		s.release(e)
		if err != nil {
			return err
		}
	}
	return Result{Status: c.status, Message: c.message}.Err()
}

// WaitWarm waits until every executor has loaded the modules it loads
// ahead when it starts: the most recently used modules recorded in the
// cache directory (up to 4), so that jobs find them compiled in memory.
// Executors warm up by themselves; a caller waits only to know that they
// have (tests, benchmarks). It holds every executor while it waits.
func (s *Sandbox) WaitWarm(ctx context.Context) error {
	if err := s.state(); err != nil {
		return err
	}
	if s.inproc != nil {
		select {
		case <-s.inproc.eng.warmed:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var held []*executor
	defer func() {
		for _, e := range held {
			s.release(e)
		}
	}()
	for range s.execs {
		e, err := s.acquire(ctx)
		if err != nil {
			return err
		}
		held = append(held, e)
		if err := e.waitWarm(ctx); err != nil {
			return err
		}
	}
	return nil
}

// acquire takes an idle executor, (re)starting its child if needed.
func (s *Sandbox) acquire(ctx context.Context) (*executor, error) {
	var e *executor
	select {
	case e = <-s.idle:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.done:
		return nil, ErrClosed
	}
	select {
	case <-s.done:
		s.idle <- e
		return nil, ErrClosed
	default:
	}
	if !e.alive() {
		e.stop()
		if err := e.spawn(ctx); err != nil {
			s.idle <- e
			return nil, err
		}
	}
	return e, nil
}

// release hands an executor back. One whose child died (killed at a time
// limit, or crashed) is replaced at once, in the background, rather than
// when the next job takes it, so that its successor has loaded the recently
// used modules (record.go) before that job comes, if there is time.
func (s *Sandbox) release(e *executor) {
	if e.alive() || s.isClosed() {
		s.idle <- e
		return
	}
	go func() {
		e.stop()
		if err := e.spawn(context.Background()); err != nil && !errors.Is(err, ErrClosed) {
			s.log.Warn("sandbox executor restart failed; retried when next used", "executor", e.id, "err", err)
		}
		s.idle <- e
	}()
}

// checkModuleID verifies module against id when id is a blob CID.
func checkModuleID(id string, module []byte) error {
	c, err := protocol.ParseCID(id)
	if err != nil {
		return nil // not a CID: an opaque cache key
	}
	if err := protocol.VerifyBlob(c, module); err != nil {
		return fmt.Errorf("%w: module: %w", ErrInvalidJob, err)
	}
	return nil
}

// inProcess runs jobs on an engine in this process.
type inProcess struct {
	eng   *engine
	slots chan struct{}
	done  <-chan struct{} // the Sandbox's

	mu      sync.Mutex
	running int  // guests running, including abandoned ones
	closed  bool // close the engine when running drops to 0
}

func newInProcess(ctx context.Context, s *Sandbox) (*inProcess, error) {
	eng, err := newEngine(ctx, s.cacheDir, s.cfg.CachedModules)
	if err != nil {
		return nil, err
	}
	return &inProcess{eng: eng, slots: make(chan struct{}, s.cfg.Slots), done: s.done}, nil
}

func (p *inProcess) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.running == 0 {
		p.eng.close()
	}
}

// enter registers a running guest; it fails once closed.
func (p *inProcess) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.running++
	return true
}

func (p *inProcess) exit() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running--
	if p.closed && p.running == 0 {
		p.eng.close()
	}
}

func (p *inProcess) compile(ctx context.Context, id string, bin []byte, memCap uint64) (compiledMsg, error) {
	if !p.enter() {
		return compiledMsg{}, ErrClosed
	}
	defer p.exit()
	m := p.eng.compile(ctx, id, bin, memCap)
	defer p.eng.release(m)
	if m.fail != nil {
		return compiledMsg{status: m.fail.status, message: m.fail.message}, nil
	}
	return compiledMsg{status: StatusOK}, nil
}

// run runs the guest on its own goroutine. If the time limit or ctx ends
// first, the guest is abandoned: it keeps its slot until it returns.
func (p *inProcess) run(ctx context.Context, id string, src *moduleSrc, input []byte, lim limits, timeout time.Duration) (Result, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case <-p.done:
		return Result{}, ErrClosed
	}
	if !p.enter() {
		<-p.slots
		return Result{}, ErrClosed
	}
	m, ok := p.eng.lookup(id)
	if !ok {
		m, ok = p.eng.obtain(ctx, id, nil, lim.memory) // from its record
	}
	if !ok {
		bin, err := src.bytes()
		if err == nil {
			err = checkModuleID(id, bin)
		}
		if err != nil {
			p.exit()
			<-p.slots
			return Result{}, err
		}
		m = p.eng.compile(ctx, id, bin, lim.memory)
	}
	type outcome struct {
		r   Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		defer func() { <-p.slots }()
		defer p.exit()
		defer p.eng.release(m)
		r, err := p.eng.run(m, input, lim)
		done <- outcome{r, err}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case o := <-done:
		if o.err != nil {
			return Result{}, fmt.Errorf("%w: %w", ErrExecutor, o.err)
		}
		return o.r, nil
	case <-timer.C:
		return Result{Status: StatusTimeout, Duration: timeout,
			Message: fmt.Sprintf("time limit %s exceeded", timeout)}, nil
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case <-p.done:
		return Result{}, ErrClosed
	}
}
