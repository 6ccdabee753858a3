package verifier

import (
	"encoding/json"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/node/p2p"
)

// Blob access (docs/p2p.md, "Blob access"): the verifier's hosts serve a
// stored blob only to a peer with a reason to hold it, judged from the
// verifier's own records; any other request is answered as if the blob
// were not stored.

// mainBlobAllowed is the verifier host's p2p.BlobAuthFunc: a group's
// module, a task's input and the verifier's own result of it, only to the
// group's consumer, found by the group and task the request names.
func (v *Verifier) mainBlobAllowed(from peer.ID, c cid.Cid, why p2p.BlobReason) bool {
	b, err := v.st.Get(nsGroup, why.Group[:])
	if err != nil {
		return false
	}
	var g groupRecord
	if json.Unmarshal(b, &g) != nil || g.Consumer != from.String() {
		return false
	}
	s := c.String()
	if g.Module == s {
		return true
	}
	b, err = v.st.Get(nsTask, taskKey(why.Group, why.Task))
	if err != nil {
		return false
	}
	var t taskRecord
	if decodeTaskRecord(b, &t) != nil {
		return false
	}
	return t.Input == s || (t.Own != nil && t.Own.Result == s)
}

// deskBlobAllowed is the benchmark desk's p2p.BlobAuthFunc: a benchmark's
// module and inputs, only to the worker it is being sent to, while it is
// open.
func (v *Verifier) deskBlobAllowed(from peer.ID, c cid.Cid, _ p2p.BlobReason) bool {
	w, s := from.String(), c.String()
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, b := range v.benches {
		if b.Worker != w {
			continue
		}
		if b.Module == s {
			return true
		}
		for _, t := range b.Tasks {
			if t.Input == s {
				return true
			}
		}
	}
	return false
}
