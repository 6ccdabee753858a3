package p2p

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"go.uber.org/goleak"

	"github.com/aspen-market/aspen/protocol"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// mocknet's per-stream pump can outlive a stream opened while its
		// connection was being torn down (mocknet only; real transports
		// are checked without exceptions).
		goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/net/mock.(*stream).transport"),
	)
}

func newKey(t testing.TB) crypto.PrivKey {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testConfig returns a config listening on loopback with fast score
// inspection.
func testConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.Key = newKey(t)
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	cfg.ScoreInspectPeriod = 50 * time.Millisecond
	cfg.ReconnectMin = 50 * time.Millisecond
	cfg.ReconnectMax = 500 * time.Millisecond
	if os.Getenv("P2P_TEST_LOG") != "" {
		cfg.Logger = testLogger(t)
	}
	return cfg
}

// newHost builds and starts a host; mutate may adjust its config.
func newHost(t testing.TB, mutate func(*Config)) *Host {
	t.Helper()
	cfg := testConfig(t)
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return h
}

func connect(t testing.TB, a, b *Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Connect(ctx, b.AddrInfo()); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		<-tick.C
	}
}

// memStore is an in-memory BlobSource and BlobSink that commits a blob
// only when its bytes match the CID, like the real store.
type memStore struct {
	mu    sync.Mutex
	blobs map[cid.Cid][]byte
	// wrong, when set, replaces the bytes served (a lying peer).
	wrong map[cid.Cid][]byte
	// failAt, when > 0, makes reads at or past that offset fail for the
	// next failures opens (a server that breaks mid-way).
	failAt   int64
	failures int
	opens    []int64 // offsets requested, in order (via ReadAt of first byte)
	reads    int
}

func newMemStore() *memStore {
	return &memStore{blobs: map[cid.Cid][]byte{}, wrong: map[cid.Cid][]byte{}}
}

func (s *memStore) put(data []byte) cid.Cid {
	c := protocol.BlobCID(data)
	s.mu.Lock()
	s.blobs[c] = data
	s.mu.Unlock()
	return c
}

func (s *memStore) get(c cid.Cid) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blobs[c]
	return b, ok
}

func (s *memStore) HasBlob(c cid.Cid) (int64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.wrong[c]; ok {
		return int64(len(b)), true, nil
	}
	b, ok := s.blobs[c]
	return int64(len(b)), ok, nil
}

func (s *memStore) ReadBlob(c cid.Cid) (BlobReader, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.wrong[c]
	if !ok {
		b, ok = s.blobs[c]
	}
	if !ok {
		return nil, fmt.Errorf("not found")
	}
	s.reads++
	r := &memReader{Reader: bytes.NewReader(b), s: s}
	if s.failAt > 0 && s.failures > 0 {
		s.failures--
		r.failAt = s.failAt
	}
	return r, nil
}

type memReader struct {
	*bytes.Reader
	s      *memStore
	failAt int64
	first  bool
}

func (r *memReader) ReadAt(p []byte, off int64) (int, error) {
	if !r.first {
		r.first = true
		r.s.mu.Lock()
		r.s.opens = append(r.s.opens, off)
		r.s.mu.Unlock()
	}
	if r.failAt > 0 && off+int64(len(p)) > r.failAt {
		n := max(0, r.failAt-off)
		m, _ := r.Reader.ReadAt(p[:n], off)
		return m, fmt.Errorf("disk on fire")
	}
	return r.Reader.ReadAt(p, off)
}

func (r *memReader) Size() int64  { return r.Reader.Size() }
func (r *memReader) Close() error { return nil }

func (s *memStore) WriteBlob(ctx context.Context, c cid.Cid, r io.Reader, maxSize int64) (int64, error) {
	h := protocol.NewBlobHasher()
	var buf bytes.Buffer
	n, err := io.Copy(io.MultiWriter(&buf, h), io.LimitReader(r, maxSize+1))
	if err != nil {
		return 0, err
	}
	if n > maxSize {
		return 0, fmt.Errorf("%w: blob over %d bytes", protocol.ErrTooLarge, maxSize)
	}
	if got := h.Sum(); !got.Equals(c) {
		return 0, fmt.Errorf("%w: got %s want %s", protocol.ErrCIDMismatch, got, c)
	}
	s.mu.Lock()
	s.blobs[c] = buf.Bytes()
	s.mu.Unlock()
	return n, nil
}

// discardSink hashes and discards (for benchmarks).
type discardSink struct{}

func (discardSink) WriteBlob(ctx context.Context, c cid.Cid, r io.Reader, maxSize int64) (int64, error) {
	h := protocol.NewBlobHasher()
	bp := make([]byte, 1<<20)
	n, err := io.CopyBuffer(h, io.LimitReader(r, maxSize+1), bp)
	if err != nil {
		return 0, err
	}
	if got := h.Sum(); !got.Equals(c) {
		return 0, fmt.Errorf("%w: got %s want %s", protocol.ErrCIDMismatch, got, c)
	}
	return n, nil
}

func randBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// lie makes s serve other bytes under c.
func (s *memStore) lie(t testing.TB, c cid.Cid, n int) {
	b := randBytes(t, n)
	s.mu.Lock()
	s.wrong[c] = b
	s.mu.Unlock()
}

func (s *memStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.blobs)
}
