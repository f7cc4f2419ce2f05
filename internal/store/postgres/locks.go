package postgres

import (
	"context"
	"fmt"
	"time"
)

// TryLock takes the advisory lock name for this replica if no other session holds it,
// and returns a release function; ok is false when another replica holds it. The lock
// belongs to one pooled connection, kept out of the pool until release: work that only
// one replica may do at a time (signing checkpoints, pruning) runs under it, and a
// replica that dies releases it with its connection.
func (db *DB) TryLock(ctx context.Context, name string) (release func(), ok bool, err error) {
	return db.lock(ctx, name, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`)
}

// Lock is TryLock that waits, up to the statement timeout, for the lock.
func (db *DB) Lock(ctx context.Context, name string) (release func(), err error) {
	release, _, err = db.lock(ctx, name, `SELECT true FROM pg_advisory_lock(hashtextextended($1, 0))`)
	return release, err
}

func (db *DB) lock(ctx context.Context, name, query string) (func(), bool, error) {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("postgres: lock %q: %w", name, err)
	}
	var ok bool
	key := db.LockKey(name)
	if err := conn.QueryRow(ctx, query, key).Scan(&ok); err != nil {
		conn.Release()
		return nil, false, fmt.Errorf("postgres: lock %q: %w", name, err)
	}
	if !ok {
		conn.Release()
		return nil, false, nil
	}
	release := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, key); err != nil {
			// The lock lives as long as the session: close it rather than pool it.
			conn.Conn().Close(ctx)
		}
		conn.Release()
	}
	return release, true, nil
}

// LockKey is the text whose hash (hashtextextended) is the advisory lock key of name.
// Advisory locks are per database, not per schema, so the key names the schema: stores
// in two schemas of one database do not lock each other out.
func (db *DB) LockKey(name string) string {
	return "chaperone/" + db.schema + "/" + name
}
