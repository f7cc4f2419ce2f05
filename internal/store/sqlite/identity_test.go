package sqlite_test

import (
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

func agentRecord(id string) identity.AgentRecord {
	return identity.AgentRecord{
		Agent: identity.Agent{
			ID: id, Owner: "alice@example.com", Purpose: "mail", Environment: "prod",
			Capabilities: []string{"read_file", "*"}, Autonomy: 1,
			Labels: map[string]string{"team": "support"}, Status: identity.StatusActive,
		},
		SecretSHA256: identity.HashToken("chs_x"),
		CreatedAt:    t0,
		UpdatedAt:    t0,
	}
}

func TestAgents(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, path := openTemp(t)

	if got, err := db.Agents(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Agents on empty = %v, %v; want none", got, err)
	}
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := agentRecord("b")
	a := agentRecord("a")
	a.SecretSHA256, a.PublicKey, a.Agent.Labels, a.Agent.Purpose = "", pub, nil, ""
	for _, r := range []identity.AgentRecord{b, a} {
		if err := db.PutAgent(ctx, r); err != nil {
			t.Fatalf("PutAgent(%q): %v", r.Agent.ID, err)
		}
	}
	dup := agentRecord("a")
	dup.Agent.Owner = "mallory"
	if err := db.PutAgent(ctx, dup); !errors.Is(err, identity.ErrAgentExists) || !strings.HasPrefix(err.Error(), `sqlite: put agent "a": `) {
		t.Errorf("PutAgent(a) again = %v, want sqlite: put agent \"a\": ... ErrAgentExists", err)
	}
	if err := db.UpdateAgent(ctx, agentRecord("nobody")); !errors.Is(err, identity.ErrUnknownAgent) {
		t.Errorf("UpdateAgent(nobody) = %v, want ErrUnknownAgent", err)
	}
	bad := agentRecord("c")
	bad.Agent.Status = "paused"
	if err := db.PutAgent(ctx, bad); err == nil {
		t.Error("PutAgent with status paused succeeded, want the CHECK constraint to refuse it")
	}

	// An update changes everything but the id and the creation time.
	upd := b
	upd.Agent.Status, upd.StatusReason, upd.UpdatedAt = identity.StatusSuspended, "looping", t0.Add(time.Hour)
	upd.Agent.Capabilities, upd.CreatedAt = []string{"x"}, t0.Add(time.Hour)
	if err := db.UpdateAgent(ctx, upd); err != nil {
		t.Fatalf("UpdateAgent(b): %v", err)
	}
	upd.CreatedAt = t0

	want := []identity.AgentRecord{a, upd}
	got, err := db.Agents(ctx)
	if err != nil {
		t.Fatalf("Agents: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Agents (-want +got):\n%s", diff)
	}

	db.Close()
	ro, err := sqlite.OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if got, err := ro.Agents(ctx); err != nil || !cmp.Equal(want, got) {
		t.Errorf("Agents read-only = %v, %v; want %v", got, err, want)
	}
	for name, err := range map[string]error{
		"PutAgent":         ro.PutAgent(ctx, agentRecord("z")),
		"UpdateAgent":      ro.UpdateAgent(ctx, a),
		"PutTask":          ro.PutTask(ctx, identity.TaskRecord{ID: "t"}),
		"EndTask":          ro.EndTask(ctx, "t", "op", "", t0),
		"PutSigningKey":    ro.PutSigningKey(ctx, sqlite.SigningKeyRecord{ID: "k", Private: []byte{1}}),
		"RetireSigningKey": ro.RetireSigningKey(ctx, "k", t0),
	} {
		if !errors.Is(err, sqlite.ErrReadOnly) {
			t.Errorf("%s on read-only = %v, want ErrReadOnly", name, err)
		}
	}
}

func TestTasks(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, _ := openTemp(t)

	open := identity.TaskRecord{ID: "tsk_a", Agent: "mail", User: "carol", Tools: []string{"read_file"}, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	other := identity.TaskRecord{ID: "tsk_b", Agent: "ops", CreatedAt: t0, ExpiresAt: t0.Add(time.Minute)}
	for _, r := range []identity.TaskRecord{open, other} {
		if err := db.PutTask(ctx, r); err != nil {
			t.Fatalf("PutTask(%q): %v", r.ID, err)
		}
	}
	if err := db.PutTask(ctx, open); !errors.Is(err, identity.ErrTaskExists) {
		t.Errorf("PutTask(%q) again = %v, want ErrTaskExists", open.ID, err)
	}
	if err := db.EndTask(ctx, "tsk_nope", "op", "", t0); !errors.Is(err, identity.ErrUnknownTask) || !strings.HasPrefix(err.Error(), `sqlite: end task "tsk_nope": `) {
		t.Errorf("EndTask(tsk_nope) = %v, want sqlite: end task ...: ErrUnknownTask", err)
	}
	at := t0.Add(time.Minute + 123*time.Nanosecond)
	if err := db.EndTask(ctx, open.ID, "op", "done", at); err != nil {
		t.Fatalf("EndTask(%q): %v", open.ID, err)
	}
	if err := db.EndTask(ctx, open.ID, "op2", "again", at.Add(time.Hour)); !errors.Is(err, identity.ErrTaskEnded) {
		t.Errorf("EndTask(%q) again = %v, want ErrTaskEnded", open.ID, err)
	}
	ended := open
	ended.EndedAt, ended.EndedBy, ended.EndReason = at, "op", "done"
	got, err := db.Tasks(ctx)
	if err != nil {
		t.Fatalf("Tasks: %v", err)
	}
	if diff := cmp.Diff([]identity.TaskRecord{ended, other}, got); diff != "" {
		t.Errorf("Tasks (-want +got):\n%s", diff)
	}
}

func TestSigningKeys(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, _ := openTemp(t)

	k1 := sqlite.SigningKeyRecord{ID: "k1", Private: []byte("private-1"), Created: t0}
	k2 := sqlite.SigningKeyRecord{ID: "k2", Private: []byte("private-2"), Created: t0.Add(time.Hour)}
	for _, k := range []sqlite.SigningKeyRecord{k2, k1} {
		if err := db.PutSigningKey(ctx, k); err != nil {
			t.Fatalf("PutSigningKey(%q): %v", k.ID, err)
		}
	}
	for _, tt := range []struct {
		name string
		k    sqlite.SigningKeyRecord
		want string
	}{
		{"duplicate", k1, `sqlite: put signing key "k1": a key with this id is already stored`},
		{"no id", sqlite.SigningKeyRecord{Private: []byte{1}}, "id and private key are required"},
		{"no key", sqlite.SigningKeyRecord{ID: "k3"}, "id and private key are required"},
	} {
		if err := db.PutSigningKey(ctx, tt.k); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("PutSigningKey(%s) = %v, want %q", tt.name, err, tt.want)
		}
	}
	if err := db.RetireSigningKey(ctx, "k9", t0); !errors.Is(err, sqlite.ErrUnknownSigningKey) {
		t.Errorf("RetireSigningKey(k9) = %v, want ErrUnknownSigningKey", err)
	}
	retired := t0.Add(2 * time.Hour)
	if err := db.RetireSigningKey(ctx, "k1", retired); err != nil {
		t.Fatalf("RetireSigningKey(k1): %v", err)
	}
	// Retiring again keeps the first time.
	if err := db.RetireSigningKey(ctx, "k1", retired.Add(time.Hour)); err != nil {
		t.Fatalf("RetireSigningKey(k1) again: %v", err)
	}
	k1.Retired = retired
	got, err := db.SigningKeys(ctx)
	if err != nil {
		t.Fatalf("SigningKeys: %v", err)
	}
	if diff := cmp.Diff([]sqlite.SigningKeyRecord{k1, k2}, got); diff != "" {
		t.Errorf("SigningKeys (-want +got):\n%s", diff)
	}
}

// TestMigrateFromV1 opens a database as the previous release left it (schema version 1,
// with data) and checks that the identity tables are added and the data kept.
func TestMigrateFromV1(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "chaperone.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	events := chain(audit.Event{}, 2)
	if err := db.AppendEvents(ctx, events); err != nil {
		t.Fatal(err)
	}
	// Take the database back to version 1: exactly what migration 0001 left.
	for _, q := range []string{
		`DROP TABLE agents`, `DROP TABLE tasks`, `DROP TABLE signing_keys`, `DROP TABLE approvals`,
		`DROP TABLE kills`, `DROP TABLE breakers`, `DROP TABLE idempotency_keys`, `DROP TABLE baselines`, `DROP TABLE audit_checkpoints`,
		`DROP TABLE console_users`, `DROP TABLE console_sessions`, `DROP TABLE secrets`,
		`ALTER TABLE audit_events ADD COLUMN kind TEXT GENERATED ALWAYS AS (event ->> '$.kind') VIRTUAL`,
		`ALTER TABLE audit_events ADD COLUMN request_id TEXT GENERATED ALWAYS AS (event ->> '$.request_id') VIRTUAL`,
		`CREATE INDEX audit_events_kind ON audit_events (kind, seq)`,
		`CREATE INDEX audit_events_request_id ON audit_events (request_id) WHERE request_id IS NOT NULL`,
		`DELETE FROM schema_migrations WHERE version > 1`,
	} {
		if _, err := db.SQL().ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	db, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("Open(v1 database): %v", err)
	}
	defer db.Close()
	versions := column[int](t, db, `SELECT version FROM schema_migrations ORDER BY version`)
	if diff := cmp.Diff([]int{1, 2, 3, 4, 5, 6, 7, 8, 9}, versions); diff != "" {
		t.Errorf("schema versions after upgrade (-want +got):\n%s", diff)
	}
	got, err := db.ScanEvents(ctx, 0, 10)
	if err != nil || !cmp.Equal(events, got) {
		t.Errorf("events after upgrade = %v, %v; want the v1 events", got, err)
	}
	if err := db.PutAgent(ctx, agentRecord("a")); err != nil {
		t.Errorf("PutAgent after upgrade: %v", err)
	}
	var indexes int
	if err := db.SQL().QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_events'`).Scan(&indexes); err != nil || indexes != 0 {
		t.Errorf("indexes on audit_events after upgrade = %d, %v; want none (migration 8 drops them)", indexes, err)
	}
	columns := column[string](t, db, `SELECT name FROM pragma_table_xinfo('audit_events') ORDER BY cid`)
	if diff := cmp.Diff([]string{"seq", "event"}, columns); diff != "" {
		t.Errorf("columns of audit_events after upgrade (-want +got), migration 9 drops the derived ones:\n%s", diff)
	}
	var kind string
	if err := db.SQL().QueryRowContext(ctx, `SELECT event ->> '$.kind' FROM audit_events WHERE seq = 1`).Scan(&kind); err != nil || kind != string(events[0].Kind) {
		t.Errorf("the record's kind after upgrade = %q, %v; want %q", kind, err, events[0].Kind)
	}
	more := chain(events[1], 3)
	if err := db.AppendEvents(ctx, more); err != nil {
		t.Errorf("AppendEvents after upgrade: %v", err)
	}
	if got, err := db.ScanEvents(ctx, 0, 10); err != nil || !cmp.Equal(append(events, more...), got) {
		t.Errorf("events after appending to the upgraded table = %v, %v", got, err)
	}
}

// column returns the one column query selects, failing the test on any error.
func column[T any](t *testing.T, db *sqlite.DB, query string) []T {
	t.Helper()
	rows, err := db.SQL().QueryContext(t.Context(), query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := rows.Scan(&v); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return out
}
