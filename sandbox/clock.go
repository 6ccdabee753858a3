package sandbox

import (
	"crypto/sha256"
	"io"
	"math"
	"math/rand/v2"
	"sync/atomic"
)

// The guest's view of time and randomness. Both are functions of what the
// guest did so far and nothing else, so every run on every machine sees the
// same values.
const (
	// fakeEpoch is the wall-clock time of the first reading: 2022-01-01
	// 00:00:00 UTC, in nanoseconds since the Unix epoch.
	fakeEpoch = 1_640_995_200 * int64(1e9)
	// clockStep is how far the fake clock advances on every reading, so
	// that successive readings differ (loops waiting for time to pass end).
	clockStep = int64(1000) // 1 µs
	// clockResolution is what clock_res_get reports.
	clockResolution = 1000
)

// randSeed seeds the fixed random_get stream.
var randSeed = sha256.Sum256([]byte("aspen sandbox random_get stream v1"))

// fakeClock is one run's clock: nanoseconds elapsed since the run began.
// Reading it advances it by clockStep; sleeping advances it by the sleep.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) advance(d int64) int64 {
	for {
		old := c.ns.Load()
		next := old + d
		if d < 0 || next < old || next > math.MaxInt64-fakeEpoch {
			next = math.MaxInt64 - fakeEpoch // saturate instead of wrapping
		}
		if c.ns.CompareAndSwap(old, next) {
			return next
		}
	}
}

func (c *fakeClock) nanotime() int64 { return c.advance(clockStep) }

func (c *fakeClock) walltime() (sec int64, nsec int32) {
	t := fakeEpoch + c.advance(clockStep)
	return t / 1e9, int32(t % 1e9)
}

// sleep returns at once, moving the clock past the requested interval.
func (c *fakeClock) sleep(ns int64) {
	if ns > 0 {
		c.advance(ns)
	}
}

// newRandSource returns the fixed stream random_get reads: ChaCha8 with a
// constant seed, identical on every machine (ChaCha8 is a specified
// generator).
func newRandSource() io.Reader { return rand.NewChaCha8(randSeed) }
