package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aspen-market/aspen/store"
)

// The node's gossip sequence (offers and bids). Peers keep, per signer,
// the last Seq they accepted and drop anything not above it (docs/p2p.md,
// checks 8 and 10), so a node must never reuse or go back on a Seq, also
// across a restart and when its clock is set back. Seq is the clock in
// microseconds, or the previous Seq + 1 when that is not ahead; a ceiling
// above every Seq handed out is kept durably (reserved a minute ahead, so
// it is written about once a minute), and a restart starts above it.

// seqKey is the nsMeta key of the durable ceiling (u64 big-endian).
var seqKey = []byte("gossip-seq")

// seqReserve is how far ahead of the Seq handed out the ceiling is
// written: one minute of microseconds.
const seqReserve = uint64(time.Minute / time.Microsecond)

type gossipSeq struct {
	st  *store.Store
	now func() time.Time

	mu      sync.Mutex
	last    uint64 // the last Seq handed out (or the ceiling after a restart)
	ceiling uint64 // durably stored: every Seq handed out is ≤ it
}

// loadGossipSeq reads the ceiling a previous run left.
func loadGossipSeq(st *store.Store, now func() time.Time) (*gossipSeq, error) {
	g := &gossipSeq{st: st, now: now}
	b, err := st.Get(nsMeta, seqKey)
	switch {
	case err == nil && len(b) == 8:
		g.ceiling = binary.BigEndian.Uint64(b)
		g.last = g.ceiling
	case err == nil:
		return nil, fmt.Errorf("node: gossip sequence record of %d bytes", len(b))
	case !errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("node: gossip sequence: %w", err)
	}
	return g, nil
}

// next returns the next Seq: above every Seq this data directory ever
// handed out. It fails only if the ceiling cannot be made durable (the
// Seq is not used then).
func (g *gossipSeq) next(ctx context.Context) (uint64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	seq := max(g.last+1, uint64(g.now().UnixMicro()))
	if seq > g.ceiling {
		c := seq + seqReserve
		err := g.st.Durable(ctx, func(tx *store.Tx) error {
			return tx.Put(nsMeta, seqKey, binary.BigEndian.AppendUint64(nil, c))
		})
		if err != nil {
			return 0, fmt.Errorf("node: store gossip sequence: %w", err)
		}
		g.ceiling = c
	}
	g.last = seq
	return seq, nil
}
