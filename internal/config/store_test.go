package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStorePostgresShorthandAndDefaults(t *testing.T) {
	c, err := Parse([]byte(validBase + "store: postgres://chaperone@db.internal:5432/chaperone?sslmode=require\n"))
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	p := c.Store.Postgres
	if p == nil || p.URL != "postgres://chaperone@db.internal:5432/chaperone?sslmode=require" {
		t.Fatalf("Store = %+v, want the URL in Postgres", c.Store)
	}
	if c.Store.SQLite != "" {
		t.Errorf("SQLite = %q, want no SQLite default beside PostgreSQL", c.Store.SQLite)
	}
	if p.MaxConns != 10 || p.StatementTimeout.D() != 5*time.Second || p.PollInterval.D() != 5*time.Second || p.StartupTimeout.D() != 30*time.Second {
		t.Errorf("defaults = %+v", p)
	}
}

func TestStoreMappingIsStrict(t *testing.T) {
	_, err := Parse([]byte(validBase + "store:\n  postgres:\n    url: postgres://x/y\n    max_connections: 3\n"))
	if err == nil || !strings.Contains(err.Error(), "max_connections") {
		t.Fatalf("Parse = %v, want an error naming the unknown field", err)
	}
	_, err = Parse([]byte(validBase + "store: /var/lib/chaperone.db\n"))
	if err == nil || !strings.Contains(err.Error(), "postgres:// URL") {
		t.Fatalf("Parse = %v, want an error saying a string must be a postgres URL", err)
	}
	c, err := Parse([]byte(validBase + "store:\n  sqlite: state.db\n"))
	if err != nil || c.Store.SQLite != "state.db" || c.Store.Postgres != nil {
		t.Fatalf("Parse = %+v, %v", c.Store, err)
	}
}

func TestStoreValidation(t *testing.T) {
	pg := func(mut func(*Postgres)) func(*Config) {
		return func(c *Config) {
			c.Store = Store{Postgres: &Postgres{URL: "postgres://h/db"}}
			c.Store.applyDefaults(c.DataDir)
			mut(c.Store.Postgres)
		}
	}
	wantInvalid(t, pg(func(p *Postgres) { p.URL = "" }), []string{"store.postgres.url: is required"})
	wantInvalid(t, pg(func(p *Postgres) { p.URL = "mysql://h/db" }), []string{"store.postgres.url: must be a postgres://"})
	wantInvalid(t, pg(func(p *Postgres) { p.MaxConns = 5000 }), []string{"store.postgres.max_conns: must be between 1 and 1000, got 5000"})
	wantInvalid(t, pg(func(p *Postgres) { p.StatementTimeout = Duration(time.Millisecond) }), []string{"store.postgres.statement_timeout: must be between 100ms and 5m0s, got 1ms"})
	wantInvalid(t, pg(func(p *Postgres) { p.PollInterval = Duration(time.Hour) }), []string{"store.postgres.poll_interval"})
	wantInvalid(t, func(c *Config) { c.Store = Store{SQLite: "x.db", Postgres: &Postgres{URL: "postgres://h/db"}} }, []string{"store: set either sqlite or postgres, not both"})
}

func TestStoreURLExpandedAndRedacted(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "chaperone.yaml")
	body := validBase + "store:\n  postgres:\n    url: postgres://chaperone:${PG_TEST_PASSWORD}@db:5432/c\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PG_TEST_PASSWORD", "s3cret-value")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Store.Postgres.URL; got != "postgres://chaperone:s3cret-value@db:5432/c" {
		t.Fatalf("URL = %q, want the password expanded", got)
	}
	red := c.Redacted()
	if strings.Contains(red.Store.Postgres.URL, "s3cret") || !strings.Contains(red.Store.Postgres.URL, "REDACTED") {
		t.Errorf("Redacted URL = %q", red.Store.Postgres.URL)
	}
	if c.Store.Postgres.URL != "postgres://chaperone:s3cret-value@db:5432/c" {
		t.Error("Redacted changed the original")
	}
	os.Unsetenv("PG_TEST_PASSWORD")
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "store.postgres.url: environment variable PG_TEST_PASSWORD is not set") {
		t.Errorf("Load without the variable = %v", err)
	}
}
