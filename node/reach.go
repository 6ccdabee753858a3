package node

import (
	"context"
	"time"

	"github.com/aspen-market/aspen/node/p2p"
)

// Network is how peers reach the node (p2p.Reachability: AutoNAT, relay
// reservations) and how the node is connected to its verifier.
type Network struct {
	p2p.Reachability
	// VerifierPath is the connection to the pinned verifier: direct,
	// hole-punched, relayed or none.
	VerifierPath p2p.Path `json:"verifier_path"`
}

// Network returns the node's reachability and its path to the verifier.
func (n *Node) Network() Network {
	return Network{Reachability: n.host.Reachability(), VerifierPath: n.host.PathTo(n.cfg.Verifier.ID)}
}

// OnReachability calls f (from one goroutine, in order) each time the
// node's reachability changes.
func (n *Node) OnReachability(f func(p2p.Reachability)) { n.host.OnReachability(f) }

// Unreachable reports whether peers can neither dial the node nor reach it
// through a relay (then workers cannot fetch a consumer's blobs), with a
// sentence saying what to do; ok when reachable or not yet known.
func (n *Node) Unreachable() (string, bool) {
	r := n.host.Reachability()
	if r.Status != p2p.ReachPrivate || r.Inbound != p2p.InboundNone {
		return "", false
	}
	return "this node is behind NAT and holds no relay reservation yet: peers cannot reach it " +
		"(the verifier is its relay: check it is connected; or forward the node's TCP/UDP listen port on your router)", true
}

// reachWait bounds how long a consumer behind NAT waits, before it
// submits, for AutoNAT's verdict (about 17 s: the verifier's dial-back has
// to time out) and a relay reservation.
const reachWait = 45 * time.Second

// awaitReachable holds a consumer's submit while it looks to be behind NAT
// and has no relay reservation yet, so the addresses it announces let
// workers fetch its blobs. It returns at once on loopback, a LAN or a
// public address, and after reachWait (or ctx) in any case.
func (n *Node) awaitReachable(ctx context.Context) {
	waiting := func() bool {
		if n.host.NATPending() {
			return true
		}
		r := n.host.Reachability()
		// Private without a relay: a few seconds for the reservation.
		return r.Status == p2p.ReachPrivate && r.Inbound == p2p.InboundNone && n.now().Sub(r.Since) < 10*time.Second
	}
	if !waiting() {
		return
	}
	start := n.now()
	n.log.Info("behind NAT: waiting for a relay reservation before submitting, so that workers can fetch the module")
	ctx, cancel := context.WithTimeout(ctx, reachWait)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for waiting() {
		select {
		case <-ctx.Done():
			n.log.Warn("submitting before this node's reachability is known", "waited", n.now().Sub(start).Round(time.Millisecond))
			return
		case <-tick.C:
		}
	}
	n.log.Info("reachability known; submitting", "waited", n.now().Sub(start).Round(time.Millisecond), "network", n.Network().Summary())
}
