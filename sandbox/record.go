package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"time"

	"github.com/aspen-market/aspen/internal/wasmmeter"
	"github.com/aspen-market/aspen/protocol"
)

// Module records. wazero's disk cache keeps a module's compiled code, but
// using it still takes the module's bytes (sent by the parent, checked
// against their CID), our guard, wazero's decoding and validation of the
// whole binary, and a trial instantiation: 10–15% of a cold compile for a
// Go-built module. So when a module whose ID is a blob CID passes every
// check, its executor also writes a record next to wazero's cache: the
// binary the guard made of it and the memory cap it was checked under. An
// executor that has no compiled copy in memory loads the module from its
// record instead of asking the parent for the bytes, and skips the trial
// instantiation under a cap at least as large. A new executor (after a
// restart, or replacing one that was killed) loads the most recently used
// recorded modules in the background as soon as it starts, between jobs,
// so a job that arrives later finds its module in memory.
//
// The cache directory is trusted as wazero's is (it holds native code that
// executors run); a record is still guarded again when loaded and carries
// a checksum, and one that is damaged, or from another build, is deleted
// and the module compiled from the parent's bytes as before.
const (
	recordsDir = "modules" // inside the cache directory
	// warmModules bounds the recorded modules a new executor loads ahead.
	warmModules = 4
)

// recordMagic starts every record; change it when the guard changes what
// it makes of a module. v2: the recorded binary is metered (v1 records,
// unmetered, are deleted when met).
const recordMagic = "aspen-sandbox-module-record-v2\n"

// recordKey ties records to the wazero version that checked them and the
// metering pass that instrumented them (whose version changes when what a
// module counts does).
var recordKey = func() string {
	meter := fmt.Sprintf(" wasmmeter@%d", wasmmeter.Version)
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/tetratelabs/wazero" {
				if d.Replace != nil {
					d = d.Replace
				}
				return d.Path + "@" + d.Version + meter
			}
		}
	}
	return "wazero@unknown" + meter
}()

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// record is a module known to pass every check.
type record struct {
	id     string
	memCap uint64 // the memory cap it was checked under
	wasm   []byte // the guard's output, metered: what is compiled
}

// recorded reports whether modules with this ID get records: only blob
// CIDs, which name the module's bytes (other IDs are opaque cache keys).
func recorded(id string) bool {
	_, err := protocol.ParseCID(id)
	return err == nil
}

func recordPath(dir, id string) string {
	h := sha256.Sum256([]byte(id))
	return filepath.Join(dir, hex.EncodeToString(h[:16]))
}

// encodeRecord: magic, key, id, memory cap, CRC-32C of the wasm, the wasm.
func encodeRecord(r record) []byte {
	b := make([]byte, 0, len(recordMagic)+len(recordKey)+len(r.id)+32+len(r.wasm))
	b = append(b, recordMagic...)
	b = binary.AppendUvarint(b, uint64(len(recordKey)))
	b = append(b, recordKey...)
	b = binary.AppendUvarint(b, uint64(len(r.id)))
	b = append(b, r.id...)
	b = binary.BigEndian.AppendUint64(b, r.memCap)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(r.wasm, castagnoli))
	return append(b, r.wasm...)
}

// decodeRecord decodes a record's header and, with full, checks and returns
// its wasm; ok is false for anything damaged or from another build.
func decodeRecord(b []byte, full bool) (r record, ok bool) {
	if !bytes.HasPrefix(b, []byte(recordMagic)) {
		return r, false
	}
	b = b[len(recordMagic):]
	str := func() (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) || n > 1<<10 {
			return "", false
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, true
	}
	key, ok1 := str()
	id, ok2 := str()
	if !ok1 || !ok2 || key != recordKey || len(b) < 12 {
		return r, false
	}
	r = record{id: id, memCap: binary.BigEndian.Uint64(b)}
	if !full {
		return r, true
	}
	sum := binary.BigEndian.Uint32(b[8:])
	r.wasm = b[12:]
	if crc32.Checksum(r.wasm, castagnoli) != sum || r.memCap > maxWasmMemory {
		return record{}, false
	}
	return r, true
}

// writeRecord records a module that passed every check (best effort: a
// missing record only costs the slower path).
func (e *engine) writeRecord(r record) {
	if e.records == "" || !recorded(r.id) {
		return
	}
	if err := os.MkdirAll(e.records, 0o700); err != nil {
		return
	}
	f, err := os.CreateTemp(e.records, ".tmp-*")
	if err != nil {
		return
	}
	_, err = f.Write(encodeRecord(r))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), recordPath(e.records, r.id))
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
}

// fromRecord compiles the module with this ID from its record, if it has
// one that is intact, under memCap. A damaged record is deleted.
func (e *engine) fromRecord(ctx context.Context, id string, memCap uint64) (*module, bool) {
	if e.records == "" || !recorded(id) {
		return nil, false
	}
	path := recordPath(e.records, id)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	r, ok := decodeRecord(b, true)
	if !ok || r.id != id {
		_ = os.Remove(path)
		return nil, false
	}
	// The recorded binary is metered already: guarded again (what the guard
	// makes of its own output is that output), not metered again.
	wasm, info, err := guard(r.wasm)
	if err != nil {
		_ = os.Remove(path)
		return nil, false
	}
	cm, fail := e.checkGuarded(ctx, wasm, info, memCap, memCap < r.memCap)
	if fail != nil { // e.g. the initial memory is above this smaller cap
		return nil, false
	}
	now := time.Now()
	_ = os.Chtimes(path, now, now) // most recently used: warmed first
	return &module{id: id, cm: cm}, true
}

// warm loads the most recently used recorded modules into memory, at most
// max, one at a time while no job runs (a job's thread shares the machine
// with it), and closes e.warmed; it stops early when the engine closes.
func (e *engine) warm(max int) {
	defer close(e.warmed)
	if e.records == "" || max <= 0 {
		return
	}
	entries, err := os.ReadDir(e.records)
	if err != nil {
		return
	}
	type candidate struct {
		path string
		used time.Time
	}
	var cs []candidate
	for _, de := range entries {
		if !de.Type().IsRegular() || de.Name()[0] == '.' {
			continue
		}
		if fi, err := de.Info(); err == nil {
			cs = append(cs, candidate{filepath.Join(e.records, de.Name()), fi.ModTime()})
		}
	}
	slices.SortFunc(cs, func(a, b candidate) int { return b.used.Compare(a.used) })
	cs = cs[:min(len(cs), max)]
	slices.Reverse(cs) // the most recent last, so it ends first in the LRU
	loaded := false
	for _, c := range cs {
		if !e.waitIdle() { // a module at a time, between jobs
			return
		}
		head, err := readHead(c.path, 4<<10)
		if err != nil {
			continue
		}
		r, ok := decodeRecord(head, false)
		if !ok {
			continue
		}
		if m, ok := e.obtain(context.Background(), r.id, nil, r.memCap); ok {
			e.release(m)
			loaded = true
		}
	}
	if loaded {
		// Loading leaves tens of MB of garbage (the records and wazero's
		// copies of the compiled code): collect it now, not in a job's way.
		runtime.GC()
	}
}

// readHead reads up to n bytes from the start of a file.
func readHead(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	k, err := f.Read(b)
	if k > 0 {
		err = nil
	}
	return b[:k], err
}
