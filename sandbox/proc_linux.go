package sandbox

import "syscall"

// childAttr puts an executor in its own process group (terminal signals
// such as Ctrl-C go to the parent, which stops its children itself) and has
// the kernel kill it if the parent dies.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
