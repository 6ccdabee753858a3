package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"testing/iotest"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/aspen-market/aspen/protocol"
)

// smallChunks makes chunking visible with small test blobs.
func smallChunks(c *Config) {
	c.ChunkSize = 16 << 10
	c.InlineMax = 1 << 10
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// countKeys counts raw badger keys starting with kind.
func countKeys(t *testing.T, s *Store, kind byte) int {
	t.Helper()
	n := 0
	err := s.View(func(tx *Tx) error {
		it := tx.txn.NewIterator(badgerKeyOnly([]byte{kind}))
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// countFiles counts the files in the blob directory.
func countFiles(t *testing.T, s *Store) int {
	t.Helper()
	ents, err := os.ReadDir(s.blobDir)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestSmallBlobRoundTrip(t *testing.T) {
	s := openTest(t, "", nil)
	for _, size := range []int{0, 1, 100, 4096, DefaultConfig().InlineMax} {
		data := randBytes(uint64(size), size)
		c, err := s.PutBlob(data)
		if err != nil {
			t.Fatal(err)
		}
		if !c.Equals(protocol.BlobCID(data)) {
			t.Fatalf("PutBlob returned %s, want %s", c, protocol.BlobCID(data))
		}
		got, err := s.GetBlob(c)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("size %d: GetBlob = %d bytes, %v", size, len(got), err)
		}
		n, ok, err := s.HasBlob(c)
		if err != nil || !ok || n != int64(size) {
			t.Fatalf("HasBlob = %d %v %v", n, ok, err)
		}
		// Putting it again is a no-op success.
		if _, err := s.PutBlob(data); err != nil {
			t.Fatal(err)
		}
	}
	if n := countKeys(t, s, kindChunk) + countFiles(t, s); n != 0 {
		t.Fatalf("small blobs used %d chunk keys or files, want 0 (one key per blob)", n)
	}
	missing := protocol.BlobCID([]byte("never stored"))
	if _, ok, err := s.HasBlob(missing); ok || err != nil {
		t.Fatalf("HasBlob(missing) = %v %v", ok, err)
	}
	if _, err := s.GetBlob(missing); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetBlob(missing) = %v", err)
	}
	if _, err := s.OpenBlob(missing); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OpenBlob(missing) = %v", err)
	}
	if _, err := s.GetBlob(cid.Undef); !errors.Is(err, protocol.ErrBadCID) {
		t.Fatalf("GetBlob(undef) = %v", err)
	}
}

func TestPutBlobVerifiedRefusesMismatch(t *testing.T) {
	s := openTest(t, "", smallChunks)
	for _, size := range []int{10, 100 << 10} {
		data := randBytes(1, size)
		c := protocol.BlobCID(data)
		bad := bytes.Clone(data)
		bad[size/2] ^= 1
		err := s.PutBlobVerified(c, bad)
		mustErrIs(t, err, protocol.ErrCIDMismatch)
		if _, ok, _ := s.HasBlob(c); ok {
			t.Fatal("mismatching blob stored")
		}
		if err := s.PutBlobVerified(c, data); err != nil {
			t.Fatal(err)
		}
		if got, err := s.GetBlob(c); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("GetBlob: %v", err)
		}
	}
}

func TestLargeBlobRoundTrip(t *testing.T) {
	s := openTest(t, "", smallChunks)
	data := randBytes(7, 5*(16<<10)+123) // 6 chunks, the last one short
	c := protocol.BlobCID(data)
	n, err := s.WriteBlob(context.Background(), c, bytes.NewReader(data), 0)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("WriteBlob = %d, %v", n, err)
	}
	m, err := s.readMeta(c)
	if err != nil || !m.file || len(m.crcs) != 6 {
		t.Fatalf("metadata %+v, %v: want a file of 6 chunks", m, err)
	}
	if k := countKeys(t, s, kindChunk) + countKeys(t, s, kindPending); k != 0 {
		t.Fatalf("%d chunk keys or pending markers, want none", k)
	}
	if f, k := countFiles(t, s), countKeys(t, s, kindFile); f != 1 || k != 1 {
		t.Fatalf("%d files and %d file keys, want 1 each", f, k)
	}
	testLargeBlob(t, s, c, data, func() int { return countFiles(t, s) })
}

// TestLegacyChunkedBlob: blobs that an older store wrote as chunks in
// badger are still read, verified and deleted.
func TestLegacyChunkedBlob(t *testing.T) {
	s := openTest(t, "", smallChunks)
	data := randBytes(7, 5*(16<<10)+123)
	c := protocol.BlobCID(data)
	n, err := s.writeChunked(context.Background(), c, bytes.NewReader(data), 1<<30, true)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("writeChunked = %d, %v", n, err)
	}
	if k := countKeys(t, s, kindChunk); k != 6 {
		t.Fatalf("%d chunk keys, want 6", k)
	}
	testLargeBlob(t, s, c, data, func() int { return countKeys(t, s, kindChunk) })
}

// testLargeBlob reads, lists and deletes a stored multi-chunk blob; left
// counts what its storage leaves behind (files or chunk keys).
func testLargeBlob(t *testing.T, s *Store, c cid.Cid, data []byte, left func() int) {
	t.Helper()
	got, err := s.GetBlob(c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("GetBlob: %v", err)
	}
	r, err := s.OpenBlob(c)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Size() != int64(len(data)) || !r.CID().Equals(c) {
		t.Fatalf("Size %d CID %s", r.Size(), r.CID())
	}
	// Read, ReadAt and Seek behave like any conforming reader.
	if err := iotest.TestReader(r, data); err != nil {
		t.Fatal(err)
	}
	// Ranges across chunk boundaries (some covering whole chunks), read
	// concurrently.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for range 50 {
				off := rng.IntN(len(data))
				if rng.IntN(2) == 0 {
					off -= off % (16 << 10)
				}
				buf := make([]byte, rng.IntN(40<<10))
				n, err := r.ReadAt(buf, int64(off))
				want := data[off:min(len(data), off+len(buf))]
				if n != len(want) || !bytes.Equal(buf[:n], want) {
					t.Errorf("ReadAt(%d, %d) = %d bytes, want %d", off, len(buf), n, len(want))
					return
				}
				if n < len(buf) && err != io.EOF {
					t.Errorf("short ReadAt without io.EOF: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// The same CID again is not re-read.
	n, err := s.WriteBlob(context.Background(), c, iotest.ErrReader(errors.New("must not be read")), 0)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("WriteBlob(existing) = %d, %v", n, err)
	}
	var listed []string
	if err := s.ListBlobs(func(lc cid.Cid, size int64) error {
		listed = append(listed, fmt.Sprintf("%s:%d", lc, size))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%s:%d", c, len(data)); len(listed) != 1 || listed[0] != want {
		t.Fatalf("ListBlobs = %v, want [%s]", listed, want)
	}
	opened, err := s.OpenBlob(c) // opened before the delete, nothing read yet
	if err != nil {
		t.Fatal(err)
	}
	defer opened.Close()
	if err := s.DeleteBlob(c); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.HasBlob(c); ok {
		t.Fatal("deleted blob still there")
	}
	if k := left() + countKeys(t, s, kindPending) + countKeys(t, s, kindFile); k != 0 {
		t.Fatalf("%d chunks, files or keys left after delete", k)
	}
	// Reading through a reader opened before the delete fails cleanly.
	_, err = opened.ReadAt(make([]byte, 10), 40<<10)
	mustErrIs(t, err, ErrNotFound)
	if err := s.DeleteBlob(c); err != nil {
		t.Fatalf("deleting a missing blob: %v", err)
	}
}

// failingReader returns data then err.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

func TestWriteBlobFailuresLeaveNothing(t *testing.T) {
	s := openTest(t, "", smallChunks)
	data := randBytes(3, 100<<10)
	c := protocol.BlobCID(data)
	wrong := bytes.Clone(data)
	wrong[len(wrong)-1] ^= 0xff
	readErr := errors.New("peer hung up")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name string
		ctx  context.Context
		r    io.Reader
		max  int64
		want error
	}{
		{"hash mismatch", context.Background(), bytes.NewReader(wrong), 0, protocol.ErrCIDMismatch},
		{"short stream", context.Background(), bytes.NewReader(data[:60<<10]), 0, protocol.ErrCIDMismatch},
		{"too large", context.Background(), bytes.NewReader(data), 50 << 10, ErrTooLarge},
		{"read error", context.Background(), &failingReader{bytes.NewReader(data[:70<<10]), readErr}, 0, readErr},
		{"cancelled", ctx, bytes.NewReader(data), 0, context.Canceled},
		{"small mismatch", context.Background(), bytes.NewReader(data[:10]), 0, protocol.ErrCIDMismatch},
		{"small too large", context.Background(), bytes.NewReader(data[:500]), 100, ErrTooLarge},
	}
	for _, tc := range cases {
		_, err := s.WriteBlob(tc.ctx, c, tc.r, tc.max)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
		if _, ok, _ := s.HasBlob(c); ok {
			t.Fatalf("%s: blob visible", tc.name)
		}
		if k := countKeys(t, s, kindChunk) + countKeys(t, s, kindPending) + countKeys(t, s, kindFile) + countFiles(t, s); k != 0 {
			t.Fatalf("%s: %d chunk/pending/file keys or files left", tc.name, k)
		}
	}
	if _, err := s.WriteBlob(context.Background(), cid.Undef, bytes.NewReader(data), 0); !errors.Is(err, protocol.ErrBadCID) {
		t.Errorf("undefined CID: %v", err)
	}
}

func TestConcurrentWritesOfSameBlob(t *testing.T) {
	s := openTest(t, "", smallChunks)
	data := randBytes(5, 200<<10)
	c := protocol.BlobCID(data)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if n, err := s.WriteBlob(context.Background(), c, bytes.NewReader(data), 0); err != nil || n != int64(len(data)) {
				t.Errorf("WriteBlob = %d %v", n, err)
			}
		}()
	}
	wg.Wait()
	if got, err := s.GetBlob(c); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("GetBlob: %v", err)
	}
	if f, k := countFiles(t, s), countKeys(t, s, kindFile); f != 1 || k != 1 {
		t.Fatalf("%d files, %d file keys, want 1 each (losers' files removed)", f, k)
	}
}

func TestCorruptionIsDetected(t *testing.T) {
	s := openTest(t, "", smallChunks)
	small := []byte("a small blob")
	sc, _ := s.PutBlob(small)
	big := randBytes(9, 50<<10) // 4 chunks of 16 KiB, the last one short
	bc, err := s.PutBlob(big)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := s.readMeta(bc)
	if err != nil || !meta.file {
		t.Fatalf("meta %+v %v", meta, err)
	}
	path := s.blobPath(meta.upload)
	raw := func(k, v []byte) {
		t.Helper()
		if err := s.directUpdate(func(tx *Tx) error { return tx.setRaw(k, v) }); err != nil {
			t.Fatal(err)
		}
	}
	writeFile := func(b []byte) {
		t.Helper()
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// 1. A flipped byte in an inline blob.
	raw(blobKey(sc), encodeInlineMeta([]byte("a smalL blob")))
	_, err = s.GetBlob(sc)
	mustErrIs(t, err, ErrCorrupt)
	r, _ := s.OpenBlob(sc)
	_, err = io.ReadAll(r)
	mustErrIs(t, err, ErrCorrupt)
	// Re-putting the right bytes repairs it.
	if _, err := s.PutBlob(small); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetBlob(sc); err != nil || !bytes.Equal(got, small) {
		t.Fatalf("repair: %q %v", got, err)
	}

	// 2. A flipped byte in chunk 1 of the file: ranged reads of that chunk
	// fail (partial or whole), other chunks still read.
	bad := bytes.Clone(big)
	bad[16<<10+5] ^= 1
	writeFile(bad)
	r, _ = s.OpenBlob(bc)
	defer r.Close()
	if _, err := r.ReadAt(make([]byte, 100), 0); err != nil {
		t.Fatalf("intact chunk 0: %v", err)
	}
	_, err = r.ReadAt(make([]byte, 100), 16<<10+10)
	mustErrIs(t, err, ErrCorrupt)
	n, err := r.ReadAt(make([]byte, 32<<10), 0)
	mustErrIs(t, err, ErrCorrupt)
	if n != 16<<10 {
		t.Fatalf("ReadAt returned %d bytes before the bad chunk, want %d", n, 16<<10)
	}
	if _, err := r.ReadAt(make([]byte, 16<<10), 32<<10); err != nil {
		t.Fatalf("intact chunk 2 read whole: %v", err)
	}
	_, err = s.GetBlob(bc)
	mustErrIs(t, err, ErrCorrupt)

	// 3. Checksums rewritten to match the corrupt chunk: every chunk
	// verifies, but the whole stream does not hash to the CID.
	crcs := slices.Clone(meta.crcs)
	crcs[1] = chunkCRC(bad[16<<10 : 32<<10])
	raw(blobKey(bc), encodeFileMeta(meta.size, meta.upload, meta.chunkSize, crcs))
	r2, _ := s.OpenBlob(bc)
	defer r2.Close()
	_, err = io.ReadAll(r2)
	mustErrIs(t, err, ErrCorrupt)
	mustErrIs(t, err, protocol.ErrCIDMismatch)
	_, err = s.GetBlob(bc)
	mustErrIs(t, err, ErrCorrupt)

	// 4. A truncated file, a missing file and an undecodable record.
	writeFile(big[:40<<10])
	r3, _ := s.OpenBlob(bc)
	defer r3.Close()
	_, err = r3.ReadAt(make([]byte, 10), 40<<10)
	mustErrIs(t, err, ErrCorrupt)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetBlob(bc)
	mustErrIs(t, err, ErrNotFound)
	raw(blobKey(bc), []byte{metaVersion, 7})
	_, err = s.GetBlob(bc)
	mustErrIs(t, err, ErrCorrupt)
	_, _, err = s.HasBlob(bc)
	mustErrIs(t, err, ErrCorrupt)
	listed := 0
	if err := s.ListBlobs(func(cid.Cid, int64) error { listed++; return nil }); err != nil || listed != 1 {
		t.Fatalf("ListBlobs skips the bad record: %d %v", listed, err)
	}
	// Writing the blob again replaces the undecodable record.
	if n, err := s.WriteBlob(context.Background(), bc, bytes.NewReader(big), 0); err != nil || n != int64(len(big)) {
		t.Fatalf("rewrite over a corrupt record: %d %v", n, err)
	}
	if got, err := s.GetBlob(bc); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("after rewrite: %v", err)
	}
}

// TestLegacyCorruptionIsDetected: the same for chunked blobs of older stores.
func TestLegacyCorruptionIsDetected(t *testing.T) {
	s := openTest(t, "", smallChunks)
	small := []byte("a small blob")
	sc, _ := s.PutBlob(small)
	big := randBytes(9, 50<<10)
	bc := protocol.BlobCID(big)
	if _, err := s.writeChunked(context.Background(), bc, bytes.NewReader(big), 1<<30, true); err != nil {
		t.Fatal(err)
	}
	meta, err := s.readMeta(bc)
	if err != nil {
		t.Fatal(err)
	}
	raw := func(k, v []byte) {
		t.Helper()
		if err := s.directUpdate(func(tx *Tx) error { return tx.setRaw(k, v) }); err != nil {
			t.Fatal(err)
		}
	}

	// 1. A flipped byte in an inline blob.
	raw(blobKey(sc), encodeInlineMeta([]byte("a smalL blob")))
	_, err = s.GetBlob(sc)
	mustErrIs(t, err, ErrCorrupt)
	r, _ := s.OpenBlob(sc)
	_, err = io.ReadAll(r)
	mustErrIs(t, err, ErrCorrupt)
	// Re-putting the right bytes repairs it.
	if _, err := s.PutBlob(small); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetBlob(sc); err != nil || !bytes.Equal(got, small) {
		t.Fatalf("repair: %q %v", got, err)
	}

	// 2. A flipped byte in chunk 1: ranged reads of that chunk fail, other
	// chunks still read.
	bad := bytes.Clone(big[16<<10 : 32<<10])
	bad[5] ^= 1
	raw(chunkKey(meta.upload, 1), bad)
	r, _ = s.OpenBlob(bc)
	if _, err := r.ReadAt(make([]byte, 100), 0); err != nil {
		t.Fatalf("intact chunk 0: %v", err)
	}
	_, err = r.ReadAt(make([]byte, 100), 16<<10+10)
	mustErrIs(t, err, ErrCorrupt)
	_, err = s.GetBlob(bc)
	mustErrIs(t, err, ErrCorrupt)

	// 3. Chunk hashes rewritten to match the corrupt chunk: every chunk
	// verifies, but the whole stream does not hash to the CID.
	hashes := append([][chunkHashBytes]byte(nil), meta.hashes...)
	hashes[1] = sha256Sum(bad)
	raw(blobKey(bc), encodeChunkedMeta(meta.size, meta.upload, meta.chunkSize, hashes))
	r, _ = s.OpenBlob(bc)
	_, err = io.ReadAll(r)
	mustErrIs(t, err, ErrCorrupt)
	mustErrIs(t, err, protocol.ErrCIDMismatch)
	_, err = s.GetBlob(bc)
	mustErrIs(t, err, ErrCorrupt)

	// 4. A missing chunk, a truncated chunk and an undecodable record.
	raw(chunkKey(meta.upload, 2), []byte("short"))
	_, err = r.ReadAt(make([]byte, 10), 32<<10)
	mustErrIs(t, err, ErrCorrupt)
	raw(blobKey(bc), []byte{metaVersion, 7})
	_, err = s.GetBlob(bc)
	mustErrIs(t, err, ErrCorrupt)
	_, _, err = s.HasBlob(bc)
	mustErrIs(t, err, ErrCorrupt)
	listed := 0
	if err := s.ListBlobs(func(cid.Cid, int64) error { listed++; return nil }); err != nil || listed != 1 {
		t.Fatalf("ListBlobs skips the bad record: %d %v", listed, err)
	}
	// Writing the blob again replaces the undecodable record (as a file).
	if n, err := s.WriteBlob(context.Background(), bc, bytes.NewReader(big), 0); err != nil || n != int64(len(big)) {
		t.Fatalf("rewrite over a corrupt record: %d %v", n, err)
	}
	if got, err := s.GetBlob(bc); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("after rewrite: %v", err)
	}
}

func TestInterruptedUploadRemovedAtOpen(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Dir = dir
	smallChunks(&cfg)
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// What a crash in the middle of writeChunked leaves behind.
	up := uploadID{1, 2, 3, 4, 5, 6, 7, 8}
	if err := s.directUpdate(func(tx *Tx) error {
		if err := tx.setRaw(pendingKey(up), []byte("cid")); err != nil {
			return err
		}
		for i := range uint32(3) {
			if err := tx.setRaw(chunkKey(up, i), make([]byte, 100)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// What a crash in the middle of writeFile, or of DeleteBlob after its
	// record went, leaves behind: a blob file without its 'f' key. And a
	// live blob file next to it.
	orphan := filepath.Join(s.blobDir, "0102030405060708")
	if err := os.WriteFile(orphan, make([]byte, 5000), 0o600); err != nil {
		t.Fatal(err)
	}
	live := randBytes(4, 40<<10)
	lc, err := s.PutBlob(live)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openTest(t, dir, smallChunks)
	if k := countKeys(t, s2, kindChunk) + countKeys(t, s2, kindPending); k != 0 {
		t.Fatalf("%d keys of the interrupted upload survive Open", k)
	}
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("orphan blob file survives Open: %v", err)
	}
	if n := countFiles(t, s2); n != 1 {
		t.Fatalf("%d blob files after Open, want the live one", n)
	}
	if got, err := s2.GetBlob(lc); err != nil || !bytes.Equal(got, live) {
		t.Fatalf("live blob after Open: %v", err)
	}
}

func TestGetBlobLimit(t *testing.T) {
	s := openTest(t, "", func(c *Config) { smallChunks(c); c.MaxGetBlobSize = 20 << 10 })
	c, err := s.PutBlob(randBytes(2, 30<<10))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.GetBlob(c)
	mustErrIs(t, err, ErrTooLarge)
	r, err := s.OpenBlob(c)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(io.Discard, r); err != nil || n != 30<<10 {
		t.Fatalf("streamed read: %d %v", n, err)
	}
}

func TestValueLogGCAfterDeletes(t *testing.T) {
	s := openTest(t, "", func(c *Config) {
		c.ChunkSize = 256 << 10
		c.ValueLogFileSize = 1 << 20
		c.ValueLogGCInterval = 0
	})
	var keep cid.Cid
	for i := range 12 {
		// Only chunks of older stores' blobs live in the value log.
		data := randBytes(uint64(100+i), 300<<10)
		c := protocol.BlobCID(data)
		if _, err := s.writeChunked(context.Background(), c, bytes.NewReader(data), 1<<30, true); err != nil {
			t.Fatal(err)
		}
		if i == 5 {
			keep = c
			continue
		}
		if err := s.DeleteBlob(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.runValueLogGC(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetBlob(keep); err != nil {
		t.Fatalf("kept blob after GC: %v", err)
	}
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

func badgerKeyOnly(prefix []byte) badger.IteratorOptions {
	o := badger.DefaultIteratorOptions
	o.PrefetchValues = false
	o.Prefix = prefix
	return o
}

func TestTrimReleasesValueLogPagesKeepingData(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("trimming is Linux-only")
	}
	s := openTest(t, "", func(c *Config) { c.TrimInterval = 0 })
	data := randBytes(11, 3<<20)
	c := protocol.BlobCID(data)
	if _, err := s.writeChunked(context.Background(), c, bytes.NewReader(data), 1<<30, true); err != nil {
		t.Fatal(err)
	}
	n, err := trimMappings(s.absDir)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("no value-log mappings found under %s", s.absDir)
	}
	if got, err := s.GetBlob(c); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blob after trim: %v", err)
	}
}

// TestFormatVersionUpgrade: a version-1 store (inline and chunked blobs
// only) opens, is marked version 2 and keeps its blobs; an unknown version
// is refused.
func TestFormatVersionUpgrade(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Dir = dir
	smallChunks(&cfg)
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	old := randBytes(12, 40<<10)
	oc := protocol.BlobCID(old)
	if _, err := s.writeChunked(context.Background(), oc, bytes.NewReader(old), 1<<30, true); err != nil {
		t.Fatal(err)
	}
	setVersion := func(s *Store, v byte) {
		t.Helper()
		if err := s.directUpdate(func(tx *Tx) error { return tx.setRaw(versionKey, []byte{v}) }); err != nil {
			t.Fatal(err)
		}
	}
	setVersion(s, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(cfg)
	if err != nil {
		t.Fatalf("opening a version-1 store: %v", err)
	}
	var v []byte
	if err := s.View(func(tx *Tx) error { v, err = tx.getRaw(versionKey); return err }); err != nil || !bytes.Equal(v, []byte{formatVersion}) {
		t.Fatalf("version after upgrade %x, %v", v, err)
	}
	if got, err := s.GetBlob(oc); err != nil || !bytes.Equal(got, old) {
		t.Fatalf("old blob after upgrade: %v", err)
	}
	setVersion(s, formatVersion+1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(cfg); err == nil {
		s.Close()
		t.Fatal("opened a store of an unknown format version")
	} else {
		mustErrIs(t, err, ErrCorrupt)
	}
}

// TestWriteBlobOddReaders: the write pipeline copes with readers that
// return a few bytes at a time or data together with io.EOF, and a blob of
// exactly a whole number of chunks.
func TestWriteBlobOddReaders(t *testing.T) {
	s := openTest(t, "", smallChunks)
	for i, tc := range []struct {
		size int
		wrap func(io.Reader) io.Reader
	}{
		{100<<10 + 7, iotest.HalfReader},
		{100<<10 + 7, iotest.DataErrReader},
		{64 << 10, iotest.OneByteReader},
		{3<<10 + 1, iotest.DataErrReader},
	} {
		data := randBytes(uint64(200+i), tc.size)
		c := protocol.BlobCID(data)
		if n, err := s.WriteBlob(context.Background(), c, tc.wrap(bytes.NewReader(data)), 0); err != nil || n != int64(len(data)) {
			t.Fatalf("case %d: WriteBlob = %d, %v", i, n, err)
		}
		if got, err := s.GetBlob(c); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("case %d: GetBlob: %v", i, err)
		}
	}
}
