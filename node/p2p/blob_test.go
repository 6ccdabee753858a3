package p2p

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/store"
)

// blobHosts returns a server serving st and a client with its own store.
func blobHosts(t *testing.T, st *memStore, mutate func(*Config)) (srv, cl *Host) {
	srv = newHost(t, func(c *Config) {
		c.Blobs = st
		if mutate != nil {
			mutate(c)
		}
	})
	cl = newHost(t, mutate)
	connect(t, cl, srv)
	return srv, cl
}

func TestBlob64MiB(t *testing.T) {
	st := newMemStore()
	data := randBytes(t, 64<<20)
	c := st.put(data)
	srv, cl := blobHosts(t, st, nil)
	sink := newMemStore()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := cl.FetchBlob(ctx, c, []peer.ID{srv.ID()}, sink, protocol.MaxBlobSize)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := sink.get(c)
	if n != int64(len(data)) || !ok || !bytes.Equal(got, data) {
		t.Fatalf("fetched %d bytes, stored %v", n, ok)
	}
}

func TestBlobWrongBytesRejected(t *testing.T) {
	st := newMemStore()
	data := randBytes(t, 3<<20)
	c := protocol.BlobCID(data)
	st.lie(t, c, len(data)) // serves other bytes under c
	srv, cl := blobHosts(t, st, nil)
	sink := newMemStore()
	_, err := cl.FetchBlob(context.Background(), c, []peer.ID{srv.ID()}, sink, protocol.MaxBlobSize)
	if !errors.Is(err, protocol.ErrCIDMismatch) {
		t.Fatalf("want CID mismatch, got %v", err)
	}
	if _, ok := sink.get(c); ok || sink.count() != 0 {
		t.Fatal("wrong bytes were stored")
	}
}

func TestBlobNotFoundAndTooLarge(t *testing.T) {
	st := newMemStore()
	c := st.put(randBytes(t, 1<<20))
	srv, cl := blobHosts(t, st, nil)
	sink := newMemStore()
	missing := protocol.BlobCID([]byte("nobody has this"))
	_, err := cl.FetchBlob(context.Background(), missing, []peer.ID{srv.ID()}, sink, protocol.MaxBlobSize)
	if !errors.Is(err, ErrBlobNotFound) {
		t.Fatalf("want not found, got %v", err)
	}
	_, err = cl.FetchBlob(context.Background(), c, []peer.ID{srv.ID()}, sink, 1000)
	if !errors.Is(err, protocol.ErrTooLarge) {
		t.Fatalf("want too large, got %v", err)
	}
	_, err = cl.FetchBlob(context.Background(), c, nil, sink, protocol.MaxBlobSize)
	if !errors.Is(err, ErrNoPeers) {
		t.Fatalf("want no peers, got %v", err)
	}
	if sink.count() != 0 {
		t.Fatal("something was stored")
	}
	// Empty blob.
	e := st.put(nil)
	if n, err := cl.FetchBlob(context.Background(), e, []peer.ID{srv.ID()}, sink, protocol.MaxBlobSize); err != nil || n != 0 {
		t.Fatalf("empty blob: %d, %v", n, err)
	}
}

func TestBlobResumesAfterBrokenStream(t *testing.T) {
	st := newMemStore()
	data := randBytes(t, 8<<20)
	c := st.put(data)
	st.failAt = 5 << 20 // the first two streams break 5 MiB in
	st.failures = 2
	srv, cl := blobHosts(t, st, nil)
	sink := newMemStore()
	n, err := cl.FetchBlob(context.Background(), c, []peer.ID{srv.ID()}, sink, protocol.MaxBlobSize)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := sink.get(c)
	if n != int64(len(data)) || !bytes.Equal(got, data) {
		t.Fatal("blob not intact")
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.reads != 3 || len(st.opens) != 3 || st.opens[0] != 0 || st.opens[1] == 0 || st.opens[2] < st.opens[1] {
		t.Fatalf("want 3 reads resuming past 0, got %d reads at %v", st.reads, st.opens)
	}
}

func TestBlobGivesUpAfterRetries(t *testing.T) {
	st := newMemStore()
	c := st.put(randBytes(t, 2<<20))
	st.failAt = 1 << 20
	st.failures = 100
	srv, cl := blobHosts(t, st, func(c *Config) { c.BlobRetries = 2 })
	sink := newMemStore()
	_, err := cl.FetchBlob(context.Background(), c, []peer.ID{srv.ID()}, sink, protocol.MaxBlobSize)
	if !errors.Is(err, ErrBlobFetch) {
		t.Fatalf("want fetch failure, got %v", err)
	}
	if sink.count() != 0 {
		t.Fatal("partial blob stored")
	}
}

func TestBlobMultiPeer(t *testing.T) {
	data := randBytes(t, 10<<20+12345)
	small := func(c *Config) { c.BlobChunkSize = 1 << 20 }
	var servers []*Host
	var stores []*memStore
	for range 3 {
		st := newMemStore()
		st.put(data)
		stores = append(stores, st)
		servers = append(servers, newHost(t, func(c *Config) { c.Blobs = st; small(c) }))
	}
	cl := newHost(t, small)
	var ids []peer.ID
	for _, s := range servers {
		connect(t, cl, s)
		ids = append(ids, s.ID())
	}
	c := protocol.BlobCID(data)
	sink := newMemStore()
	n, err := cl.FetchBlob(context.Background(), c, ids, sink, protocol.MaxBlobSize)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := sink.get(c); n != int64(len(data)) || !bytes.Equal(got, data) {
		t.Fatal("blob not intact")
	}
	used := 0
	for _, st := range stores {
		st.mu.Lock()
		if st.reads > 0 {
			used++
		}
		st.mu.Unlock()
	}
	if used < 2 {
		t.Fatalf("ranges came from %d peers, want several", used)
	}

	// One peer lies: the fetch still succeeds from the honest ones.
	stores[1].lie(t, c, len(data))
	sink = newMemStore()
	n, err = cl.FetchBlob(context.Background(), c, ids, sink, protocol.MaxBlobSize)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := sink.get(c); n != int64(len(data)) || !bytes.Equal(got, data) {
		t.Fatal("blob not intact")
	}
	// All lie: mismatch, nothing stored.
	stores[0].lie(t, c, len(data))
	stores[2].lie(t, c, len(data))
	sink = newMemStore()
	_, err = cl.FetchBlob(context.Background(), c, ids, sink, protocol.MaxBlobSize)
	if !errors.Is(err, protocol.ErrCIDMismatch) || sink.count() != 0 {
		t.Fatalf("want mismatch and nothing stored, got %v", err)
	}
}

func TestBlobBusy(t *testing.T) {
	st := newMemStore()
	c := st.put(randBytes(t, 1<<20))
	srv, cl := blobHosts(t, st, func(c *Config) { c.MaxBlobStreams = 1 })
	// Hold the only slot with a stream that never reads its answer.
	srv.blobs.sem <- struct{}{}
	sink := newMemStore()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := cl.FetchBlob(ctx, c, []peer.ID{srv.ID()}, sink, protocol.MaxBlobSize)
	if err == nil {
		t.Fatal("fetch from a busy server succeeded")
	}
	<-srv.blobs.sem
	if _, err := cl.FetchBlob(context.Background(), c, []peer.ID{srv.ID()}, sink, protocol.MaxBlobSize); err != nil {
		t.Fatal(err)
	}
}

// openStore opens a real store in a temporary directory.
func openStore(t *testing.T) (*store.Store, string) {
	t.Helper()
	cfg := store.DefaultConfig()
	cfg.Dir = t.TempDir()
	s, err := store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, cfg.Dir
}

// TestBlobMultiPeerRealStores: ranges of a blob come from two real stores
// (chunk-aligned reads on the server, unaligned resumption on the client)
// into a third; when one source's file has a flipped byte its store refuses
// to serve that chunk (the stream is reset) and the range is fetched from
// the other peer: the receiver ends up with the right bytes.
func TestBlobMultiPeerRealStores(t *testing.T) {
	data := randBytes(t, 6<<20+54321)
	small := func(c *Config) { c.BlobChunkSize = 1<<20 + 4096 } // ranges not aligned to store chunks
	var ids []peer.ID
	var dirs []string
	cl := newHost(t, small)
	for range 2 {
		src, dir := openStore(t)
		if _, err := src.PutBlob(data); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, dir)
		srv := newHost(t, func(c *Config) { c.Blobs = StoreBlobs(src); small(c) })
		connect(t, cl, srv)
		ids = append(ids, srv.ID())
	}
	c := protocol.BlobCID(data)
	fetch := func() {
		t.Helper()
		dst, _ := openStore(t)
		n, err := cl.FetchBlob(context.Background(), c, ids, dst, protocol.MaxBlobSize)
		if err != nil || n != int64(len(data)) {
			t.Fatalf("FetchBlob = %d, %v", n, err)
		}
		got, err := dst.GetBlob(c)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("stored blob differs: %v", err)
		}
	}
	fetch()

	// Flip one byte in every 1 MiB chunk of the second source's file.
	files, err := filepath.Glob(filepath.Join(dirs[1], "blobs", "*"))
	if err != nil || len(files) != 1 {
		t.Fatalf("blob files of the second source: %v %v", files, err)
	}
	bad := bytes.Clone(data)
	for off := 1000; off < len(bad); off += 1 << 20 {
		bad[off] ^= 0x40
	}
	if err := os.WriteFile(files[0], bad, 0o600); err != nil {
		t.Fatal(err)
	}
	fetch()
	// The corrupt source alone serves nothing wrong: every range fails.
	dst, _ := openStore(t)
	if _, err := cl.FetchBlob(context.Background(), c, ids[1:], dst, protocol.MaxBlobSize); err == nil {
		t.Fatal("fetch from a source with a corrupt file succeeded")
	}
	if _, ok, _ := dst.HasBlob(c); ok {
		t.Fatal("blob stored from a corrupt source")
	}
}

// rawBlobAnswer sends one blob request frame from cl to srv and returns
// every byte the server answers with.
func rawBlobAnswer(t *testing.T, cl, srv *Host, q *protocol.BlobRequest) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := cl.h.NewStream(ctx, srv.ID(), ProtoBlobID)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(10 * time.Second))
	if err := writeFrame(s, protocol.EncodeBlobRequest(q)); err != nil {
		t.Fatal(err)
	}
	_ = s.CloseWrite()
	b, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBlobAccess: a server with a BlobAuth serves a blob to a peer it
// allows (here: one peer by identity, any peer showing the right ticket),
// refuses a stranger, and answers a forbidden blob byte for byte like an
// absent one, for a whole-blob request and for a range past its end alike.
func TestBlobAccess(t *testing.T) {
	st := newMemStore()
	data := randBytes(t, 300<<10)
	c := st.put(data)
	absent := protocol.BlobCID([]byte("nobody has this"))
	owner := newHost(t, nil)
	type call struct {
		from peer.ID
		c    string
		why  BlobReason
	}
	var mu sync.Mutex
	var calls []call
	srv := newHost(t, func(cfg *Config) {
		cfg.Blobs = st
		cfg.BlobAuth = func(from peer.ID, bc cid.Cid, why BlobReason) bool {
			mu.Lock()
			calls = append(calls, call{from, bc.String(), BlobReason{Group: why.Group, Task: why.Task, Ticket: bytes.Clone(why.Ticket)}})
			mu.Unlock()
			return from == owner.ID() || string(why.Ticket) == "ticket for "+bc.String()
		}
	})
	stranger := newHost(t, nil)
	connect(t, owner, srv)
	connect(t, stranger, srv)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The owner is served.
	sink := newMemStore()
	if n, err := owner.FetchBlob(ctx, c, []peer.ID{srv.ID()}, sink, protocol.MaxBlobSize); err != nil || n != int64(len(data)) {
		t.Fatalf("owner: %d bytes, %v", n, err)
	}
	// A stranger is refused as if the blob were absent, whatever it asks.
	_, err := stranger.FetchBlob(ctx, c, []peer.ID{srv.ID()}, newMemStore(), protocol.MaxBlobSize)
	if !errors.Is(err, ErrBlobNotFound) {
		t.Fatalf("stranger: want not found, got %v", err)
	}
	_, errAbsent := stranger.FetchBlob(ctx, absent, []peer.ID{srv.ID()}, newMemStore(), protocol.MaxBlobSize)
	if !errors.Is(errAbsent, ErrBlobNotFound) {
		t.Fatalf("absent: want not found, got %v", errAbsent)
	}
	// With a ticket the callback accepts, the stranger is served; the
	// reason reaches the callback as sent.
	why := BlobReason{Group: protocol.ID{7}, Task: 3, Ticket: []byte("ticket for " + c.String())}
	sink = newMemStore()
	if _, err := stranger.FetchBlobFor(ctx, c, []peer.ID{srv.ID()}, sink, protocol.MaxBlobSize, why); err != nil {
		t.Fatalf("stranger with ticket: %v", err)
	}
	if got, ok := sink.get(c); !ok || !bytes.Equal(got, data) {
		t.Fatal("stranger with ticket: wrong bytes")
	}
	mu.Lock()
	last := calls[len(calls)-1]
	mu.Unlock()
	if last.from != stranger.ID() || last.c != c.String() || last.why.Group != why.Group || last.why.Task != 3 || !bytes.Equal(last.why.Ticket, why.Ticket) {
		t.Fatalf("callback saw %+v", last)
	}

	// Byte-identical answers: forbidden and absent, whole blob and a range
	// past the end (which for an allowed peer reveals the size).
	for _, q := range []struct{ off, n uint64 }{{0, 0}, {1 << 40, 1}, {uint64(len(data)), 5}} {
		forb := rawBlobAnswer(t, stranger, srv, &protocol.BlobRequest{CID: c.Bytes(), Offset: q.off, Length: q.n})
		abs := rawBlobAnswer(t, stranger, srv, &protocol.BlobRequest{CID: absent.Bytes(), Offset: q.off, Length: q.n})
		if !bytes.Equal(forb, abs) {
			t.Fatalf("range %d+%d: forbidden answered %x, absent %x", q.off, q.n, forb, abs)
		}
		head, err := protocol.DecodeBlobResponse(forb[4:])
		if err != nil || head.Status != protocol.BlobNotFound || head.Size != 0 || head.Length != 0 {
			t.Fatalf("range %d+%d: forbidden answered %+v, %v", q.off, q.n, head, err)
		}
	}
	// The owner asking past the end learns the size (BadRange).
	own := rawBlobAnswer(t, owner, srv, &protocol.BlobRequest{CID: c.Bytes(), Offset: 1 << 40, Length: 1})
	if head, err := protocol.DecodeBlobResponse(own[4:]); err != nil || head.Status != protocol.BlobBadRange || head.Size != uint64(len(data)) {
		t.Fatalf("owner past the end: %+v, %v", head, err)
	}
	// The callback was asked for the absent blob too (same path).
	mu.Lock()
	defer mu.Unlock()
	askedAbsent := false
	for _, k := range calls {
		askedAbsent = askedAbsent || k.c == absent.String()
	}
	if !askedAbsent {
		t.Fatal("BlobAuth was not consulted for the absent blob")
	}
}

// TestBlobAccessPanickingAuth: a callback that panics refuses; the host
// keeps serving.
func TestBlobAccessPanickingAuth(t *testing.T) {
	st := newMemStore()
	c := st.put(randBytes(t, 1<<10))
	srv, cl := blobHosts(t, st, func(cfg *Config) {
		cfg.BlobAuth = func(peer.ID, cid.Cid, BlobReason) bool { panic("boom") }
	})
	_, err := cl.FetchBlob(context.Background(), c, []peer.ID{srv.ID()}, newMemStore(), protocol.MaxBlobSize)
	if !errors.Is(err, ErrBlobNotFound) {
		t.Fatalf("want not found, got %v", err)
	}
}

// trickler serves every blob request with a head announcing size bytes,
// then sends chunk bytes every interval (until the stream fails): a peer
// that keeps a stream just alive.
func trickler(t *testing.T, h *Host, size uint64, chunk int, interval time.Duration) {
	h.h.SetStreamHandler(ProtoBlobID, func(s network.Stream) {
		defer s.Reset()
		if _, err := protocol.ReadFrame(s, maxBlobRequest); err != nil {
			return
		}
		if writeFrame(s, protocol.EncodeBlobResponse(&protocol.BlobResponse{Status: protocol.BlobOK, Size: size, Length: size})) != nil {
			return
		}
		tick := time.NewTicker(interval)
		defer tick.Stop()
		b := make([]byte, chunk)
		for range tick.C {
			if _, err := s.Write(b); err != nil {
				return
			}
		}
	})
}

// TestBlobTrickleCutOff: a peer announcing 4 GiB and sending one byte
// every 100 ms (a trickle the idle timeout never ends) is cut off after one
// rate window with ErrBlobTooSlow, and dropped (not retried).
func TestBlobTrickleCutOff(t *testing.T) {
	fast := func(c *Config) {
		c.BlobRateWindow = 500 * time.Millisecond
		c.BlobMinRate = 1 << 10
	}
	srv, cl := blobHosts(t, newMemStore(), fast)
	trickler(t, srv, protocol.MaxBlobSize, 1, 100*time.Millisecond)
	c := protocol.BlobCID([]byte("announced as 4 GiB"))
	began := time.Now()
	_, err := cl.FetchBlob(context.Background(), c, []peer.ID{srv.ID()}, discardSink{}, protocol.MaxBlobSize)
	took := time.Since(began)
	t.Logf("cut off after %v: %v", took.Round(time.Millisecond), err)
	if !errors.Is(err, ErrBlobTooSlow) || !errors.Is(err, ErrBlobFetch) {
		t.Fatalf("want a too-slow fetch failure, got %v", err)
	}
	if took > 5*time.Second {
		t.Fatalf("cut off only after %v (window 500 ms)", took)
	}
}

// TestBlobFetchDeadline: a peer fast enough for the minimum rate but not
// for the blob it announced is cut off at Config.BlobFetchTimeout.
func TestBlobFetchDeadline(t *testing.T) {
	srv, cl := blobHosts(t, newMemStore(), func(c *Config) {
		c.BlobRateWindow = 200 * time.Millisecond
		c.BlobMinRate = 1 << 10
		c.BlobFetchTimeout = time.Second
	})
	trickler(t, srv, 1<<30, 4<<10, 50*time.Millisecond) // 80 KiB/s for 1 GiB
	c := protocol.BlobCID([]byte("announced as 1 GiB"))
	began := time.Now()
	_, err := cl.FetchBlob(context.Background(), c, []peer.ID{srv.ID()}, discardSink{}, protocol.MaxBlobSize)
	took := time.Since(began)
	t.Logf("cut off after %v: %v", took.Round(time.Millisecond), err)
	if !errors.Is(err, ErrBlobTooSlow) || !strings.Contains(err.Error(), "not fetched within 1s") {
		t.Fatalf("want the fetch deadline, got %v", err)
	}
	if took > 5*time.Second {
		t.Fatalf("ended after %v (deadline 1 s)", took)
	}
}
