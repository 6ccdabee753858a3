package main

import (
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// durations collects samples and summarises them.
type durations []time.Duration

// pct returns the p-quantile (0..1), nearest rank.
func (d durations) pct(p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func (d durations) min() time.Duration {
	if len(d) == 0 {
		return 0
	}
	return slices.Min(d)
}

func (d durations) mean() time.Duration {
	if len(d) == 0 {
		return 0
	}
	var t time.Duration
	for _, x := range d {
		t += x
	}
	return t / time.Duration(len(d))
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
func us(d time.Duration) float64 { return float64(d) / 1e3 }

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// threadCPU is the calling thread's CPU time (lock the goroutine to its
// thread around the measured code), from the thread's CPU clock: the clock
// the sandbox times a job with, so figure 1 compares like with like.
// getrusage(RUSAGE_THREAD) is not precise enough: it reports the runtime
// accounted at the thread's last tick or context switch, so a difference of
// two readings can be short by up to a scheduler tick (4 ms here), and the
// best of several runs picked exactly those (primes natively read 4.3 ms
// for a kernel that takes 7.8).
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
