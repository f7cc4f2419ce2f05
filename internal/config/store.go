package config

import (
	"bytes"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Store selects the persistence backend: SQLite (the default, one machine) or PostgreSQL
// (any number of gateway replicas sharing one database). In YAML it is either a mapping
//
//	store: {sqlite: path}                        # or
//	store: {postgres: {url: "postgres://...", max_conns: 20}}
//
// or, for PostgreSQL with defaults, just the URL: `store: postgres://...`.
type Store struct {
	// SQLite is the database file. Default "<data_dir>/chaperone.db" when Postgres is not
	// set.
	SQLite string `yaml:"sqlite,omitempty"`
	// Postgres, if set, keeps every state in PostgreSQL instead.
	Postgres *Postgres `yaml:"postgres,omitempty"`
}

// Postgres configures the PostgreSQL store.
type Postgres struct {
	// URL is the connection string, postgres://user:password@host:port/db?sslmode=...;
	// ${VAR} is expanded (keep the password in the environment). Required.
	URL string `yaml:"url"`
	// MaxConns bounds the connection pool of each replica. Default 10; 1..1000.
	MaxConns int `yaml:"max_conns,omitempty"`
	// StatementTimeout bounds every statement. Default "5s"; 100ms..5m.
	StatementTimeout Duration `yaml:"statement_timeout,omitempty"`
	// ConnectTimeout bounds opening one connection. Default "5s"; 100ms..5m.
	ConnectTimeout Duration `yaml:"connect_timeout,omitempty"`
	// StartupTimeout is how long a starting gateway waits for the database to answer
	// before it gives up. Default "30s"; "0s" tries once.
	StartupTimeout Duration `yaml:"startup_timeout,omitempty"`
	// PollInterval is how often each replica rereads the shared state (kills, agents,
	// tasks, approvals, keys) as a safety net for a missed notification. Default "5s";
	// 100ms..10m.
	PollInterval Duration `yaml:"poll_interval,omitempty"`
}

// storeFields is Store without its YAML method, for strict decoding.
type storeFields Store

// UnmarshalYAML implements [yaml.Unmarshaler]: a scalar is a PostgreSQL URL, a mapping is
// decoded strictly.
func (s *Store) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var v string
		if err := n.Decode(&v); err != nil {
			return fmt.Errorf("line %d: store: %w", n.Line, err)
		}
		if !IsPostgresURL(v) {
			return fmt.Errorf("line %d: store: a string must be a postgres:// URL; for SQLite write `store: {sqlite: <path>}`", n.Line)
		}
		*s = Store{Postgres: &Postgres{URL: v}}
		return nil
	}
	// A custom unmarshaler loses the decoder's KnownFields: decode the mapping again,
	// strictly.
	b, err := yaml.Marshal(n)
	if err != nil {
		return fmt.Errorf("line %d: store: %w", n.Line, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f storeFields
	if err := dec.Decode(&f); err != nil {
		return fmt.Errorf("line %d: store: %w", n.Line, err)
	}
	*s = Store(f)
	return nil
}

// IsPostgresURL reports whether v is a postgres:// or postgresql:// URL.
func IsPostgresURL(v string) bool {
	return strings.HasPrefix(v, "postgres://") || strings.HasPrefix(v, "postgresql://")
}

func (s *Store) applyDefaults(dataDir string) {
	p := s.Postgres
	if p == nil {
		if s.SQLite == "" {
			s.SQLite = filepath.Join(dataDir, "chaperone.db")
		}
		return
	}
	if p.MaxConns == 0 {
		p.MaxConns = 10
	}
	for _, d := range []struct {
		v   *Duration
		def time.Duration
	}{{&p.StatementTimeout, 5 * time.Second}, {&p.ConnectTimeout, 5 * time.Second},
		{&p.StartupTimeout, 30 * time.Second}, {&p.PollInterval, 5 * time.Second}} {
		if *d.v == 0 {
			*d.v = Duration(d.def)
		}
	}
}

func (s *Store) validate(bad func(field, format string, args ...any)) {
	p := s.Postgres
	if p == nil {
		return
	}
	if s.SQLite != "" {
		bad("store", "set either sqlite or postgres, not both")
	}
	if p.URL == "" {
		bad("store.postgres.url", "is required")
	} else if !IsPostgresURL(p.URL) {
		bad("store.postgres.url", "must be a postgres:// or postgresql:// URL")
	} else if _, err := url.Parse(p.URL); err != nil {
		bad("store.postgres.url", "is not a valid URL") // the error would quote it, password and all
	}
	if p.MaxConns < 1 || p.MaxConns > 1000 {
		bad("store.postgres.max_conns", "must be between 1 and 1000, got %d", p.MaxConns)
	}
	for _, d := range []struct {
		field    string
		v        Duration
		min, max time.Duration
	}{
		{"store.postgres.statement_timeout", p.StatementTimeout, 100 * time.Millisecond, 5 * time.Minute},
		{"store.postgres.connect_timeout", p.ConnectTimeout, 100 * time.Millisecond, 5 * time.Minute},
		{"store.postgres.startup_timeout", p.StartupTimeout, 0, time.Hour},
		{"store.postgres.poll_interval", p.PollInterval, 100 * time.Millisecond, 10 * time.Minute},
	} {
		if d.v.D() < d.min || d.v.D() > d.max {
			bad(d.field, "must be between %s and %s, got %s", d.min, d.max, d.v.D())
		}
	}
}
