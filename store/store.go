package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Key layout inside badger (one byte of kind, then the rest):
//
//	'i' name                 internal settings (format version)
//	'b' cid-bytes            blob metadata record (inline blobs carry their bytes)
//	'c' upload-id(8) idx(4)  one chunk of a large blob
//	'p' upload-id(8)         marker: chunks of this upload are not (or no longer) live
//	'f' file-id(8)           cid-bytes: the blob file blobs/<hex file-id> is live
//	'r' ns 0x00 key          namespaced record
const (
	kindInternal = 'i'
	kindBlob     = 'b'
	kindChunk    = 'c'
	kindPending  = 'p'
	kindFile     = 'f'
	kindRecord   = 'r'
)

// formatVersion is the on-disk layout version: 1 had inline and chunked
// blobs only; 2 adds blob files. A version-1 store is upgraded at Open (it
// needs no conversion); older code refuses a version-2 store.
const formatVersion = 2

var versionKey = []byte{kindInternal, 'v', 'e', 'r', 's', 'i', 'o', 'n'}

// maxConflictRetries bounds how often a transaction is re-run after a badger
// write conflict with a concurrent transaction.
const maxConflictRetries = 16

// Limits of the record API.
const (
	maxNamespaceLen = 128
	maxKeyLen       = 4096
)

// Store is an open database. All methods are safe for concurrent use.
type Store struct {
	cfg  Config
	log  *slog.Logger
	db   *badger.DB
	sync *fileSyncer

	// Every operation touching db is counted in inflight (enter/leave);
	// Close marks the store closed, waits for inflight to drain, then closes
	// db. Nested operations (a Scan callback calling Get) cannot deadlock:
	// once closed, enter fails instead of blocking.
	guardMu  sync.Mutex
	guardCV  *sync.Cond
	closed   bool
	inflight int

	closing       chan struct{} // closed when Close starts
	committerDone chan struct{} // closed when the committer has exited
	closeOnce     sync.Once
	closeErr      error
	wg            sync.WaitGroup

	reqs   chan *durableReq
	toSync chan []*durableReq

	absDir string        // Dir as it appears in /proc/self/maps
	trimCh chan struct{} // requests an early trim (see trim_linux.go)

	blobDir   string    // Dir/blobs: large blobs as files (blobfile.go)
	chunkBufs sync.Pool // *[]byte of ChunkSize, for streamed blob writes

	// vlogDirty is set when a value big enough for the value log is
	// written, and cleared by the sync that covers it.
	vlogDirty atomic.Bool

	stats struct {
		durableWrites, commits, syncs atomic.Uint64
	}
}

// Stats are counters since Open.
type Stats struct {
	DurableWrites uint64 // Durable calls committed
	Commits       uint64 // group-commit transactions (Durable and Update)
	Syncs         uint64 // fsync rounds performed
}

// Open opens (creating if needed) the store in cfg.Dir, removes leftovers of
// uploads interrupted by a crash, and starts the group committer and, if
// configured, the value-log garbage collector. Close releases everything.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create %s: %w", cfg.Dir, err)
	}
	log := cfg.logger().With("component", "store")
	db, err := badger.Open(cfg.badgerOptions(log))
	if err != nil {
		return nil, fmt.Errorf("store: open badger in %s: %w", cfg.Dir, err)
	}
	s := &Store{
		cfg:           cfg,
		log:           log,
		db:            db,
		sync:          newFileSyncer(cfg.Dir),
		closing:       make(chan struct{}),
		committerDone: make(chan struct{}),
		reqs:          make(chan *durableReq, cfg.MaxBatch),
		toSync:        make(chan []*durableReq, 4),
		trimCh:        make(chan struct{}, 1),
	}
	s.absDir = cfg.Dir
	if abs, err := filepath.Abs(cfg.Dir); err == nil {
		s.absDir = abs
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			s.absDir = real
		}
	}
	s.guardCV = sync.NewCond(&s.guardMu)
	if err := s.checkVersion(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := s.collectPending(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := s.openBlobDir(); err != nil {
		_ = db.Close()
		return nil, err
	}
	s.wg.Add(2)
	go s.commitLoop()
	go s.syncLoop()
	if cfg.ValueLogGCInterval > 0 {
		s.wg.Add(1)
		go s.gcLoop(cfg.ValueLogGCInterval)
	}
	if cfg.TrimInterval > 0 {
		s.wg.Add(1)
		go s.trimLoop(cfg.TrimInterval)
	}
	log.Debug("store opened", "dir", cfg.Dir)
	return s, nil
}

func (s *Store) checkVersion() error {
	return s.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(versionKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return txn.Set(versionKey, []byte{formatVersion})
		}
		if err != nil {
			return fmt.Errorf("store: read format version: %w", err)
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("store: read format version: %w", err)
		}
		if len(v) == 1 && v[0] == 1 {
			return txn.Set(versionKey, []byte{formatVersion}) // upgrade
		}
		if len(v) != 1 || v[0] != formatVersion {
			return fmt.Errorf("%w: unknown store format %x in %s", ErrCorrupt, v, s.cfg.Dir)
		}
		return nil
	})
}

// Close stops background work, fails queued Durable calls with ErrClosed,
// waits for in-flight group commits to be synced, and closes the database.
// It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.wg.Wait()
		s.guardMu.Lock()
		s.closed = true
		for s.inflight > 0 {
			s.guardCV.Wait()
		}
		s.guardMu.Unlock()
		s.sync.close()
		s.closeErr = s.db.Close()
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("store: close: %w", s.closeErr)
		}
	})
	return s.closeErr
}

// enter guards one use of s.db against a concurrent Close.
func (s *Store) enter() error {
	s.guardMu.Lock()
	defer s.guardMu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.inflight++
	return nil
}

func (s *Store) leave() {
	s.guardMu.Lock()
	s.inflight--
	if s.inflight == 0 && s.closed {
		s.guardCV.Broadcast()
	}
	s.guardMu.Unlock()
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	return Stats{
		DurableWrites: s.stats.durableWrites.Load(),
		Commits:       s.stats.commits.Load(),
		Syncs:         s.stats.syncs.Load(),
	}
}

// SyncCommitted returns once every write committed before the call is
// durable against power loss. Unlike Sync it does not fsync on its own: it
// joins the group commit's next sync, so many callers share one fsync. It
// lets a caller make a commit visible at once and acknowledge it to a peer
// only once it is durable.
func (s *Store) SyncCommitted(ctx context.Context) error {
	return s.submit(ctx, noWrites, true)
}

func noWrites(*Tx) error { return nil }

// Sync makes every write acknowledged so far durable against power loss.
func (s *Store) Sync() error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	return s.syncAll()
}

func (s *Store) gcLoop(every time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
		}
		if err := s.runValueLogGC(); err != nil {
			s.log.Warn("value log GC failed", "err", err)
		}
	}
}

// trimSoon asks the trim loop to release value-log pages now.
func (s *Store) trimSoon() {
	select {
	case s.trimCh <- struct{}{}:
	default:
	}
}

func (s *Store) trimLoop(every time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
		case <-s.trimCh:
		}
		if err := s.enter(); err != nil {
			return
		}
		_, err := trimMappings(s.absDir)
		s.leave()
		if err != nil {
			s.log.Warn("releasing value-log pages failed; trimming disabled", "err", err)
			return
		}
	}
}

// runValueLogGC rewrites value-log files that are mostly garbage (deleted
// blobs), then syncs so the rewritten values are durable right after badger
// removed the old file.
func (s *Store) runValueLogGC() error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	for n := 0; n < 16; n++ {
		err := s.db.RunValueLogGC(0.5)
		if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.syncAll(); err != nil {
			return err
		}
		s.log.Debug("value log file reclaimed")
	}
	return nil
}

// ---- namespaced records ----

// recordPrefix returns 'r' ns 0x00 prefix.
func recordPrefix(ns string, prefix []byte) ([]byte, error) {
	if err := checkNamespace(ns); err != nil {
		return nil, err
	}
	if len(prefix) > maxKeyLen {
		return nil, fmt.Errorf("%w: key prefix longer than %d bytes", ErrInvalid, maxKeyLen)
	}
	k := make([]byte, 0, 2+len(ns)+len(prefix))
	k = append(k, kindRecord)
	k = append(k, ns...)
	k = append(k, 0)
	return append(k, prefix...), nil
}

func recordKey(ns string, key []byte) ([]byte, error) {
	if len(key) > maxKeyLen {
		return nil, fmt.Errorf("%w: key longer than %d bytes", ErrInvalid, maxKeyLen)
	}
	return recordPrefix(ns, key)
}

func checkNamespace(ns string) error {
	if ns == "" || len(ns) > maxNamespaceLen || bytes.IndexByte([]byte(ns), 0) >= 0 {
		return fmt.Errorf("%w: namespace %q (want 1..%d bytes, no NUL)", ErrInvalid, ns, maxNamespaceLen)
	}
	return nil
}

// Put stores val under (ns, key) in its own transaction. It survives a
// process crash; use Durable when it must also survive power loss.
func (s *Store) Put(ns string, key, val []byte) error {
	return s.Update(func(tx *Tx) error { return tx.Put(ns, key, val) })
}

// Get returns a copy of the value under (ns, key), or an error wrapping
// ErrNotFound.
func (s *Store) Get(ns string, key []byte) ([]byte, error) {
	var out []byte
	err := s.View(func(tx *Tx) error {
		var err error
		out, err = tx.Get(ns, key)
		return err
	})
	return out, err
}

// Delete removes (ns, key); deleting a missing key is not an error.
func (s *Store) Delete(ns string, key []byte) error {
	return s.Update(func(tx *Tx) error { return tx.Delete(ns, key) })
}

// Scan calls fn for every record in ns whose key starts with prefix, in key
// order, from one consistent snapshot. See Tx.Scan.
func (s *Store) Scan(ns string, prefix []byte, fn func(key, val []byte) error) error {
	return s.View(func(tx *Tx) error { return tx.Scan(ns, prefix, fn) })
}

// View runs fn in a read-only transaction over a consistent snapshot.
func (s *Store) View(fn func(tx *Tx) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	return fn(&Tx{s: s, txn: txn, readOnly: true})
}

// Update runs fn in a read-write transaction and commits it atomically if fn
// returns nil; if fn returns an error nothing it wrote is applied. Updates
// and Durable calls are serialized by one committer goroutine, so fn sees
// every write acknowledged before it and never conflicts with them; fn may
// nevertheless be run more than once (only the last run counts), so it must
// have no effects besides tx, and it must not call the store's write methods.
// The commit is not synced: it survives a process crash, not a power loss
// (see Durable and Sync).
func (s *Store) Update(fn func(tx *Tx) error) error {
	return s.submit(context.Background(), fn, false)
}

// directUpdate commits fn in its own badger transaction, bypassing the
// committer; blob internals use it for bulk chunk data and for keys no
// record transaction touches. It retries on write conflicts.
func (s *Store) directUpdate(fn func(tx *Tx) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	for attempt := 0; ; attempt++ {
		txn := s.db.NewTransaction(true)
		tx := &Tx{s: s, txn: txn}
		err := fn(tx)
		if err == nil {
			err = tx.err
		}
		if err != nil {
			txn.Discard()
			return txErr(err)
		}
		err = txn.Commit()
		if errors.Is(err, badger.ErrConflict) && attempt < maxConflictRetries {
			continue
		}
		if err != nil {
			return fmt.Errorf("store: commit: %w", txErr(err))
		}
		return nil
	}
}

// txErr maps badger's size error onto ErrTooLarge.
func txErr(err error) error {
	if errors.Is(err, badger.ErrTxnTooBig) && !errors.Is(err, ErrTooLarge) {
		return fmt.Errorf("%w: transaction: %w", ErrTooLarge, err)
	}
	return err
}

// Tx is a transaction over the record namespaces, passed to the functions
// given to View, Update and Durable. It must not be used after that function
// returns. Values passed to Put are copied; values returned are copies.
type Tx struct {
	s        *Store
	txn      *badger.Txn
	readOnly bool
	writes   int   // Put/Delete calls so far
	err      error // first failed write, sticky
}

// Get returns a copy of the value under (ns, key), or an error wrapping
// ErrNotFound. It sees this transaction's own earlier writes.
func (tx *Tx) Get(ns string, key []byte) ([]byte, error) {
	k, err := recordKey(ns, key)
	if err != nil {
		return nil, err
	}
	item, err := tx.txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, &notFoundError{ns: ns, key: bytes.Clone(key)}
	}
	if err != nil {
		return nil, fmt.Errorf("store: get %s/%q: %w", ns, key, err)
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, fmt.Errorf("store: get %s/%q: %w", ns, key, err)
	}
	return v, nil
}

// Put stores a copy of val under (ns, key).
func (tx *Tx) Put(ns string, key, val []byte) error {
	if tx.readOnly {
		return fmt.Errorf("%w: Put in a read-only transaction", ErrInvalid)
	}
	k, err := recordKey(ns, key)
	if err != nil {
		return err
	}
	if len(val) > tx.s.cfg.MaxRecordSize {
		return fmt.Errorf("%w: record %s/%q is %d bytes, limit %d", ErrTooLarge, ns, key, len(val), tx.s.cfg.MaxRecordSize)
	}
	tx.writes++
	tx.s.noteWrite(len(val))
	if err := tx.txn.Set(k, bytes.Clone(val)); err != nil {
		err = fmt.Errorf("store: put %s/%q: %w", ns, key, txErr(err))
		if tx.err == nil {
			tx.err = err
		}
		return err
	}
	return nil
}

// Delete removes (ns, key); deleting a missing key is not an error.
func (tx *Tx) Delete(ns string, key []byte) error {
	if tx.readOnly {
		return fmt.Errorf("%w: Delete in a read-only transaction", ErrInvalid)
	}
	k, err := recordKey(ns, key)
	if err != nil {
		return err
	}
	tx.writes++
	if err := tx.txn.Delete(k); err != nil {
		err = fmt.Errorf("store: delete %s/%q: %w", ns, key, txErr(err))
		if tx.err == nil {
			tx.err = err
		}
		return err
	}
	return nil
}

// ScanOptions selects the records a scan visits.
type ScanOptions struct {
	// Prefix restricts the scan to keys that start with it.
	Prefix []byte
	// Start is the first key considered: keys ≥ Start going forward, keys
	// ≤ Start in reverse. nil starts at the first (last) key with Prefix.
	Start []byte
	// Reverse visits keys in descending order.
	Reverse bool
}

// Scan calls fn with a copy of every (key, value) in ns whose key starts with
// prefix, in ascending key order. Keys are given without the namespace. If fn
// returns ErrStop the scan ends and Scan returns nil; any other error ends
// the scan and is returned. It sees this transaction's own writes.
func (tx *Tx) Scan(ns string, prefix []byte, fn func(key, val []byte) error) error {
	return tx.ScanWith(ns, ScanOptions{Prefix: prefix}, fn)
}

// ScanWith is Scan with a start key and direction.
func (tx *Tx) ScanWith(ns string, opt ScanOptions, fn func(key, val []byte) error) error {
	nsPrefix, err := recordPrefix(ns, nil)
	if err != nil {
		return err
	}
	full, err := recordPrefix(ns, opt.Prefix)
	if err != nil {
		return err
	}
	itopt := badger.DefaultIteratorOptions
	itopt.PrefetchValues = false
	itopt.Reverse = opt.Reverse
	itopt.Prefix = full
	it := tx.txn.NewIterator(itopt)
	defer it.Close()

	// Clamp the start into the prefix's range. Forward scans begin at
	// max(prefix, start). Reverse scans begin at min(last, start), where
	// last = prefix followed by more 0xff bytes than any key can have, so it
	// sorts after every key with the prefix while still having the prefix
	// (badger's prefix iteration stops at the first key without it).
	seek := full
	if opt.Reverse {
		seek = append(bytes.Clone(full), bytes.Repeat([]byte{0xff}, maxKeyLen+1)...)
	}
	if opt.Start != nil {
		start := append(bytes.Clone(nsPrefix), opt.Start...)
		if !opt.Reverse && bytes.Compare(start, full) > 0 {
			seek = start
		}
		if opt.Reverse && bytes.Compare(start, seek) < 0 {
			seek = start
		}
	}
	it.Seek(seek)
	for ; it.ValidForPrefix(full); it.Next() {
		item := it.Item()
		key := item.KeyCopy(nil)[len(nsPrefix):]
		val, err := item.ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("store: scan %s: %w", ns, err)
		}
		if err := fn(key, val); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

// ctxErr returns ctx's error, if any.
func ctxErr(ctx context.Context) error {
	if ctx == nil {
		return nil
	}
	return ctx.Err()
}
