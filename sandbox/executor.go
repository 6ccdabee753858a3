package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"
)

// handshakeTimeout bounds an executor's start-up when ctx has no deadline.
const handshakeTimeout = 30 * time.Second

// smallWrite is the size below which a frame and its trailing bytes are
// copied into one write.
const smallWrite = 64 << 10

// testHookRunSent, when set by a test, is called after a run request is
// sent to a child.
var testHookRunSent func()

// executor is the parent's handle on one child process. It is used by one
// job at a time (the pool hands it out); kill may be called concurrently.
type executor struct {
	s  *Sandbox
	id int

	mu     sync.Mutex // guards proc against concurrent kill
	proc   *os.Process
	cmd    *exec.Cmd
	exited chan struct{} // closed once the child is reaped
	toW    *os.File      // child's stdin
	fromR  *os.File      // child's stdout
	br     *bufio.Reader
}

// alive reports whether the child is running.
func (e *executor) alive() bool {
	if e.exited == nil {
		return false
	}
	select {
	case <-e.exited:
		return false
	default:
		return true
	}
}

// spawn starts the child and performs the handshake.
func (e *executor) spawn(ctx context.Context) error {
	s := e.s
	toR, toW, err := blockingPipe()
	if err != nil {
		return fmt.Errorf("%w: pipe: %w", ErrExecutor, err)
	}
	fromR, fromW, err := blockingPipe()
	if err != nil {
		toR.Close()
		toW.Close()
		return fmt.Errorf("%w: pipe: %w", ErrExecutor, err)
	}
	cmd := exec.Command(s.exe)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stdin = toR
	cmd.Stdout = fromW
	cmd.Stderr = &logWriter{log: s.log, executor: e.id}
	cmd.SysProcAttr = childAttr()

	e.mu.Lock()
	select {
	case <-s.done:
		e.mu.Unlock()
		toR.Close()
		toW.Close()
		fromR.Close()
		fromW.Close()
		return ErrClosed
	default:
	}
	err = cmd.Start()
	toR.Close()
	fromW.Close()
	if err != nil {
		e.mu.Unlock()
		toW.Close()
		fromR.Close()
		return fmt.Errorf("%w: start %s: %w", ErrExecutor, s.exe, err)
	}
	exited := make(chan struct{})
	e.cmd, e.proc, e.exited = cmd, cmd.Process, exited
	e.toW, e.fromR = toW, fromR
	e.br = bufio.NewReaderSize(fromR, 64<<10)
	e.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()

	stop := context.AfterFunc(ctx, e.kill)
	defer stop()
	timer := time.AfterFunc(handshakeTimeout, e.kill)
	err = e.handshake()
	timer.Stop()
	if err != nil {
		e.stop()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: executor %s did not start (%s; does its main call sandbox.RunChildIfRequested first?): %w",
			ErrExecutor, s.exe, e.exitState(), err)
	}
	s.log.Debug("sandbox executor started", "executor", e.id, "pid", cmd.Process.Pid)
	return nil
}

func (e *executor) handshake() error {
	cfg := e.s.cfg
	h := hello{
		version:       wireVersion,
		nice:          uint32(cfg.Nice),
		goMemLimit:    256<<20 + 2*uint64(cfg.MaxStdout+cfg.MaxStderr),
		cachedModules: uint32(cfg.CachedModules),
		cacheDir:      e.s.cacheDir,
	}
	if _, err := e.toW.Write(encodeHello(h)); err != nil {
		return err
	}
	t, _, err := readFrame(e.br, 1<<10)
	if err != nil {
		return err
	}
	if t != msgReady {
		return fmt.Errorf("%w: expected ready, got type %d", errWire, t)
	}
	return nil
}

// kill sends SIGKILL to the child, if running. Safe to call concurrently.
func (e *executor) kill() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.proc != nil {
		_ = e.proc.Kill()
	}
}

// stop kills the child, reaps it and releases the pipes.
func (e *executor) stop() {
	if e.exited == nil {
		return
	}
	e.kill()
	<-e.exited
	e.mu.Lock()
	e.proc = nil
	e.mu.Unlock()
	e.toW.Close()
	e.fromR.Close()
}

// exitState describes how the child ended, for error messages.
func (e *executor) exitState() string {
	if e.cmd == nil || e.exited == nil {
		return "not started"
	}
	select {
	case <-e.exited:
		if e.cmd.ProcessState != nil {
			return "child " + e.cmd.ProcessState.String()
		}
		return "child exited"
	case <-time.After(time.Second):
		return "child still running"
	}
}

// send writes a frame followed by tail in as few writes as is cheap.
func (e *executor) send(frame, tail []byte) error {
	if len(tail) > 0 && len(tail) <= smallWrite {
		frame = append(frame, tail...)
		tail = nil
	}
	if _, err := e.toW.Write(frame); err != nil {
		return err
	}
	if len(tail) > 0 {
		if _, err := e.toW.Write(tail); err != nil {
			return err
		}
	}
	return nil
}

// run performs one job on this executor. On a time-out or a broken child it
// kills the child (the pool respawns it on next use).
func (e *executor) run(ctx context.Context, id string, src *moduleSrc, input []byte, lim limits, timeout time.Duration) (Result, error) {
	stop := context.AfterFunc(ctx, e.kill)
	defer stop()
	maxReply := uint64(lim.stdout+lim.stderr) + 64<<10

	if err := e.send(encodeRunHeader(runReq{moduleID: id, lim: lim, input: input}), input); err != nil {
		return Result{}, e.broken(ctx, "send run", err)
	}
	if testHookRunSent != nil {
		testHookRunSent()
	}
	t, p, err := e.readReply(timeout, maxReply)
	if err == nil && t == msgCompiling { // from the child's record of the module
		var end *jobEnd
		if t, p, end, err = e.awaitCompiled(ctx, id, timeout, maxReply); end != nil {
			return end.res, end.err
		}
	}
	if err == nil && t == msgNeedModule {
		bin, verr := src.bytes()
		if verr == nil {
			verr = checkModuleID(id, bin)
		}
		if verr != nil {
			if err := e.send(encodeEmpty(msgAbort), nil); err != nil {
				return Result{}, e.broken(ctx, "send abort", err)
			}
			return Result{}, verr
		}
		if err := e.send(encodeModuleHeader(len(bin)), bin); err != nil {
			return Result{}, e.broken(ctx, "send module", err)
		}
		var end *jobEnd
		if t, p, end, err = e.awaitCompiled(ctx, id, timeout, maxReply); end != nil {
			return end.res, end.err
		}
	}
	switch {
	case errors.Is(err, errTimedOut) && ctx.Err() == nil:
		e.s.log.Info("sandbox job timed out; killing executor", "executor", e.id, "module", id, "timeout", timeout)
		e.stop()
		return Result{Status: StatusTimeout, Duration: timeout,
			Message: fmt.Sprintf("time limit %s exceeded", timeout)}, nil
	case err != nil:
		return Result{}, e.broken(ctx, "read result", err)
	case t == msgResult:
		r, derr := decodeResult(p)
		if derr != nil {
			return Result{}, e.broken(ctx, "read result", derr)
		}
		return r, nil
	case t == msgCompiled: // a cached refusal
		c, derr := decodeCompiled(p)
		if derr != nil || c.status == StatusOK {
			return Result{}, e.broken(ctx, "read compiled", errors.Join(errWire, derr))
		}
		return Result{Status: c.status, Message: c.message}, nil
	}
	return Result{}, e.broken(ctx, "read result", fmt.Errorf("%w: unexpected message type %d", errWire, t))
}

// errTimedOut reports that the wait for a reply passed its deadline (and
// the child was killed).
var errTimedOut = errors.New("reply deadline passed")

// readReply reads the child's next frame. Only the wait for its first
// byte is bounded, by timeout (zero: none): the child writes nothing while
// the guest runs, so once a reply starts the guest is done, and a large
// stdout still in transit is not mistaken for a time-out. At the deadline
// the child is killed, which ends the blocked read. (The pipes are
// blocking: a read returns as soon as the child writes, without a trip
// through the network poller.)
// jobEnd is a job's outcome decided before it ran.
type jobEnd struct {
	res Result
	err error
}

// awaitCompiled reads the child's answer to a compile in progress (from
// its record of the module or from the bytes just sent). If the job ends
// there (the compile failed or refused the module, or the executor broke)
// end is its outcome; otherwise t, p, err are the next reply, the run's.
func (e *executor) awaitCompiled(ctx context.Context, id string, timeout time.Duration, maxReply uint64) (t msgType, p []byte, end *jobEnd, err error) {
	t, p, err = e.readReply(e.s.cfg.CompileTimeout, maxReply)
	if err != nil {
		c, err := e.compileFailure(ctx, id, err)
		if err != nil {
			return 0, nil, &jobEnd{err: err}, nil
		}
		return 0, nil, &jobEnd{res: Result{Status: c.status, Message: c.message}}, nil
	}
	if t == msgCompiled {
		c, derr := decodeCompiled(p)
		if derr != nil {
			return 0, nil, &jobEnd{err: e.broken(ctx, "read compiled", derr)}, nil
		}
		if c.status != StatusOK {
			return 0, nil, &jobEnd{res: Result{Status: c.status, Message: c.message}}, nil
		}
		t, p, err = e.readReply(timeout, maxReply)
	}
	return t, p, nil, err
}

func (e *executor) readReply(timeout time.Duration, max uint64) (msgType, []byte, error) {
	if timeout > 0 {
		timer := time.AfterFunc(timeout, e.kill)
		_, err := e.br.Peek(1)
		if !timer.Stop() { // fired: the child is (being) killed
			return 0, nil, errTimedOut
		}
		if err != nil {
			return 0, nil, err
		}
	}
	return readFrame(e.br, max)
}

// waitWarm waits until the child has loaded the modules it loads ahead
// when it starts (see record.go).
func (e *executor) waitWarm(ctx context.Context) error {
	stop := context.AfterFunc(ctx, e.kill)
	defer stop()
	if err := e.send(encodeEmpty(msgWarm), nil); err != nil {
		return e.broken(ctx, "send warm", err)
	}
	t, _, err := e.readReply(0, 1<<10)
	if err == nil && t != msgReady {
		err = fmt.Errorf("%w: expected ready, got type %d", errWire, t)
	}
	if err != nil {
		return e.broken(ctx, "read ready", err)
	}
	return nil
}

// compile asks the child to compile and check a module.
func (e *executor) compile(ctx context.Context, id string, bin []byte, memCap uint64) (compiledMsg, error) {
	stop := context.AfterFunc(ctx, e.kill)
	defer stop()
	if err := e.send(encodeCompileHeader(compileReq{moduleID: id, memCap: memCap, module: bin}), bin); err != nil {
		return compiledMsg{}, e.broken(ctx, "send compile", err)
	}
	t, p, err := e.readReply(e.s.cfg.CompileTimeout, 64<<10)
	if err != nil {
		return e.compileFailure(ctx, id, err)
	}
	if t != msgCompiled {
		return compiledMsg{}, e.broken(ctx, "read compiled", fmt.Errorf("%w: expected compiled, got type %d", errWire, t))
	}
	c, err := decodeCompiled(p)
	if err != nil {
		return compiledMsg{}, e.broken(ctx, "read compiled", err)
	}
	return c, nil
}

// compileFailure handles a failed wait for the answer to a compile: the
// module is refused if it is to blame (its compile ran past
// CompileTimeout, or the child died compiling it); otherwise as broken.
func (e *executor) compileFailure(ctx context.Context, id string, err error) (compiledMsg, error) {
	timedOut := errors.Is(err, errTimedOut)
	died := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
	if ctx.Err() != nil || e.s.isClosed() || !timedOut && !died {
		return compiledMsg{}, e.broken(ctx, "read compiled", err)
	}
	e.stop()
	msg := fmt.Sprintf("compiling took longer than %s", e.s.cfg.CompileTimeout)
	if died {
		msg = "compiling crashed the executor (" + e.exitState() + ")"
	}
	e.s.log.Error("sandbox refused a module", "module", id, "reason", msg)
	return compiledMsg{status: StatusInvalidModule, message: msg}, nil
}

// broken handles a failed exchange: the child is killed (it is out of step
// or dead) and the error says why, preferring ctx's and Close's reasons.
func (e *executor) broken(ctx context.Context, op string, err error) error {
	e.stop()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	select {
	case <-e.s.done:
		return ErrClosed
	default:
	}
	state := e.exitState()
	e.s.log.Warn("sandbox executor failed", "executor", e.id, "op", op, "err", err, "state", state)
	return fmt.Errorf("%w: %s: %w (%s)", ErrExecutor, op, err, state)
}

// logWriter forwards a child's stderr to the logger, line by line.
type logWriter struct {
	log      *slog.Logger
	executor int
	partial  []byte
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.log.Warn("sandbox executor stderr", "executor", w.executor, "line", clip(string(w.partial[:i])))
		w.partial = w.partial[i+1:]
	}
	if len(w.partial) > MaxMessage {
		w.log.Warn("sandbox executor stderr", "executor", w.executor, "line", clip(string(w.partial)))
		w.partial = w.partial[:0]
	}
	return len(p), nil
}

var _ io.Writer = (*logWriter)(nil)
