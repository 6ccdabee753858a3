package p2p

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/protocol"
)

// ErrRejected: a message we published was refused by our own validator
// (see the log line for why), so it was not sent.
var ErrRejected = errors.New("p2p: gossip message rejected")

// OfferHandler receives offers that passed validation: from is the
// envelope's signer (== o.Worker), raw the sealed envelope bytes.
type OfferHandler func(from peer.ID, o *protocol.Offer, raw []byte)

// BidHandler receives bids that passed validation: from is the envelope's
// signer (== b.Consumer), raw the sealed envelope bytes.
type BidHandler func(from peer.ID, b *protocol.Bid, raw []byte)

type topicKind int

const (
	kindOffer topicKind = iota
	kindBid
	numKinds
)

var topicNames = [numKinds]string{protocol.TopicOffers, protocol.TopicBids}

func (k topicKind) String() string { return topicNames[k] }

// GossipStats counts validation outcomes of gossip messages (ours
// included), per host since New, and the sizes of the validator's
// bounded tables.
type GossipStats struct {
	Accepted, Rejected, Ignored uint64
	// RelayDropped counts messages dropped over a relay's rate before
	// validation (Config.RelayRate).
	RelayDropped uint64
	// Signers and Relays are the entries of the per-signer
	// (Config.MaxTrackedSigners) and per-relay (MaxTrackedRelays) tables.
	Signers, Relays int
}

// gossip is the Host's gossip state.
type gossip struct {
	ps      *pubsub.PubSub
	topics  [numKinds]*pubsub.Topic
	guard   *seqGuard
	relays  *relayGuard
	ratings ratingCache
	scores  atomic.Pointer[map[peer.ID]float64]

	onOffer atomic.Pointer[OfferHandler]
	onBid   atomic.Pointer[BidHandler]

	seqMu   sync.Mutex
	lastSeq uint64

	accepted, rejected, ignored atomic.Uint64
	relayDropped                atomic.Uint64
	logLimit                    logLimiter
}

// msgID names a gossip message by the hash of its topic and bytes, so the
// same envelope relayed along different paths is one message. Messages
// carry no pubsub author or seqno (StrictNoSign, no author), so the ID must
// come from the content; being a hash of the bytes, a message that fails
// validation cannot take the ID of (and so shadow) a different, valid one.
func msgID(m *pb.Message) string {
	h := sha256.New()
	h.Write([]byte(m.GetTopic()))
	h.Write([]byte{0})
	h.Write(m.Data)
	return string(h.Sum(nil))
}

func (h *Host) initGossip() error {
	params, thresholds := h.cfg.ScoreParams, h.cfg.ScoreThresholds
	if params == nil {
		params, thresholds = DefaultScoreParams()
	}
	h.guard = newSeqGuard(h.cfg.MaxTrackedSigners, h.cfg.GossipRate, float64(h.cfg.GossipBurst), h.cfg.SeqWindow)
	h.relays = newRelayGuard(h.cfg.MaxTrackedRelays, h.cfg.RelayRate, float64(h.cfg.RelayBurst))
	// The application score (P5) carries the relay penalty on top of
	// whatever the configured parameters say.
	p := *params
	app := p.AppSpecificScore
	p.AppSpecificScore = func(id peer.ID) float64 {
		s := h.relays.penalty(id, time.Now())
		if app != nil {
			s += app(id)
		}
		return s
	}
	params = &p
	ps, err := pubsub.NewGossipSub(h.ctx, h.h,
		pubsub.WithMessageIdFn(msgID),
		// The sealed Aspen envelope authenticates each message (signer
		// == author, checked by the validator), so pubsub neither signs
		// nor carries an author or seqno: it drops, and penalises the
		// sender of, any message that has a signature, From, Seqno or
		// Key. One ed25519 verification per message instead of two.
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithNoAuthor(),
		pubsub.WithPeerScore(params, thresholds),
		pubsub.WithPeerScoreInspect(pubsub.PeerScoreInspectFn(h.storeScores), h.cfg.ScoreInspectPeriod),
		pubsub.WithSubscriptionFilter(pubsub.NewAllowlistSubscriptionFilter(topicNames[:]...)),
		// Per relaying peer, before a message is queued for validation
		// (a flood from one peer must not fill the queue others share).
		pubsub.WithAppSpecificRpcInspector(h.inspectRPC),
		pubsub.WithValidateQueueSize(validateQueue),
		pubsub.WithLogger(h.log.With("sys", "pubsub")),
	)
	if err != nil {
		return fmt.Errorf("p2p: gossipsub: %w", err)
	}
	h.ps = ps
	for k := range numKinds {
		kind := k
		val := func(_ context.Context, from peer.ID, m *pubsub.Message) pubsub.ValidationResult {
			return h.validate(kind, from, m)
		}
		if err := ps.RegisterTopicValidator(topicNames[k], pubsub.ValidatorEx(val), pubsub.WithValidatorInline(true)); err != nil {
			return fmt.Errorf("p2p: validator for %s: %w", topicNames[k], err)
		}
		t, err := ps.Join(topicNames[k])
		if err != nil {
			return fmt.Errorf("p2p: join %s: %w", topicNames[k], err)
		}
		h.topics[k] = t
	}
	return nil
}

func (h *Host) startGossip(ctx context.Context) error {
	for k := range numKinds {
		sub, err := h.topics[k].Subscribe(pubsub.WithBufferSize(h.cfg.GossipBuffer))
		if err != nil {
			return fmt.Errorf("p2p: subscribe %s: %w", topicNames[k], err)
		}
		kind := k
		if !h.goTracked(func() { h.readLoop(ctx, kind, sub) }) {
			sub.Cancel()
			return ErrClosed
		}
	}
	return nil
}

func (h *Host) readLoop(ctx context.Context, kind topicKind, sub *pubsub.Subscription) {
	defer sub.Cancel()
	for {
		m, err := sub.Next(ctx)
		if err != nil {
			return
		}
		// Own messages (signed with our key) are not delivered.
		switch v := m.ValidatorData.(type) {
		case *protocol.Offer:
			if f := h.onOffer.Load(); f != nil && v.Worker != h.id {
				(*f)(v.Worker, v, m.Data)
			}
		case *protocol.Bid:
			if f := h.onBid.Load(); f != nil && v.Consumer != h.id {
				(*f)(v.Consumer, v, m.Data)
			}
		}
	}
}

// OnOffer sets the handler for offers received on the offers topic (nil
// removes it). It is called from one goroutine, in arrival order; a slow
// handler loses messages beyond Config.GossipBuffer. Own offers are not
// delivered.
func (h *Host) OnOffer(f OfferHandler) {
	if f == nil {
		h.onOffer.Store(nil)
		return
	}
	h.onOffer.Store(&f)
}

// OnBid sets the handler for bids, like OnOffer.
func (h *Host) OnBid(f BidHandler) {
	if f == nil {
		h.onBid.Store(nil)
		return
	}
	h.onBid.Store(&f)
}

// PublishOffer seals o with the host key and publishes it on
// protocol.TopicOffers. A zero Worker is set to the host's ID, a zero Seq
// to the next sequence number (strictly increasing, seeded from the clock
// in microseconds so it keeps increasing across restarts), a zero Expires
// to now + protocol.MaxOfferTTL. Peers accept at most Config.GossipRate
// messages per second per signer (burst GossipBurst): announce on change,
// coalesced to about one per second, and every few seconds otherwise.
func (h *Host) PublishOffer(ctx context.Context, o *protocol.Offer) error {
	if o.Worker == "" {
		o.Worker = h.id
	}
	if o.Worker != h.id {
		return fmt.Errorf("%w: offer for %s published by %s", ErrSignerMismatch, o.Worker, h.id)
	}
	h.fillSeq(&o.Seq, &o.Expires)
	return h.publish(ctx, kindOffer, o)
}

// PublishBid seals b with the host key and publishes it on
// protocol.TopicBids, filling zero Consumer, Seq and Expires like
// PublishOffer.
func (h *Host) PublishBid(ctx context.Context, b *protocol.Bid) error {
	if b.Consumer == "" {
		b.Consumer = h.id
	}
	if b.Consumer != h.id {
		return fmt.Errorf("%w: bid for %s published by %s", ErrSignerMismatch, b.Consumer, h.id)
	}
	h.fillSeq(&b.Seq, &b.Expires)
	return h.publish(ctx, kindBid, b)
}

func (h *Host) fillSeq(seq *uint64, expires *int64) {
	now := h.now()
	if *expires == 0 {
		*expires = now.Add(protocol.MaxOfferTTL).UnixMilli()
	}
	h.seqMu.Lock()
	defer h.seqMu.Unlock()
	if *seq == 0 {
		*seq = max(h.lastSeq+1, uint64(now.UnixMicro()))
	}
	h.lastSeq = max(h.lastSeq, *seq)
}

func (h *Host) publish(ctx context.Context, kind topicKind, m protocol.Message) error {
	if h.isClosing() {
		return ErrClosed
	}
	b, err := protocol.Seal(h.key, m)
	if err != nil {
		return fmt.Errorf("p2p: seal %s: %w", m.Type(), err)
	}
	if len(b) > protocol.MaxGossipSize {
		return fmt.Errorf("p2p: publish %s: %w: %d bytes, limit %d", m.Type(), protocol.ErrTooLarge, len(b), protocol.MaxGossipSize)
	}
	if err := h.topics[kind].Publish(ctx, b); err != nil {
		var ve pubsub.ValidationError
		if errors.As(err, &ve) {
			return fmt.Errorf("p2p: publish %s: %w", m.Type(), ErrRejected)
		}
		return fmt.Errorf("p2p: publish %s: %w", m.Type(), err)
	}
	return nil
}

// PeerScore returns p's gossipsub score as of the last inspection (every
// Config.ScoreInspectPeriod); 0 for a peer not seen.
func (h *Host) PeerScore(p peer.ID) float64 {
	if m := h.scores.Load(); m != nil {
		return (*m)[p]
	}
	return 0
}

func (h *Host) storeScores(m map[peer.ID]float64) {
	c := make(map[peer.ID]float64, len(m))
	for k, v := range m {
		c[k] = v
	}
	h.scores.Store(&c)
}

// GossipStats returns the validation counters.
func (h *Host) GossipStats() GossipStats {
	return GossipStats{Accepted: h.accepted.Load(), Rejected: h.rejected.Load(), Ignored: h.ignored.Load(),
		RelayDropped: h.relayDropped.Load(), Signers: h.trackedSigners(), Relays: h.trackedRelays()}
}

// TopicPeers returns the peers known to be subscribed to topic
// (protocol.TopicOffers or protocol.TopicBids).
func (h *Host) TopicPeers(topic string) []peer.ID {
	for k, name := range topicNames {
		if name == topic {
			return h.topics[k].ListPeers()
		}
	}
	return nil
}

// validate is the topic validator: it decides whether a message is
// delivered and relayed (accept), dropped (ignore) or dropped with a
// penalty to the peer that sent it (reject).
func (h *Host) validate(kind topicKind, from peer.ID, m *pubsub.Message) pubsub.ValidationResult {
	res, why, v := h.check(kind, from, m)
	switch res {
	case pubsub.ValidationAccept:
		h.accepted.Add(1)
		m.ValidatorData = v
	case pubsub.ValidationReject:
		h.rejected.Add(1)
		if h.logLimit.allow() {
			h.log.Warn("gossip message rejected", "topic", kind.String(), "from", from, "reason", why)
		}
	default:
		h.ignored.Add(1)
		if h.logLimit.allow() {
			h.log.Debug("gossip message ignored", "topic", kind.String(), "from", from, "reason", why)
		}
	}
	return res
}

// check runs every check on one gossip message; see docs/p2p.md.
func (h *Host) check(kind topicKind, from peer.ID, m *pubsub.Message) (pubsub.ValidationResult, string, any) {
	data := m.GetData()
	if len(data) > protocol.MaxGossipSize {
		return pubsub.ValidationReject, fmt.Sprintf("%d bytes exceeds %d", len(data), protocol.MaxGossipSize), nil
	}
	// pubsub (StrictNoSign) already drops these; checked again so that the
	// envelope stays the only authentication whatever the pubsub options.
	if m.Signature != nil || m.From != nil || m.Seqno != nil || m.Key != nil {
		return pubsub.ValidationReject, "pubsub author, seqno or signature present", nil
	}
	env, err := protocol.Open(data)
	if err != nil {
		return pubsub.ValidationReject, err.Error(), nil
	}
	var (
		author  peer.ID
		seq     uint64
		expires int64
		v       any
		hook    func() error
	)
	switch kind {
	case kindOffer:
		o := new(protocol.Offer)
		if err := env.Decode(o); err != nil {
			return pubsub.ValidationReject, err.Error(), nil
		}
		author, seq, expires, v = o.Worker, o.Seq, o.Expires, o
		if f := h.cfg.ValidateOffer; f != nil {
			hook = func() error { return f(o) }
		}
	case kindBid:
		b := new(protocol.Bid)
		if err := env.Decode(b); err != nil {
			return pubsub.ValidationReject, err.Error(), nil
		}
		author, seq, expires, v = b.Consumer, b.Seq, b.Expires, b
		if f := h.cfg.ValidateBid; f != nil {
			hook = func() error { return f(b) }
		}
	}
	if author != env.Signer {
		return pubsub.ValidationReject, fmt.Sprintf("author %s is not signer %s", author, env.Signer), nil
	}
	now := h.now()
	exp := time.UnixMilli(expires)
	switch {
	case !exp.After(now.Add(-protocol.MaxClockSkew)):
		return pubsub.ValidationReject, fmt.Sprintf("expired at %s", exp.UTC().Format(time.RFC3339)), nil
	case !exp.After(now):
		// Expired in flight or by clock skew: drop, no penalty.
		return pubsub.ValidationIgnore, "just expired", nil
	case exp.After(now.Add(protocol.MaxOfferTTL + protocol.MaxClockSkew)):
		return pubsub.ValidationReject, fmt.Sprintf("expires %s, more than %s ahead", exp.UTC().Format(time.RFC3339), protocol.MaxOfferTTL), nil
	}
	// Admission: only offers of workers the verifier rated take a place
	// in the per-signer tables (and reach the handler).
	if o, ok := v.(*protocol.Offer); ok && h.cfg.RatingSigner != "" {
		if res, why := h.checkRating(o, now); res != pubsub.ValidationAccept {
			return res, why, nil
		}
	}
	// Direct: the peer that sent it to us (authenticated by the
	// transport) is its author (authenticated by the envelope).
	direct := from == env.Signer
	if res, why := h.guard.admit(env.Signer, kind, seq, expires, direct, time.Now(), now); res != pubsub.ValidationAccept {
		return res, why, nil
	}
	if hook != nil {
		if err := callHook(hook); err != nil {
			if errors.Is(err, ErrIgnore) {
				return pubsub.ValidationIgnore, err.Error(), nil
			}
			return pubsub.ValidationReject, err.Error(), nil
		}
	}
	return pubsub.ValidationAccept, "", v
}

// callHook runs a validation hook, turning a panic into a rejection.
func callHook(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("validation hook panicked: %v", r)
		}
	}()
	return f()
}

// seqGuard keeps, per signer and topic, the last accepted Seq, a replay
// floor and a token bucket. Entries are forgotten once every message they
// saw has expired (a replay of them would be refused as expired anyway);
// when the map is full of live entries an arbitrary one is evicted.
//
// Seqs only have to increase (PublishOffer uses the clock in
// microseconds), so the reorder window is counted in messages, not Seq
// units: floor is the first Seq of the last completed generation of
// window accepted messages, i.e. the Seq accepted between window and
// 2·window messages ago (0 until window messages were accepted: no lower
// Seq is known to be old yet).
type seqGuard struct {
	mu        sync.Mutex
	m         map[peer.ID]*signerState
	max       int
	rate      float64
	burst     float64
	window    uint64
	lastSweep time.Time
}

type signerState struct {
	t          [numKinds]seqTrack
	maxExpires int64 // unix ms, latest expiry accepted
}

// seqTrack is one signer's state on one topic.
type seqTrack struct {
	seen     bool
	last     uint64 // highest Seq accepted
	floor    uint64 // a lower Seq is a replay
	mark     uint64 // first Seq of the current generation
	n        uint64 // messages accepted in the current generation
	tokens   float64
	refilled time.Time
}

func newSeqGuard(maxSigners int, rate, burst float64, window uint64) *seqGuard {
	return &seqGuard{m: make(map[peer.ID]*signerState), max: maxSigners, rate: rate, burst: burst, window: window}
}

// admit checks seq against the signer's last and takes a rate token;
// mono is a monotonic clock reading, wall the clock expiry is judged by.
//
//   - Seq below the floor: reject (a replay, from the author or a relay).
//   - Otherwise every message costs the signer a token, also the ones
//     dropped next, so that old Seqs cannot be sent for free; no token:
//     reject when it comes from the author, ignore when relayed.
//   - Seq not above the last (reordered in flight, or a copy): ignore. The
//     author is not penalised for it either: its direct stream can be
//     slower than a path through relays, and an IWANT answer can bring an
//     older message after a newer one.
//   - Otherwise accept.
func (g *seqGuard) admit(signer peer.ID, k topicKind, seq uint64, expires int64, direct bool, mono, wall time.Time) (pubsub.ValidationResult, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.m[signer]
	if st == nil {
		g.makeRoom(mono, wall)
		st = &signerState{}
		for i := range st.t {
			st.t[i].tokens = g.burst
			st.t[i].refilled = mono
		}
		g.m[signer] = st
	}
	t := &st.t[k]
	stale := t.seen && seq <= t.last
	if stale && seq < t.floor {
		return pubsub.ValidationReject, fmt.Sprintf("replayed seq %d (last %d, floor %d)", seq, t.last, t.floor)
	}
	if el := mono.Sub(t.refilled).Seconds(); el > 0 {
		t.tokens = min(g.burst, t.tokens+el*g.rate)
		t.refilled = mono
	}
	if t.tokens < 1 {
		if direct {
			return pubsub.ValidationReject, fmt.Sprintf("rate above %.3g/s", g.rate)
		}
		return pubsub.ValidationIgnore, fmt.Sprintf("rate above %.3g/s (relayed)", g.rate)
	}
	t.tokens--
	switch {
	case stale && seq == t.last:
		return pubsub.ValidationIgnore, fmt.Sprintf("seq %d already seen", seq)
	case stale:
		return pubsub.ValidationIgnore, fmt.Sprintf("seq %d reordered (last %d)", seq, t.last)
	}
	if t.n == 0 {
		t.mark = seq
	}
	t.n++
	if t.n >= g.window {
		t.floor, t.n = t.mark, 0
	}
	t.last, t.seen = seq, true
	st.maxExpires = max(st.maxExpires, expires)
	return pubsub.ValidationAccept, ""
}

// makeRoom frees at least one entry when the map is full.
func (g *seqGuard) makeRoom(mono, wall time.Time) {
	if len(g.m) < g.max {
		return
	}
	if mono.Sub(g.lastSweep) >= time.Second {
		g.lastSweep = mono
		cutoff := wall.Add(-protocol.MaxClockSkew).UnixMilli()
		for p, st := range g.m {
			if st.maxExpires < cutoff {
				delete(g.m, p)
			}
		}
	}
	for p := range g.m {
		if len(g.m) < g.max {
			break
		}
		delete(g.m, p)
	}
}

// logLimiter allows about ten log lines per second.
type logLimiter struct {
	mu     sync.Mutex
	window time.Time
	n      int
}

func (l *logLimiter) allow() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.window) >= time.Second {
		l.window, l.n = now, 0
	}
	l.n++
	return l.n <= 10
}

// maxRatings bounds the verified ratings kept (by hash of the sealed
// bytes): a worker quotes the same sealed rating in every offer until it
// is renewed, so its signature is checked once per rating, not per offer.
const maxRatings = 4096

// ratingCache holds verified ratings: who they rate, until when.
type ratingCache struct {
	mu sync.Mutex
	m  map[[32]byte]ratedUntil
}

type ratedUntil struct {
	worker  peer.ID
	expires int64 // unix ms
}

// checkRating admits an offer only with a Rating sealed by
// Config.RatingSigner for the offer's worker: missing, forged or for
// another worker is rejected; expired is ignored (an honest worker whose
// renewal is late, or a clock behind).
func (h *Host) checkRating(o *protocol.Offer, now time.Time) (pubsub.ValidationResult, string) {
	if len(o.Rating) == 0 {
		return pubsub.ValidationReject, "offer without a rating"
	}
	key := sha256.Sum256(o.Rating)
	c := &h.ratings
	c.mu.Lock()
	r, ok := c.m[key]
	c.mu.Unlock()
	if !ok {
		var rt protocol.Rating
		signer, err := protocol.OpenAs(o.Rating, &rt)
		if err != nil {
			return pubsub.ValidationReject, fmt.Sprintf("rating: %v", err)
		}
		if signer != h.cfg.RatingSigner {
			return pubsub.ValidationReject, fmt.Sprintf("rating sealed by %s, not the verifier", signer)
		}
		r = ratedUntil{worker: rt.Worker, expires: rt.Expires}
		c.mu.Lock()
		if c.m == nil {
			c.m = make(map[[32]byte]ratedUntil)
		}
		for k := range c.m {
			if len(c.m) < maxRatings {
				break
			}
			delete(c.m, k)
		}
		c.m[key] = r
		c.mu.Unlock()
	}
	switch {
	case r.worker != o.Worker:
		return pubsub.ValidationReject, fmt.Sprintf("rating is for %s, offer from %s", r.worker, o.Worker)
	case r.expires <= now.UnixMilli():
		return pubsub.ValidationIgnore, "rating expired"
	}
	return pubsub.ValidationAccept, ""
}

// validateQueue is pubsub's validation queue (messages waiting for the
// validator; beyond it they are dropped unvalidated). At most 16 KiB each:
// 16 MiB. Each relay can put at most Config.RelayBurst messages in it at
// once.
const validateQueue = 1024

// inspectRPC runs on every gossipsub RPC a peer sends, before its messages
// are queued for validation: each message on an Aspen topic takes one of
// the sender's relay tokens for that topic, and messages beyond them are
// removed from the RPC (its control part is kept) and counted against the
// sender (relayGuard.penalty).
func (h *Host) inspectRPC(from peer.ID, rpc *pubsub.RPC) error {
	if len(rpc.Publish) == 0 {
		return nil
	}
	now := time.Now()
	kept := rpc.Publish[:0]
	dropped := 0
	for _, m := range rpc.Publish {
		k, ok := topicKindOf(m.GetTopic())
		if !ok || h.relays.take(from, k, now) {
			kept = append(kept, m)
			continue
		}
		dropped++
	}
	for i := len(kept); i < len(rpc.Publish); i++ {
		rpc.Publish[i] = nil
	}
	rpc.Publish = kept
	if dropped > 0 {
		h.relayDropped.Add(uint64(dropped))
		if h.logLimit.allow() {
			h.log.Debug("gossip over the relay rate dropped", "from", from, "messages", dropped)
		}
	}
	return nil
}

func topicKindOf(name string) (topicKind, bool) {
	for k, n := range topicNames {
		if n == name {
			return topicKind(k), true
		}
	}
	return 0, false
}

// relayGuard keeps, per peer that forwards gossip to us, a token bucket
// per topic and a decaying count of the messages dropped over it (its
// penalty). Entries are bounded: when the table is full, idle entries
// (full buckets, no penalty left) are dropped, then arbitrary ones.
type relayGuard struct {
	mu    sync.Mutex
	m     map[peer.ID]*relayState
	max   int
	rate  float64
	burst float64
}

type relayState struct {
	tokens   [numKinds]float64
	refilled time.Time
	excess   float64 // messages dropped over the rate, decaying
	excessAt time.Time
}

// Relay penalty: each message dropped over the rate costs the relay
// relayPenaltyPerDrop of application score, halving every
// relayPenaltyHalfLife: 100 drops put it below the gossip threshold,
// 800 below the graylist threshold.
const (
	relayPenaltyPerDrop  = 0.1
	relayPenaltyHalfLife = time.Minute
)

func newRelayGuard(max int, rate, burst float64) *relayGuard {
	return &relayGuard{m: make(map[peer.ID]*relayState), max: max, rate: rate, burst: burst}
}

// decay brings st.excess to now.
func (st *relayState) decay(now time.Time) {
	if el := now.Sub(st.excessAt); el > 0 && st.excess > 0 {
		st.excess *= math.Exp2(-float64(el) / float64(relayPenaltyHalfLife))
		if st.excess < 0.01 {
			st.excess = 0
		}
	}
	st.excessAt = now
}

// take spends one of p's tokens on topic k; false when it has none (the
// message is dropped and counted against p).
func (g *relayGuard) take(p peer.ID, k topicKind, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.m[p]
	if st == nil {
		g.makeRoom(now)
		st = &relayState{refilled: now, excessAt: now}
		for i := range st.tokens {
			st.tokens[i] = g.burst
		}
		g.m[p] = st
	}
	if el := now.Sub(st.refilled).Seconds(); el > 0 {
		for i := range st.tokens {
			st.tokens[i] = min(g.burst, st.tokens[i]+el*g.rate)
		}
		st.refilled = now
	}
	if st.tokens[k] < 1 {
		st.decay(now)
		st.excess++
		return false
	}
	st.tokens[k]--
	return true
}

// penalty is p's current application score from the relay limit (≤ 0).
func (g *relayGuard) penalty(p peer.ID, now time.Time) float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.m[p]
	if st == nil {
		return 0
	}
	st.decay(now)
	return -relayPenaltyPerDrop * st.excess
}

// makeRoom frees at least one entry when the table is full.
func (g *relayGuard) makeRoom(now time.Time) {
	if len(g.m) < g.max {
		return
	}
	full := now.Add(-time.Duration(g.burst / g.rate * float64(time.Second)))
	for p, st := range g.m {
		st.decay(now)
		if st.excess == 0 && !st.refilled.After(full) {
			delete(g.m, p)
		}
	}
	for p := range g.m {
		if len(g.m) < g.max {
			break
		}
		delete(g.m, p)
	}
}

// trackedSigners and trackedRelays are the sizes of the per-signer and
// per-relay tables.
func (h *Host) trackedSigners() int {
	h.guard.mu.Lock()
	defer h.guard.mu.Unlock()
	return len(h.guard.m)
}

func (h *Host) trackedRelays() int {
	h.relays.mu.Lock()
	defer h.relays.mu.Unlock()
	return len(h.relays.m)
}
