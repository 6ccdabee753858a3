package node

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/sandbox"
)

// Role says what a node does in the market.
type Role uint8

// DefaultMinSpeed is the min speed of a group submitted without one: 0.1,
// the lowest speed the verifier rates (market MinRatedSpeed), so a default
// bid never passes a worker over for its speed. Ratings follow the busy
// time the verifier sees, which load and bursts of tiny jobs can lower
// for a while, and a worker no bid takes gets no observations to recover
// from. The consumer still pays for work at each worker's rating, at most
// max price ÷ min speed per standard hour; its escrow is the budget at
// that speed.
const DefaultMinSpeed protocol.Speed = 100

const (
	RoleWorker   Role = 1 << iota // sells cycles
	RoleConsumer                  // buys cycles
)

// Has reports whether r includes x.
func (r Role) Has(x Role) bool { return r&x != 0 }

func (r Role) String() string {
	switch r {
	case RoleWorker:
		return "worker"
	case RoleConsumer:
		return "consumer"
	case RoleWorker | RoleConsumer:
		return "both"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// ParseRole parses "worker", "consumer" or "both".
func ParseRole(s string) (Role, error) {
	switch s {
	case "worker":
		return RoleWorker, nil
	case "consumer":
		return RoleConsumer, nil
	case "both":
		return RoleWorker | RoleConsumer, nil
	}
	return 0, fmt.Errorf("%w: role %q (want worker, consumer or both)", ErrBadRequest, s)
}

// Config configures a Node. Start from DefaultConfig.
type Config struct {
	// DataDir holds the identity key, the store and the API token.
	DataDir string
	// Listen are the libp2p listen multiaddrs.
	Listen []string
	// Bootstrap peers (multiaddrs with /p2p/ID) connected at start.
	Bootstrap []string
	// Verifier is the pinned verifier: its peer ID (required) and addrs.
	// The node trusts no other verifier key. With addrs it is also the
	// node's relay when the node is behind NAT.
	Verifier peer.AddrInfo
	// Relays are more circuit relays (multiaddrs with /p2p/ID, run by the
	// operator) the node reserves a slot on when it is behind NAT.
	Relays []string
	// Role: worker, consumer or both.
	Role Role
	// MinPrice is the worker's minimum price per hour.
	MinPrice protocol.Micros
	// Slots is how many jobs a worker runs at once.
	Slots int
	// QueueDepth is how many accepted replicas a worker may hold per slot.
	QueueDepth int
	// Owner labels the worker's owner (payout account) for the verifier.
	Owner string
	// APIAddr is the local HTTP API address ("" disables the API). It
	// must be a loopback address (127.0.0.0/8, ::1 or "localhost") unless
	// APIAllowRemote is set.
	APIAddr string
	// APIAllowRemote lets APIAddr be any address (e.g. 0.0.0.0 inside a
	// container whose port is published on the host's loopback). The API
	// is still token-protected, but the token then travels in clear
	// HTTP over that network.
	APIAllowRemote bool
	// OfferInterval is how often a worker re-announces its offer.
	OfferInterval time.Duration
	// HeartbeatInterval is how often a worker heartbeats to the verifier.
	HeartbeatInterval time.Duration
	// RequestTimeout bounds one request/response exchange with a peer.
	RequestTimeout time.Duration
	// Sandbox configures the job runner (workers; consumers use it to
	// compile-check modules).
	Sandbox sandbox.Config
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns a consumer+worker configuration listening on all
// interfaces with the API on 127.0.0.1:7341.
func DefaultConfig() Config {
	sb := sandbox.DefaultConfig()
	// A job's limit is its assignment's work budget (up to the protocol's
	// longest max run time); the wall clock is only the safety net above it.
	sb.WorkBudget = protocol.WorkBudget(uint64(protocol.MaxJobTimeout.Milliseconds()))
	sb.Timeout = protocol.WallClockFactor * protocol.MaxJobTimeout
	return Config{
		Listen:            []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"},
		Role:              RoleWorker | RoleConsumer,
		MinPrice:          10_000, // 0.01 per hour
		Slots:             1,
		QueueDepth:        64,
		APIAddr:           "127.0.0.1:7341",
		OfferInterval:     10 * time.Second,
		HeartbeatInterval: 2 * time.Second,
		RequestTimeout:    30 * time.Second,
		Sandbox:           sb,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case c.DataDir == "":
		return fmt.Errorf("%w: DataDir is required", ErrBadRequest)
	case c.Verifier.ID == "":
		return fmt.Errorf("%w: the verifier's peer ID is required", ErrBadRequest)
	case c.Role == 0 || c.Role > RoleWorker|RoleConsumer:
		return fmt.Errorf("%w: bad role %d", ErrBadRequest, c.Role)
	case c.MinPrice < 0:
		return fmt.Errorf("%w: negative minimum price", ErrBadRequest)
	case c.Role.Has(RoleWorker) && c.Slots < 1:
		return fmt.Errorf("%w: a worker needs at least one slot", ErrBadRequest)
	case c.QueueDepth < 1:
		return fmt.Errorf("%w: queue depth must be at least 1", ErrBadRequest)
	case c.OfferInterval <= 0 || c.HeartbeatInterval <= 0 || c.RequestTimeout <= 0:
		return fmt.Errorf("%w: intervals must be positive", ErrBadRequest)
	}
	if err := CheckAPIAddr(c.APIAddr, c.APIAllowRemote); err != nil {
		return err
	}
	return c.Sandbox.Validate()
}

// CheckAPIAddr refuses an API address that is not HOST:PORT, or whose host
// is not loopback (127.0.0.0/8, ::1, "localhost") unless allowRemote. ""
// (no API) passes.
func CheckAPIAddr(addr string, allowRemote bool) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: API address %q: %v", ErrBadRequest, addr, err)
	}
	if allowRemote {
		return nil
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%w: API address %q is not a loopback address (the API would be reachable from other machines); use 127.0.0.1, or allow it explicitly (APIAllowRemote, aspen-node --api-allow-remote)", ErrBadRequest, addr)
	}
	return nil
}
