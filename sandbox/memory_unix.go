//go:build linux || darwin || freebsd

package sandbox

import (
	"sync"
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

// Linear memories are address ranges of 4 GiB (the most a 32-bit wasm
// memory can address) reserved inaccessible up front; pages are made
// readable and writable as the guest grows. The memory never moves and
// growth never copies. A finished guest's memory is zeroed and kept for the
// next guest: faulting in fresh pages is far slower than clearing touched
// ones (tens of µs per page on virtual machines), so a small job reuses
// warm memory instead of paying page faults and munmap. At most
// keepCommitted bytes stay committed between jobs; the rest is returned to
// the kernel.
const (
	reservation   = maxWasmMemory
	keepCommitted = 32 << 20
	poolSize      = 4
)

type memPool struct {
	mu   sync.Mutex
	free []*mmapMemory
}

type mmapMemory struct {
	pool      *memPool
	a         *allocator
	buf       []byte // the whole reservation
	committed uint64 // readable, writable and zero beyond the guest's size
	used      uint64 // the largest size the current guest had: all it can have written
}

// get returns a zeroed memory for a new guest.
func (p *memPool) get(a *allocator) experimental.LinearMemory {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		m := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		m.a = a
		return m
	}
	p.mu.Unlock()
	buf, err := syscall.Mmap(-1, 0, reservation, syscall.PROT_NONE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return &sliceMemory{a: a} // no address space: an ordinary growing slice
	}
	return &mmapMemory{pool: p, a: a, buf: buf}
}

// close unmaps the pooled memories.
func (p *memPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.free {
		_ = syscall.Munmap(m.buf)
	}
	p.free = nil
}

// Reallocate implements experimental.LinearMemory.
func (m *mmapMemory) Reallocate(size uint64) []byte {
	if size > m.a.limit || size > uint64(len(m.buf)) {
		m.a.refuse(size, nil)
	}
	if size > m.committed {
		if err := syscall.Mprotect(m.buf[m.committed:size], syscall.PROT_READ|syscall.PROT_WRITE); err != nil {
			m.a.refuse(size, err)
		}
		m.committed = size
	}
	m.a.grown = true
	m.used = max(m.used, size)
	return m.buf[:size]
}

// Free implements experimental.LinearMemory: zero the memory and keep it.
// Only what this guest could reach is cleared: beyond m.used the memory is
// still zero from an earlier guest's Free (a tiny job after a large one
// must not pay for clearing the large one's memory again).
func (m *mmapMemory) Free() {
	m.a = nil
	used := m.used
	m.used = 0
	keep := min(m.committed, keepCommitted)
	if m.committed > keep {
		extra := m.buf[keep:m.committed]
		if syscall.Madvise(extra, syscall.MADV_DONTNEED) != nil || syscall.Mprotect(extra, syscall.PROT_NONE) != nil {
			_ = syscall.Munmap(m.buf)
			return
		}
		m.committed = keep
	}
	clear(m.buf[:min(used, keep)])
	m.pool.mu.Lock()
	defer m.pool.mu.Unlock()
	if len(m.pool.free) < poolSize {
		m.pool.free = append(m.pool.free, m)
		return
	}
	_ = syscall.Munmap(m.buf)
}
