package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/aspen-market/aspen/protocol"
)

// Handler answers one request on a request/response protocol. env's
// signature has been verified and env.Signer == from (the stream's remote
// peer). The returned message is sealed with the host key and sent back;
// an error is sent back as a protocol.Ack with OK == false (see Refuse for
// choosing its code; other errors map to AckBadRequest for malformed
// input, AckUnauthorized, AckExpired, AckBusy for timeouts, otherwise
// AckInternal without the error's text, which is logged instead).
type Handler func(ctx context.Context, from peer.ID, env *protocol.Envelope) (protocol.Message, error)

// Handle serves protoID with h. Each stream carries one or more
// request/response pairs, each a length-prefixed sealed envelope (at most
// protocol.MaxMessageSize): the server reads a request, answers it, and
// waits up to Config.StreamIdleTimeout for the next one. A frame that is
// oversized or truncated gets the stream reset; a request that is
// unsigned, forged or signed by someone other than the stream's remote
// peer is answered with an Ack refusal and the stream is closed. Either
// way a log line says why, and the host keeps serving everyone else.
// Handlers should be idempotent: Request may deliver a request twice when
// a reused stream breaks before the answer arrives.
func (h *Host) Handle(protoID string, fn Handler) {
	h.h.SetStreamHandler(libp2pproto.ID(protoID), func(s network.Stream) { h.serveRequests(s, fn) })
}

// Unhandle stops serving protoID.
func (h *Host) Unhandle(protoID string) {
	h.h.RemoveStreamHandler(libp2pproto.ID(protoID))
}

func (h *Host) serveRequests(s network.Stream, fn Handler) {
	if !h.track() {
		s.Reset()
		return
	}
	defer h.wg.Done()
	from := s.Conn().RemotePeer()
	proto := string(s.Protocol())
	for first := true; ; first = false {
		wait := h.cfg.StreamIdleTimeout
		if first {
			wait = h.cfg.RequestTimeout
		}
		_ = s.SetReadDeadline(time.Now().Add(wait))
		frame, err := protocol.ReadFrame(s, protocol.MaxMessageSize)
		if err != nil {
			switch {
			case errors.Is(err, io.EOF) && !first:
				_ = s.Close()
			case isTimeout(err) && !first, h.ctx.Err() != nil:
				s.Reset()
			case !first && isReset(err):
				// The requester dropped an idle pooled stream (closing
				// down, or its pool was full): not an error.
				s.Reset()
			default:
				h.log.Warn("bad request frame, stream reset", "proto", proto, "from", from, "err", err)
				s.Reset()
			}
			return
		}
		reply, end := h.answer(from, proto, frame, fn)
		_ = s.SetWriteDeadline(time.Now().Add(h.cfg.RequestTimeout))
		if reply == nil {
			s.Reset()
			return
		}
		if err := writeFrame(s, reply); err != nil {
			h.log.Debug("reply not sent", "proto", proto, "to", from, "err", err)
			s.Reset()
			return
		}
		if end {
			_ = s.Close()
			return
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// answer returns the sealed reply to one request frame, and whether the
// stream should be closed after it.
func (h *Host) answer(from peer.ID, proto string, frame []byte, fn Handler) (reply []byte, end bool) {
	env, err := protocol.Open(frame)
	if err != nil {
		h.log.Warn("request refused: bad envelope", "proto", proto, "from", from, "err", err)
		return h.refusal(protocol.AckBadRequest, "bad envelope: "+err.Error()), true
	}
	if env.Signer != from {
		h.log.Warn("request refused: signer is not sender", "proto", proto, "from", from, "signer", env.Signer)
		return h.refusal(protocol.AckUnauthorized, fmt.Sprintf("message signed by %s, sent by %s", env.Signer, from)), true
	}
	ctx, cancel := context.WithTimeout(h.ctx, h.cfg.RequestTimeout)
	defer cancel()
	resp, err := h.callHandler(ctx, from, env, fn)
	if err != nil {
		code, text := ackFor(err)
		if code == protocol.AckInternal {
			h.log.Error("request handler failed", "proto", proto, "from", from, "type", env.Type, "err", err)
		} else {
			h.log.Info("request refused", "proto", proto, "from", from, "type", env.Type, "code", code, "err", err)
		}
		return h.refusal(code, text), false
	}
	if resp == nil {
		h.log.Error("request handler returned no reply", "proto", proto, "from", from, "type", env.Type)
		return h.refusal(protocol.AckInternal, "internal error"), false
	}
	b, err := protocol.Seal(h.key, resp)
	if err == nil && len(b) > protocol.MaxMessageSize {
		err = fmt.Errorf("%w: reply of %d bytes", protocol.ErrTooLarge, len(b))
	}
	if err != nil {
		h.log.Error("reply not sealed", "proto", proto, "to", from, "err", err)
		return h.refusal(protocol.AckInternal, "internal error"), false
	}
	return b, false
}

func (h *Host) callHandler(ctx context.Context, from peer.ID, env *protocol.Envelope, fn Handler) (resp protocol.Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panic: %v", r)
		}
	}()
	return fn(ctx, from, env)
}

func (h *Host) refusal(code protocol.AckCode, text string) []byte {
	if len(text) > protocol.MaxTextLen {
		text = text[:protocol.MaxTextLen]
	}
	b, err := protocol.Seal(h.key, &protocol.Ack{Code: code, Error: text})
	if err != nil {
		return nil
	}
	return b
}

// ackFor maps a handler error to the Ack code and text sent back.
func ackFor(err error) (protocol.AckCode, string) {
	var re *RemoteError
	switch {
	case errors.As(err, &re):
		if re.Code == protocol.AckOK {
			return protocol.AckInternal, re.Message
		}
		return re.Code, re.Message
	case errors.Is(err, protocol.ErrBadSignature), errors.Is(err, ErrSignerMismatch):
		return protocol.AckUnauthorized, err.Error()
	case errors.Is(err, protocol.ErrExpired):
		return protocol.AckExpired, err.Error()
	case errors.Is(err, protocol.ErrMalformed), errors.Is(err, protocol.ErrWrongType),
		errors.Is(err, protocol.ErrTooLarge), errors.Is(err, protocol.ErrBadCID),
		errors.Is(err, protocol.ErrBadVersion), errors.Is(err, protocol.ErrBadAmount),
		errors.Is(err, protocol.ErrBadSpeed), errors.Is(err, protocol.ErrCIDMismatch):
		return protocol.AckBadRequest, err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return protocol.AckBusy, "timed out"
	}
	return protocol.AckInternal, "internal error"
}

// Request seals req with the host key, sends it to p on protoID and
// decodes p's sealed reply into resp. The reply must be signed by p
// (ErrSignerMismatch otherwise). A reply that is an Ack with OK == false
// returns a *RemoteError (wrapping ErrRemote); when resp is a
// *protocol.Ack it is filled in as well. The round trip is bounded by ctx
// and Config.RequestTimeout. Streams are reused for later requests to the
// same peer and protocol (up to Config.MaxIdleStreams idle ones).
func (h *Host) Request(ctx context.Context, p peer.ID, protoID string, req, resp protocol.Message) error {
	if h.isClosing() {
		return ErrClosed
	}
	sealed, err := protocol.Seal(h.key, req)
	if err != nil {
		return fmt.Errorf("p2p: seal %s: %w", req.Type(), err)
	}
	return h.RequestSealed(ctx, p, protoID, sealed, resp)
}

// RequestSealed is Request for a message this host has already sealed
// (protocol.Seal with the host's key), such as one it stored: the bytes
// are sent as they are, without signing them again. The receiver verifies
// them like any request.
func (h *Host) RequestSealed(ctx context.Context, p peer.ID, protoID string, sealed []byte, resp protocol.Message) error {
	if h.isClosing() {
		return ErrClosed
	}
	if len(sealed) > protocol.MaxMessageSize {
		return fmt.Errorf("p2p: request on %s: %w: %d bytes", protoID, protocol.ErrTooLarge, len(sealed))
	}
	var err error
	// The round trip ends with ctx or after RequestTimeout, whichever
	// comes first. Callers usually bound ctx by RequestTimeout already;
	// then no second timer is needed.
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > h.cfg.RequestTimeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.cfg.RequestTimeout)
		defer cancel()
	}
	key := poolKey{p: p, proto: libp2pproto.ID(protoID)}
	var (
		frame    []byte
		s        network.Stream
		reusable bool
	)
	for {
		var reused bool
		s, reused = h.pool.get(key)
		if s == nil {
			s, err = h.h.NewStream(ctx, p, key.proto)
			if err != nil {
				return fmt.Errorf("%w: %s to %s: %v", ErrStream, protoID, p, err)
			}
		}
		var got int
		frame, got, reusable, err = h.roundTrip(ctx, s, sealed)
		if err == nil {
			break
		}
		s.Reset()
		if reused && got == 0 && ctx.Err() == nil {
			continue // a stale pooled stream: try a fresh one
		}
		if cerr := ctxDone(ctx); cerr != nil {
			return fmt.Errorf("%w: %s to %s: %w", ErrStream, protoID, p, cerr)
		}
		return fmt.Errorf("%w: %s to %s: %v", ErrStream, protoID, p, err)
	}
	healthy, err := h.decodeReply(p, protoID, frame, resp)
	if healthy && reusable {
		h.pool.put(key, s)
	} else {
		s.Reset()
	}
	return err
}

// decodeReply checks and decodes a reply frame; healthy reports whether
// the stream may be reused.
func (h *Host) decodeReply(p peer.ID, protoID string, frame []byte, resp protocol.Message) (healthy bool, err error) {
	env, err := protocol.Open(frame)
	if err != nil {
		return false, fmt.Errorf("p2p: reply from %s on %s: %w", p, protoID, err)
	}
	if env.Signer != p {
		return false, fmt.Errorf("%w: reply from %s signed by %s", ErrSignerMismatch, p, env.Signer)
	}
	if env.Type == protocol.TypeAck {
		ack, isAck := resp.(*protocol.Ack)
		if !isAck {
			ack = new(protocol.Ack)
		}
		if err := env.Decode(ack); err != nil {
			return false, fmt.Errorf("p2p: reply from %s on %s: %w", p, protoID, err)
		}
		if !ack.OK {
			return true, &RemoteError{Code: ack.Code, Message: ack.Error}
		}
		if !isAck {
			return true, fmt.Errorf("p2p: reply from %s on %s: %w: got ack, want %s", p, protoID, protocol.ErrWrongType, resp.Type())
		}
		return true, nil
	}
	if err := env.Decode(resp); err != nil {
		return false, fmt.Errorf("p2p: reply from %s on %s: %w", p, protoID, err)
	}
	return true, nil
}

// roundTrip writes one request frame and reads one reply frame; got is how
// many reply bytes arrived (0 lets a stale pooled stream be retried) and
// reusable whether the stream may go back to the pool.
//
// The stream gets no deadline of its own: ctx always has one (see
// Request), and when ctx ends the stream is reset, which ends a blocked
// write or read just as a deadline would. Setting the stream's read and
// write deadlines per request and clearing them for the pool cost four
// timer operations per round trip.
func (h *Host) roundTrip(ctx context.Context, s network.Stream, sealed []byte) (frame []byte, got int, reusable bool, err error) {
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	if err := writeFrame(s, sealed); err != nil {
		stop()
		return nil, 0, false, err
	}
	if h.cfg.MaxIdleStreams == 0 {
		_ = s.CloseWrite()
	}
	cr := countingReader{r: s}
	frame, err = protocol.ReadFrame(&cr, protocol.MaxMessageSize)
	// stop fails once ctx has ended and the reset is under way: the reply
	// (if it arrived) still counts, the stream does not.
	reusable = stop()
	return frame, cr.n, reusable, err
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// streamPool keeps idle request streams for reuse.
type streamPool struct {
	mu      sync.Mutex
	max     int
	maxIdle time.Duration
	idle    map[poolKey][]pooledStream
	closed  bool
}

type poolKey struct {
	p     peer.ID
	proto libp2pproto.ID
}

type pooledStream struct {
	s  network.Stream
	at time.Time
}

func (sp *streamPool) init(max int, maxIdle time.Duration) {
	sp.max, sp.maxIdle = max, maxIdle
	sp.idle = make(map[poolKey][]pooledStream)
}

// get returns the most recently used live idle stream for k, if any.
func (sp *streamPool) get(k poolKey) (network.Stream, bool) {
	if sp.max == 0 {
		return nil, false
	}
	now := time.Now()
	sp.mu.Lock()
	defer sp.mu.Unlock()
	l := sp.idle[k]
	for len(l) > 0 {
		ps := l[len(l)-1]
		l = l[:len(l)-1]
		if now.Sub(ps.at) < sp.maxIdle && !ps.s.Conn().IsClosed() {
			sp.setList(k, l)
			return ps.s, true
		}
		ps.s.Reset()
	}
	sp.setList(k, l)
	return nil, false
}

func (sp *streamPool) setList(k poolKey, l []pooledStream) {
	if len(l) == 0 {
		delete(sp.idle, k)
	} else {
		sp.idle[k] = l
	}
}

func (sp *streamPool) put(k poolKey, s network.Stream) {
	if sp.max == 0 {
		_ = s.Close()
		return
	}
	sp.mu.Lock()
	if sp.closed || len(sp.idle[k]) >= sp.max {
		sp.mu.Unlock()
		_ = s.Close()
		return
	}
	sp.idle[k] = append(sp.idle[k], pooledStream{s: s, at: time.Now()})
	sp.mu.Unlock()
}

func (sp *streamPool) closeAll() {
	sp.mu.Lock()
	sp.closed = true
	idle := sp.idle
	sp.idle = map[poolKey][]pooledStream{}
	sp.mu.Unlock()
	for _, l := range idle {
		for _, ps := range l {
			ps.s.Reset()
		}
	}
}

// isReset reports whether err is the remote resetting the stream.
func isReset(err error) bool {
	var se *network.StreamError
	if errors.As(err, &se) {
		return se.Remote
	}
	return errors.Is(err, network.ErrReset)
}

// ctxDone is ctx's error, or context.DeadlineExceeded once its deadline
// has passed: a stream can fail at the deadline (the remote end gave up
// too) a moment before the context's own timer fires.
func ctxDone(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}
