package store

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"
)

// MigrationFile is one schema version as a backend embeds it.
type MigrationFile struct {
	Version int64
	Name    string // the file name, NNNN_name.sql
	SQL     string
}

// ReadMigrations reads a backend's migrations, dir/NNNN_name.sql numbered from 1 without
// gaps, in version order. A released file is never edited; a change is a new file.
func ReadMigrations(fsys fs.FS, dir string) ([]MigrationFile, error) {
	names, err := fs.Glob(fsys, dir+"/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []MigrationFile
	for _, name := range names { // fs.Glob sorts
		base := path.Base(name)
		digits, _, ok := strings.Cut(base, "_")
		v, err := strconv.ParseInt(digits, 10, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name does not start with a version number", base)
		}
		if want := int64(len(ms) + 1); v != want {
			return nil, fmt.Errorf("migration %s: version %d, want %d", base, v, want)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, MigrationFile{Version: v, Name: base, SQL: string(b)})
	}
	if len(ms) == 0 {
		return nil, errors.New("no migrations embedded")
	}
	return ms, nil
}

// MigrationStatus pairs the migrations a binary carries with when each was applied
// (absent: pending).
func MigrationStatus(ms []MigrationFile, applied map[int64]time.Time) []Migration {
	out := make([]Migration, len(ms))
	for i, m := range ms {
		out[i] = Migration{Version: m.Version, Name: m.Name, Applied: applied[m.Version]}
	}
	return out
}
