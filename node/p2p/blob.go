package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	relayclient "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"

	"github.com/aspen-market/aspen/protocol"
)

// ProtoBlobID is protocol.ProtoBlob as a libp2p protocol ID.
const ProtoBlobID = libp2pproto.ID(protocol.ProtoBlob)

// maxBlobRequest bounds a blob request frame: a CID, two integers, a task
// reference and a ticket (a sealed assignment).
const maxBlobRequest = 4 + protocol.MaxCIDBytes + 16 + 16 + 4 + 4 + protocol.MaxMessageSize

// maxBlobHead bounds a blob response head frame.
const maxBlobHead = 64

// blobCopyBuf is the server's write size, unless the source reads in
// chunks (see chunkedReader).
const blobCopyBuf = 256 << 10

// maxServeChunk bounds the read size taken from a chunkedReader.
const maxServeChunk = 4 << 20

// BlobReader reads one stored blob.
type BlobReader interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// chunkedReader is a BlobReader that reads and verifies whole chunks of
// ChunkSize bytes (the store's): the server reads chunk-aligned pieces of
// that size, which the store reads and checks in place instead of through
// a chunk cache and a second copy.
type chunkedReader interface {
	ChunkSize() int64
}

// BlobSource is what the blob server reads from (the node's store).
type BlobSource interface {
	// HasBlob reports whether c is stored and its size.
	HasBlob(c cid.Cid) (size int64, ok bool, err error)
	// ReadBlob opens c for range reads.
	ReadBlob(c cid.Cid) (BlobReader, error)
}

// BlobSink is where FetchBlob streams a blob (the node's store). WriteBlob
// reads r to EOF, hashing as it goes, and commits the blob only if the bytes
// hash to c and are at most maxSize long; otherwise it stores nothing and
// returns an error (wrapping protocol.ErrCIDMismatch on a hash mismatch).
type BlobSink interface {
	WriteBlob(ctx context.Context, c cid.Cid, r io.Reader, maxSize int64) (int64, error)
}

// BlobReason is what a blob request says about why the requester may have
// the blob (protocol.BlobRequest's Group, Task and Ticket): the server's
// BlobAuthFunc judges it against its own records.
type BlobReason struct {
	Group  protocol.ID
	Task   uint32
	Ticket []byte
}

// BlobAuthFunc decides whether peer from may have blob c, given the reason
// its request carries. It is called for every well-formed request, whether
// or not c is stored (so a refusal and an absent blob take the same path),
// and must not block for long.
type BlobAuthFunc func(from peer.ID, c cid.Cid, why BlobReason) bool

type blobServer struct {
	sem chan struct{}
}

func (b *blobServer) init(n int) { b.sem = make(chan struct{}, n) }

var bufPool = sync.Pool{New: func() any { b := make([]byte, blobCopyBuf); return &b }}

// serveBlob answers one BlobRequest: a response head frame, then exactly
// head.Length raw bytes, then the stream is closed. Errors are answered
// with a head carrying their status and no bytes.
func (h *Host) serveBlob(s network.Stream) {
	if !h.track() {
		s.Reset()
		return
	}
	defer h.wg.Done()
	remote := s.Conn().RemotePeer()
	idle := h.cfg.BlobIdleTimeout
	_ = s.SetDeadline(time.Now().Add(idle))
	frame, err := protocol.ReadFrame(s, maxBlobRequest)
	if err != nil {
		h.log.Warn("blob request unreadable", "from", remote, "err", err)
		s.Reset()
		return
	}
	c, off, n, st, size := h.parseBlobRequest(remote, frame)
	if st == protocol.BlobOK {
		select {
		case h.blobs.sem <- struct{}{}:
			defer func() { <-h.blobs.sem }()
		default:
			h.log.Debug("blob server busy", "from", remote, "cid", c)
			st = protocol.BlobBusy
		}
	}
	if st != protocol.BlobOK {
		if st != protocol.BlobBadRange {
			size = 0
		}
		h.blobAnswer(s, st, size)
		return
	}
	src := h.cfg.Blobs
	r, err := src.ReadBlob(c)
	if err != nil {
		h.log.Error("blob source open", "cid", c, "err", err)
		h.blobAnswer(s, protocol.BlobNotFound, 0)
		return
	}
	defer r.Close()
	head := protocol.EncodeBlobResponse(&protocol.BlobResponse{Status: protocol.BlobOK, Size: size, Length: n})
	if err := writeFrame(s, head); err != nil {
		s.Reset()
		return
	}
	piece := int64(blobCopyBuf)
	if cr, ok := r.(chunkedReader); ok {
		if cs := cr.ChunkSize(); cs >= 4<<10 && cs <= maxServeChunk {
			piece = cs
		}
	}
	bp := bufPool.Get().(*[]byte)
	if int64(cap(*bp)) < piece {
		b := make([]byte, piece)
		bp = &b
	}
	defer bufPool.Put(bp)
	buf := (*bp)[:piece]
	pos, end := int64(off), int64(off+n)
	for pos < end {
		// Pieces aligned to multiples of piece from the blob's start.
		k := min(piece-pos%piece, end-pos)
		m, err := r.ReadAt(buf[:k], pos)
		if int64(m) < k {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			h.log.Error("blob source read", "cid", c, "offset", pos, "err", err)
			s.Reset()
			return
		}
		_ = s.SetWriteDeadline(time.Now().Add(idle))
		if _, err := s.Write(buf[:k]); err != nil {
			h.log.Debug("blob send aborted", "to", remote, "cid", c, "err", err)
			s.Reset()
			return
		}
		pos += k
	}
	_ = s.Close()
}

// parseBlobRequest decodes a request frame and checks it against the
// source and Config.BlobAuth: the CID, the offset and length of the range
// to send, or the status to answer (with the blob size for BlobBadRange).
// A blob the peer may not have is answered exactly like one not stored
// (BlobNotFound, size 0, whatever the range), and both look it up in the
// source and ask BlobAuth, so neither the answer nor the path taken says
// whether a forbidden blob exists.
func (h *Host) parseBlobRequest(remote peer.ID, frame []byte) (c cid.Cid, off, n uint64, st protocol.BlobStatus, size uint64) {
	q, err := protocol.DecodeBlobRequest(frame)
	if err != nil {
		h.log.Warn("blob request malformed", "from", remote, "err", err)
		return cid.Undef, 0, 0, protocol.BlobBadRequest, 0
	}
	c, err = cid.Cast(q.CID)
	if err == nil {
		err = protocol.CheckBlobCID(c)
	}
	if err != nil {
		h.log.Warn("blob request with bad CID", "from", remote, "err", err)
		return cid.Undef, 0, 0, protocol.BlobBadRequest, 0
	}
	bsize, ok, err := h.cfg.Blobs.HasBlob(c)
	if err != nil {
		h.log.Error("blob source", "cid", c, "err", err)
	}
	allowed := h.blobAllowed(remote, c, BlobReason{Group: q.Group, Task: q.Task, Ticket: q.Ticket})
	if err != nil || !ok || bsize < 0 || !allowed {
		if ok && !allowed {
			h.log.Debug("blob refused", "to", remote, "cid", c)
		}
		return c, 0, 0, protocol.BlobNotFound, 0
	}
	size = uint64(bsize)
	if q.Offset > size || (q.Length != 0 && q.Length > size-q.Offset) {
		return c, 0, 0, protocol.BlobBadRange, size
	}
	n = q.Length
	if n == 0 {
		n = size - q.Offset
	}
	return c, q.Offset, n, protocol.BlobOK, size
}

// blobAllowed asks Config.BlobAuth (nil: every peer may have every blob);
// a panicking callback refuses.
func (h *Host) blobAllowed(p peer.ID, c cid.Cid, why BlobReason) (ok bool) {
	f := h.cfg.BlobAuth
	if f == nil {
		return true
	}
	defer func() {
		if r := recover(); r != nil {
			h.log.Error("blob authorisation panicked", "to", p, "cid", c, "panic", r)
			ok = false
		}
	}()
	return f(p, c, why)
}

func (h *Host) blobAnswer(s network.Stream, st protocol.BlobStatus, size uint64) {
	head := protocol.EncodeBlobResponse(&protocol.BlobResponse{Status: st, Size: size})
	if err := writeFrame(s, head); err != nil {
		s.Reset()
		return
	}
	_ = s.Close()
}

// writeFrame writes a length-prefixed frame in one Write.
func writeFrame(w io.Writer, b []byte) error {
	if len(b) > protocol.MaxMessageSize {
		return fmt.Errorf("%w: frame of %d bytes", protocol.ErrTooLarge, len(b))
	}
	buf := make([]byte, 4+len(b))
	buf[0], buf[1], buf[2], buf[3] = byte(len(b)>>24), byte(len(b)>>16), byte(len(b)>>8), byte(len(b))
	copy(buf[4:], b)
	_, err := w.Write(buf)
	return err
}

// rangeStream is an open blob response: Length bytes to read from s.
type rangeStream struct {
	s    network.Stream
	peer peer.ID
	left int64
	size int64
	stop func() bool
	// The minimum rate: at least minBytes in every window from winStart.
	window   time.Duration
	minBytes int64
	winStart time.Time
	winBytes int64
}

func (r *rangeStream) close(ok bool) {
	r.stop()
	if ok {
		_ = r.s.Close()
	} else {
		_ = r.s.Reset()
	}
}

// badRangeError carries the blob size a BlobBadRange answer reported.
type badRangeError struct{ size int64 }

func (e *badRangeError) Error() string {
	return fmt.Sprintf("p2p: bad range (blob is %d bytes)", e.size)
}

// permanent reports whether err means the peer will not serve this blob in
// this fetch (it lacks it, it lies, or only a relay too small leads to it).
func permanent(err error) bool {
	var br *badRangeError
	return errors.Is(err, ErrBlobNotFound) || errors.Is(err, protocol.ErrMalformed) || errors.Is(err, ErrRelayLimit) ||
		errors.Is(err, ErrBlobTooSlow) || errors.As(err, &br)
}

// openRange asks p for n bytes of c from off (n == 0: to the end, which
// the caller expects to be about want bytes, or any size when want < 0) and
// reads the response head. ctx cancellation resets the stream.
func (h *Host) openRange(ctx context.Context, p peer.ID, c cid.Cid, off, n, want int64, why *BlobReason) (*rangeStream, error) {
	if n > 0 {
		want = n
	}
	octx, cancel := context.WithTimeout(ctx, max(h.cfg.BlobIdleTimeout, h.cfg.DirectConnWait+h.cfg.DialTimeout))
	defer cancel()
	s, err := h.openBlobStream(octx, p, want)
	if err != nil {
		if errors.Is(err, ErrRelayLimit) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: open blob stream to %s: %v", ErrStream, p, err)
	}
	h.notePath(p, h.pathOf(s.Conn()), "blobs")
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	fail := func(err error) (*rangeStream, error) {
		stop()
		s.Reset()
		return nil, err
	}
	_ = s.SetDeadline(time.Now().Add(h.cfg.BlobIdleTimeout))
	req := protocol.EncodeBlobRequest(&protocol.BlobRequest{CID: c.Bytes(), Offset: uint64(off), Length: uint64(n),
		Group: why.Group, Task: why.Task, Ticket: why.Ticket})
	if err := writeFrame(s, req); err != nil {
		return fail(fmt.Errorf("%w: blob request to %s: %v", ErrStream, p, err))
	}
	_ = s.CloseWrite()
	frame, err := protocol.ReadFrame(s, maxBlobHead)
	if err != nil {
		if errors.Is(err, protocol.ErrTooLarge) {
			return fail(fmt.Errorf("%w: blob head from %s: %v", protocol.ErrMalformed, p, err))
		}
		return fail(fmt.Errorf("%w: blob head from %s: %v", ErrStream, p, err))
	}
	head, err := protocol.DecodeBlobResponse(frame)
	if err != nil {
		return fail(fmt.Errorf("blob head from %s: %w", p, err))
	}
	switch head.Status {
	case protocol.BlobOK:
	case protocol.BlobNotFound:
		return fail(fmt.Errorf("%w: %s at %s", ErrBlobNotFound, c, p))
	case protocol.BlobBusy:
		return fail(fmt.Errorf("%w: %s", ErrBlobBusy, p))
	case protocol.BlobBadRange:
		return fail(&badRangeError{size: int64(head.Size)})
	default:
		return fail(fmt.Errorf("%w: %s refused blob request: status %d", protocol.ErrMalformed, p, head.Status))
	}
	want = n
	if n == 0 {
		want = int64(head.Size) - off
	}
	if int64(head.Length) != want || int64(head.Size) < off+want {
		return fail(fmt.Errorf("%w: %s answered %d bytes of %d for range %d+%d", protocol.ErrMalformed, p, head.Length, head.Size, off, n))
	}
	w := h.cfg.BlobRateWindow
	return &rangeStream{s: s, peer: p, left: want, size: int64(head.Size), stop: stop,
		window: w, minBytes: int64(float64(h.cfg.BlobMinRate) * w.Seconds()), winStart: time.Now()}, nil
}

// read reads from the range with an idle deadline, and fails with
// ErrBlobTooSlow once a window of the stream has brought fewer than its
// minimum bytes (unless that window finished the range).
func (r *rangeStream) read(p []byte, idle time.Duration) (int, error) {
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	_ = r.s.SetReadDeadline(time.Now().Add(idle))
	n, err := r.s.Read(p)
	r.left -= int64(n)
	if err == io.EOF && r.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	r.winBytes += int64(n)
	if now := time.Now(); now.Sub(r.winStart) >= r.window && r.left > 0 {
		if r.winBytes < r.minBytes {
			return n, fmt.Errorf("%w: %s sent %d bytes in %v, below the minimum %d bytes/s", ErrBlobTooSlow,
				r.peer, r.winBytes, now.Sub(r.winStart).Round(time.Millisecond), int64(float64(r.minBytes)/r.window.Seconds()))
		}
		r.winStart, r.winBytes = now, 0
	}
	return n, err
}

// blobStreamOverhead is what one blob stream adds to its bytes on a
// relayed connection (frames, yamux headers), counted against the budget.
const blobStreamOverhead = 4 << 10

// relayHeadroom is kept free of blob bytes on every relayed connection for
// identify, hole punching and ping.
const relayHeadroom = 64 << 10

// openBlobStream opens a blob stream to p for a response of about want
// bytes (want < 0: unknown). A direct connection is used when there is one
// or one can be dialled. When the only way is through a relay, a response
// within Config.RelayBlobMax and the relayed connection's remaining data
// limit goes through it; a larger one waits up to Config.DirectConnWait for
// a direct connection (hole punching, the peer dialling back) and fails
// with ErrRelayLimit if none comes.
func (h *Host) openBlobStream(ctx context.Context, p peer.ID, want int64) (network.Stream, error) {
	if h.PathTo(p) == PathNone {
		if err := h.h.Connect(ctx, peer.AddrInfo{ID: p}); err != nil {
			return nil, err
		}
	}
	if h.PathTo(p) != PathRelayed {
		return h.h.NewStream(ctx, p, ProtoBlobID)
	}
	if want >= 0 && want <= h.cfg.RelayBlobMax {
		s, err := h.h.NewStream(network.WithAllowLimitedConn(ctx, "aspen: blob within the relay limit"), p, ProtoBlobID)
		if err != nil {
			return nil, err
		}
		c := s.Conn()
		if !c.Stat().Limited || h.budget.take(c, want+blobStreamOverhead) {
			return s, nil
		}
		s.Reset()
	}
	h.log.Info("blob too large for the relayed connection; waiting for a direct connection (hole punching)",
		"peer", p, "bytes", want, "relay_blob_max", h.cfg.RelayBlobMax, "wait", h.cfg.DirectConnWait)
	wctx, cancel := context.WithTimeout(ctx, h.cfg.DirectConnWait)
	defer cancel()
	s, err := h.h.NewStream(wctx, p, ProtoBlobID)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		err = fmt.Errorf("%w: %s: %d bytes (relayed up to %d), none within %v: %v", ErrRelayLimit, p, want, h.cfg.RelayBlobMax, h.cfg.DirectConnWait, err)
		h.log.Warn("no direct connection for a blob too large for the relay", "peer", p, "err", err)
		return nil, err
	}
	return s, nil
}

// relayBudget counts the blob bytes requested over each relayed
// connection: a relay resets a connection once it has carried its data
// limit, so requests beyond what is left would break mid-way.
type relayBudget struct {
	mu   sync.Mutex
	used map[network.Conn]int64
}

// take reserves n bytes on c if they fit under its relay's data limit
// (minus relayHeadroom); a relay that announced no limit is not counted.
func (b *relayBudget) take(c network.Conn, n int64) bool {
	limit, ok := c.Stat().Extra[relayclient.StatLimitData].(uint64)
	if !ok || limit == 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used[c]+n > int64(limit)-relayHeadroom {
		return false
	}
	b.used[c] += n
	return true
}

func (b *relayBudget) forget(c network.Conn) {
	b.mu.Lock()
	delete(b.used, c)
	b.mu.Unlock()
}
