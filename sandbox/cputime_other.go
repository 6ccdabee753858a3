//go:build !linux

package sandbox

import "time"

// jobClock measures wall-clock time where per-thread CPU time is not
// available.
type jobClock struct{ wall time.Time }

func startClock() jobClock { return jobClock{wall: time.Now()} }

func (c jobClock) stop() time.Duration { return time.Since(c.wall) }
