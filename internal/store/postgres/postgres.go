// Package postgres is Chaperone's store for many gateway replicas over one PostgreSQL
// database (through pgx and its connection pool). It implements every interface of
// package store, with the same behaviour as the embedded sqlite store (the contract
// tests in storetest run against both), and adds what only a shared database can do:
// state that replicas share (sessions and their flow, budgets, rate counters) and
// change notifications (LISTEN/NOTIFY) that tell every replica at once about kills,
// revocations, suspensions and approval decisions.
//
// # Schema
//
// Embedded migrations (migrations/NNNN_name.sql) are applied in order when the store is
// opened, each in its own transaction, under a transaction-level advisory lock, so that
// replicas starting together apply each migration once. A database whose schema is newer
// than this binary is refused ([store.ErrNewerSchema]). Times are timestamptz, which
// keeps microseconds: times written are truncated to the microsecond.
//
// # Connections
//
// Every connection runs with statement_timeout, lock_timeout and
// idle_in_transaction_session_timeout set ([Options]), so that a stuck database fails a
// call rather than holding it. When the database cannot be reached, every method
// returns an error, and the gateway refuses calls (fail closed).
//
// # Notifications
//
// Writes whose effect other replicas must see at once send a notification on channel
// [Channel], in the same transaction as the write, so it is delivered if and only if
// the write commits. The payload is "<topic>" or "<topic>:<id>" with topic one of the
// Topic constants.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chaperone-dev/chaperone/internal/store"
)

// Channel is the LISTEN/NOTIFY channel changes are announced on when the store's tables
// are in schema public; in another schema, the channel is Channel + "." + the schema, so
// that stores sharing a database but not a schema do not hear each other.
const Channel = "chaperone_changes"

// Topics of notifications.
const (
	TopicKill     = "kill"     // a kill switch engaged or lifted
	TopicAgent    = "agent"    // an agent registered or its status changed: "agent:<id>"
	TopicTask     = "task"     // a task started or ended: "task:<id>"
	TopicApproval = "approval" // an approval request created or decided: "approval:<id>"
	TopicKey      = "key"      // a token signing key added or retired
)

// ErrUnreachable is returned, wrapped, by [Open] and [OpenReadOnly] when the database did
// not answer: it may answer later.
var ErrUnreachable = errors.New("database unreachable")

// Options tune the connection pool. The zero value is ready to use.
type Options struct {
	// MaxConns bounds the pool; default 10.
	MaxConns int32
	// StatementTimeout bounds one statement; default 5s.
	StatementTimeout time.Duration
	// LockTimeout bounds the wait for a row or table lock; default 5s.
	LockTimeout time.Duration
	// ConnectTimeout bounds opening one connection; default 5s.
	ConnectTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.MaxConns <= 0 {
		o.MaxConns = 10
	}
	if o.StatementTimeout <= 0 {
		o.StatementTimeout = 5 * time.Second
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = 5 * time.Second
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	return o
}

// DB is an open PostgreSQL store. It is safe for concurrent use.
type DB struct {
	pool     *pgxpool.Pool
	cfg      *pgxpool.Config
	readOnly bool
	// where names the database in errors, without credentials.
	where string
	// channel is the notification channel of the store's schema.
	channel string
	// schema is the schema the store's tables are in.
	schema string
}

// Open connects to the database at dsn (a postgres:// URL or a key=value string) and
// applies pending migrations.
func Open(ctx context.Context, dsn string, o Options) (*DB, error) {
	db, err := connect(ctx, dsn, o)
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, db.pool); err != nil {
		db.pool.Close()
		return nil, fmt.Errorf("postgres: open %s: %w", db.where, err)
	}
	return db, nil
}

// OpenReadOnly connects for reading only (offline verification and export): no
// migration runs, the session is read-only, and the schema must be one this binary
// knows.
func OpenReadOnly(ctx context.Context, dsn string, o Options) (*DB, error) {
	db, err := connect(ctx, dsn, o, "default_transaction_read_only", "on")
	if err != nil {
		return nil, err
	}
	db.readOnly = true
	if err := checkSchema(ctx, db.pool); err != nil {
		db.pool.Close()
		return nil, fmt.Errorf("postgres: open %s read-only: %w", db.where, err)
	}
	return db, nil
}

func connect(ctx context.Context, dsn string, o Options, params ...string) (*DB, error) {
	o = o.withDefaults()
	where := store.RedactDSN(dsn)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors can quote the DSN, password included.
		return nil, fmt.Errorf("postgres: open %s: the connection string is not valid", where)
	}
	cfg.MaxConns = o.MaxConns
	cfg.ConnConfig.ConnectTimeout = o.ConnectTimeout
	rp := cfg.ConnConfig.RuntimeParams
	rp["statement_timeout"] = ms(o.StatementTimeout)
	rp["lock_timeout"] = ms(o.LockTimeout)
	rp["idle_in_transaction_session_timeout"] = ms(4 * o.StatementTimeout)
	rp["application_name"] = "chaperone"
	// Every check-then-write here is written for READ COMMITTED (a statement after a lock
	// sees what the lock's previous holder committed), whatever the server's default.
	rp["default_transaction_isolation"] = "read committed"
	for i := 0; i+1 < len(params); i += 2 {
		rp[params[i]] = params[i+1]
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open %s: %w: %w", where, ErrUnreachable, err)
	}
	db := &DB{pool: pool, cfg: cfg, where: where, channel: Channel}
	var schema string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open %s: %w: %w", where, ErrUnreachable, err)
	}
	db.schema = schema
	if schema != "public" {
		db.channel = Channel + "." + schema
	}
	return db, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%d", d.Milliseconds()) }

// Backend is "postgres".
func (db *DB) Backend() string { return "postgres" }

// Ping checks that the database answers a query.
func (db *DB) Ping(ctx context.Context) error {
	var one int
	if err := db.pool.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("postgres: ping %s: %w", db.where, err)
	}
	return nil
}

// Close closes the pool, waiting for connections in use to be returned.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// Pool returns the connection pool, for tests and maintenance tools. Writing tables
// through it bypasses every invariant this package keeps.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// writable returns ErrReadOnly for a store opened with [OpenReadOnly].
func (db *DB) writable() error {
	if db.readOnly {
		return store.ErrReadOnly
	}
	return nil
}

// Channel returns the notification channel of the store's schema.
func (db *DB) Channel() string { return db.channel }

// rollback rolls tx back with a context of its own, since the caller's may be done. A
// failed rollback needs no handling: pgx then closes the connection, which ends the
// transaction.
func rollback(tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = tx.Rollback(ctx)
}
