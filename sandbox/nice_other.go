//go:build unix && !linux

package sandbox

import "syscall"

// setNice sets the niceness of the process.
func setNice(n int) error { return syscall.Setpriority(syscall.PRIO_PROCESS, 0, n) }
