package upstream

import "syscall"

// procAttr puts the child in its own process group, so the whole group can be signalled,
// and asks the kernel to SIGKILL the child if the gateway dies without cleaning up.
//
// Pdeathsig fires when the OS thread that started the child exits, not the process; Go
// only retires threads whose goroutine exits while locked with runtime.LockOSThread, so in
// practice this is the process. A spurious kill would look like a crash and be restarted.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
