package sandbox

import (
	"os"
	"strconv"
	"syscall"
)

// setNice sets the niceness of every thread of the process. On Linux
// niceness is per thread (and inherited by threads created later), so
// setting it for "the process" would only reach the calling thread.
func setNice(n int) error {
	var first error
	for range 2 { // again, in case a thread was created meanwhile
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return syscall.Setpriority(syscall.PRIO_PROCESS, 0, n)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, n); err != nil && first == nil && err != syscall.ESRCH {
				first = err
			}
		}
	}
	return first
}
