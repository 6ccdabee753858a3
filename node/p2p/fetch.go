package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/protocol"
)

// FetchBlob fetches blob c from the given peers into sink and returns its
// size. Bytes stream straight into the sink (never whole in memory) and
// are hashed on the way; the sink commits only if they match c.
//
//   - One peer: a single stream for the whole blob; a broken or stalled
//     stream (Config.BlobIdleTimeout) is resumed from the last byte
//     received, up to Config.BlobRetries times.
//   - Several peers and a blob over two chunks: ranges of
//     Config.BlobChunkSize are fetched from all peers in parallel (one
//     stream per peer, at most Config.BlobParallel ranges buffered), a
//     range broken mid-way continues from where it stopped, on the same
//     peer or, once that peer has failed BlobRetries times, another one.
//
// A sha2-256 CID can only be checked on the whole blob. If the bytes do not
// match and several peers contributed, the blob is fetched again from each
// peer alone, in order, until one serves it intact; peers whose bytes did
// not match are named in the error, which wraps protocol.ErrCIDMismatch.
// A blob larger than maxSize is refused (protocol.ErrTooLarge) before
// anything is stored. A stream below Config.BlobMinRate is cut off and its
// peer dropped, and the whole fetch ends within Config.BlobFetchTimeout
// (both ErrBlobTooSlow).
func (h *Host) FetchBlob(ctx context.Context, c cid.Cid, from []peer.ID, sink BlobSink, maxSize int64) (int64, error) {
	return h.FetchBlobFor(ctx, c, from, sink, maxSize, BlobReason{})
}

// FetchBlobFor is FetchBlob with the reason every request carries (see
// BlobReason): a server serves a blob only to a peer with a reason to hold
// it, and answers any other request as if it did not have the blob.
func (h *Host) FetchBlobFor(ctx context.Context, c cid.Cid, from []peer.ID, sink BlobSink, maxSize int64, why BlobReason) (int64, error) {
	if err := protocol.CheckBlobCID(c); err != nil {
		return 0, err
	}
	if h.isClosing() {
		return 0, ErrClosed
	}
	var peers []peer.ID
	for _, p := range from {
		if p != h.id && p != "" && !slices.Contains(peers, p) {
			peers = append(peers, p)
		}
	}
	if len(peers) == 0 {
		return 0, fmt.Errorf("%w: %s", ErrNoPeers, c)
	}
	maxSize = min(maxSize, protocol.MaxBlobSize)
	select {
	case h.fetchQ <- struct{}{}:
		defer func() { <-h.fetchQ }()
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	if !h.track() {
		return 0, ErrClosed
	}
	defer h.wg.Done()
	timeout := h.cfg.BlobFetchTimeout
	tooLong := fmt.Errorf("%w: %s not fetched within %v", ErrBlobTooSlow, c, timeout)
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, tooLong)
	defer cancel()
	stop := context.AfterFunc(h.ctx, cancel)
	defer stop()
	n, err := h.fetchAll(ctx, c, peers, sink, maxSize, &why)
	if err != nil && errors.Is(context.Cause(ctx), tooLong) {
		return 0, tooLong
	}
	return n, err
}

// fetchAll is FetchBlobFor's work once it has its place and deadline.
func (h *Host) fetchAll(ctx context.Context, c cid.Cid, peers []peer.ID, sink BlobSink, maxSize int64, why *BlobReason) (int64, error) {
	n, contrib, err := h.fetchOnce(ctx, c, peers, sink, maxSize, why)
	if err == nil || !errors.Is(err, protocol.ErrCIDMismatch) {
		return n, err
	}
	var bad []peer.ID
	candidates := peers
	if len(contrib) == 1 {
		bad = contrib
	}
	h.log.Warn("blob bytes did not match CID", "cid", c, "from", contrib)
	for _, p := range candidates {
		if slices.Contains(bad, p) {
			continue
		}
		n, _, err = h.fetchOnce(ctx, c, []peer.ID{p}, sink, maxSize, why)
		if err == nil {
			return n, nil
		}
		if errors.Is(err, protocol.ErrCIDMismatch) {
			h.log.Warn("blob bytes did not match CID", "cid", c, "from", p)
			bad = append(bad, p)
			continue
		}
		if ctx.Err() != nil || errors.Is(err, protocol.ErrTooLarge) {
			return 0, err
		}
	}
	return 0, fmt.Errorf("p2p: fetch %s: %w: served wrong bytes: %v", c, protocol.ErrCIDMismatch, bad)
}

// fetchReader feeds a sink and reports which peers supplied bytes.
type fetchReader interface {
	io.Reader
	close()
	err() error // the fetch error, if the reader failed
	contributors() []peer.ID
}

// fetchOnce runs one attempt: one peer → sequential, several → probe the
// size and go parallel for big blobs.
func (h *Host) fetchOnce(ctx context.Context, c cid.Cid, peers []peer.ID, sink BlobSink, maxSize int64, why *BlobReason) (int64, []peer.ID, error) {
	var fr fetchReader
	if len(peers) == 1 && (maxSize <= h.cfg.RelayBlobMax || h.PathTo(peers[0]) == PathDirect || h.PathTo(peers[0]) == PathHolePunched) {
		fr = h.newSeqReader(ctx, c, peers, maxSize, -1, why)
	} else {
		// Several peers, or one that may only be reachable through a
		// relay: learn the size first (one byte), so that a small blob
		// can take a relayed connection.
		size, ordered, err := h.probeSize(ctx, c, peers, why)
		if err != nil {
			return 0, nil, err
		}
		if size > maxSize {
			return 0, nil, fmt.Errorf("p2p: fetch %s: %w: %d bytes, limit %d", c, protocol.ErrTooLarge, size, maxSize)
		}
		if size <= 2*h.cfg.BlobChunkSize || len(ordered) == 1 {
			fr = h.newSeqReader(ctx, c, ordered, maxSize, size, why)
		} else {
			fr = h.newChunkReader(ctx, c, ordered, size, why)
		}
	}
	n, serr := sink.WriteBlob(ctx, c, fr, maxSize)
	fr.close()
	contrib := fr.contributors()
	if ferr := fr.err(); ferr != nil {
		return 0, contrib, ferr
	}
	if errors.Is(serr, protocol.ErrCIDMismatch) {
		return 0, contrib, fmt.Errorf("p2p: fetch %s from %v: %w", c, contrib, serr)
	}
	if serr != nil {
		return 0, contrib, fmt.Errorf("p2p: store %s: %w", c, serr)
	}
	return n, contrib, nil
}

// probeSize asks peers in turn for the first byte of c to learn its size;
// it returns the size and the peers worth asking (the first one that
// answered, then the others, minus those that said not found).
func (h *Host) probeSize(ctx context.Context, c cid.Cid, peers []peer.ID, why *BlobReason) (int64, []peer.ID, error) {
	var lastErr error
	notFound := 0
	for i, p := range peers {
		rs, err := h.openRange(ctx, p, c, 0, 1, 1, why)
		var br *badRangeError
		switch {
		case err == nil:
			rs.close(false)
			rest := append([]peer.ID{p}, peers[i+1:]...)
			return rs.size, rest, nil
		case errors.As(err, &br) && br.size == 0:
			return 0, append([]peer.ID{p}, peers[i+1:]...), nil
		case ctx.Err() != nil:
			return 0, nil, ctx.Err()
		}
		if errors.Is(err, ErrBlobNotFound) {
			notFound++
		}
		lastErr = err
	}
	if notFound == len(peers) {
		return 0, nil, fmt.Errorf("%w: %s at none of %d peers", ErrBlobNotFound, c, len(peers))
	}
	return 0, nil, fmt.Errorf("%w: %s: %w", ErrBlobFetch, c, lastErr)
}

// peerTries tracks failures per peer during one attempt.
type peerTries struct {
	max      int
	fails    map[peer.ID]int
	dropped  map[peer.ID]bool
	notFound int
}

func newPeerTries(max int) *peerTries {
	return &peerTries{max: max, fails: map[peer.ID]int{}, dropped: map[peer.ID]bool{}}
}

// failed records err from p and reports whether p may be tried again.
func (t *peerTries) failed(p peer.ID, err error) bool {
	if permanent(err) {
		if errors.Is(err, ErrBlobNotFound) {
			t.notFound++
		}
		t.dropped[p] = true
		return false
	}
	t.fails[p]++
	if t.fails[p] >= t.max {
		t.dropped[p] = true
		return false
	}
	return true
}

// backoff waits before retrying after err (longer when the peer is busy).
func backoff(ctx context.Context, attempt int, err error) {
	d := time.Duration(0)
	if errors.Is(err, ErrBlobBusy) {
		d = 100 * time.Millisecond << min(attempt, 5)
	} else if attempt > 1 {
		d = 20 * time.Millisecond << min(attempt, 5)
	}
	if d == 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// seqReader streams a blob in order over one stream at a time, resuming
// from the last byte after a failure, moving to the next peer when one is
// exhausted.
type seqReader struct {
	h       *Host
	ctx     context.Context
	c       cid.Cid
	peers   []peer.ID
	cur     int
	tries   *peerTries
	maxSize int64
	size    int64 // -1 until known
	pos     int64
	rs      *rangeStream
	from    []peer.ID
	fail    error
	why     *BlobReason
	lastErr error // the last stream failure
}

func (h *Host) newSeqReader(ctx context.Context, c cid.Cid, peers []peer.ID, maxSize, size int64, why *BlobReason) *seqReader {
	return &seqReader{h: h, ctx: ctx, c: c, peers: peers, tries: newPeerTries(h.cfg.BlobRetries), maxSize: maxSize, size: size, why: why}
}

func (r *seqReader) Read(p []byte) (int, error) {
	if r.fail != nil {
		return 0, r.fail
	}
	for {
		if r.size >= 0 && r.pos >= r.size {
			return 0, io.EOF
		}
		if len(p) == 0 {
			return 0, nil
		}
		if r.rs == nil {
			if err := r.open(); err != nil {
				r.fail = err
				return 0, err
			}
			continue
		}
		n, err := r.rs.read(p, r.h.cfg.BlobIdleTimeout)
		r.pos += int64(n)
		switch {
		case r.rs.left == 0:
			r.rs.close(true)
			r.rs = nil
		case err != nil:
			r.rs.close(false)
			r.rs = nil
			p := r.peers[r.cur]
			r.h.log.Debug("blob stream broke, resuming", "cid", r.c, "from", p, "at", r.pos, "err", err)
			if !errors.Is(err, ErrBlobTooSlow) {
				err = fmt.Errorf("%w: %w", ErrStream, err)
			}
			r.lastErr = err
			if !r.tries.failed(p, err) {
				r.cur++
			}
		}
		if n > 0 {
			return n, nil
		}
	}
}

// open starts a response for [pos, size) from the current peer, moving on
// to the next peer as peers are exhausted.
func (r *seqReader) open() error {
	lastErr := r.lastErr
	for r.cur < len(r.peers) {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		p := r.peers[r.cur]
		if r.tries.dropped[p] {
			r.cur++
			continue
		}
		want := r.maxSize
		if r.size >= 0 {
			want = r.size - r.pos
		}
		rs, err := r.h.openRange(r.ctx, p, r.c, r.pos, 0, want, r.why)
		if err == nil && r.size >= 0 && rs.size != r.size {
			rs.close(false)
			err = fmt.Errorf("%w: %s says %s is %d bytes, others %d", protocol.ErrMalformed, p, r.c, rs.size, r.size)
		}
		if err == nil && r.size < 0 && rs.size > r.maxSize {
			rs.close(false)
			return fmt.Errorf("p2p: fetch %s: %w: %d bytes, limit %d", r.c, protocol.ErrTooLarge, rs.size, r.maxSize)
		}
		if err == nil {
			r.size = rs.size
			r.rs = rs
			if !slices.Contains(r.from, p) {
				r.from = append(r.from, p)
			}
			return nil
		}
		if r.ctx.Err() != nil {
			return r.ctx.Err()
		}
		lastErr = err
		if r.tries.failed(p, err) {
			backoff(r.ctx, r.tries.fails[p], err)
		} else {
			r.cur++
		}
	}
	if r.tries.notFound == len(r.peers) {
		return fmt.Errorf("%w: %s at none of %d peers", ErrBlobNotFound, r.c, len(r.peers))
	}
	return fmt.Errorf("%w: %s: %w", ErrBlobFetch, r.c, lastErr)
}

func (r *seqReader) close() {
	if r.rs != nil {
		r.rs.close(false)
		r.rs = nil
	}
}

func (r *seqReader) err() error              { return r.fail }
func (r *seqReader) contributors() []peer.ID { return r.from }

// chunkReader fetches ranges from several peers in parallel and yields
// them in order.
type chunkReader struct {
	h      *Host
	ctx    context.Context
	cancel context.CancelFunc
	c      cid.Cid
	size   int64
	window int
	why    *BlobReason

	mu      sync.Mutex
	cond    *sync.Cond
	chunks  []*chunk
	readIdx int
	readOff int64
	alive   int
	lastErr error
	done    bool
	fail    error
	from    []peer.ID
	wg      sync.WaitGroup
	stop    func() bool
}

const (
	chunkPending = iota
	chunkTaken
	chunkDone
)

type chunk struct {
	off, n int64
	got    int64
	buf    []byte
	state  int
}

func (h *Host) newChunkReader(ctx context.Context, c cid.Cid, peers []peer.ID, size int64, why *BlobReason) *chunkReader {
	ctx, cancel := context.WithCancel(ctx)
	r := &chunkReader{h: h, ctx: ctx, cancel: cancel, c: c, size: size, window: h.cfg.BlobParallel, why: why}
	r.cond = sync.NewCond(&r.mu)
	cs := h.cfg.BlobChunkSize
	for off := int64(0); off < size; off += cs {
		r.chunks = append(r.chunks, &chunk{off: off, n: min(cs, size-off)})
	}
	r.stop = context.AfterFunc(ctx, func() {
		r.mu.Lock()
		r.done = true
		r.cond.Broadcast()
		r.mu.Unlock()
	})
	r.alive = len(peers)
	for _, p := range peers {
		r.wg.Add(1)
		go r.worker(p)
	}
	return r
}

func (r *chunkReader) worker(p peer.ID) {
	defer r.wg.Done()
	tries := newPeerTries(r.h.cfg.BlobRetries)
	for {
		r.mu.Lock()
		var ch *chunk
		for ch == nil {
			if r.done {
				r.alive--
				r.cond.Broadcast()
				r.mu.Unlock()
				return
			}
			end := min(len(r.chunks), r.readIdx+r.window)
			for i := r.readIdx; i < end; i++ {
				if r.chunks[i].state == chunkPending {
					ch = r.chunks[i]
					break
				}
			}
			if ch == nil {
				r.cond.Wait()
			}
		}
		ch.state = chunkTaken
		if ch.buf == nil {
			ch.buf = getChunkBuf(r.h.cfg.BlobChunkSize)[:ch.n]
		}
		r.mu.Unlock()

		err := r.fetchChunk(p, ch, tries)

		r.mu.Lock()
		if err == nil {
			ch.state = chunkDone
			if !slices.Contains(r.from, p) {
				r.from = append(r.from, p)
			}
			r.cond.Broadcast()
			r.mu.Unlock()
			continue
		}
		if ch.got > 0 && !slices.Contains(r.from, p) {
			r.from = append(r.from, p)
		}
		ch.state = chunkPending
		r.lastErr = err
		r.alive--
		r.cond.Broadcast()
		r.mu.Unlock()
		r.h.log.Debug("blob peer given up", "cid", r.c, "peer", p, "err", err)
		return
	}
}

// fetchChunk fills ch from p, resuming after breaks, until done or p is
// exhausted.
func (r *chunkReader) fetchChunk(p peer.ID, ch *chunk, tries *peerTries) error {
	for {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		rs, err := r.h.openRange(r.ctx, p, r.c, ch.off+ch.got, ch.n-ch.got, ch.n-ch.got, r.why)
		if err == nil && rs.size != r.size {
			rs.close(false)
			err = fmt.Errorf("%w: %s says %s is %d bytes, others %d", protocol.ErrMalformed, p, r.c, rs.size, r.size)
		}
		if err == nil {
			for rs.left > 0 && err == nil {
				var n int
				n, err = rs.read(ch.buf[ch.got:], r.h.cfg.BlobIdleTimeout)
				ch.got += int64(n)
			}
			if rs.left == 0 {
				rs.close(true)
				return nil
			}
			rs.close(false)
			if !errors.Is(err, ErrBlobTooSlow) {
				err = fmt.Errorf("%w: %w", ErrStream, err)
			}
		}
		if r.ctx.Err() != nil {
			return r.ctx.Err()
		}
		if !tries.failed(p, err) {
			return err
		}
		backoff(r.ctx, tries.fails[p], err)
	}
}

func (r *chunkReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		if r.fail != nil {
			return 0, r.fail
		}
		if r.readIdx >= len(r.chunks) {
			return 0, io.EOF
		}
		ch := r.chunks[r.readIdx]
		if ch.state == chunkDone {
			n := copy(p, ch.buf[r.readOff:ch.n])
			r.readOff += int64(n)
			if r.readOff == ch.n {
				putChunkBuf(ch.buf)
				ch.buf = nil
				r.readIdx++
				r.readOff = 0
				r.cond.Broadcast()
			}
			return n, nil
		}
		if r.done {
			r.fail = r.ctx.Err()
			if r.fail == nil {
				r.fail = ErrClosed
			}
			return 0, r.fail
		}
		if r.alive == 0 {
			r.fail = fmt.Errorf("%w: %s: %w", ErrBlobFetch, r.c, r.lastErr)
			return 0, r.fail
		}
		r.cond.Wait()
	}
}

func (r *chunkReader) close() {
	r.cancel()
	r.wg.Wait()
	r.stop()
	r.mu.Lock()
	for _, ch := range r.chunks {
		if ch.buf != nil && ch.state != chunkTaken {
			putChunkBuf(ch.buf)
			ch.buf = nil
		}
	}
	r.mu.Unlock()
}

func (r *chunkReader) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fail
}

func (r *chunkReader) contributors() []peer.ID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.from)
}

var chunkPool sync.Pool

func getChunkBuf(size int64) []byte {
	if b, ok := chunkPool.Get().(*[]byte); ok && int64(cap(*b)) >= size {
		return (*b)[:size]
	}
	return make([]byte, size)
}

func putChunkBuf(b []byte) {
	b = b[:cap(b)]
	chunkPool.Put(&b)
}
