//go:build unix

package p2p

import "syscall"

func fdLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur == 0 {
		return 4096
	}
	if r.Cur > 1<<20 {
		return 1 << 20
	}
	return int(r.Cur)
}
