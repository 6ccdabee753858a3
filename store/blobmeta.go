package store

import (
	"encoding/binary"
	"fmt"
)

// Blob metadata record, the value under 'b' cid:
//
//	byte    version (1)
//	byte    layout: 0 = inline, 1 = chunked, 2 = file
//	uvarint size of the blob in bytes
//	inline:  the blob's bytes (exactly size of them)
//	chunked: [8]byte upload id, uvarint chunk size, uvarint chunk count,
//	         count × 32-byte sha-256 of each chunk
//	file:    [8]byte file id, uvarint chunk size, uvarint chunk count,
//	         count × 4-byte CRC-32C (big-endian) of each chunk
//
// Chunk i of a chunked blob is the value under 'c' upload-id uint32be(i); all
// chunks are chunk-size bytes except the last. A file blob is the file
// blobs/<hex file id> in the store's directory; its chunks are the ranges
// [i·chunk size, (i+1)·chunk size) of that file. Stores written before the
// file layout existed hold chunked blobs; they are still read and deleted.

const (
	metaVersion    = 1
	layoutInline   = 0
	layoutChunked  = 1
	layoutFile     = 2
	maxStoredBlob  = 1 << 46 // 64 TiB: far above any configurable limit
	chunkHashBytes = 32
	chunkCRCBytes  = 4
)

type uploadID [8]byte

type blobMeta struct {
	size      int64
	chunked   bool   // stored in chunks: layout chunked or file
	file      bool   // layout file (chunked is set too)
	inline    []byte // the blob, when !chunked
	upload    uploadID
	chunkSize int64
	hashes    [][chunkHashBytes]byte // layout chunked
	crcs      []uint32               // layout file
}

func (m *blobMeta) chunkCount() int64 {
	switch {
	case !m.chunked:
		return 1
	case m.file:
		return int64(len(m.crcs))
	}
	return int64(len(m.hashes))
}

// chunkLen is the length of chunk i.
func (m *blobMeta) chunkLen(i int64) int64 {
	if !m.chunked {
		return m.size
	}
	if i == m.chunkCount()-1 {
		return m.size - i*m.chunkSize
	}
	return m.chunkSize
}

func encodeInlineMeta(data []byte) []byte {
	out := make([]byte, 0, 2+binary.MaxVarintLen64+len(data))
	out = append(out, metaVersion, layoutInline)
	out = binary.AppendUvarint(out, uint64(len(data)))
	return append(out, data...)
}

func encodeChunkedMeta(size int64, up uploadID, chunkSize int64, hashes [][chunkHashBytes]byte) []byte {
	out := make([]byte, 0, 2+3*binary.MaxVarintLen64+len(up)+len(hashes)*chunkHashBytes)
	out = append(out, metaVersion, layoutChunked)
	out = binary.AppendUvarint(out, uint64(size))
	out = append(out, up[:]...)
	out = binary.AppendUvarint(out, uint64(chunkSize))
	out = binary.AppendUvarint(out, uint64(len(hashes)))
	for _, h := range hashes {
		out = append(out, h[:]...)
	}
	return out
}

func encodeFileMeta(size int64, id uploadID, chunkSize int64, crcs []uint32) []byte {
	out := make([]byte, 0, 2+3*binary.MaxVarintLen64+len(id)+len(crcs)*chunkCRCBytes)
	out = append(out, metaVersion, layoutFile)
	out = binary.AppendUvarint(out, uint64(size))
	out = append(out, id[:]...)
	out = binary.AppendUvarint(out, uint64(chunkSize))
	out = binary.AppendUvarint(out, uint64(len(crcs)))
	for _, c := range crcs {
		out = binary.BigEndian.AppendUint32(out, c)
	}
	return out
}

// decodeBlobMeta parses a metadata record. The inline bytes alias b. Any
// malformation is an error wrapping ErrCorrupt.
func decodeBlobMeta(b []byte) (blobMeta, error) {
	var m blobMeta
	bad := func(what string) (blobMeta, error) {
		return blobMeta{}, fmt.Errorf("%w: blob metadata: %s", ErrCorrupt, what)
	}
	if len(b) < 2 {
		return bad("short record")
	}
	if b[0] != metaVersion {
		return bad(fmt.Sprintf("unknown version %d", b[0]))
	}
	layout := b[1]
	b = b[2:]
	size, n := binary.Uvarint(b)
	if n <= 0 || size > maxStoredBlob {
		return bad("bad size")
	}
	b = b[n:]
	m.size = int64(size)
	switch layout {
	case layoutInline:
		if uint64(len(b)) != size {
			return bad("inline length does not match size")
		}
		m.inline = b
		return m, nil
	case layoutChunked, layoutFile:
	default:
		return bad(fmt.Sprintf("unknown layout %d", layout))
	}
	m.chunked = true
	m.file = layout == layoutFile
	if len(b) < len(m.upload) {
		return bad("short upload id")
	}
	copy(m.upload[:], b)
	b = b[len(m.upload):]
	cs, n := binary.Uvarint(b)
	if n <= 0 || cs < minChunkSize || cs > maxChunkSize {
		return bad("bad chunk size")
	}
	b = b[n:]
	count, n := binary.Uvarint(b)
	if n <= 0 {
		return bad("bad chunk count")
	}
	b = b[n:]
	if size == 0 || count != (size+cs-1)/cs || count > 1<<32 {
		return bad("chunk count does not match size")
	}
	m.chunkSize = int64(cs)
	if m.file {
		if uint64(len(b)) != count*chunkCRCBytes {
			return bad("chunk checksum list length does not match count")
		}
		m.crcs = make([]uint32, count)
		for i := range m.crcs {
			m.crcs[i] = binary.BigEndian.Uint32(b[i*chunkCRCBytes:])
		}
		return m, nil
	}
	if uint64(len(b)) != count*chunkHashBytes {
		return bad("chunk hash list length does not match count")
	}
	m.hashes = make([][chunkHashBytes]byte, count)
	for i := range m.hashes {
		copy(m.hashes[i][:], b[i*chunkHashBytes:])
	}
	return m, nil
}

// decodeBlobSize reads only the size from a metadata record.
func decodeBlobSize(b []byte) (int64, error) {
	if len(b) < 2 || b[0] != metaVersion || b[1] > layoutFile {
		return 0, fmt.Errorf("%w: blob metadata header", ErrCorrupt)
	}
	size, n := binary.Uvarint(b[2:])
	if n <= 0 || size > maxStoredBlob {
		return 0, fmt.Errorf("%w: blob metadata size", ErrCorrupt)
	}
	return int64(size), nil
}
