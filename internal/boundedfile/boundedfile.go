// Package boundedfile reads files whose size the reader bounds: configuration, keys,
// secrets and definitions that a mistaken path (a device, a FIFO, a huge log) must not
// turn into a hang or an out-of-memory.
package boundedfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// ErrTooLarge is returned, wrapped, for a file larger than the limit.
var ErrTooLarge = errors.New("file too large")

// tooLarge says by how much; it is ErrTooLarge.
type tooLarge struct{ limit int64 }

func (e tooLarge) Error() string        { return fmt.Sprintf("larger than %d bytes", e.limit) }
func (e tooLarge) Is(target error) bool { return target == ErrTooLarge }

// Read returns the content of the regular file at path (a symbolic link to one is
// followed) and its FileInfo. It refuses anything else — a directory, a device, a FIFO —
// without reading it, and a file of more than limit bytes, reading at most limit+1 of
// them: a file that grows while it is read is caught too. Every error is an
// *fs.PathError naming the path ("read /etc/x: not a regular file (mode d---------)").
func Read(path string, limit int64) ([]byte, fs.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) ([]byte, fs.FileInfo, error) {
		return nil, fi, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	if !fi.Mode().IsRegular() {
		return fail(fmt.Errorf("not a regular file (mode %s)", fi.Mode()))
	}
	if fi.Size() > limit {
		return fail(tooLarge{limit})
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fi, err
	}
	if int64(len(data)) > limit {
		clear(data)
		return fail(tooLarge{limit})
	}
	return data, fi, nil
}
