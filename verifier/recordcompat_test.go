package verifier

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/sandbox"
	"github.com/aspen-market/aspen/store"
)

// TestOpensStoreOfJSONRecords: a store whose task and assignment records
// are in the JSON form written before the binary one loads the same state
// as its binary twin, and the verifier resumes from it: every task is
// settled once and released, and what it writes from then on is binary.
func TestOpensStoreOfJSONRecords(t *testing.T) {
	dir := t.TempDir()
	mg := closeMidGroup(t, dir)

	// The same data directory with the old records.
	jsonDir := t.TempDir()
	copyDir(t, dir, jsonDir)
	tasks, asgs := rewriteAsJSON(t, filepath.Join(jsonDir, StoreDir))
	t.Logf("rewrote %d task and %d assignment records as JSON", tasks, asgs)

	now := time.Now()
	want := loadState(t, testConfig(t, dir), now)
	got := loadState(t, testConfig(t, jsonDir), now)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("state loaded from JSON records\n%+v\ndiffers from the state loaded from binary ones\n%+v", got, want)
	}
	if len(want.tasks) == 0 || len(want.asgs) == 0 || want.running == 0 {
		t.Fatalf("nothing in flight to load (%d tasks, %d assignments, %d running); make the jobs slower",
			len(want.tasks), len(want.asgs), want.running)
	}
	t.Logf("both loaded %d open tasks (%d queued), %d open assignments, %d running replicas",
		len(want.tasks), want.queued, len(want.asgs), want.running)

	cfg := mg.cfg
	cfg.DataDir = jsonDir
	v2 := startVerifier(t, cfg, false)
	if v2.ID() != mg.v1.ID() {
		t.Fatal("identity changed across the copy")
	}
	checkResumed(t, v2, mg.c, mg.gid, midGroupTasks, midGroupCredit, mg.workers...)
	binary := 0
	err := v2.st.Scan(nsTask, mg.gid[:], func(key, val []byte) error {
		var rec taskRecord
		if err := decodeTaskRecord(val, &rec); err != nil {
			t.Errorf("task %x: %v", key, err)
		}
		if val[0] == recordV1 || val[0] == recordV2 {
			binary++
		}
		return nil
	})
	if err != nil || binary == 0 {
		t.Fatalf("%d binary task records after the restart (%v)", binary, err)
	}
}

// loadedState is what load builds from a store, the records in their
// binary form.
type loadedState struct {
	workers, benches, openTasks, queued, running int
	tasks                                        map[string]string
	asgs                                         map[protocol.ID]string
}

// loadState opens the data directory of cfg and loads it (without
// starting the verifier) at the time now.
func loadState(t *testing.T, cfg Config, now time.Time) loadedState {
	t.Helper()
	cfg.Now = func() time.Time { return now }
	cfg.Runner = noRunner{}
	cfg.APIAddr = ""
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := v.load(context.Background()); err != nil {
		t.Fatal(err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	s := loadedState{workers: len(v.workers), benches: len(v.benches), openTasks: v.openTasks, queued: len(v.queued),
		tasks: map[string]string{}, asgs: map[protocol.ID]string{}}
	for _, g := range v.groups {
		for _, ts := range g.tasks {
			s.tasks[ts.key()] = string(encodeTaskRecord(&ts.rec))
		}
	}
	for id, a := range v.asgs {
		s.asgs[id] = string(encodeAssignmentRecord(a))
	}
	for _, r := range v.running {
		s.running += r
	}
	return s
}

// rewriteAsJSON rewrites every task and assignment record of the store in
// dir in the JSON form the verifier wrote before.
func rewriteAsJSON(t *testing.T, dir string) (tasks, asgs int) {
	t.Helper()
	cfg := store.DefaultConfig()
	cfg.Dir = dir
	cfg.ValueLogGCInterval = 0
	st, err := store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var recs []jsonRecord
	if recs, err = appendAsJSON(st, recs, nsTask, decodeTaskRecord); err != nil {
		t.Fatal(err)
	}
	tasks = len(recs)
	if recs, err = appendAsJSON(st, recs, nsAssign, decodeAssignmentRecord); err != nil {
		t.Fatal(err)
	}
	asgs = len(recs) - tasks
	err = st.Update(func(tx *store.Tx) error {
		for _, r := range recs {
			if err := tx.Put(r.ns, r.key, r.val); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tasks, asgs
}

// jsonRecord is a record rewritten in the JSON form.
type jsonRecord struct {
	ns       string
	key, val []byte
}

// appendAsJSON appends every record of ns, each of which must be in the
// binary form, re-encoded as JSON.
func appendAsJSON[R any](st *store.Store, recs []jsonRecord, ns string, decode func([]byte, *R) error) ([]jsonRecord, error) {
	err := st.Scan(ns, nil, func(key, val []byte) error {
		var r R
		if err := decode(val, &r); err != nil || (val[0] != recordV1 && val[0] != recordV2) {
			return errors.Join(err, fmt.Errorf("%s %x: not a binary record", ns, key))
		}
		recs = append(recs, jsonRecord{ns, append([]byte(nil), key...), mustJSON(&r)})
		return nil
	})
	return recs, err
}

// copyDir copies the files under src (a closed verifier's data
// directory) to dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		if e.IsDir() {
			return os.MkdirAll(to, 0o700)
		}
		if !e.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// noRunner is a verifier runner that runs nothing (the state is only
// loaded).
type noRunner struct{}

func (noRunner) Run(context.Context, sandbox.Job) (sandbox.Result, error) {
	return sandbox.Result{}, errors.New("no runner")
}
func (noRunner) Close() error { return nil }
