package p2p

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
)

// RelayLimits bound the circuit relay v2 service a host offers (Config.
// RelayService). A relayed connection is reset when it reaches Duration or
// has carried Data bytes in either direction; the peer may open another.
type RelayLimits struct {
	// Duration and Data bound one relayed connection.
	Duration time.Duration
	Data     int64
	// MaxReservations bounds the peers holding a slot at once;
	// MaxReservationsPerIP those from one IP address.
	MaxReservations      int
	MaxReservationsPerIP int
	// MaxCircuits bounds the relayed connections open to or from one peer.
	MaxCircuits int
	// ReservationTTL is how long a reservation lasts before the peer must
	// renew it (libp2p's client renews well before).
	ReservationTTL time.Duration
	// AllowReserve, when set, decides which peers may hold a reservation
	// (e.g. only peers the verifier knows); nil allows any peer.
	AllowReserve func(peer.ID) bool

	// allowPrivate lets reservations carry non-public relay addresses
	// (tests on loopback).
	allowPrivate bool
}

// DefaultRelayLimits are the limits of the verifier's relay: enough for
// hole punching, Aspen's request traffic and blobs up to RelayBlobMax,
// not for bulk data (that goes direct).
func DefaultRelayLimits() RelayLimits {
	return RelayLimits{
		Duration:             2 * time.Minute,
		Data:                 1 << 20,
		MaxReservations:      1024,
		MaxReservationsPerIP: 8,
		MaxCircuits:          16,
		ReservationTTL:       time.Hour,
	}
}

func (l *RelayLimits) validate() error {
	switch {
	case l.Duration <= 0 || l.Data <= 0:
		return fmt.Errorf("connection limits %v, %d bytes", l.Duration, l.Data)
	case l.MaxReservations < 1 || l.MaxReservationsPerIP < 1 || l.MaxCircuits < 1:
		return fmt.Errorf("reservations %d (%d per IP), circuits %d", l.MaxReservations, l.MaxReservationsPerIP, l.MaxCircuits)
	case l.ReservationTTL < time.Minute:
		return fmt.Errorf("reservation TTL %v (at least 1m)", l.ReservationTTL)
	}
	return nil
}

// startRelay starts the circuit relay v2 service on h within l.
func startRelay(h host.Host, l RelayLimits) (*relayv2.Relay, error) {
	rc := relayv2.DefaultResources()
	rc.Limit = &relayv2.RelayLimit{Duration: l.Duration, Data: l.Data}
	rc.ReservationTTL = l.ReservationTTL
	rc.MaxReservations = l.MaxReservations
	rc.MaxReservationsPerIP = l.MaxReservationsPerIP
	rc.MaxReservationsPerASN = max(rc.MaxReservationsPerASN, l.MaxReservationsPerIP)
	rc.MaxCircuits = l.MaxCircuits
	opts := []relayv2.Option{relayv2.WithResources(rc)}
	if l.AllowReserve != nil {
		opts = append(opts, relayv2.WithACL(relayACL{l.AllowReserve}))
	}
	if l.allowPrivate {
		opts = append(opts, relayv2.WithReservationAddressFilter(func(ma.Multiaddr) bool { return true }))
	}
	r, err := relayv2.New(h, opts...)
	if err != nil {
		return nil, fmt.Errorf("p2p: relay service: %w", err)
	}
	return r, nil
}

// relayACL admits reservations by peer ID; a relayed connection may only
// go to a peer holding a reservation (the relay itself checks that).
type relayACL struct{ allow func(peer.ID) bool }

func (a relayACL) AllowReserve(p peer.ID, _ ma.Multiaddr) bool { return a.allow(p) }

func (a relayACL) AllowConnect(peer.ID, ma.Multiaddr, peer.ID) bool { return true }
