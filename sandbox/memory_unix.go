//go:build linux || darwin || freebsd

package sandbox

import (
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

// mmapMemory reserves the whole cap as inaccessible address space up front
// and makes pages readable and writable as the guest grows, so the memory
// never moves, growth never copies, and the kernel charges only what the
// guest actually asked for.
type mmapMemory struct {
	a         *allocator
	buf       []byte // the whole reservation
	committed uint64
	fallback  []byte // used when the reservation failed
}

func newLinearMemory(a *allocator, reserve uint64) experimental.LinearMemory {
	m := &mmapMemory{a: a}
	if reserve == 0 {
		return m
	}
	buf, err := syscall.Mmap(-1, 0, int(reserve), syscall.PROT_NONE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err == nil {
		m.buf = buf
	}
	return m
}

// Reallocate implements experimental.LinearMemory.
func (m *mmapMemory) Reallocate(size uint64) []byte {
	if size > m.a.limit {
		m.a.refuse(size, nil)
	}
	if m.buf == nil { // no reservation: grow an ordinary slice
		if size > uint64(len(m.fallback)) {
			m.fallback = append(m.fallback, make([]byte, size-uint64(len(m.fallback)))...)
		}
		return m.fallback[:size]
	}
	if size > uint64(len(m.buf)) {
		m.a.refuse(size, nil)
	}
	if size > m.committed {
		if err := syscall.Mprotect(m.buf[m.committed:size], syscall.PROT_READ|syscall.PROT_WRITE); err != nil {
			m.a.refuse(size, err)
		}
		m.committed = size
	}
	return m.buf[:size]
}

// Free implements experimental.LinearMemory.
func (m *mmapMemory) Free() {
	if m.buf != nil {
		_ = syscall.Munmap(m.buf)
		m.buf = nil
	}
	m.fallback = nil
}
