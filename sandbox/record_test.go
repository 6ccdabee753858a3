package sandbox

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aspen-market/aspen/internal/wasmasm"
	"github.com/aspen-market/aspen/protocol"
)

// helloModule writes msg to stdout with one fd_write.
func helloModule(msg string) []byte {
	return wasmasm.Command([]wasmasm.FuncType{tFdWrite}, []wasmasm.Import{wasmasm.FuncImport("wasi_snapshot_preview1", "fd_write", 0)}, 1,
		wasmasm.NewCode().I32Const(1).I32Const(0).I32Const(1).I32Const(8).Call(0).Op(wasmasm.OpDrop).Body(),
		wasmasm.Data{Offset: 0, Bytes: []byte{16, 0, 0, 0, byte(len(msg)), 0, 0, 0}}, // iovec {buf: 16, len}
		wasmasm.Data{Offset: 16, Bytes: []byte(msg)})
}

func recordFiles(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, recordsDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return len(entries)
}

// TestModuleRecords: a module that passed its checks is recorded in the
// cache directory; a new sandbox on that directory loads the most recently
// used ones ahead and the others from their records when a job needs them,
// without the module's bytes; a damaged record is replaced.
func TestModuleRecords(t *testing.T) {
	ctx := context.Background()
	msgs := []string{"one\n", "two\n", "three\n", "four\n", "five\n"} // more than warmModules
	var mods [][]byte
	var ids []string
	for _, m := range msgs {
		mods = append(mods, helloModule(m))
		ids = append(ids, protocol.BlobCID(mods[len(mods)-1]).String())
	}
	for _, iso := range isolations {
		t.Run(iso.String(), func(t *testing.T) {
			dir := t.TempDir()
			cfg := func(c *Config) { c.CacheDir = dir }
			s1 := newSandbox(t, iso, cfg)
			for i, id := range ids {
				r := run(t, s1, Job{ModuleID: id, Module: mods[i]})
				wantStatus(t, r, StatusOK)
			}
			run(t, s1, Job{ModuleID: "opaque", Module: helloModule("six\n")}) // not a CID: no record
			s1.Close()
			if n := recordFiles(t, dir); n != len(ids) {
				t.Fatalf("%d records, want %d", n, len(ids))
			}

			s2 := newSandbox(t, iso, cfg)
			if err := s2.WaitWarm(ctx); err != nil {
				t.Fatal(err)
			}
			noBytes := func() ([]byte, error) {
				t.Error("the module's bytes were asked for")
				return nil, errors.New("no bytes")
			}
			for i, id := range ids {
				r := run(t, s2, Job{ModuleID: id, LoadModule: noBytes})
				wantStatus(t, r, StatusOK)
				if string(r.Stdout) != msgs[i] {
					t.Fatalf("stdout %q, want %q", r.Stdout, msgs[i])
				}
			}
			s2.Close()

			path := recordPath(filepath.Join(dir, recordsDir), ids[0])
			if err := os.WriteFile(path, []byte(recordMagic+"garbage"), 0o600); err != nil {
				t.Fatal(err)
			}
			s3 := newSandbox(t, iso, cfg)
			loads := 0
			r := run(t, s3, Job{ModuleID: ids[0], LoadModule: func() ([]byte, error) { loads++; return mods[0], nil }})
			wantStatus(t, r, StatusOK)
			if loads != 1 || string(r.Stdout) != msgs[0] {
				t.Fatalf("damaged record: %d loads, stdout %q", loads, r.Stdout)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if rec, ok := decodeRecord(b, true); !ok || rec.id != ids[0] {
				t.Fatal("the damaged record was not replaced")
			}
		})
	}
}

// TestInitialMemoryMessage: a job whose cap is below the module's initial
// memory gets the same result whether its executor compiled the module
// before under a larger cap (or loaded it ahead) or compiles it now, and
// that refusal does not stick to the module.
func TestInitialMemoryMessage(t *testing.T) {
	ctx := context.Background()
	mod := wasmasm.Module{
		Types:   []wasmasm.FuncType{tVoid},
		Funcs:   []uint32{0},
		Memory:  wasmasm.Limits(2),
		Exports: []wasmasm.Export{wasmasm.FuncExport("_start", 0)},
		Codes:   [][]byte{wasmasm.NewCode().Body()},
	}.Bytes()
	id := protocol.BlobCID(mod).String()
	const want = "initial memory 128KiB exceeds the memory limit 64KiB"
	for _, iso := range isolations {
		t.Run(iso.String(), func(t *testing.T) {
			dir := t.TempDir()
			fresh := newSandbox(t, iso, func(c *Config) { c.CacheDir = dir })
			r := run(t, fresh, Job{ModuleID: id, Module: mod, MaxMemory: 64 << 10})
			wantStatus(t, r, StatusMemoryLimit)
			if r.Message != want {
				t.Fatalf("compiled under the job's cap: %q", r.Message)
			}
			// That refusal was for that job's cap only.
			wantStatus(t, run(t, fresh, Job{ModuleID: id, Module: mod}), StatusOK)
			warm := newSandbox(t, iso, func(c *Config) { c.CacheDir = t.TempDir() })
			if err := warm.Compile(ctx, id, mod); err != nil {
				t.Fatal(err)
			}
			r = run(t, warm, Job{ModuleID: id, Module: mod, MaxMemory: 64 << 10})
			wantStatus(t, r, StatusMemoryLimit)
			if r.Message != want {
				t.Fatalf("compiled before under a larger cap: %q", r.Message)
			}
		})
	}
}

// TestUnmeteredRecordsNotUsed: a record written before metering (format
// v1), or by another version of the metering pass, is never compiled: the
// module is metered again from its bytes and its record replaced.
func TestUnmeteredRecordsNotUsed(t *testing.T) {
	mod := countdown(1000)
	id := protocol.BlobCID(mod).String()
	want := ceilUnits(countdownTicks(1000))
	older := []func([]byte) []byte{
		func(b []byte) []byte { // format v1, which held the unmetered binary
			return bytes.Replace(b, []byte(recordMagic), []byte("aspen-sandbox-module-record-v1\n"), 1)
		},
		func(b []byte) []byte { // another version of the pass
			return bytes.Replace(b, []byte(recordKey), []byte(strings.Replace(recordKey, "wasmmeter@", "wasmmeter@9", 1)), 1)
		},
	}
	for i, age := range older {
		dir := t.TempDir()
		path := recordPath(filepath.Join(dir, recordsDir), id)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, age(encodeRecord(record{id: id, memCap: 256 << 20, wasm: mod})), 0o600); err != nil {
			t.Fatal(err)
		}
		s := newSandbox(t, Subprocess, func(c *Config) { c.CacheDir = dir })
		loads := 0
		r := run(t, s, Job{ModuleID: id, LoadModule: func() ([]byte, error) { loads++; return mod, nil }})
		wantStatus(t, r, StatusOK)
		if loads != 1 || r.Work != want {
			t.Fatalf("record %d: %d loads, work %d (want 1, %d)", i, loads, r.Work, want)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if rec, ok := decodeRecord(b, true); !ok || bytes.Equal(rec.wasm, mod) {
			t.Fatalf("record %d was not replaced by a metered one", i)
		}
	}
}
