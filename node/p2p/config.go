package p2p

import (
	"fmt"
	"log/slog"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/aspen-market/aspen/protocol"
)

// Config configures a Host. Start from DefaultConfig, set Key (and what else
// you need), and pass it to New, which calls Validate.
type Config struct {
	// Key is the host's identity and the key every outgoing message is
	// sealed with. Required; must be ed25519.
	Key crypto.PrivKey
	// ListenAddrs are multiaddrs to listen on. Default: all IPv4
	// interfaces, a random TCP port and a random UDP port for QUIC.
	ListenAddrs []string
	// Bootstrap peers are dialled at Start (with backoff, in the
	// background) and again whenever the host has no connection at all.
	Bootstrap []peer.AddrInfo
	// Pinned peers (the verifier) are protected in the connection manager,
	// dialled at Start and redialled whenever they drop.
	Pinned []peer.AddrInfo

	// ConnLow and ConnHigh are the connection manager's watermarks: above
	// ConnHigh connections it trims down to ConnLow, sparing pinned peers
	// and connections younger than ConnGrace.
	ConnLow, ConnHigh int
	ConnGrace         time.Duration
	// MaxMemory bounds the memory the resource manager lets libp2p use;
	// 0 means one eighth of the machine's memory. MaxFD bounds file
	// descriptors; 0 means half the process limit.
	MaxMemory int64
	MaxFD     int
	// DialTimeout bounds one dial attempt.
	DialTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the exponential backoff between
	// dial attempts to bootstrap and pinned peers.
	ReconnectMin, ReconnectMax time.Duration

	// ValidateOffer and ValidateBid, when set, run after the built-in
	// gossip checks (e.g. to check an offer's embedded verifier rating).
	// An error rejects the message (the relaying peer's score falls)
	// unless it wraps ErrIgnore, which only drops it.
	ValidateOffer func(*protocol.Offer) error
	ValidateBid   func(*protocol.Bid) error
	// GossipRate (messages per second) and GossipBurst bound what one
	// signer may publish per topic; a message beyond that is dropped and,
	// when it comes straight from its author, penalised.
	GossipRate  float64
	GossipBurst int
	// RatingSigner, when set, is the verifier whose sealed Rating an offer
	// must carry, for the offer's worker: an offer without one, or with
	// one another key sealed or for another worker, is rejected; one whose
	// rating has expired is ignored. Checked before the offer's signer
	// takes a place in the per-signer tables. Empty: no check (tests).
	RatingSigner peer.ID
	// RelayRate (messages per second) and RelayBurst bound what one peer
	// may send us per topic, whoever signed it; a message beyond that is
	// dropped before it is queued for validation, and each one lowers the
	// peer's application score (see docs/p2p.md). An honest relay
	// forwards about (workers / offer interval) / mesh degree offers per
	// second: 100/s serves ~6,000 workers announcing every 10 s.
	RelayRate  float64
	RelayBurst int
	// MaxTrackedRelays bounds the per-relay rate state.
	MaxTrackedRelays int
	// SeqWindow: a gossip message whose Seq is older than the signer's
	// last but among its last SeqWindow messages is only ignored (it may
	// have been reordered in flight); anything older is rejected. It
	// counts messages, not Seq units (Seqs are clock readings).
	SeqWindow uint64
	// MaxTrackedSigners bounds the per-signer replay/rate state.
	MaxTrackedSigners int
	// GossipBuffer is the subscription buffer per topic; a handler slower
	// than the gossip rate loses messages beyond it.
	GossipBuffer int
	// ScoreParams and ScoreThresholds override DefaultScoreParams.
	ScoreParams     *pubsub.PeerScoreParams
	ScoreThresholds *pubsub.PeerScoreThresholds
	// ScoreInspectPeriod is how often PeerScore's snapshot is refreshed.
	ScoreInspectPeriod time.Duration

	// RequestTimeout bounds one Request round trip and one handler call.
	RequestTimeout time.Duration
	// StreamIdleTimeout: a request/response stream left idle this long is
	// closed by the server (the client discards pooled streams after half
	// of it).
	StreamIdleTimeout time.Duration
	// MaxIdleStreams is how many idle request streams are kept open per
	// (peer, protocol) for reuse; 0 opens a new stream per request.
	MaxIdleStreams int

	// Blobs, when set, is served to peers on protocol.ProtoBlob.
	Blobs BlobSource
	// BlobAuth, when set, decides which peer may have which blob; a
	// refused request is answered like one for a blob not stored. nil
	// serves every stored blob to any peer (tests and benchmarks only:
	// aspen-node and aspen-verifier always set it).
	BlobAuth BlobAuthFunc
	// MaxBlobStreams bounds blob streams served at once; requests beyond
	// it are answered BlobBusy.
	MaxBlobStreams int
	// BlobChunkSize is the range fetched per request when a blob comes
	// from several peers.
	BlobChunkSize int64
	// BlobIdleTimeout: a blob stream that moves no byte for this long is
	// abandoned (and resumed elsewhere or from the same peer).
	BlobIdleTimeout time.Duration
	// BlobRetries is how many times a range is retried from one peer
	// before that peer is given up for the fetch.
	BlobRetries int
	// BlobParallel bounds ranges in flight per multi-peer fetch.
	BlobParallel int
	// MaxFetches bounds concurrent FetchBlob calls; more wait.
	MaxFetches int
	// BlobMinRate (bytes per second) and BlobRateWindow: a blob stream
	// that delivers fewer than BlobMinRate × BlobRateWindow bytes in any
	// window of BlobRateWindow is cut off (ErrBlobTooSlow) and its peer
	// dropped from the fetch: a peer trickling a byte now and then, which
	// BlobIdleTimeout alone never ends, is gone after one window.
	BlobMinRate    int64
	BlobRateWindow time.Duration
	// BlobFetchTimeout bounds one FetchBlob from the moment it starts
	// moving bytes (after waiting for a MaxFetches place), whatever its
	// context allows; past it the fetch fails with ErrBlobTooSlow.
	BlobFetchTimeout time.Duration

	// NAT traversal (docs/p2p.md, "Reachability"). AutoNAT v1 and v2
	// (clients), circuit relay v2 (client), identify's observed addresses
	// and DCUtR hole punching are always on for a host New builds.
	//
	// Relays are circuit relay v2 relays (the pinned verifier, relays the
	// operator runs): once AutoNAT finds the host unreachable it reserves
	// a slot on them and advertises /p2p-circuit addresses through them.
	Relays []peer.AddrInfo
	// RelayService, when set, makes the host a circuit relay v2 for other
	// peers, within these limits (the verifier, operator relays).
	RelayService *RelayLimits
	// NATService answers other peers' AutoNAT dial-back requests (on the
	// verifier; rate-limited by libp2p).
	NATService bool
	// ForceReachability, when not ReachabilityUnknown, replaces AutoNAT
	// v1's verdict (ReachabilityPrivate: reserve relay slots at once).
	ForceReachability network.Reachability
	// RelayBlobMax is the most bytes one blob stream may carry over a
	// relayed connection; a larger range waits up to DirectConnWait for a
	// direct connection (hole punching or the peer dialling back) instead.
	// The relay's own per-connection data limit also applies.
	RelayBlobMax int64
	// DirectConnWait bounds how long a blob stream too large for a relayed
	// connection waits for a direct one.
	DirectConnWait time.Duration
	// OnReachability, when set, is called (from one goroutine, in order)
	// each time the host's reachability summary changes.
	OnReachability func(Reachability)

	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Metrics, when set, receives libp2p's Prometheus metrics.
	Metrics prometheus.Registerer
	// Now is the clock used for expiry checks; nil means time.Now.
	Now func() time.Time
	// Host, when set, is used instead of building a libp2p host (tests
	// with mocknet, embedding). It must belong to Key; Close closes it.
	Host host.Host
}

// Defaults.
const (
	DefaultConnLow        = 128
	DefaultConnHigh       = 512
	DefaultBlobChunkSize  = 4 << 20
	DefaultMaxBlobStreams = 64
	// DefaultRelayBlobMax is Config.RelayBlobMax's default: half of
	// DefaultRelayLimits' data limit, leaving room for identify, hole
	// punching and a second small blob on the same relayed connection.
	DefaultRelayBlobMax = 512 << 10
)

// DefaultConfig returns the defaults (Key still to be set).
func DefaultConfig() Config {
	return Config{
		ListenAddrs:        []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"},
		ConnLow:            DefaultConnLow,
		ConnHigh:           DefaultConnHigh,
		ConnGrace:          time.Minute,
		DialTimeout:        10 * time.Second,
		ReconnectMin:       500 * time.Millisecond,
		ReconnectMax:       time.Minute,
		GossipRate:         2,
		GossipBurst:        10,
		SeqWindow:          16,
		MaxTrackedSigners:  65536,
		RelayRate:          100,
		RelayBurst:         200,
		MaxTrackedRelays:   4096,
		GossipBuffer:       1024,
		ScoreInspectPeriod: time.Second,
		RequestTimeout:     30 * time.Second,
		StreamIdleTimeout:  time.Minute,
		MaxIdleStreams:     32,
		MaxBlobStreams:     DefaultMaxBlobStreams,
		BlobChunkSize:      DefaultBlobChunkSize,
		BlobIdleTimeout:    30 * time.Second,
		BlobRetries:        3,
		BlobParallel:       8,
		MaxFetches:         32,
		RelayBlobMax:       DefaultRelayBlobMax,
		DirectConnWait:     20 * time.Second,
		BlobMinRate:        16 << 10,
		BlobRateWindow:     20 * time.Second,
		BlobFetchTimeout:   30 * time.Minute,
	}
}

// Validate reports the first missing or out-of-range field, wrapping
// ErrInvalidConfig.
func (c *Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, a...)...)
	}
	if c.Key == nil {
		return bad("no key")
	}
	if c.Key.Type() != crypto.Ed25519 {
		return bad("key type %s, want ed25519", c.Key.Type())
	}
	if c.Host == nil {
		if len(c.ListenAddrs) == 0 {
			return bad("no listen addresses")
		}
		for _, a := range c.ListenAddrs {
			if _, err := ma.NewMultiaddr(a); err != nil {
				return bad("listen address %q: %v", a, err)
			}
		}
	} else {
		id, err := peer.IDFromPrivateKey(c.Key)
		if err != nil || id != c.Host.ID() {
			return bad("host %s does not belong to the key", c.Host.ID())
		}
	}
	for _, pi := range append(append([]peer.AddrInfo(nil), c.Bootstrap...), c.Pinned...) {
		if pi.ID == "" {
			return bad("bootstrap or pinned peer without ID")
		}
	}
	switch {
	case c.ConnLow < 1 || c.ConnHigh < c.ConnLow:
		return bad("connection watermarks low %d high %d", c.ConnLow, c.ConnHigh)
	case c.ConnGrace < 0:
		return bad("negative connection grace period")
	case c.MaxMemory < 0 || c.MaxFD < 0:
		return bad("negative resource limit")
	case c.DialTimeout <= 0:
		return bad("dial timeout %v", c.DialTimeout)
	case c.ReconnectMin <= 0 || c.ReconnectMax < c.ReconnectMin:
		return bad("reconnect backoff %v..%v", c.ReconnectMin, c.ReconnectMax)
	case !(c.GossipRate > 0) || c.GossipBurst < 1:
		return bad("gossip rate %v burst %d", c.GossipRate, c.GossipBurst)
	case c.MaxTrackedSigners < 1:
		return bad("max tracked signers %d", c.MaxTrackedSigners)
	case !(c.RelayRate > 0) || c.RelayBurst < 1 || c.MaxTrackedRelays < 1:
		return bad("relay rate %v burst %d, max tracked relays %d", c.RelayRate, c.RelayBurst, c.MaxTrackedRelays)
	case c.GossipBuffer < 1:
		return bad("gossip buffer %d", c.GossipBuffer)
	case c.ScoreInspectPeriod <= 0:
		return bad("score inspect period %v", c.ScoreInspectPeriod)
	case (c.ScoreParams == nil) != (c.ScoreThresholds == nil):
		return bad("score params and thresholds must be set together")
	case c.RequestTimeout <= 0 || c.StreamIdleTimeout <= 0:
		return bad("request timeout %v, idle timeout %v", c.RequestTimeout, c.StreamIdleTimeout)
	case c.MaxIdleStreams < 0:
		return bad("max idle streams %d", c.MaxIdleStreams)
	case c.MaxBlobStreams < 1:
		return bad("max blob streams %d", c.MaxBlobStreams)
	case c.BlobChunkSize < 64<<10 || c.BlobChunkSize > protocol.MaxBlobSize:
		return bad("blob chunk size %d", c.BlobChunkSize)
	case c.BlobIdleTimeout <= 0:
		return bad("blob idle timeout %v", c.BlobIdleTimeout)
	case c.BlobRetries < 1 || c.BlobParallel < 1 || c.MaxFetches < 1:
		return bad("blob retries %d, parallel %d, fetches %d", c.BlobRetries, c.BlobParallel, c.MaxFetches)
	case c.BlobMinRate < 1 || c.BlobRateWindow <= 0 || c.BlobFetchTimeout <= 0:
		return bad("blob minimum rate %d/s over %v, fetch timeout %v", c.BlobMinRate, c.BlobRateWindow, c.BlobFetchTimeout)
	case c.RelayBlobMax < 0 || c.DirectConnWait <= 0:
		return bad("relay blob max %d, direct connection wait %v", c.RelayBlobMax, c.DirectConnWait)
	}
	switch c.ForceReachability {
	case network.ReachabilityUnknown, network.ReachabilityPublic, network.ReachabilityPrivate:
	default:
		return bad("forced reachability %v", c.ForceReachability)
	}
	for _, pi := range c.Relays {
		if pi.ID == "" {
			return bad("relay without ID")
		}
	}
	if c.RelayService != nil {
		if err := c.RelayService.validate(); err != nil {
			return bad("relay service: %v", err)
		}
	}
	return nil
}
