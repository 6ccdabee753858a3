package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// childEnv marks a process started as an executor child.
const childEnv = "ASPEN_SANDBOX_CHILD"

// RunChildIfRequested turns the process into a sandbox executor child when
// it was started as one by a Sandbox (the ASPEN_SANDBOX_CHILD environment
// variable is "1"): it serves jobs over stdin/stdout until stdin closes and
// then exits, never returning. Otherwise it returns at once. Call it first
// thing in main, and in TestMain of tests that use Subprocess isolation.
func RunChildIfRequested() {
	if os.Getenv(childEnv) != "1" {
		return
	}
	in, out := os.Stdin, os.Stdout
	// Only the protocol may write to the pipe the parent reads.
	os.Stdout = os.Stderr
	if err := serve(in, out); err != nil {
		fmt.Fprintf(os.Stderr, "aspen sandbox executor: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// serve runs the executor protocol (see wire.go) until r reaches EOF.
func serve(r io.Reader, w io.Writer) error {
	br := bufio.NewReaderSize(r, 64<<10)
	t, p, err := readFrame(br, 1<<20)
	if err != nil {
		return fmt.Errorf("read hello: %w", err)
	}
	if t != msgHello {
		return fmt.Errorf("%w: expected hello, got type %d", errWire, t)
	}
	h, err := decodeHello(p)
	if err != nil {
		return err
	}
	if h.version != wireVersion {
		return fmt.Errorf("%w: protocol version %d, want %d", errWire, h.version, wireVersion)
	}
	if h.nice > 0 {
		if err := setNice(int(h.nice)); err != nil {
			return fmt.Errorf("set niceness %d: %w", h.nice, err)
		}
	}
	if h.goMemLimit > 0 {
		debug.SetMemoryLimit(int64(h.goMemLimit))
	}
	ctx := context.Background()
	eng, err := newEngine(ctx, h.cacheDir, int(max(h.cachedModules, 1)))
	if err != nil {
		return err
	}
	defer eng.close()
	if _, err := w.Write(encodeEmpty(msgReady)); err != nil {
		return err
	}

	for {
		t, p, err := readFrame(br, maxChildFrame)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var reply []byte
		switch t {
		case msgRun:
			req, err := decodeRun(p)
			if err != nil {
				return err
			}
			m, ok := eng.lookup(req.moduleID)
			if !ok && eng.hasRecord(req.moduleID) {
				if _, err := w.Write(encodeEmpty(msgCompiling)); err != nil {
					return err
				}
				if m, ok = eng.obtain(ctx, req.moduleID, nil, req.lim.memory); ok && m.fail == nil {
					if _, err := w.Write(encodeCompiled(compiledMsg{status: StatusOK})); err != nil {
						eng.release(m)
						return err
					}
				}
			}
			if !ok {
				if _, err := w.Write(encodeEmpty(msgNeedModule)); err != nil {
					return err
				}
				t, p, err := readFrame(br, maxChildFrame)
				if errors.Is(err, io.EOF) {
					// The parent closed the pipe in the middle of a job, not
					// between jobs.
					return fmt.Errorf("waiting for module %s: %w", req.moduleID, io.ErrUnexpectedEOF)
				}
				if err != nil {
					return err
				}
				if t == msgAbort {
					continue
				}
				if t != msgModule {
					return fmt.Errorf("%w: expected module, got type %d", errWire, t)
				}
				bin, err := decodeModule(p)
				if err != nil {
					return err
				}
				m = eng.compile(ctx, req.moduleID, bin, req.lim.memory)
				if m.fail == nil {
					if _, err := w.Write(encodeCompiled(compiledMsg{status: StatusOK})); err != nil {
						eng.release(m)
						return err
					}
				}
			}
			if m.fail != nil {
				reply = encodeCompiled(compiledMsg{status: m.fail.status, message: m.fail.message})
			} else {
				res, err := eng.run(m, req.input, req.lim)
				if err != nil { // the parent sees the executor fail, and why in its log
					eng.release(m)
					return err
				}
				reply = encodeResult(res)
			}
			eng.release(m)
		case msgCompile:
			req, err := decodeCompile(p)
			if err != nil {
				return err
			}
			m := eng.compile(ctx, req.moduleID, req.module, req.memCap)
			c := compiledMsg{status: StatusOK}
			if m.fail != nil {
				c = compiledMsg{status: m.fail.status, message: m.fail.message}
			}
			eng.release(m)
			reply = encodeCompiled(c)
		case msgWarm:
			<-eng.warmed
			reply = encodeEmpty(msgReady)
		default:
			return fmt.Errorf("%w: unexpected message type %d", errWire, t)
		}
		if _, err := w.Write(reply); err != nil {
			return err
		}
	}
}
