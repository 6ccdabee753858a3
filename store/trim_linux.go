//go:build linux

package store

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// trimMappings asks the kernel to page out this process's mappings of the
// value-log files in dir (badger mmaps them; every page of a blob written or
// read stays in the process's resident set until reclaimed). The data is on
// disk or written back first, so nothing is lost: a later read faults the
// pages back in. Only madvise(MADV_PAGEOUT) is used: should a region be
// unmapped and reused between reading /proc/self/maps and the call, the
// advice on anonymous memory is harmless. It returns how many mappings were
// advised.
func trimMappings(dir string) (int, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	prefix := strings.TrimSuffix(dir, "/") + "/"
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		path := fields[5]
		if !strings.HasPrefix(path, prefix) || !strings.HasSuffix(path, ".vlog") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		_, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_PAGEOUT)
		if errno == unix.EINVAL {
			return n, errno // kernel without MADV_PAGEOUT (< 5.4)
		}
		if errno == 0 {
			n++
		}
	}
	return n, sc.Err()
}
