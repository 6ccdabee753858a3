package node

import (
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
