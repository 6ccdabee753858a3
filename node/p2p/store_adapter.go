package p2p

import (
	"github.com/ipfs/go-cid"

	"github.com/aspen-market/aspen/store"
)

// StoreBlobs adapts a store.Store as a BlobSource (the store already is a
// BlobSink).
func StoreBlobs(s *store.Store) BlobSource { return storeSource{s} }

type storeSource struct{ s *store.Store }

func (s storeSource) HasBlob(c cid.Cid) (int64, bool, error) { return s.s.HasBlob(c) }

func (s storeSource) ReadBlob(c cid.Cid) (BlobReader, error) {
	r, err := s.s.OpenBlob(c)
	if err != nil {
		return nil, err
	}
	return r, nil
}

var _ BlobSink = (*store.Store)(nil)
