//go:build unix && !linux

package sandbox

import "syscall"

// childAttr puts an executor in its own process group (terminal signals
// such as Ctrl-C go to the parent, which stops its children itself).
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
