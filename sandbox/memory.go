package sandbox

import (
	"errors"

	"github.com/tetratelabs/wazero/experimental"
)

// errMemoryCap is panicked by a linear memory asked to grow past the job's
// cap; wazero turns the panic into the error of the running call (or it
// escapes InstantiateModule, where run recovers it), which stops the guest
// at once.
var errMemoryCap = errors.New("memory cap reached")

// allocator hands a guest its linear memory, from the engine's pool, and
// records whether the guest tried to grow past the job's cap.
type allocator struct {
	pool      *memPool
	limit     uint64 // bytes, a multiple of pageSize
	exceeded  bool
	requested uint64 // the size asked for when exceeded
	hostErr   error  // the host refused memory below the cap
	grown     bool   // the memory was allocated (its initial size at least)
	initial   bool   // exceeded by the initial size
}

// Allocate implements experimental.MemoryAllocator.
func (a *allocator) Allocate(_, _ uint64) experimental.LinearMemory {
	return a.pool.get(a)
}

// refuse records a refused growth and stops the guest.
func (a *allocator) refuse(size uint64, hostErr error) {
	a.exceeded = true
	a.initial = !a.grown
	a.requested = size
	a.hostErr = hostErr
	panic(errMemoryCap)
}
