//go:build linux

package sandbox

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// jobClock measures a job's execution time as the CPU time of the
// OS thread that runs it. The calling goroutine is locked to its
// thread between start and stop, so the guest's whole run is on that thread;
// time the machine spends on other work (other jobs, the node, the owner's
// programs) is not counted. That makes a worker's reported time — and so the
// speed rule and the bill — independent of how loaded its machine is.
type jobClock struct {
	wall  time.Time
	cpu   time.Duration
	isCPU bool
}

// threadCPU reads the calling thread's CPU clock (nanosecond precision;
// getrusage would only be tick-precise, milliseconds).
func threadCPU() (time.Duration, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}

func startClock() jobClock {
	runtime.LockOSThread()
	c := jobClock{wall: time.Now()}
	c.cpu, c.isCPU = threadCPU()
	return c
}

func (c jobClock) stop() time.Duration {
	defer runtime.UnlockOSThread()
	if c.isCPU {
		if now, ok := threadCPU(); ok && now >= c.cpu {
			d := now - c.cpu
			if d == 0 {
				d = time.Microsecond
			}
			return d
		}
	}
	return time.Since(c.wall)
}
