package sandbox

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/aspen-market/aspen/examples"
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

// ---- a tiny WebAssembly assembler for hand-made test modules ----

const (
	i32 = 0x7f
	i64 = 0x7e
)

type wfunc struct {
	params, results []byte
}

type wimport struct {
	module, name string
	kind         byte   // 0 func, 2 memory, 3 global
	desc         []byte // encoded description
}

type wexport struct {
	name string
	kind byte // 0 func, 2 memory
	idx  uint32
}

type wdata struct {
	offset uint32
	bytes  []byte
}

type wmodule struct {
	types   []wfunc
	imports []wimport
	funcs   []uint32 // type index of each defined function
	mem     []byte   // encoded limits of the memory, nil for none
	exports []wexport
	start   []byte   // encoded start function index, nil for none
	codes   [][]byte // body of each defined function (locals vector + code + end)
	data    []wdata
}

func uleb(v uint64) []byte { return binary.AppendUvarint(nil, v) }

func sleb(v int64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func vec(items ...[]byte) []byte {
	b := uleb(uint64(len(items)))
	for _, it := range items {
		b = append(b, it...)
	}
	return b
}

func name(s string) []byte { return append(uleb(uint64(len(s))), s...) }

func limits1(min uint32) []byte { return append([]byte{0}, uleb(uint64(min))...) }

func (m wmodule) bytes() []byte {
	out := []byte("\x00asm\x01\x00\x00\x00")
	section := func(id byte, body []byte) {
		out = append(out, id)
		out = append(out, uleb(uint64(len(body)))...)
		out = append(out, body...)
	}
	var items [][]byte
	for _, f := range m.types {
		items = append(items, bytes.Join([][]byte{{0x60}, vec(split(f.params)...), vec(split(f.results)...)}, nil))
	}
	if len(items) > 0 {
		section(1, vec(items...))
	}
	items = nil
	for _, im := range m.imports {
		items = append(items, bytes.Join([][]byte{name(im.module), name(im.name), {im.kind}, im.desc}, nil))
	}
	if len(items) > 0 {
		section(2, vec(items...))
	}
	items = nil
	for _, f := range m.funcs {
		items = append(items, uleb(uint64(f)))
	}
	if len(items) > 0 {
		section(3, vec(items...))
	}
	if m.mem != nil {
		section(5, vec(m.mem))
	}
	items = nil
	for _, e := range m.exports {
		items = append(items, bytes.Join([][]byte{name(e.name), {e.kind}, uleb(uint64(e.idx))}, nil))
	}
	if len(items) > 0 {
		section(7, vec(items...))
	}
	if m.start != nil {
		section(8, m.start)
	}
	items = nil
	for _, c := range m.codes {
		items = append(items, append(uleb(uint64(len(c))), c...))
	}
	if len(items) > 0 {
		section(10, vec(items...))
	}
	items = nil
	for _, d := range m.data {
		seg := []byte{0, 0x41}
		seg = append(seg, sleb(int64(d.offset))...)
		seg = append(seg, 0x0b)
		seg = append(seg, name(string(d.bytes))...)
		items = append(items, seg)
	}
	if len(items) > 0 {
		section(11, vec(items...))
	}
	return out
}

func split(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}

func code(ops ...[]byte) []byte {
	b := []byte{0} // no locals
	for _, op := range ops {
		b = append(b, op...)
	}
	return append(b, 0x0b)
}

func i32const(v int32) []byte { return append([]byte{0x41}, sleb(int64(v))...) }
func callOp(f uint32) []byte  { return append([]byte{0x10}, uleb(uint64(f))...) }

var (
	opDrop        = []byte{0x1a}
	opUnreachable = []byte{0x00}
	opDivS        = []byte{0x6d}
)

var (
	tFdWrite  = wfunc{[]byte{i32, i32, i32, i32}, []byte{i32}}
	tVoid     = wfunc{}
	tProcExit = wfunc{[]byte{i32}, nil}
)

// startModule is a module whose _start runs body, with one page of memory
// and the given imports (functions numbered from 0 in order).
func startModule(imports []wimport, types []wfunc, body []byte) []byte {
	types = append(types, tVoid)
	return wmodule{
		types:   types,
		imports: imports,
		funcs:   []uint32{uint32(len(types) - 1)},
		mem:     limits1(1),
		exports: []wexport{{"_start", 0, uint32(len(imports))}, {"memory", 2, 0}},
		codes:   [][]byte{body},
	}.bytes()
}

func funcImport(module, field string, typeIdx uint32) wimport {
	return wimport{module, field, 0, uleb(uint64(typeIdx))}
}

// tinyHello writes "hi\n" to stdout with one fd_write.
func tinyHello() []byte {
	m := wmodule{
		types:   []wfunc{tFdWrite, tVoid},
		imports: []wimport{funcImport("wasi_snapshot_preview1", "fd_write", 0)},
		funcs:   []uint32{1},
		mem:     limits1(1),
		exports: []wexport{{"_start", 0, 1}, {"memory", 2, 0}},
		codes:   [][]byte{code(i32const(1), i32const(0), i32const(1), i32const(8), callOp(0), opDrop)},
		data: []wdata{
			{0, []byte{16, 0, 0, 0, 3, 0, 0, 0}}, // iovec {buf: 16, len: 3}
			{16, []byte("hi\n")},
		},
	}
	return m.bytes()
}
