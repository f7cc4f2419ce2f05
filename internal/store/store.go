// Package store names what Chaperone keeps: the interfaces every backend implements and
// the records they share. Two backends exist: sqlite, the embedded default for one
// machine, and postgres, for any number of gateway replicas over one database. The
// contract tests in storetest run against both, so that neither drifts.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/chaperone-dev/chaperone/internal/approval"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/console"
	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/secrets"
)

// ErrNewerSchema is returned, wrapped, when a database's schema version is newer than
// this binary knows: it was written by a newer Chaperone, and this one must not touch it.
var ErrNewerSchema = errors.New("database schema is newer than this binary supports")

// ErrNoSchema is returned, wrapped, when a store opened read-only holds no Chaperone
// schema yet.
var ErrNoSchema = errors.New("not a Chaperone database: no schema yet")

// ErrReadOnly is returned, wrapped, by the write methods of a store opened read-only.
var ErrReadOnly = errors.New("database is open read-only")

// ErrUnknownSigningKey is returned, wrapped, by RetireSigningKey for an id no stored key
// has.
var ErrUnknownSigningKey = errors.New("unknown signing key")

// SigningKeyRecord is a token signing key as stored. Private is the raw private key.
type SigningKeyRecord struct {
	ID      string // the key id (kid)
	Private []byte
	Created time.Time
	Retired time.Time // zero while the key signs
}

// BreakerRecord is an agent's breaker that is not closed, as stored.
type BreakerRecord struct {
	Agent, State, Signal, Detail string
	OpenedAt                     time.Time
}

// Migration is one schema version and whether the database has it.
type Migration struct {
	Version int64
	Name    string
	Applied time.Time // zero if pending
}

// Store is everything a gateway keeps, in one backend.
type Store interface {
	audit.Store
	audit.Source
	audit.CheckpointStore
	registry.PinStore
	identity.AgentStore
	identity.TaskStore
	approval.Store
	contain.KillStore
	contain.IdemStore
	secrets.Store

	// Console returns the console's users and sessions. It is a method rather than an
	// embedded console.Store because the postgres store's TouchSession and DeleteSession
	// are gateway.SessionStore's, with other signatures.
	Console() console.Store

	// Agent returns one stored agent, and false if there is none.
	Agent(ctx context.Context, id string) (identity.AgentRecord, bool, error)
	// Task returns one stored task, and false if there is none.
	Task(ctx context.Context, id string) (identity.TaskRecord, bool, error)

	// TailEvents returns the last n events, in ascending Seq order.
	TailEvents(ctx context.Context, n int) ([]audit.Event, error)
	// Checkpoints returns at most limit checkpoints with Seq greater than afterSeq, in
	// ascending order.
	Checkpoints(ctx context.Context, afterSeq int64, limit int) ([]audit.Checkpoint, error)
	// Checkpoint returns the checkpoint at seq, and false if there is none.
	Checkpoint(ctx context.Context, seq int64) (audit.Checkpoint, bool, error)
	// PruneEvents replaces the events up to upTo whose kind is in kinds and for which
	// expired reports true by their tombstones, and returns how many it replaced.
	PruneEvents(ctx context.Context, upTo int64, kinds []string, expired func(*audit.Event) bool) (int64, error)

	Pins(ctx context.Context) ([]registry.Pin, error)

	SigningKeys(ctx context.Context) ([]SigningKeyRecord, error)
	PutSigningKey(ctx context.Context, k SigningKeyRecord) error
	RetireSigningKey(ctx context.Context, id string, at time.Time) error

	SetBreaker(ctx context.Context, r BreakerRecord) error
	Breakers(ctx context.Context) ([]BreakerRecord, error)
	PutBaseline(ctx context.Context, agent string, profile []byte, at time.Time) error
	Baselines(ctx context.Context, f func(agent string, profile []byte) error) error

	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	// Migrations lists the schema versions this binary knows and which are applied.
	Migrations(ctx context.Context) ([]Migration, error)
	// Backend is "sqlite" or "postgres".
	Backend() string
	Close() error
}
