package sqlite_test

import (
	"errors"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite/sqlitetest"
)

func TestKills(t *testing.T) {
	db, _ := sqlitetest.Open(t)
	ctx := t.Context()
	at := time.Date(2026, 3, 1, 9, 0, 0, 100, time.UTC)
	sc, _ := contain.ParseScope("agent:billing")
	k, err := db.EngageKill(ctx, contain.Kill{Scope: sc, Reason: "runaway", By: "alice", EngagedAt: at})
	if err != nil || k.ID == 0 {
		t.Fatalf("EngageKill = %+v, %v", k, err)
	}
	if _, err := db.EngageKill(ctx, contain.Kill{Scope: sc, Reason: "again", By: "bob", EngagedAt: at}); !errors.Is(err, contain.ErrKillEngaged) {
		t.Errorf("second EngageKill of one scope: %v, want ErrKillEngaged", err)
	}
	if _, err := db.LiftKill(ctx, contain.Scope{Kind: contain.ScopeAll}, "bob", "x", at); !errors.Is(err, contain.ErrNotKilled) {
		t.Errorf("LiftKill of a scope not killed: %v, want ErrNotKilled", err)
	}
	l, err := db.LiftKill(ctx, sc, "bob", "fixed", at.Add(time.Minute))
	if err != nil || l.Engaged() || l.LiftedBy != "bob" || l.LiftedReason != "fixed" || l.ID != k.ID {
		t.Fatalf("LiftKill = %+v, %v", l, err)
	}
	// Lifted, the scope can be killed again; both rows stay.
	if _, err := db.EngageKill(ctx, contain.Kill{Scope: sc, Reason: "again", By: "carol", EngagedAt: at.Add(2 * time.Minute)}); err != nil {
		t.Fatalf("EngageKill after lift: %v", err)
	}
	all, err := db.Kills(ctx)
	if err != nil || len(all) != 2 || all[0].Engaged() || !all[1].Engaged() || !all[0].EngagedAt.Equal(at) || all[1].Scope != sc {
		t.Fatalf("Kills = %+v, %v", all, err)
	}
}

func TestBreakersAndBaselines(t *testing.T) {
	db, _ := sqlitetest.Open(t)
	ctx := t.Context()
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for _, r := range []sqlite.BreakerRecord{
		{Agent: "a", State: "open", Signal: "denials", Detail: "5 in 10m", OpenedAt: at},
		{Agent: "b", State: "open", Signal: "errors", OpenedAt: at},
		{Agent: "a", State: "half_open", Signal: "denials", OpenedAt: at.Add(time.Minute)},
		{Agent: "b", State: "closed"},
	} {
		if err := db.SetBreaker(ctx, r); err != nil {
			t.Fatalf("SetBreaker(%+v): %v", r, err)
		}
	}
	if err := db.SetBreaker(ctx, sqlite.BreakerRecord{Agent: "c", State: "tripped", OpenedAt: at}); err == nil {
		t.Errorf("SetBreaker with an unknown state accepted")
	}
	got, err := db.Breakers(ctx)
	if err != nil || len(got) != 1 || got[0].Agent != "a" || got[0].State != "half_open" || !got[0].OpenedAt.Equal(at.Add(time.Minute)) {
		t.Fatalf("Breakers = %+v, %v", got, err)
	}

	if err := db.PutBaseline(ctx, "a", []byte(`{"calls":1}`), at); err != nil {
		t.Fatal(err)
	}
	if err := db.PutBaseline(ctx, "a", []byte(`{"calls":2}`), at); err != nil {
		t.Fatal(err)
	}
	if err := db.PutBaseline(ctx, "b", []byte(`not json`), at); err == nil {
		t.Errorf("PutBaseline of invalid JSON accepted")
	}
	seen := map[string]string{}
	if err := db.Baselines(ctx, func(a string, p []byte) error { seen[a] = string(p); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen["a"] != `{"calls":2}` {
		t.Errorf("Baselines = %v", seen)
	}
}
