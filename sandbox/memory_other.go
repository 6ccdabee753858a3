//go:build !(linux || darwin || freebsd)

package sandbox

import "github.com/tetratelabs/wazero/experimental"

// sliceMemory grows an ordinary slice (copying) up to the cap.
type sliceMemory struct {
	a   *allocator
	buf []byte
}

func newLinearMemory(a *allocator, _ uint64) experimental.LinearMemory {
	return &sliceMemory{a: a}
}

// Reallocate implements experimental.LinearMemory.
func (m *sliceMemory) Reallocate(size uint64) []byte {
	if size > m.a.limit {
		m.a.refuse(size, nil)
	}
	if size > uint64(len(m.buf)) {
		m.buf = append(m.buf, make([]byte, size-uint64(len(m.buf)))...)
	}
	return m.buf[:size]
}

// Free implements experimental.LinearMemory.
func (m *sliceMemory) Free() { m.buf = nil }
