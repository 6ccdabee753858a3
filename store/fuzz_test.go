package store

import (
	"bytes"
	"slices"
	"testing"
)

// FuzzDecodeBlobMeta feeds arbitrary bytes to the blob metadata decoder: it
// must never panic, and whatever it accepts must re-encode to a record that
// decodes to the same metadata.
func FuzzDecodeBlobMeta(f *testing.F) {
	f.Add(encodeInlineMeta(nil))
	f.Add(encodeInlineMeta([]byte("hello")))
	f.Add(encodeChunkedMeta(5000, uploadID{1}, 4096, make([][chunkHashBytes]byte, 2)))
	f.Add(encodeChunkedMeta(1<<20, uploadID{9, 9}, 1<<20, make([][chunkHashBytes]byte, 1)))
	f.Add([]byte{metaVersion, layoutChunked, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Add(encodeFileMeta(5000, uploadID{1}, 4096, make([]uint32, 2)))
	f.Add(encodeFileMeta(1<<20+1, uploadID{7}, 1<<20, []uint32{1, 0xffffffff}))
	f.Add([]byte{metaVersion, layoutFile, 10, 1, 2, 3, 4, 5, 6, 7, 8, 0x80, 0x20, 1, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeBlobMeta(b)
		size, serr := decodeBlobSize(b)
		if err != nil {
			return
		}
		if serr != nil || size != m.size {
			t.Fatalf("decodeBlobSize = %d, %v; full decode says %d", size, serr, m.size)
		}
		var again []byte
		if m.chunked {
			if m.chunkCount() < 1 || m.chunkLen(m.chunkCount()-1) <= 0 || m.chunkLen(m.chunkCount()-1) > m.chunkSize {
				t.Fatalf("accepted inconsistent chunk layout: size %d chunk %d count %d", m.size, m.chunkSize, m.chunkCount())
			}
			if m.file {
				if len(m.hashes) != 0 || int64(len(m.crcs)) != m.chunkCount() {
					t.Fatalf("file layout with %d hashes, %d checksums", len(m.hashes), len(m.crcs))
				}
				again = encodeFileMeta(m.size, m.upload, m.chunkSize, m.crcs)
			} else {
				again = encodeChunkedMeta(m.size, m.upload, m.chunkSize, m.hashes)
			}
		} else {
			if int64(len(m.inline)) != m.size {
				t.Fatalf("inline length %d, size %d", len(m.inline), m.size)
			}
			again = encodeInlineMeta(m.inline)
		}
		m2, err := decodeBlobMeta(again)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if m2.size != m.size || m2.chunked != m.chunked || m2.file != m.file || m2.upload != m.upload ||
			m2.chunkSize != m.chunkSize || !bytes.Equal(m2.inline, m.inline) || len(m2.hashes) != len(m.hashes) {
			t.Fatalf("round trip changed the record: %+v vs %+v", m, m2)
		}
		if !slices.Equal(m.crcs, m2.crcs) {
			t.Fatalf("checksums changed")
		}
		for i := range m.hashes {
			if m.hashes[i] != m2.hashes[i] {
				t.Fatalf("hash %d changed", i)
			}
		}
	})
}
