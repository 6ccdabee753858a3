package sandbox

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// The executor protocol. Parent and child exchange frames over the child's
// stdin and stdout: an 8-byte big-endian payload length, then the payload,
// whose first byte is the message type. Integers are big-endian; byte
// strings are a u64 length then the bytes.
//
//	parent                         child
//	hello        ─────────────────▶
//	             ◀───────────────── ready
//	run          ─────────────────▶          (module cached)
//	             ◀───────────────── result | compiled(refusal)
//	run          ─────────────────▶          (module not cached)
//	             ◀───────────────── needModule
//	module|abort ─────────────────▶
//	             ◀───────────────── compiled(ok, then result | refusal)
//	run          ─────────────────▶          (module recorded, record.go)
//	             ◀───────────────── compiling
//	             ◀───────────────── compiled(ok), then result
//	                                | needModule (the record was unusable: as above)
//	compile      ─────────────────▶
//	             ◀───────────────── compiled
//	warm         ─────────────────▶
//	             ◀───────────────── ready    (once the child's start-up warm-up is over)
//
// The child exits when its stdin closes.

// wireVersion 3: runs carry a work budget, results the metered work.
const wireVersion = 3

type msgType uint8

const (
	msgHello msgType = 1 + iota
	msgReady
	msgRun
	msgModule
	msgAbort
	msgCompile
	msgNeedModule
	msgCompiled
	msgResult
	msgCompiling
	msgWarm
)

// errWire reports a malformed frame.
var errWire = errors.New("malformed executor frame")

// maxChildFrame bounds a frame the child accepts (a module or an input).
const maxChildFrame = 5 << 30

type hello struct {
	version       uint32
	nice          uint32
	goMemLimit    uint64
	cachedModules uint32
	cacheDir      string
}

type runReq struct {
	moduleID string
	lim      limits
	input    []byte
}

type compileReq struct {
	moduleID string
	memCap   uint64
	module   []byte
}

// compiled answers compile, and run when the module was refused.
type compiledMsg struct {
	status  Status
	message string
}

// encoder builds one frame; the first 8 bytes are the length, set by frame.
type encoder struct{ b []byte }

func newEncoder(t msgType, sizeHint int) *encoder {
	e := &encoder{b: make([]byte, 8, 8+1+sizeHint)}
	e.b = append(e.b, byte(t))
	return e
}

func (e *encoder) u8(v uint8)      { e.b = append(e.b, v) }
func (e *encoder) u32(v uint32)    { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64)    { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *encoder) bytes(v []byte)  { e.u64(uint64(len(v))); e.b = append(e.b, v...) }
func (e *encoder) str(v string)    { e.u64(uint64(len(v))); e.b = append(e.b, v...) }
func (e *encoder) lenPrefix(n int) { e.u64(uint64(n)) }

// frame returns the finished frame, plus extra bytes the caller writes
// after it (counted in the length).
func (e *encoder) frame(extra int) []byte {
	binary.BigEndian.PutUint64(e.b[:8], uint64(len(e.b)-8+extra))
	return e.b
}

// decoder reads one payload; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: short %s", errWire, what)
	}
	d.b = nil
}

func (d *decoder) u8() uint8 {
	if len(d.b) < 1 {
		d.fail("u8")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) u32() uint32 {
	if len(d.b) < 4 {
		d.fail("u32")
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) u64() uint64 {
	if len(d.b) < 8 {
		d.fail("u64")
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

// bytes returns a sub-slice of the payload (no copy).
func (d *decoder) bytes() []byte {
	n := d.u64()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail("bytes")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string { return string(d.bytes()) }

// finish reports the sticky error or trailing bytes.
func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errWire, len(d.b))
	}
	return d.err
}

// frameChunk is how much of a frame readFrame allocates before the bytes
// arrive: a larger frame's buffer grows (doubling) as they do, so a length
// prefix that promises gigabytes on a stream that then ends costs at most
// about twice what was really sent, not the promised size.
const frameChunk = 1 << 20

// readFrame reads one frame's payload of at most max bytes.
func readFrame(r *bufio.Reader, max uint64) (msgType, []byte, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint64(hdr[:])
	if n == 0 || n > max {
		return 0, nil, fmt.Errorf("%w: frame length %d outside [1, %d]", errWire, n, max)
	}
	p := make([]byte, min(n, frameChunk))
	for got := 0; ; {
		k, err := io.ReadFull(r, p[got:])
		got += k
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, err
		}
		if uint64(got) == n {
			break
		}
		p = append(p, make([]byte, min(n-uint64(got), uint64(got)))...)
	}
	return msgType(p[0]), p[1:], nil
}

func encodeHello(h hello) []byte {
	e := newEncoder(msgHello, 32+len(h.cacheDir))
	e.u32(h.version)
	e.u32(h.nice)
	e.u64(h.goMemLimit)
	e.u32(h.cachedModules)
	e.str(h.cacheDir)
	return e.frame(0)
}

func decodeHello(p []byte) (hello, error) {
	d := decoder{b: p}
	h := hello{version: d.u32(), nice: d.u32(), goMemLimit: d.u64(), cachedModules: d.u32(), cacheDir: d.str()}
	return h, d.finish()
}

func encodeEmpty(t msgType) []byte { return newEncoder(t, 0).frame(0) }

// encodeRunHeader encodes a run request without its input bytes, which the
// caller writes right after the returned frame.
func encodeRunHeader(r runReq) []byte {
	e := newEncoder(msgRun, 48+len(r.moduleID))
	e.str(r.moduleID)
	e.u64(r.lim.memory)
	e.u64(uint64(r.lim.stdout))
	e.u64(uint64(r.lim.stderr))
	e.u64(r.lim.work)
	e.lenPrefix(len(r.input))
	return e.frame(len(r.input))
}

func decodeRun(p []byte) (runReq, error) {
	d := decoder{b: p}
	r := runReq{moduleID: d.str()}
	r.lim.memory = d.u64()
	stdout, stderr := d.u64(), d.u64()
	r.lim.work = d.u64()
	r.input = d.bytes()
	if err := d.finish(); err != nil {
		return runReq{}, err
	}
	if stdout > maxOutputCap || stderr > maxOutputCap || r.lim.memory > maxWasmMemory ||
		r.lim.work == 0 || r.lim.work > MaxWorkBudget {
		return runReq{}, fmt.Errorf("%w: limits out of range", errWire)
	}
	r.lim.stdout, r.lim.stderr = int(stdout), int(stderr)
	return r, nil
}

// encodeModuleHeader encodes a module message; the module bytes follow.
func encodeModuleHeader(n int) []byte {
	e := newEncoder(msgModule, 8)
	e.lenPrefix(n)
	return e.frame(n)
}

func decodeModule(p []byte) ([]byte, error) {
	d := decoder{b: p}
	m := d.bytes()
	return m, d.finish()
}

// encodeCompileHeader encodes a compile request; the module bytes follow.
func encodeCompileHeader(c compileReq) []byte {
	e := newEncoder(msgCompile, 24+len(c.moduleID))
	e.str(c.moduleID)
	e.u64(c.memCap)
	e.lenPrefix(len(c.module))
	return e.frame(len(c.module))
}

func decodeCompile(p []byte) (compileReq, error) {
	d := decoder{b: p}
	c := compileReq{moduleID: d.str(), memCap: d.u64(), module: d.bytes()}
	if err := d.finish(); err != nil {
		return compileReq{}, err
	}
	if c.memCap > maxWasmMemory {
		return compileReq{}, fmt.Errorf("%w: memory cap out of range", errWire)
	}
	return c, nil
}

func encodeCompiled(c compiledMsg) []byte {
	e := newEncoder(msgCompiled, 9+len(c.message))
	e.u8(uint8(c.status))
	e.str(c.message)
	return e.frame(0)
}

func decodeCompiled(p []byte) (compiledMsg, error) {
	d := decoder{b: p}
	c := compiledMsg{status: Status(d.u8()), message: d.str()}
	if err := d.finish(); err != nil {
		return compiledMsg{}, err
	}
	if !c.status.valid() || len(c.message) > MaxMessage {
		return compiledMsg{}, fmt.Errorf("%w: bad compiled message", errWire)
	}
	return c, nil
}

func encodeResult(r Result) []byte {
	e := newEncoder(msgResult, 53+len(r.Message)+len(r.Stdout)+len(r.Stderr))
	e.u8(uint8(r.Status))
	e.u32(r.ExitCode)
	e.u64(uint64(r.Duration))
	e.u64(r.Work)
	e.str(r.Message)
	e.bytes(r.Stdout)
	e.bytes(r.Stderr)
	return e.frame(0)
}

func decodeResult(p []byte) (Result, error) {
	d := decoder{b: p}
	r := Result{Status: Status(d.u8()), ExitCode: d.u32(), Duration: time.Duration(d.u64()), Work: d.u64(), Message: d.str()}
	r.Stdout = d.bytes()
	r.Stderr = d.bytes()
	if err := d.finish(); err != nil {
		return Result{}, err
	}
	if !r.Status.valid() || r.Duration < 0 || r.Work > MaxWorkBudget || len(r.Message) > MaxMessage {
		return Result{}, fmt.Errorf("%w: bad result", errWire)
	}
	if len(r.Stdout) == 0 {
		r.Stdout = nil
	}
	if len(r.Stderr) == 0 {
		r.Stderr = nil
	}
	return r, nil
}
