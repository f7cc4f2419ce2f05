package journal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// DirFor returns the journal directory of the SQLite database at dbPath: beside it, so
// that the two travel together.
func DirFor(dbPath string) string { return dbPath + "-audit-journal" }

// LastSeq returns the number of the last intact event in the journal directory dir, 0 if
// it holds none or does not exist. It reads without the lock, for readers of the store
// in other processes.
func LastSeq(dir string) (int64, error) {
	paths, err := segmentPaths(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	for i := len(paths) - 1; i >= 0; i-- {
		data, err := os.ReadFile(paths[i])
		if errors.Is(err, os.ErrNotExist) {
			continue // indexed and removed while listed
		}
		if err != nil {
			return 0, fmt.Errorf("audit journal: %w", err)
		}
		var last []byte
		for off := 0; ; {
			rec, n, err := nextFrame(data[off:])
			if err != nil {
				break
			}
			last, off = rec, off+n
		}
		if last == nil {
			continue
		}
		e, err := audit.ParseRecord(last)
		if err != nil {
			return 0, fmt.Errorf("audit journal: %s: last record unreadable: %w", filepath.Base(paths[i]), err)
		}
		return e.Seq, nil
	}
	return 0, nil
}

// Held reports whether a process holds the journal directory dir (a gateway runs on it).
func Held(dir string) (bool, error) { return held(dir) }

// WaitIndexed is for readers of the store in another process: it returns once the store
// holds every event the journal directory dir held when it was called. While a gateway
// holds the journal it waits, up to timeout, for the gateway to copy them; when none
// does (it stopped before copying them), it says so at once, since only a gateway's
// start copies them.
func WaitIndexed(ctx context.Context, dir string, st audit.Store, timeout time.Duration) error {
	target, err := LastSeq(dir)
	if err != nil || target == 0 {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		last, _, err := st.LastEvent(ctx)
		if err != nil {
			return err
		}
		if last.Seq >= target {
			return nil
		}
		held, err := Held(dir)
		if err != nil {
			return err
		}
		if !held {
			return fmt.Errorf("the audit journal %s holds events %d to %d, which the database does not have yet: the gateway stopped before copying them, and copies them when it next starts", dir, last.Seq+1, target)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the database is behind the running gateway's audit journal (event %d of %d) after %s", last.Seq, target, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}
