// Package pgtest gives tests a PostgreSQL schema of their own.
//
// Tests take the server from the environment variable CHAPERONE_TEST_POSTGRES (a
// postgres:// URL, e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable). Without
// it they skip with a message — unless CHAPERONE_REQUIRE_POSTGRES=1, as CI sets, which
// turns the skip into a failure.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN and EnvRequire are the environment variables this package reads.
const (
	EnvDSN     = "CHAPERONE_TEST_POSTGRES"
	EnvRequire = "CHAPERONE_REQUIRE_POSTGRES"
)

// Server returns the server's DSN, skipping (or failing, when required) the test if
// none is configured.
func Server(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv(EnvDSN)
	if dsn == "" {
		if os.Getenv(EnvRequire) == "1" {
			tb.Fatalf("%s is not set, and %s=1 requires the PostgreSQL tests", EnvDSN, EnvRequire)
		}
		tb.Skipf("PostgreSQL tests skipped: set %s (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)", EnvDSN)
	}
	return dsn
}

// DSN creates a uniquely named schema on the server, drops it (with everything in it)
// when the test ends, and returns a DSN whose connections use it.
func DSN(tb testing.TB) string {
	tb.Helper()
	server := Server(tb)
	u, err := url.Parse(server)
	if err != nil {
		tb.Fatalf("%s: not a URL: %v", EnvDSN, err)
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "chaperone_test_" + hex.EncodeToString(b[:])
	exec(tb, server, `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize())
	tb.Cleanup(func() {
		exec(tb, server, `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func exec(tb testing.TB, dsn, sql string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatalf("connect to %s: %v", EnvDSN, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
}
