package boundedfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok")
	if err := os.WriteFile(ok, []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, fi, err := Read(ok, 5); err != nil || string(b) != "12345" || fi.Size() != 5 {
		t.Errorf("Read(5 bytes, limit 5) = %q, %v, %v", b, fi, err)
	}
	if _, _, err := Read(ok, 4); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "larger than 4 bytes") {
		t.Errorf("Read(5 bytes, limit 4) = %v, want ErrTooLarge naming the limit", err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(ok, link); err != nil {
		t.Fatal(err)
	}
	if b, _, err := Read(link, 5); err != nil || string(b) != "12345" {
		t.Errorf("Read(link) = %q, %v; want the target's content", b, err)
	}
	if _, _, err := Read(dir, 5); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Read(directory) = %v, want not a regular file", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err == nil {
		// Opening a FIFO for reading blocks until a writer comes: open it with one.
		w, err := os.OpenFile(fifo, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if _, _, err := Read(fifo, 5); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("Read(FIFO) = %v, want not a regular file", err)
		}
	}
	if _, _, err := Read(filepath.Join(dir, "missing"), 5); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Read(missing) = %v, want ErrNotExist", err)
	}
}
