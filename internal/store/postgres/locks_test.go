package postgres_test

import (
	"testing"

	"github.com/chaperone-dev/chaperone/internal/store/pgtest"
	"github.com/chaperone-dev/chaperone/internal/store/postgres"
)

// Two handles are two replicas: one holds the lock, the other is told so; a released
// lock, or one whose holder closed, can be taken.
func TestTryLockIsExclusiveAcrossReplicas(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, err := postgres.Open(t.Context(), dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := postgres.Open(t.Context(), dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	release, ok, err := a.TryLock(t.Context(), "work")
	if err != nil || !ok {
		t.Fatalf("first TryLock = %v, %v; want it taken", ok, err)
	}
	if _, ok, err := b.TryLock(t.Context(), "work"); err != nil || ok {
		t.Fatalf("TryLock while another replica holds it = %v, %v; want not taken", ok, err)
	}
	if rel, ok, err := b.TryLock(t.Context(), "other-work"); err != nil || !ok {
		t.Fatalf("TryLock of another name = %v, %v; want taken", ok, err)
	} else {
		rel()
	}
	release()
	rel, ok, err := b.TryLock(t.Context(), "work")
	if err != nil || !ok {
		t.Fatalf("TryLock after release = %v, %v; want taken", ok, err)
	}
	// The holder's session dies (a crashed replica): the lock goes with it.
	c, err := postgres.Open(t.Context(), dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var killed bool
	if err := c.Pool().QueryRow(t.Context(), `WITH k AS (SELECT hashtextextended($1, 0) AS key)
		SELECT pg_terminate_backend(pid) FROM pg_locks, k
		WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND classid = ((k.key >> 32) & 4294967295)::bigint::oid AND objid = (k.key & 4294967295)::bigint::oid`, c.LockKey("work")).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminate the holder: %v, %v", killed, err)
	}
	waitLock(t, c, "work")
	rel() // releasing a lock whose session died closes the connection instead of pooling it
}

func waitLock(t *testing.T, db *postgres.DB, name string) {
	t.Helper()
	release, err := db.Lock(t.Context(), name)
	if err != nil {
		t.Fatalf("Lock after the holder closed: %v", err)
	}
	release()
}
