//go:build unix && !linux

package upstream

import "syscall"

// procAttr puts the child in its own process group, so the whole group can be signalled.
// Unlike on Linux, a child outlives a gateway that dies without cleaning up.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
