//go:build linux || darwin || freebsd

package sandbox

import "testing"

// TestPooledMemoryIsZeroForEveryGuest: a pooled memory is cleared only as
// far as its last guest reached, yet every guest sees zeroed memory however
// far it grows, after guests large and small.
func TestPooledMemoryIsZeroForEveryGuest(t *testing.T) {
	var p memPool
	defer p.close()
	const big, small = 4 << 20, pageSize
	for round, sizes := range [][]uint64{{big, small, big}, {small, big, small, 2 * small, big}} {
		for i, size := range sizes {
			lm := p.get(&allocator{pool: &p, limit: big})
			if _, ok := lm.(*mmapMemory); !ok {
				t.Skip("no address space for the mmap pool")
			}
			mem := lm.Reallocate(size / 2)
			mem = lm.Reallocate(size) // grows in place
			for j, b := range mem {
				if b != 0 {
					t.Fatalf("round %d guest %d (%d bytes): byte %d is %#x", round, i, size, j, b)
				}
			}
			for j := range mem {
				mem[j] = 0xA5 // the guest writes all it can reach
			}
			lm.Free()
		}
	}
}
