// Package sqlitetest opens real SQLite stores for tests.
package sqlitetest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

// Open opens a SQLite store in a temporary directory and the audit log over it; both are
// closed when the test ends, and a failure to close the log fails the test.
func Open(tb testing.TB) (*sqlite.DB, *audit.Log) {
	tb.Helper()
	db, err := sqlite.Open(tb.Context(), filepath.Join(tb.TempDir(), "chaperone.db"))
	if err != nil {
		tb.Fatalf("sqlite.Open: %v", err)
	}
	l, err := audit.NewLog(tb.Context(), db, audit.LogOptions{})
	if err != nil {
		db.Close()
		tb.Fatalf("audit.NewLog: %v", err)
	}
	tb.Cleanup(func() {
		if err := l.Close(context.Background()); err != nil {
			tb.Errorf("audit Log.Close: %v", err)
		}
		db.Close()
	})
	return db, l
}
