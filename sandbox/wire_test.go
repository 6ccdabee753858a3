package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"pgregory.net/rapid"

	"github.com/aspen-market/aspen/internal/wasmasm"
	"github.com/aspen-market/aspen/internal/wasmmeter"
)

type fataler interface {
	Helper()
	Fatal(args ...any)
}

func payload(t fataler, frame []byte) (msgType, []byte) {
	t.Helper()
	typ, p, err := readFrame(bufio.NewReader(bytes.NewReader(frame)), maxChildFrame)
	if err != nil {
		t.Fatal(err)
	}
	return typ, p
}

func TestWireRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		res := Result{
			Status:   rapid.SampledFrom([]Status{StatusOK, StatusExit, StatusTrap, StatusTimeout, StatusMemoryLimit, StatusOutputLimit, StatusInvalidModule, StatusMissingImport, StatusWorkLimit}).Draw(t, "status"),
			ExitCode: rapid.Uint32().Draw(t, "exit"),
			Stdout:   rapid.SliceOfN(rapid.Byte(), 1, 100).Draw(t, "stdout"),
			Stderr:   rapid.SliceOfN(rapid.Byte(), 1, 100).Draw(t, "stderr"),
			Message:  rapid.StringN(0, 50, MaxMessage).Draw(t, "message"),
			Duration: time.Duration(rapid.Int64Range(0, 1<<62).Draw(t, "duration")),
			Work:     rapid.Uint64Range(0, MaxWorkBudget).Draw(t, "work"),
		}
		typ, p := payload(t, encodeResult(res))
		got, err := decodeResult(p)
		if typ != msgResult || err != nil || got.Status != res.Status || got.ExitCode != res.ExitCode ||
			!bytes.Equal(got.Stdout, res.Stdout) || !bytes.Equal(got.Stderr, res.Stderr) ||
			got.Message != res.Message || got.Duration != res.Duration || got.Work != res.Work {
			t.Fatalf("result %+v decoded as %+v (%v)", res, got, err)
		}

		req := runReq{
			moduleID: rapid.String().Draw(t, "id"),
			lim: limits{
				memory: rapid.Uint64Range(0, maxWasmMemory).Draw(t, "mem"),
				stdout: rapid.IntRange(0, maxOutputCap).Draw(t, "out"),
				stderr: rapid.IntRange(0, maxOutputCap).Draw(t, "err"),
				work:   rapid.Uint64Range(1, MaxWorkBudget).Draw(t, "work"),
			},
			input: rapid.SliceOf(rapid.Byte()).Draw(t, "input"),
		}
		frame := append(encodeRunHeader(req), req.input...)
		typ, p = payload(t, frame)
		gotReq, err := decodeRun(p)
		if typ != msgRun || err != nil || gotReq.moduleID != req.moduleID || gotReq.lim != req.lim || !bytes.Equal(gotReq.input, req.input) {
			t.Fatalf("run %+v decoded as %+v (%v)", req, gotReq, err)
		}

		c := compileReq{moduleID: req.moduleID, memCap: req.lim.memory, module: req.input}
		typ, p = payload(t, append(encodeCompileHeader(c), c.module...))
		gotC, err := decodeCompile(p)
		if typ != msgCompile || err != nil || gotC.moduleID != c.moduleID || gotC.memCap != c.memCap || !bytes.Equal(gotC.module, c.module) {
			t.Fatalf("compile %+v decoded as %+v (%v)", c, gotC, err)
		}

		h := hello{version: rapid.Uint32().Draw(t, "v"), nice: rapid.Uint32().Draw(t, "nice"),
			goMemLimit: rapid.Uint64().Draw(t, "gml"), cachedModules: rapid.Uint32().Draw(t, "cm"), cacheDir: rapid.String().Draw(t, "dir")}
		typ, p = payload(t, encodeHello(h))
		if gotH, err := decodeHello(p); typ != msgHello || err != nil || gotH != h {
			t.Fatalf("hello %+v decoded as %+v (%v)", h, gotH, err)
		}
	})
}

func TestReadFrameRefuses(t *testing.T) {
	for name, in := range map[string][]byte{
		"empty frame": {0, 0, 0, 0, 0, 0, 0, 0},
		"too long":    {0, 0, 0, 1, 0, 0, 0, 0},
		"truncated":   {0, 0, 0, 0, 0, 0, 0, 5, 1, 2},
		"short len":   {0, 0, 0},
	} {
		_, _, err := readFrame(bufio.NewReader(bytes.NewReader(in)), 1<<20)
		if err == nil || errors.Is(err, io.EOF) && name != "short len" {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestReadFrameGrowsWithTheBytes: a frame larger than frameChunk reads
// whole across the chunk boundaries, and a length prefix that promises far
// more than the stream holds fails without allocating what it promised.
func TestReadFrameGrowsWithTheBytes(t *testing.T) {
	for _, n := range []int{frameChunk - 1, frameChunk, frameChunk + 1, 5*frameChunk + 3} {
		body := make([]byte, n)
		for i := range body {
			body[i] = byte(i * 7)
		}
		frame := binary.BigEndian.AppendUint64(nil, uint64(n))
		frame = append(frame, body...)
		typ, p, err := readFrame(bufio.NewReader(bytes.NewReader(frame)), maxChildFrame)
		if err != nil || typ != msgType(body[0]) || !bytes.Equal(p, body[1:]) {
			t.Fatalf("frame of %d bytes: type %d, %d bytes back, err %v", n, typ, len(p), err)
		}
	}
	// 4 GiB promised, 3 MiB sent.
	frame := binary.BigEndian.AppendUint64(nil, 4<<30)
	frame = append(frame, make([]byte, 3<<20)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := readFrame(bufio.NewReader(bytes.NewReader(frame)), maxChildFrame)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated 4 GiB frame: %v", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 32<<20 {
		t.Errorf("a truncated frame promising 4 GiB allocated %d MiB", got>>20)
	}
}

// FuzzDecode feeds arbitrary payloads to every decoder of frames from the
// other side of the executor pipe: none may panic, and what decodes must
// re-encode to the same bytes.
func FuzzDecode(f *testing.F) {
	_, p := payload(f, encodeResult(Result{Status: StatusExit, ExitCode: 3, Stdout: []byte("out"), Message: "m"}))
	f.Add(p)
	_, p = payload(f, append(encodeRunHeader(runReq{moduleID: "m", lim: limits{65536, 10, 10, 1000}, input: []byte("in")}), "in"...))
	f.Add(p)
	_, p = payload(f, encodeCompiled(compiledMsg{status: StatusMissingImport, message: "env.f"}))
	f.Add(p)
	f.Fuzz(func(t *testing.T, p []byte) {
		if r, err := decodeResult(p); err == nil {
			if _, again := payload(t, encodeResult(r)); !bytes.Equal(again, p) {
				t.Fatalf("result %x re-encodes as %x", p, again)
			}
			_ = r.Err()
		}
		if r, err := decodeRun(p); err == nil {
			if _, again := payload(t, append(encodeRunHeader(r), r.input...)); !bytes.Equal(again, p) {
				t.Fatalf("run %x re-encodes as %x", p, again)
			}
		}
		if c, err := decodeCompiled(p); err == nil {
			if _, again := payload(t, encodeCompiled(c)); !bytes.Equal(again, p) {
				t.Fatalf("compiled %x re-encodes as %x", p, again)
			}
		}
		if c, err := decodeCompile(p); err == nil {
			if _, again := payload(t, append(encodeCompileHeader(c), c.module...)); !bytes.Equal(again, p) {
				t.Fatalf("compile %x re-encodes as %x", p, again)
			}
		}
		_, _ = decodeHello(p)
		_, _ = decodeModule(p)
	})
}

// FuzzServe drives the executor child loop with arbitrary bytes after a
// valid hello: it must end with an error or EOF, never panic or hang.
func FuzzServe(f *testing.F) {
	tiny := tinyHello()
	good := append(encodeRunHeader(runReq{moduleID: "t", lim: limits{1 << 20, 100, 100, DefaultWorkBudget}}), encodeModuleHeader(len(tiny))...)
	good = append(good, tiny...)
	f.Add(good)
	f.Add(append(encodeCompileHeader(compileReq{moduleID: "x", memCap: 1 << 20, module: []byte("junk")}), "junk"...))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, byte(msgAbort)})
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		h := encodeHello(hello{version: wireVersion, cachedModules: 2})
		if err := serve(io.MultiReader(bytes.NewReader(h), bytes.NewReader(in)), &out); err != nil && !errors.Is(err, errWire) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("serve: %v", err)
		}
		if typ, _ := payload(t, out.Bytes()); typ != msgReady {
			t.Fatalf("first reply type %d", typ)
		}
	})
}

// FuzzCompile feeds arbitrary bytes to the module checker: every refusal
// is ErrInvalidModule, ErrMissingImport or ErrMemoryLimit, with a one-line
// message, and nothing panics.
func FuzzCompile(f *testing.F) {
	f.Add(tinyHello())
	f.Add(startModule([]wasmasm.Import{wasmasm.FuncImport("env", "f", 0)}, []wasmasm.FuncType{tVoid}, wasmasm.NewCode().Body()))
	f.Add([]byte("\x00asm\x01\x00\x00\x00"))
	eng, err := newEngine(context.Background(), "", 8)
	if err != nil {
		f.Fatal(err)
	}
	defer eng.close()
	f.Fuzz(func(t *testing.T, bin []byte) {
		m := eng.compile(context.Background(), string(bin), bin, 1<<20)
		defer eng.release(m)
		if m.fail == nil {
			return
		}
		err := m.fail.result().Err()
		if !errors.Is(err, ErrInvalidModule) && !errors.Is(err, ErrMissingImport) && !errors.Is(err, ErrMemoryLimit) {
			t.Fatalf("refusal %v", err)
		}
		if m.fail.message == "" || bytes.ContainsRune([]byte(m.fail.message), '\n') {
			t.Fatalf("message %q", m.fail.message)
		}
		_, _, _ = guard(bin)
	})
}

func FuzzGuard(f *testing.F) {
	f.Add(tinyHello())
	f.Add(wasmasm.Module{
		Types:   []wasmasm.FuncType{tVoid},
		Imports: []wasmasm.Import{{Module: "env", Name: "g", Kind: wasmasm.KindGlobal, Desc: []byte{wasmasm.I32, 0}}},
	}.Bytes())
	f.Fuzz(func(t *testing.T, bin []byte) {
		out, info, err := guard(bin)
		if err != nil {
			if !errors.Is(err, errMalformed) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("refusal %q", err)
			}
			return
		}
		for _, im := range info.imports {
			if im.kind > 4 {
				t.Fatalf("import kind %d", im.kind)
			}
		}
		again, info2, err := guard(out)
		if err != nil || !bytes.Equal(again, out) || len(info2.imports) != len(info.imports) || info2.hasStart != info.hasStart {
			t.Fatalf("guard is not idempotent: %v", err)
		}
	})
}

// FuzzMeter: behind the guard, the metering pass never panics, refuses
// with ErrMalformed, and what it makes of a module is valid to wazero
// exactly when the guarded module is: the inserted code is valid wherever
// the original was, and never makes invalid code valid (code that names
// the counter, a scratch local, or a start function of the wrong type).
func FuzzMeter(f *testing.F) {
	f.Add(tinyHello())
	start := uint32(1)
	f.Add(wasmasm.Module{
		Types: []wasmasm.FuncType{tVoid}, Funcs: []uint32{0, 0}, Start: &start,
		Globals: []wasmasm.Global{{Type: wasmasm.I64, Mutable: true, Init: []byte{wasmasm.OpI64Const, 1}}},
		Exports: []wasmasm.Export{wasmasm.FuncExport("_start", 0)},
		Codes: [][]byte{wasmasm.NewCode().GlobalGet(0).Op(wasmasm.OpDrop).Body(),
			wasmasm.NewCode().Block().Loop().I32Const(1).BrIf(1).Br(0).End().End().Body()},
	}.Bytes())
	f.Add(startModule(nil, nil, wasmasm.NewCode().I32Const(0).I32Const(7).I32Const(9).Op(wasmasm.OpPrefixFC, 11, 0).
		Op(0xfd, 12).Op(make([]byte, 16)...).Op(0xfd, 0xba, 0x01, wasmasm.OpDrop).
		I32Const(1).If().Op(wasmasm.OpNop).Else().I32Const(2).MemoryGrow().Op(wasmasm.OpDrop).End().Body()))
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithCoreFeatures(api.CoreFeaturesV2))
	defer rt.Close(ctx)
	valid := func(bin []byte) error {
		cm, err := rt.CompileModule(ctx, bin)
		if err == nil {
			cm.Close(ctx)
		}
		return err
	}
	f.Fuzz(func(t *testing.T, bin []byte) {
		guarded, _, err := guard(bin)
		if err != nil {
			return
		}
		metered, err := meter(guarded)
		if err != nil {
			if !errors.Is(err, wasmmeter.ErrMalformed) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("refusal %q", err)
			}
			return
		}
		if errIn, errOut := valid(guarded), valid(metered); (errIn == nil) != (errOut == nil) {
			t.Fatalf("guarded module valid: %v; metered: %v", errIn, errOut)
		}
	})
}
