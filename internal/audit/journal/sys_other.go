//go:build !linux

package journal

import "os"

// preallocate does nothing where fallocate is not available; flushes then also update
// the file's size, which costs more but is as durable.
func preallocate(*os.File, int64) {}

// datasync flushes f.
func datasync(f *os.File) error { return f.Sync() }
