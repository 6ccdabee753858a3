package node

import (
	"crypto/sha256"
	"errors"
	"sync"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/store"
)

// Blob access (docs/p2p.md, "Blob access"). The node serves a stored blob
// only to a peer with a reason to hold it, judged from its own records:
//
//   - the pinned verifier: any blob (it spot-checks jobs and breaks ties);
//   - a worker fetching a consumer's module or input: only with a ticket,
//     a sealed Assignment from the pinned verifier naming that worker, this
//     node as consumer and the blob (as module or task input), for a group
//     of this node that still has tasks pending;
//   - a consumer fetching a result: only a result this node computed as a
//     worker for an assignment whose consumer it is (nsServe, written with
//     the results before the receipt that names this node as a holder).
//
// Everyone else is answered as if the blob were not stored.

// nsServe (worker): empty value by result CID bytes + consumer peer ID
// bytes: the consumer may fetch that result from this node.
const nsServe = "serve"

func serveKey(c cid.Cid, p peer.ID) []byte {
	return append(c.Bytes(), []byte(p)...)
}

// maxTickets bounds the verified tickets kept (by hash), so a worker
// fetching many inputs of one assignment costs one signature check.
const maxTickets = 1024

type ticketCache struct {
	mu sync.Mutex
	m  map[[32]byte]*protocol.Assignment
}

// assignment returns the assignment a ticket seals when the pinned
// verifier signed it; nil otherwise. Valid tickets are cached by hash
// (bounded; an arbitrary entry makes room).
func (n *Node) ticketAssignment(ticket []byte) *protocol.Assignment {
	if len(ticket) == 0 {
		return nil
	}
	h := sha256.Sum256(ticket)
	tc := &n.tickets
	tc.mu.Lock()
	a, ok := tc.m[h]
	tc.mu.Unlock()
	if ok {
		return a
	}
	asg := new(protocol.Assignment)
	signer, err := protocol.OpenAs(ticket, asg)
	if err != nil || signer != n.cfg.Verifier.ID {
		return nil
	}
	tc.mu.Lock()
	if tc.m == nil {
		tc.m = map[[32]byte]*protocol.Assignment{}
	}
	for k := range tc.m {
		if len(tc.m) < maxTickets {
			break
		}
		delete(tc.m, k)
	}
	tc.m[h] = asg
	tc.mu.Unlock()
	return asg
}

// blobAllowed is the node's p2p.BlobAuthFunc.
func (n *Node) blobAllowed(from peer.ID, c cid.Cid, why p2p.BlobReason) bool {
	if from == n.cfg.Verifier.ID {
		return true
	}
	if n.c != nil && n.consumerGrants(from, c, why.Ticket) {
		return true
	}
	if n.w != nil {
		_, err := n.store.Get(nsServe, serveKey(c, from))
		if err == nil {
			return true
		}
		if !errors.Is(err, store.ErrNotFound) {
			n.log.Error("blob access lookup", "cid", c, "err", err)
		}
	}
	return false
}

// consumerGrants reports whether ticket entitles worker p to blob c of
// one of this consumer's groups.
func (n *Node) consumerGrants(p peer.ID, c cid.Cid, ticket []byte) bool {
	asg := n.ticketAssignment(ticket)
	if asg == nil || asg.Worker != p || asg.Consumer != n.id {
		return false
	}
	named := asg.Module.Equals(c)
	for i := 0; !named && i < len(asg.Tasks); i++ {
		named = asg.Tasks[i].Input.Equals(c)
	}
	if !named {
		return false
	}
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	gs := n.c.groups[asg.Group]
	return gs != nil && gs.counts[TaskPending] > 0
}
