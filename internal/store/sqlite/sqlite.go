// Package sqlite is Chaperone's embedded default store: one SQLite file
// (through the pure-Go modernc.org/sqlite driver) holding the audit log, the
// tool definition pins, the registered agents, tasks and token signing keys.
//
// The database runs in WAL mode with synchronous=FULL, so a committed
// transaction survives power loss, and readers never block the writer. All
// writes go through one connection; reads use a small pool of read-only
// connections. The schema is versioned by embedded migrations (migrations/),
// applied in order when the database is opened; a database written by a newer
// binary is refused ([ErrNewerSchema]).
//
// # Audit events
//
// Table audit_events holds one row per event: seq, the event's position in
// the log, and event, the record exactly as it was hashed
// ([audit.Event.MarshalRecord]), and nothing derived from it: the columns kind and
// request_id, generated from the record, and their indexes are gone (migrations 8
// and 9), because SQLite computed them from the record's JSON on every append and no
// query of the store needs them; queries that filter by a field read it from the
// record (event ->> '$.kind'). Events are read back through
// [audit.ParseRecord], so [audit.Verify] recomputes each hash from exactly the
// bytes that were written; a row that is not a canonical record, or that holds
// the record of another position, is reported as an [audit.CorruptError].
// AppendEvents refuses a batch that does not continue the stored chain, so a
// second writer fails instead of forking the log.
//
// # Agents, tasks and signing keys
//
// Tables agents and tasks back [identity.Directory] and [identity.Tasks]
// ([DB] implements [identity.AgentStore] and [identity.TaskStore]); rows are
// never deleted, so an agent or task id is never reused. signing_keys holds
// token signing keys with their raw private keys: the file is readable by its
// owner only, and encryption at rest arrives with the secrets store.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/chaperone-dev/chaperone/internal/store"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// ErrNewerSchema is returned, wrapped, by [Open] and [OpenReadOnly] for a
// database whose schema version is newer than this binary knows: it was
// written by a newer Chaperone, and this one must not touch it.
var ErrNewerSchema = store.ErrNewerSchema

// ErrReadOnly is returned, wrapped, by the write methods of a [DB] opened
// with [OpenReadOnly].
var ErrReadOnly = store.ErrReadOnly

const (
	busyTimeout = 5 * time.Second // how long a statement waits for another process's lock
	readConns   = 4               // size of the read pool
)

// DB is an open Chaperone database. It is safe for concurrent use.
type DB struct {
	path string
	w    *sql.DB // the one write connection; nil when read-only
	r    *sql.DB // read-only connections

	// head caches the audit chain's head as the last append in this process left it,
	// so that an append need not decode the newest stored event (see appendEvents).
	headMu sync.Mutex
	head   chainHead // guarded by headMu

	// The audit append's statements, prepared on the write connection at the first
	// append that succeeds in preparing them: parsing them costs more than running them.
	stmtMu                           sync.Mutex
	maxSeqStmt, insStmt, insManyStmt *sql.Stmt // guarded by stmtMu until set, then read-only
}

// chainHead is the newest audit event's position and hash; known is false when it must
// be read from the table.
type chainHead struct {
	seq   int64
	hash  string
	known bool
}

// Open opens the database at path, creating the file (mode 0600) and its
// parent directory (mode 0700) if needed, and applies pending migrations.
// Path names a file; in-memory databases are not supported.
func Open(ctx context.Context, path string) (*DB, error) {
	abs, err := absPath(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	// SQLite creates its -wal and -shm files with the database file's mode,
	// so creating the file first keeps all three private.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
	}

	w, err := sql.Open("sqlite", dsn(abs, url.Values{
		"_busy_timeout": {strconv.FormatInt(busyTimeout.Milliseconds(), 10)},
		"_foreign_keys": {"on"},
		"_journal_mode": {"WAL"},
		"_synchronous":  {"FULL"},
		"_txlock":       {"immediate"}, // take the write lock at BEGIN, not at the first write
	}))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	// One connection serializes writers inside this process; SQLite's lock
	// and busy_timeout serialize them against other processes.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
	}

	r, err := openReader(ctx, abs, url.Values{"_query_only": {"on"}})
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	return &DB{path: path, w: w, r: r}, nil
}

// OpenReadOnly opens an existing database for reading only, for offline
// verification: SQLite opens the file with mode=ro, and no migration runs. It
// fails if the file does not exist (the error wraps fs.ErrNotExist), holds no
// Chaperone schema, or has a schema newer than this binary.
func OpenReadOnly(ctx context.Context, path string) (*DB, error) {
	abs, err := absPath(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %q read-only: %w", path, err)
	}
	if _, err := os.Stat(abs); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("sqlite: open %q read-only: %w", path, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("sqlite: open %q read-only: %w", path, err)
	}
	r, err := openReader(ctx, abs, url.Values{"mode": {"ro"}})
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %q read-only: %w", path, err)
	}
	if err := checkSchema(ctx, r); err != nil {
		r.Close()
		return nil, fmt.Errorf("sqlite: open %q read-only: %w", path, err)
	}
	return &DB{path: path, r: r}, nil
}

// openReader opens the read pool with extra DSN parameters and checks it works.
func openReader(ctx context.Context, abs string, extra url.Values) (*sql.DB, error) {
	q := url.Values{"_busy_timeout": {strconv.FormatInt(busyTimeout.Milliseconds(), 10)}}
	for k, v := range extra {
		q[k] = v
	}
	r, err := sql.Open("sqlite", dsn(abs, q))
	if err != nil {
		return nil, err
	}
	r.SetMaxOpenConns(readConns)
	r.SetMaxIdleConns(readConns)
	if err := r.PingContext(ctx); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Close closes the database. Pending statements fail.
func (db *DB) Close() error {
	var errs []error
	for _, st := range []*sql.Stmt{db.maxSeqStmt, db.insStmt, db.insManyStmt} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if db.w != nil {
		errs = append(errs, db.w.Close())
	}
	errs = append(errs, db.r.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite: close %q: %w", db.path, err)
	}
	return nil
}

// SQL returns the handle writes go through (the read-only pool for a DB from
// [OpenReadOnly]), for tests and maintenance tools. Writing tables through it
// bypasses every invariant this package keeps.
func (db *DB) SQL() *sql.DB {
	if db.w == nil {
		return db.r
	}
	return db.w
}

// writer returns the write handle, or ErrReadOnly.
func (db *DB) writer() (*sql.DB, error) {
	if db.w == nil {
		return nil, ErrReadOnly
	}
	return db.w, nil
}

func absPath(path string) (string, error) {
	if path == "" {
		return "", errors.New("empty path")
	}
	return filepath.Abs(path)
}

// dsn returns a file: URI for the database at abs, so that SQLite's own
// parameters (mode=ro) apply and no character in the path is taken for URI
// syntax.
func dsn(abs string, q url.Values) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}
	return u.String()
}

var _ store.Store = (*DB)(nil)

// Backend is "sqlite".
func (db *DB) Backend() string { return "sqlite" }

// Ping checks that the database file can be read.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.r.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping %q: %w", db.path, err)
	}
	var n int
	if err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		return fmt.Errorf("sqlite: ping %q: %w", db.path, err)
	}
	return nil
}
