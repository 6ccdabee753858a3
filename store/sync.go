package store

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Durability with SyncWrites=false.
//
// Badger writes through mmap'd logs: the active memtable's write-ahead log
// (NNNNN.mem) and the value log (NNNNN.vlog, for values ≥ ValueThreshold).
// DB.Sync syncs only the *active* files. When a memtable or value-log file
// fills up badger rotates to a new file without syncing the old one, so a
// write acknowledged after DB.Sync could still sit unsynced in a rotated
// file. syncAll therefore also fsyncs every log file that is no longer the
// newest of its kind (once: badger never writes to it again), and fsyncs the
// directory when new log files appeared, so their names survive power loss
// too. Tables (.sst) and the MANIFEST are synced by badger itself.

type fileSyncer struct {
	dir   string
	mu    sync.Mutex
	clean map[string]bool // rotated log files already fsynced
	known map[string]bool // log files present at the last directory sync
}

func newFileSyncer(dir string) *fileSyncer {
	return &fileSyncer{dir: dir, clean: map[string]bool{}, known: map[string]bool{}}
}

// syncAll makes every write acknowledged so far durable. Callers are inside
// enter/leave, or are the store's own goroutines, which Close waits for.
func (s *Store) syncAll() error {
	s.stats.syncs.Add(1)
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("store: sync: %w", err)
	}
	if err := s.sync.syncRotated(); err != nil {
		return fmt.Errorf("store: sync: %w", err)
	}
	return nil
}

func (f *fileSyncer) syncRotated() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	ents, err := os.ReadDir(f.dir)
	if err != nil {
		return err
	}
	type logFile struct {
		name string
		id   uint64
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
		files = append(files, logFile{e.Name(), id})
		if id > head[ext] {
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
		if lf.id == head[filepath.Ext(lf.name)] || f.clean[lf.name] {
			continue
		}
		if err := fsyncFile(filepath.Join(f.dir, lf.name)); err != nil {
			if os.IsNotExist(err) {
				continue // flushed to a table and removed meanwhile
			}
			return err
		}
		f.clean[lf.name] = true
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
