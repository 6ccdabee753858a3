//go:build !(linux || darwin || freebsd)

package sandbox

import "github.com/tetratelabs/wazero/experimental"

// memPool has nothing to pool on this platform: every guest gets a fresh
// growing slice.
type memPool struct{}

func (p *memPool) get(a *allocator) experimental.LinearMemory { return &sliceMemory{a: a} }

func (p *memPool) close() {}
