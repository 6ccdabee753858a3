package sandbox

// sliceMemory is a linear memory in an ordinary slice that grows by copying,
// for when address space cannot be reserved.
type sliceMemory struct {
	a   *allocator
	buf []byte
}

// Reallocate implements experimental.LinearMemory.
func (m *sliceMemory) Reallocate(size uint64) []byte {
	if size > m.a.limit {
		m.a.refuse(size, nil)
	}
	if size > uint64(len(m.buf)) {
		m.buf = append(m.buf, make([]byte, size-uint64(len(m.buf)))...)
	}
	m.a.grown = true
	return m.buf[:size]
}

// Free implements experimental.LinearMemory.
func (m *sliceMemory) Free() { m.buf = nil }
