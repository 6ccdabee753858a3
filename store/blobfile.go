package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/aspen-market/aspen/protocol"
)

// Large blobs as files.
//
// A blob of more than InlineMax bytes is one file, blobs/<hex file id>, in
// the store's directory, written with write(2), not through badger's
// memory-mapped value log. Its metadata record (layout file: size, chunk
// size, CRC-32C of every chunk) and a 'f' file-id key naming the file live
// in badger and are written in one durable transaction, and only after the
// file's bytes have hashed to the CID and the file and its directory entry
// have been synced: the record is what makes the blob visible, so a
// partial or failed write is never visible. A file without its 'f' key is
// garbage: removed at once on failure and, after a crash, by Open.
//
// The CID (one sha-256 over the whole blob) is checked as the bytes arrive;
// the per-chunk CRC-32C lets a ranged read check the chunks it touches
// against what was verified at write time (a sha-256 per chunk would be a
// second full hash of every byte on both ends of a transfer). Reading a
// blob from 0 to the end still checks the whole stream against the CID.

const blobDirName = "blobs"

// fileWriteDepth is how many chunk buffers one streamed write has in
// flight between its reader, hasher and writer stages.
const fileWriteDepth = 4

// writebackWindow: a streamed write asks the kernel to start writing back
// every this many bytes, so the final fdatasync has little left to do.
const writebackWindow = 8 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func chunkCRC(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

func fileKey(id uploadID) []byte { return append([]byte{kindFile}, id[:]...) }

func (s *Store) blobPath(id uploadID) string {
	return filepath.Join(s.blobDir, hex.EncodeToString(id[:]))
}

// openBlobDir creates the blob directory if needed (syncing its parent so
// the name survives) and removes files left by writes or deletes that a
// crash interrupted: every file without its 'f' key.
func (s *Store) openBlobDir() error {
	s.blobDir = filepath.Join(s.cfg.Dir, blobDirName)
	if _, err := os.Stat(s.blobDir); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(s.blobDir, 0o700); err != nil {
			return fmt.Errorf("store: create %s: %w", s.blobDir, err)
		}
		if err := fsyncFile(s.cfg.Dir); err != nil {
			return fmt.Errorf("store: sync %s: %w", s.cfg.Dir, err)
		}
	} else if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	ents, err := os.ReadDir(s.blobDir)
	if err != nil {
		return fmt.Errorf("store: read %s: %w", s.blobDir, err)
	}
	var dead []string
	err = s.View(func(tx *Tx) error {
		for _, e := range ents {
			var id uploadID
			b, err := hex.DecodeString(e.Name())
			if err != nil || len(b) != len(id) {
				s.log.Warn("unexpected file in the blob directory", "name", e.Name())
				continue
			}
			copy(id[:], b)
			_, err = tx.txn.Get(fileKey(id))
			if errors.Is(err, badger.ErrKeyNotFound) {
				dead = append(dead, e.Name())
				continue
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: scan blob files: %w", err)
	}
	removed := 0
	for _, name := range dead {
		if err := os.Remove(filepath.Join(s.blobDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("store: remove interrupted blob file: %w", err)
		}
		removed++
	}
	if removed > 0 {
		s.log.Info("removed blob files of interrupted writes or deletes", "count", removed)
	}
	return nil
}

// fileBlob is one blob file being written.
type fileBlob struct {
	s    *Store
	id   uploadID
	path string
	f    *os.File
	crcs []uint32
	size int64
	// written back: [0, flushed) has been handed to the kernel's writeback.
	flushed int64
}

func (s *Store) createBlobFile() (*fileBlob, error) {
	fb := &fileBlob{s: s}
	for range 3 {
		if _, err := rand.Read(fb.id[:]); err != nil {
			return nil, fmt.Errorf("store: file id: %w", err)
		}
		fb.path = s.blobPath(fb.id)
		f, err := os.OpenFile(fb.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("store: create blob file: %w", err)
		}
		fb.f = f
		return fb, nil
	}
	return nil, fmt.Errorf("store: create blob file: ids keep colliding")
}

// write appends one chunk (all chunks but the last are ChunkSize bytes).
func (fb *fileBlob) write(chunk []byte) error {
	fb.crcs = append(fb.crcs, chunkCRC(chunk))
	if _, err := fb.f.Write(chunk); err != nil {
		return fmt.Errorf("store: write blob file: %w", err)
	}
	fb.size += int64(len(chunk))
	if fb.size-fb.flushed >= writebackWindow {
		startWriteback(fb.f, fb.flushed, fb.size-fb.flushed)
		fb.flushed = fb.size
	}
	return nil
}

// discard removes the file (a failed or superseded write).
func (fb *fileBlob) discard() {
	if fb.f != nil {
		_ = fb.f.Close()
		fb.f = nil
	}
	if err := os.Remove(fb.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		fb.s.log.Warn("removing blob file", "path", fb.path, "err", err)
	}
}

// commit syncs the file and its directory entry, then makes the blob
// visible under c in one durable transaction (metadata record and 'f' key).
// If c was stored meanwhile by another writer, this file is removed. The
// file is removed on any failure too.
func (fb *fileBlob) commit(ctx context.Context, c cid.Cid) error {
	s := fb.s
	if fb.size == 0 {
		fb.discard()
		return fmt.Errorf("%w: empty blob file", ErrInvalid)
	}
	err := datasync(fb.f)
	if cerr := fb.f.Close(); err == nil {
		err = cerr
	}
	fb.f = nil
	if err == nil {
		err = fsyncFile(s.blobDir)
	}
	if err != nil {
		fb.discard()
		return fmt.Errorf("store: sync blob file: %w", err)
	}
	meta := encodeFileMeta(fb.size, fb.id, int64(s.cfg.ChunkSize), fb.crcs)
	k := blobKey(c)
	var existed bool
	err = s.Durable(ctx, func(tx *Tx) error {
		existed = false
		if old, err := tx.getRaw(k); err == nil {
			if _, derr := decodeBlobMeta(old); derr == nil {
				existed = true // a concurrent writer stored it first
				return nil
			} // else: replace the corrupt record
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := tx.setRaw(k, meta); err != nil {
			return err
		}
		return tx.setRaw(fileKey(fb.id), c.Bytes())
	})
	switch {
	case err != nil && fb.committed(c):
		// Committed, but the sync failed: the record names this file,
		// which must stay.
	case err != nil || existed:
		fb.discard()
	}
	return err
}

// committed reports whether the record of c names this file.
func (fb *fileBlob) committed(c cid.Cid) bool {
	m, err := fb.s.readMeta(c)
	return err == nil && m.file && m.upload == fb.id
}

// putFile stores data, already known to hash to c, as a blob file.
func (s *Store) putFile(ctx context.Context, c cid.Cid, data []byte) error {
	fb, err := s.createBlobFile()
	if err != nil {
		return err
	}
	cs := s.cfg.ChunkSize
	for off := 0; off < len(data); off += cs {
		if err := fb.write(data[off:min(off+cs, len(data))]); err != nil {
			fb.discard()
			return err
		}
	}
	if err := fb.commit(ctx, c); err != nil {
		return fmt.Errorf("store: put blob %s: %w", c, err)
	}
	return nil
}

// writeFile streams r into a blob file, hashing it, and commits it under c
// if it hashes to c and is at most maxSize bytes. Three stages overlap:
// this goroutine reads chunks from r, a second hashes them (the CID), a
// third checksums them and writes them to the file, with fileWriteDepth
// chunk buffers circulating between them.
func (s *Store) writeFile(ctx context.Context, c cid.Cid, r io.Reader, maxSize int64) (int64, error) {
	fb, err := s.createBlobFile()
	if err != nil {
		return 0, err
	}
	fail := func(err error) (int64, error) {
		fb.discard()
		return 0, err
	}
	// Buffers are taken as needed, up to fileWriteDepth: a blob of one or
	// two chunks holds no more than that.
	free := make(chan *[]byte, fileWriteDepth)
	toHash := make(chan []byte, fileWriteDepth)
	toWrite := make(chan []byte, fileWriteDepth)
	bufs := 0
	next := func() *[]byte {
		if bufs < fileWriteDepth {
			select {
			case bp := <-free:
				return bp
			default:
				bufs++
				return s.getChunkBuf()
			}
		}
		return <-free
	}
	var (
		writeErr atomic.Pointer[error]
		wg       sync.WaitGroup
		sum      cid.Cid
	)
	wg.Add(2)
	go func() { // hasher
		defer wg.Done()
		defer close(toWrite)
		h := protocol.NewBlobHasher()
		for b := range toHash {
			_, _ = h.Write(b)
			toWrite <- b
		}
		sum = h.Sum()
	}()
	go func() { // writer
		defer wg.Done()
		for b := range toWrite {
			if writeErr.Load() == nil {
				if err := fb.write(b); err != nil {
					writeErr.Store(&err)
				}
			}
			b = b[:cap(b)]
			free <- &b
		}
	}()
	stop := func() {
		close(toHash)
		wg.Wait()
		for range bufs {
			s.putChunkBuf(<-free)
		}
	}

	var total int64
	var rerr error
	for {
		if err := ctxErr(ctx); err != nil {
			rerr = fmt.Errorf("store: write blob %s: %w", c, err)
			break
		}
		if werr := writeErr.Load(); werr != nil {
			break
		}
		bp := next()
		n, err := io.ReadFull(r, *bp)
		if n > 0 {
			total += int64(n)
			if total > maxSize {
				free <- bp
				rerr = fmt.Errorf("%w: blob %s exceeds %d bytes", ErrTooLarge, c, maxSize)
				break
			}
			toHash <- (*bp)[:n]
		} else {
			free <- bp
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			rerr = fmt.Errorf("store: write blob %s: read: %w", c, err)
			break
		}
	}
	stop()
	if rerr != nil {
		return fail(rerr)
	}
	if werr := writeErr.Load(); werr != nil {
		return fail(fmt.Errorf("store: write blob %s: %w", c, *werr))
	}
	if !sum.Equals(c) {
		return fail(fmt.Errorf("store: write blob: %w: want %s, got %s", protocol.ErrCIDMismatch, c, sum))
	}
	if err := fb.commit(ctx, c); err != nil {
		return 0, fmt.Errorf("store: write blob %s: %w", c, err)
	}
	return total, nil
}

func (s *Store) getChunkBuf() *[]byte {
	if b, ok := s.chunkBufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, s.cfg.ChunkSize)
	return &b
}

func (s *Store) putChunkBuf(b *[]byte) { s.chunkBufs.Put(b) }

// deleteFile removes a blob file whose record is gone. The record's
// deletion must be synced first: the file may not disappear while a
// record that names it could come back after a power loss.
func (s *Store) deleteFile(id uploadID) error {
	if err := os.Remove(s.blobPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
