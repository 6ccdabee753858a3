package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// concurrently runs fn(w, i) for i in [0, each) on each of n goroutines w
// and fails the test with the first error (a goroutine stops at its own).
func concurrently(t *testing.T, n, each int, fn func(w, i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := fn(w, i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestDurableConcurrentWritersAreGrouped(t *testing.T) {
	s := openTest(t, "", nil)
	const writers, each = 32, 40
	concurrently(t, writers, each, func(w, i int) error {
		key := fmt.Appendf(nil, "w%02d/%03d", w, i)
		return s.Durable(context.Background(), func(tx *Tx) error { return tx.Put("d", key, key) })
	})
	n := 0
	if err := s.Scan("d", nil, func(k, v []byte) error {
		if string(k) != string(v) {
			t.Errorf("key %q value %q", k, v)
		}
		n++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != writers*each {
		t.Fatalf("%d records, want %d", n, writers*each)
	}
	st := s.Stats()
	if st.DurableWrites != writers*each {
		t.Fatalf("DurableWrites = %d, want %d", st.DurableWrites, writers*each)
	}
	if st.Commits >= st.DurableWrites || st.Syncs >= st.DurableWrites {
		t.Fatalf("no group commit: %+v", st)
	}
	t.Logf("stats: %+v (%.1f writes per sync)", st, float64(st.DurableWrites)/float64(st.Syncs))
}

// holdCommitter blocks the committer inside a Durable function until the
// returned release is called, so that the test can queue requests that will
// then be committed as one batch.
func holdCommitter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	entered, gate := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Durable(context.Background(), func(tx *Tx) error {
			select {
			case <-entered:
			default:
				close(entered)
			}
			<-gate
			return tx.Put("hold", []byte("k"), nil)
		})
	}()
	<-entered
	return func() {
		close(gate)
		if err := <-done; err != nil {
			t.Errorf("holding request: %v", err)
		}
	}
}

// waitQueued waits until n requests sit in the committer's queue.
func waitQueued(s *Store, n int) {
	for len(s.reqs) < n {
		runtime.Gosched()
	}
}

func TestDurableFailingCallerDoesNotPoisonBatch(t *testing.T) {
	s := openTest(t, "", nil)
	release := holdCommitter(t, s)
	boom := errors.New("boom")
	fns := []struct {
		name    string
		fn      func(tx *Tx) error
		wantErr error
	}{
		{"ok1", func(tx *Tx) error { return tx.Put("d", []byte("ok1"), nil) }, nil},
		{"dirty", func(tx *Tx) error {
			if err := tx.Put("d", []byte("dirty"), nil); err != nil {
				return err
			}
			return boom
		}, boom},
		{"ok2", func(tx *Tx) error { return tx.Put("d", []byte("ok2"), nil) }, nil},
		{"clean", func(tx *Tx) error { return boom }, boom},
		{"panics", func(tx *Tx) error {
			_ = tx.Put("d", []byte("panics"), nil)
			panic("bad caller")
		}, nil},
		{"reads-ok2", func(tx *Tx) error {
			if _, err := tx.Get("d", []byte("ok2")); err != nil {
				return fmt.Errorf("earlier write not visible: %w", err)
			}
			return tx.Put("d", []byte("reads-ok2"), nil)
		}, nil},
	}
	results := make([]chan error, len(fns))
	for i, f := range fns {
		results[i] = make(chan error, 1)
		go func() { results[i] <- s.Durable(context.Background(), f.fn) }()
		waitQueued(s, i+1)
	}
	release()
	for i, f := range fns {
		err := <-results[i]
		switch {
		case f.name == "panics":
			if err == nil {
				t.Errorf("%s: no error", f.name)
			}
		case !errors.Is(err, f.wantErr) || (f.wantErr == nil && err != nil):
			t.Errorf("%s: err %v, want %v", f.name, err, f.wantErr)
		}
	}
	for _, k := range []string{"ok1", "ok2", "reads-ok2"} {
		if _, err := s.Get("d", []byte(k)); err != nil {
			t.Errorf("%s missing: %v", k, err)
		}
	}
	for _, k := range []string{"dirty", "panics"} {
		if _, err := s.Get("d", []byte(k)); !errors.Is(err, ErrNotFound) {
			t.Errorf("failed caller's write %s visible: %v", k, err)
		}
	}
}

func TestDurableTooBigAloneFailsOthersCommit(t *testing.T) {
	s := openTest(t, "", nil)
	release := holdCommitter(t, s)
	big := func(tx *Tx) error {
		val := make([]byte, 1000)
		for i := 0; ; i++ {
			if err := tx.Put("big", binary.BigEndian.AppendUint32(nil, uint32(i)), val); err != nil {
				return err
			}
		}
	}
	var res [3]chan error
	for i, fn := range []func(*Tx) error{
		func(tx *Tx) error { return tx.Put("d", []byte("before"), nil) },
		big,
		func(tx *Tx) error { return tx.Put("d", []byte("after"), nil) },
	} {
		res[i] = make(chan error, 1)
		go func() { res[i] <- s.Durable(context.Background(), fn) }()
		waitQueued(s, i+1)
	}
	release()
	if err := <-res[0]; err != nil {
		t.Errorf("before: %v", err)
	}
	if err := <-res[1]; !errors.Is(err, ErrTooLarge) {
		t.Errorf("big: %v, want ErrTooLarge", err)
	}
	if err := <-res[2]; err != nil {
		t.Errorf("after: %v", err)
	}
	n := 0
	_ = s.Scan("big", nil, func(k, v []byte) error { n++; return nil })
	if n != 0 {
		t.Errorf("%d records of the too-big transaction are visible", n)
	}
}

func TestDurableCancelledBeforeRunNeverRuns(t *testing.T) {
	s := openTest(t, "", nil)
	release := holdCommitter(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	ran := false
	res := make(chan error, 1)
	go func() {
		res <- s.Durable(ctx, func(tx *Tx) error {
			ran = true
			return tx.Put("d", []byte("x"), nil)
		})
	}()
	waitQueued(s, 1)
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Fatalf("Durable = %v, want context.Canceled", err)
	}
	release()
	// A later request is committed after the abandoned one was skipped.
	if err := s.Durable(context.Background(), func(tx *Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if ran {
		t.Fatal("abandoned function was run")
	}
	if _, err := s.Get("d", []byte("x")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("abandoned write visible: %v", err)
	}
	if err := s.Durable(ctx, func(tx *Tx) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Durable with a done ctx = %v", err)
	}
}

func TestDurableAndUpdateCountersDoNotLoseIncrements(t *testing.T) {
	// Durable and Update increment the same counter concurrently; badger's
	// conflict detection plus re-runs must not lose any increment.
	s := openTest(t, "", nil)
	incr := func(tx *Tx) error {
		var n uint64
		v, err := tx.Get("c", []byte("n"))
		switch {
		case err == nil:
			n = binary.BigEndian.Uint64(v)
		case !errors.Is(err, ErrNotFound):
			return err
		}
		return tx.Put("c", []byte("n"), binary.BigEndian.AppendUint64(nil, n+1))
	}
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				var err error
				if w%2 == 0 {
					err = s.Durable(context.Background(), incr)
				} else {
					err = s.Update(incr)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	v, err := s.Get("c", []byte("n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := binary.BigEndian.Uint64(v); got != workers*each {
		t.Fatalf("counter = %d, want %d", got, workers*each)
	}
}

func TestDurableNil(t *testing.T) {
	s := openTest(t, "", nil)
	mustErrIs(t, s.Durable(context.Background(), nil), ErrInvalid)
}

func TestSyncCoversRotatedLogFiles(t *testing.T) {
	// Force memtable and value-log rotations; after a sync every log file
	// but the newest of each kind must have been fsynced since it rotated.
	s := openTest(t, "", func(c *Config) {
		c.MemTableSize = 1 << 20
		c.ValueThreshold = 4 << 10
		c.ValueLogFileSize = 1 << 20
		c.ChunkSize = 256 << 10
		c.InlineMax = 4 << 10
	})
	for i := range 6 {
		// Large records live in the value log (large blobs are files).
		if err := s.Durable(context.Background(), func(tx *Tx) error {
			return tx.Put("big", []byte{byte(i)}, randBytes(uint64(i), 300<<10))
		}); err != nil {
			t.Fatal(err)
		}
	}
	val := make([]byte, 3000)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				if err := s.Durable(context.Background(), func(tx *Tx) error {
					return tx.Put("r", binary.BigEndian.AppendUint32(nil, uint32(w<<16|i)), val)
				}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	heads := map[string]string{}
	var logs []string
	for _, e := range ents {
		ext := filepath.Ext(e.Name())
		if ext == ".mem" || ext == ".vlog" {
			logs = append(logs, e.Name())
			if e.Name() > heads[ext] { // same-width zero-padded names
				heads[ext] = e.Name()
			}
		}
	}
	s.sync.mu.Lock()
	defer s.sync.mu.Unlock()
	vlogs := 0
	for _, name := range logs {
		if filepath.Ext(name) == ".vlog" {
			vlogs++
		}
		if name != heads[filepath.Ext(name)] && !s.sync.clean[name] {
			t.Errorf("rotated log file %s was not fsynced", name)
		}
	}
	if vlogs < 2 {
		t.Fatalf("test did not rotate the value log (%v)", logs)
	}
}

// syncerOnly returns a store with just a syncer goroutine over an empty
// directory, fed by the test through toSync as the committer would.
func syncerOnly(t *testing.T, maxBatch int, queued ...[]*durableReq) *Store {
	t.Helper()
	s := &Store{cfg: Config{MaxBatch: maxBatch}, log: slog.New(slog.DiscardHandler),
		sync: newFileSyncer(t.TempDir()), toSync: make(chan []*durableReq, 4)}
	for _, b := range queued {
		s.toSync <- b
	}
	s.wg.Add(1)
	go s.syncLoop()
	t.Cleanup(func() {
		close(s.toSync)
		s.wg.Wait()
	})
	return s
}

func committedReqs(n int) []*durableReq {
	out := make([]*durableReq, n)
	for i := range out {
		out[i] = &durableReq{sync: true, done: make(chan error, 1)}
	}
	return out
}

func waitDone(t *testing.T, rs []*durableReq) {
	t.Helper()
	for _, r := range rs {
		if err := <-r.done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestSyncerWaitsForRoundInProgress: writes handed over while the committer
// has started another round (nil marker) are synced together with that
// round's writes, in one fsync.
func TestSyncerWaitsForRoundInProgress(t *testing.T) {
	first, second := committedReqs(3), committedReqs(2)
	s := syncerOnly(t, 8, first, nil)
	s.toSync <- second
	waitDone(t, first)
	waitDone(t, second)
	if st := s.Stats(); st.Syncs != 1 || st.DurableWrites != 5 {
		t.Fatalf("stats %+v, want 5 writes in 1 sync", st)
	}
	// A round that committed nothing ends the wait too.
	third := committedReqs(1)
	s.toSync <- third
	s.toSync <- nil
	s.toSync <- noneCommitted
	waitDone(t, third)
}

// TestSyncerDoesNotWaitPastMaxBatch: with MaxBatch writes waiting, the
// syncer syncs at once even if a round is in progress.
func TestSyncerDoesNotWaitPastMaxBatch(t *testing.T) {
	first := committedReqs(2)
	s := syncerOnly(t, 2, first, nil)
	waitDone(t, first)
	second := committedReqs(1)
	s.toSync <- second
	waitDone(t, second)
	if st := s.Stats(); st.Syncs != 2 {
		t.Fatalf("stats %+v, want 2 syncs", st)
	}
}

// TestSyncerOneSyncPerWrite: MaxBatch 1 (the one-fsync-per-write baseline)
// syncs every hand-over on its own.
func TestSyncerOneSyncPerWrite(t *testing.T) {
	a, b := committedReqs(1), committedReqs(1)
	s := syncerOnly(t, 1, a, b)
	waitDone(t, a)
	waitDone(t, b)
	if st := s.Stats(); st.Syncs != 2 {
		t.Fatalf("stats %+v, want 2 syncs", st)
	}
}

// TestSyncCommittedJoinsGroupCommit: SyncCommitted after Update returns
// once a sync has covered the update, and concurrent callers share syncs
// with each other (it queues behind the committer like Durable, it does
// not fsync on its own).
func TestSyncCommittedJoinsGroupCommit(t *testing.T) {
	s := openTest(t, "", nil)
	if err := s.Update(func(tx *Tx) error { return tx.Put("d", []byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	before := s.Stats()
	if err := s.SyncCommitted(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := s.Stats()
	if after.Syncs <= before.Syncs || after.DurableWrites != before.DurableWrites+1 {
		t.Fatalf("stats before %+v after %+v: want one more sync and durable write", before, after)
	}

	const callers, each = 32, 20
	concurrently(t, callers, each, func(c, i int) error {
		key := fmt.Appendf(nil, "c%02d/%03d", c, i)
		if err := s.Update(func(tx *Tx) error { return tx.Put("d", key, key) }); err != nil {
			return err
		}
		return s.SyncCommitted(context.Background())
	})
	end := s.Stats()
	if syncs := end.Syncs - after.Syncs; syncs >= callers*each {
		t.Fatalf("%d syncs for %d SyncCommitted calls: not grouped", syncs, callers*each)
	}

	// A cancelled context gives up before queueing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.SyncCommitted(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled SyncCommitted: %v", err)
	}
}
