package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// fileOutput is where a command's output goes: standard output, or a file (mode 0600)
// written beside its destination, synced and renamed into place by commit, so that a
// failure leaves no partial file. what names the output in errors.
type fileOutput struct {
	w      io.Writer
	commit func() error
	abort  func()
}

func openOutput(stdout io.Writer, path, what string) (*fileOutput, error) {
	out := &fileOutput{w: stdout, commit: func() error { return nil }, abort: func() {}}
	if path == "" {
		return out, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".chaperone-export-*")
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", what, err)
	}
	out.w = f
	out.abort = func() { f.Close(); os.Remove(f.Name()) }
	out.commit = func() error {
		if err := errors.Join(f.Sync(), f.Close()); err != nil {
			os.Remove(f.Name())
			return fmt.Errorf("write %s %s: %w", what, path, err)
		}
		if err := os.Rename(f.Name(), path); err != nil {
			os.Remove(f.Name())
			return fmt.Errorf("write %s: %w", what, err)
		}
		return nil
	}
	return out, nil
}
