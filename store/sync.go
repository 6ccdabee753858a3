package store

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Durability with SyncWrites=false.
//
// Badger writes through mmap'd logs: the active memtable's write-ahead log
// (NNNNN.mem, every write) and the value log (NNNNN.vlog, only values of at
// least ValueThreshold bytes). Badger's DB.Sync msyncs both active files,
// and when a memtable or value-log file fills up badger rotates to a new
// file without syncing the old one, so a write acknowledged after DB.Sync
// could still sit unsynced in a rotated file.
//
// syncAll therefore does the syncing itself, through ordinary file
// descriptors (on Linux fsync writes back pages dirtied through a shared
// mapping exactly like msync):
//   - the newest .mem file, always (a full fsync: badger's log files are
//     sparse and written through a mapping, so blocks are allocated at
//     writeback, and fdatasync would trust the filesystem to count that
//     allocation as metadata it must write; measured gain only ~5%);
//   - the newest .vlog file, only if a value big enough to go there was
//     written since the last sync (on this machine class an fsync of a clean
//     file still costs a disk cache flush, ~0.5 ms);
//   - every older .mem/.vlog file once, the first time it is seen rotated
//     (badger never writes to it again);
//   - the directory, when new log files appeared, so their names survive.
// Tables (.sst) and the MANIFEST are synced by badger itself.

type fileSyncer struct {
	dir   string
	mu    sync.Mutex
	dirf  *os.File            // dir, kept open and re-read from the start at each sync
	heads map[string]*os.File // open newest log files, by name
	clean map[string]bool     // rotated log files already fsynced
	known map[string]bool     // log files present at the last directory sync
}

func newFileSyncer(dir string) *fileSyncer {
	return &fileSyncer{dir: dir, heads: map[string]*os.File{}, clean: map[string]bool{}, known: map[string]bool{}}
}

// noteWrite records that a value of n bytes is about to be committed.
func (s *Store) noteWrite(n int) {
	if int64(n) >= s.cfg.ValueThreshold {
		s.vlogDirty.Store(true)
	}
}

// syncAll makes every write committed so far durable. Callers are inside
// enter/leave, or are the store's own goroutines, which Close waits for.
func (s *Store) syncAll() error {
	s.stats.syncs.Add(1)
	if err := s.sync.syncLogs(&s.vlogDirty); err != nil {
		return fmt.Errorf("store: sync: %w", err)
	}
	return nil
}

func (f *fileSyncer) syncLogs(vlogDirty *atomic.Bool) (err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// Swapped under the lock: a concurrent caller that finds the flag
	// already cleared waits here until the sync that cleared it is done.
	syncVlog := vlogDirty.Swap(false)
	defer func() {
		if err != nil && syncVlog {
			vlogDirty.Store(true)
		}
	}()
	ents, err := f.readDir()
	if err != nil {
		return err
	}
	type logFile struct {
		name, ext string
		id        uint64
	}
	var files []logFile
	head := map[string]uint64{}
	for _, e := range ents {
		ext := filepath.Ext(e.Name())
		if ext != ".mem" && ext != ".vlog" {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSuffix(e.Name(), ext), 10, 64)
		if err != nil {
			continue
		}
		files = append(files, logFile{e.Name(), ext, id})
		if id >= head[ext] {
			head[ext] = id
		}
	}
	present := make(map[string]bool, len(files))
	newFiles := false
	for _, lf := range files {
		present[lf.name] = true
		if !f.known[lf.name] {
			newFiles = true
		}
		if lf.id == head[lf.ext] {
			if lf.ext == ".vlog" && !syncVlog {
				continue
			}
			if err := f.syncHead(lf.name); err != nil {
				return err
			}
			continue
		}
		if f.clean[lf.name] {
			continue
		}
		if fh := f.heads[lf.name]; fh != nil {
			err = fh.Sync()
		} else {
			err = fsyncFile(filepath.Join(f.dir, lf.name))
		}
		if err != nil && !os.IsNotExist(err) {
			return err
		}
		f.clean[lf.name] = true
	}
	for name, fh := range f.heads {
		if !present[name] || f.clean[name] {
			_ = fh.Close()
			delete(f.heads, name)
		}
	}
	for name := range f.clean {
		if !present[name] {
			delete(f.clean, name)
		}
	}
	if newFiles {
		if err := fsyncFile(f.dir); err != nil {
			return err
		}
	}
	f.known = present
	return nil
}

// readDir lists the directory through a descriptor kept open (the listing
// of every sync; opening the directory each time cost as much as reading
// it). It falls back to os.ReadDir where a directory cannot be rewound.
func (f *fileSyncer) readDir() ([]os.DirEntry, error) {
	if f.dirf == nil {
		d, err := os.Open(f.dir)
		if err != nil {
			return nil, err
		}
		f.dirf = d
	} else if _, err := f.dirf.Seek(0, io.SeekStart); err != nil {
		_ = f.dirf.Close()
		f.dirf = nil
		return os.ReadDir(f.dir)
	}
	ents, err := f.dirf.ReadDir(-1)
	if err != nil {
		_ = f.dirf.Close()
		f.dirf = nil
	}
	return ents, err
}

// syncHead fsyncs one of the newest log files through a cached descriptor.
func (f *fileSyncer) syncHead(name string) error {
	fh := f.heads[name]
	if fh == nil {
		var err error
		if fh, err = os.Open(filepath.Join(f.dir, name)); err != nil {
			return err
		}
		f.heads[name] = fh
	}
	return fh.Sync()
}

// close releases the cached descriptors.
func (f *fileSyncer) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for name, fh := range f.heads {
		_ = fh.Close()
		delete(f.heads, name)
	}
	if f.dirf != nil {
		_ = f.dirf.Close()
		f.dirf = nil
	}
}

func fsyncFile(path string) error {
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	err = fh.Sync()
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	return err
}
