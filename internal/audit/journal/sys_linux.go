package journal

import (
	"os"
	"syscall"
)

// preallocate reserves size bytes for f, ignoring file systems that cannot.
func preallocate(f *os.File, size int64) {
	_ = syscall.Fallocate(int(f.Fd()), 0, 0, size)
}

// datasync flushes f's data, and only the metadata needed to read it back.
func datasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
