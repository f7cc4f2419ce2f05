package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/approval"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/store"
	"github.com/chaperone-dev/chaperone/internal/store/pgtest"
	"github.com/chaperone-dev/chaperone/internal/store/postgres"
)

func pgAgent(id string) identity.AgentRecord {
	return identity.AgentRecord{
		Agent:     identity.Agent{ID: id, Owner: "ops", Environment: "dev", Status: identity.StatusActive},
		CreatedAt: pgT0, UpdatedAt: pgT0,
	}
}

// Agent, task and signing key changes are notified with their ids; an id that could not
// travel in a notification sends the topic alone (reload everything); refused writes
// send nothing.
func TestIdentityNotifications(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	db := pgOpen(t, dsn)
	l := pgListen(t, dsn, db)

	long := strings.Repeat("x", postgres.MaxNotifyID+1)
	for _, id := range []string{"billing", long, "line\nbreak"} {
		if err := db.PutAgent(ctx, pgAgent(id)); err != nil {
			t.Fatalf("PutAgent(%.20q): %v", id, err)
		}
	}
	if err := db.PutAgent(ctx, pgAgent("billing")); !errors.Is(err, identity.ErrAgentExists) {
		t.Fatalf("PutAgent(billing) again = %v, want ErrAgentExists", err)
	}
	upd := pgAgent("billing")
	upd.Agent.Status, upd.StatusReason, upd.UpdatedAt = identity.StatusSuspended, "runaway", pgT0.Add(time.Minute)
	if err := db.UpdateAgent(ctx, upd); err != nil {
		t.Fatal(err)
	}
	if err := db.UpdateAgent(ctx, pgAgent("nobody")); !errors.Is(err, identity.ErrUnknownAgent) {
		t.Fatalf("UpdateAgent(nobody) = %v, want ErrUnknownAgent", err)
	}
	task := identity.TaskRecord{ID: "tsk_1", Agent: "billing", CreatedAt: pgT0, ExpiresAt: pgT0.Add(time.Hour)}
	if err := db.PutTask(ctx, task); err != nil {
		t.Fatal(err)
	}
	if err := db.EndTask(ctx, task.ID, "ops", "done", pgT0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := db.EndTask(ctx, task.ID, "ops", "again", pgT0.Add(time.Minute)); !errors.Is(err, identity.ErrTaskEnded) {
		t.Fatalf("EndTask again = %v, want ErrTaskEnded", err)
	}
	if err := db.EndTask(ctx, "tsk_nope", "ops", "", pgT0); !errors.Is(err, identity.ErrUnknownTask) {
		t.Fatalf("EndTask(tsk_nope) = %v, want ErrUnknownTask", err)
	}
	if err := db.PutSigningKey(ctx, store.SigningKeyRecord{ID: "k1", Private: []byte{1}, Created: pgT0}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutSigningKey(ctx, store.SigningKeyRecord{ID: "k1", Private: []byte{1}, Created: pgT0}); err == nil {
		t.Fatal("PutSigningKey(k1) again succeeded")
	}
	if err := db.RetireSigningKey(ctx, "k1", pgT0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := db.RetireSigningKey(ctx, "k9", pgT0); !errors.Is(err, store.ErrUnknownSigningKey) {
		t.Fatalf("RetireSigningKey(k9) = %v, want ErrUnknownSigningKey", err)
	}
	want := []string{"agent:billing", "agent", "agent", "agent:billing", "task:tsk_1", "task:tsk_1", "key", "key"}
	if diff := cmp.Diff(want, l.next(t)); diff != "" {
		t.Errorf("notifications (-want +got):\n%s", diff)
	}
}

// Lists are in byte order, as in SQLite, whatever the database's collation.
func TestListsInByteOrder(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgOpen(t, pgtest.DSN(t))
	ids := []string{"b", "B", "a", "_x", "A-1", "a-1", "é"}
	for _, id := range ids {
		if err := db.PutAgent(ctx, pgAgent(id)); err != nil {
			t.Fatal(err)
		}
		if err := db.SetPin(ctx, registry.Pin{Tool: id, Hash: "sha256:aa", ApprovedAt: pgT0}); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"A-1", "B", "_x", "a", "a-1", "b", "é"}
	agents, err := db.Agents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pins, err := db.Pins(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var gotAgents, gotPins []string
	for i := range agents {
		gotAgents = append(gotAgents, agents[i].Agent.ID)
	}
	for _, p := range pins {
		gotPins = append(gotPins, p.Tool)
	}
	if diff := cmp.Diff(want, gotAgents); diff != "" {
		t.Errorf("Agents order (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, gotPins); diff != "" {
		t.Errorf("Pins order (-want +got):\n%s", diff)
	}
	// The test database may well sort in byte order by default: check that every
	// column a list is ordered by does whatever the default.
	var wrong []string
	err = db.Pool().QueryRow(ctx, `SELECT coalesce(array_agg(table_name || '.' || column_name ORDER BY table_name, column_name), '{}') FROM information_schema.columns
WHERE table_schema = current_schema() AND coalesce(collation_name, '') <> 'C'
AND (table_name, column_name) IN (('tool_pins', 'tool'), ('agents', 'id'), ('tasks', 'id'), ('signing_keys', 'id'),
	('approvals', 'id'), ('breakers', 'agent'), ('baselines', 'agent'))`).Scan(&wrong)
	if err != nil || len(wrong) > 0 {
		t.Errorf("columns lists are ordered by without COLLATE \"C\": %v, %v", wrong, err)
	}
}

// A store opened read-only reads, and refuses every write with ErrReadOnly before it
// reaches the database.
func TestReadOnlyRefusesWrites(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	rw := pgOpen(t, dsn)
	events := pgChain(audit.Event{}, 2)
	if err := rw.AppendEvents(ctx, events); err != nil {
		t.Fatal(err)
	}
	r := pgPending("apr_ro", "sha256:ro", pgT0)
	if err := rw.CreateApproval(ctx, r); err != nil {
		t.Fatal(err)
	}
	ro, err := postgres.OpenReadOnly(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ro.Close() })

	if got, err := ro.ScanEvents(ctx, 0, 10); err != nil || len(got) != 2 {
		t.Errorf("ScanEvents read-only = %d events, %v; want 2", len(got), err)
	}
	if got, err := ro.Approval(ctx, r.ID); err != nil || got.ID != r.ID {
		t.Errorf("Approval read-only = %v, %v", got, err)
	}
	at := pgT0.Add(time.Minute)
	sc, _ := contain.ParseScope("all")
	next := pgChain(events[1], 1)
	writes := map[string]func() error{
		"AppendEvents": func() error { return ro.AppendEvents(ctx, next) },
		"AppendChained": func() error {
			return ro.AppendChained(ctx, next, func(int64, string) error { return nil })
		},
		"SaveCheckpoint": func() error {
			return ro.SaveCheckpoint(ctx, audit.Checkpoint{Seq: 2, Head: events[1].Hash})
		},
		"PruneEvents": func() error {
			_, err := ro.PruneEvents(ctx, 2, nil, func(*audit.Event) bool { return true })
			return err
		},
		"SetPin":         func() error { return ro.SetPin(ctx, registry.Pin{Tool: "t", Hash: "h"}) },
		"PutAgent":       func() error { return ro.PutAgent(ctx, pgAgent("a")) },
		"UpdateAgent":    func() error { return ro.UpdateAgent(ctx, pgAgent("a")) },
		"PutTask":        func() error { return ro.PutTask(ctx, identity.TaskRecord{ID: "t"}) },
		"EndTask":        func() error { return ro.EndTask(ctx, "t", "ops", "", at) },
		"CreateApproval": func() error { return ro.CreateApproval(ctx, pgPending("apr_x", "sha256:x", pgT0)) },
		"AddApproval": func() error {
			_, err := ro.AddApproval(ctx, r.ID, "erin", at)
			return err
		},
		"Deny": func() error {
			_, err := ro.Deny(ctx, r.ID, "erin", "other", "", at)
			return err
		},
		"Consume": func() error {
			_, err := ro.Consume(ctx, r.ID, r.CallHash, at)
			return err
		},
		"ExpireApprovals": func() error {
			_, err := ro.ExpireApprovals(ctx, at)
			return err
		},
		"EngageKill": func() error {
			_, err := ro.EngageKill(ctx, contain.Kill{Scope: sc, EngagedAt: at})
			return err
		},
		"LiftKill": func() error {
			_, err := ro.LiftKill(ctx, sc, "ops", "", at)
			return err
		},
		"CreateIdem": func() error {
			_, _, err := ro.CreateIdem(ctx, contain.IdemRecord{Agent: "a", Key: "k", CreatedAt: at})
			return err
		},
		"FinishIdem":       func() error { return ro.FinishIdem(ctx, "a", "k", contain.IdemDone, nil, "", at) },
		"DeleteIdem":       func() error { return ro.DeleteIdem(ctx, "a", "k") },
		"ExpireIdem":       func() error { _, err := ro.ExpireIdem(ctx, at); return err },
		"PutSigningKey":    func() error { return ro.PutSigningKey(ctx, store.SigningKeyRecord{ID: "k", Private: []byte{1}}) },
		"RetireSigningKey": func() error { return ro.RetireSigningKey(ctx, "k", at) },
		"SetBreaker":       func() error { return ro.SetBreaker(ctx, store.BreakerRecord{Agent: "a", State: "open"}) },
		"PutBaseline":      func() error { return ro.PutBaseline(ctx, "a", []byte(`{}`), at) },
	}
	for name, write := range writes {
		if err := write(); !errors.Is(err, store.ErrReadOnly) {
			t.Errorf("%s on a read-only store = %v, want ErrReadOnly", name, err)
		}
	}
	// Nothing changed.
	if got, err := rw.Approval(ctx, r.ID); err != nil || got.Status != approval.StatusPending {
		t.Errorf("Approval after read-only writes = %+v, %v; want pending", got, err)
	}
	if last, _, err := rw.LastEvent(ctx); err != nil || last.Seq != 2 {
		t.Errorf("LastEvent after read-only writes = %d, %v; want 2", last.Seq, err)
	}
}

// A store whose database has gone fails every call with an error.
func TestClosedStoreFails(t *testing.T) {
	t.Parallel()
	db, err := postgres.Open(t.Context(), pgtest.DSN(t), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := db.AppendChained(ctx, pgChain(audit.Event{}, 1), func(int64, string) error { return nil }); err == nil {
		t.Error("AppendChained on a closed store succeeded")
	}
	if _, err := db.Consume(ctx, "apr_x", "sha256:x", pgT0); err == nil || errors.Is(err, approval.ErrNotFound) {
		t.Errorf("Consume on a closed store = %v, want a database error", err)
	}
	if _, err := db.EngageKill(ctx, contain.Kill{Scope: pgScope(t, "all"), EngagedAt: pgT0}); err == nil {
		t.Error("EngageKill on a closed store succeeded")
	}
}
