package postgres_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/store/pgtest"
	"github.com/chaperone-dev/chaperone/internal/store/postgres"
)

func pgScope(tb testing.TB, s string) contain.Scope {
	tb.Helper()
	sc, err := contain.ParseScope(s)
	if err != nil {
		tb.Fatal(err)
	}
	return sc
}

// Of many replicas engaging the kill switch of one scope at once, one does; the others
// are told it is engaged. Engaging and lifting notify; a refused engage does not.
func TestEngageKillRace(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	dbs := []*postgres.DB{pgOpen(t, dsn), pgOpen(t, dsn)}
	l := pgListen(t, dsn, dbs[0])
	sc := pgScope(t, "agent:billing")
	const racers = 16
	kills := make([]contain.Kill, racers)
	errs := make([]error, racers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range racers {
		wg.Go(func() {
			<-start
			kills[i], errs[i] = dbs[i%2].EngageKill(ctx, contain.Kill{Scope: sc, Reason: fmt.Sprint("racer ", i), By: "ops",
				EngagedAt: pgT0.Add(time.Duration(i) * time.Nanosecond)})
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("racers %d and %d both engaged the kill of %s", winner, i, sc)
			}
			winner = i
		case !errors.Is(err, contain.ErrKillEngaged):
			t.Errorf("racer %d: %v, want ErrKillEngaged", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no racer engaged the kill")
	}
	if k := kills[winner]; k.ID == 0 || !k.EngagedAt.Equal(pgT0) || k.EngagedAt.Location() != time.UTC {
		t.Errorf("EngageKill returned %+v, want an id and EngagedAt %v (to the microsecond, UTC)", k, pgT0)
	}
	all, err := dbs[1].Kills(ctx)
	if err != nil || len(all) != 1 || all[0].ID != kills[winner].ID {
		t.Fatalf("Kills after the race = %+v, %v; want the winner's only", all, err)
	}
	if _, err := dbs[1].LiftKill(ctx, sc, "bob", "fixed", pgT0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := dbs[1].LiftKill(ctx, sc, "bob", "again", pgT0.Add(time.Minute)); !errors.Is(err, contain.ErrNotKilled) {
		t.Errorf("LiftKill of a lifted scope = %v, want ErrNotKilled", err)
	}
	if diff := cmp.Diff([]string{"kill", "kill"}, l.next(t)); diff != "" {
		t.Errorf("notifications of the race and the lift (-want +got):\n%s", diff)
	}
}

// Of many callers claiming one idempotency key on two replicas, one creates it; every
// other one gets that record.
func TestCreateIdemRace(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dbs := pgReplicas(t, 2)
	const racers = 16
	type result struct {
		rec     *contain.IdemRecord
		created bool
		err     error
	}
	res := make([]result, racers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range racers {
		wg.Go(func() {
			<-start
			rec := contain.IdemRecord{Agent: "a", Key: "pay-1", Tool: "pay", ArgsHash: "sha256:aa",
				RequestID: fmt.Sprint("req-", i), CreatedAt: pgT0}
			r := &res[i]
			r.rec, r.created, r.err = dbs[i%2].CreateIdem(ctx, rec)
		})
	}
	close(start)
	wg.Wait()
	owner := ""
	for i, r := range res {
		if r.err != nil {
			t.Fatalf("CreateIdem by racer %d: %v", i, r.err)
		}
		if r.created {
			if owner != "" {
				t.Fatalf("racers %s and req-%d both created the record", owner, i)
			}
			owner = fmt.Sprint("req-", i)
		}
	}
	if owner == "" {
		t.Fatal("no racer created the record")
	}
	for i, r := range res {
		if !r.created && (r.rec == nil || r.rec.RequestID != owner || r.rec.State != contain.IdemRunning) {
			t.Errorf("racer %d got %+v, want the running record of %s", i, r.rec, owner)
		}
	}
}

// Baselines come back byte for byte, and the walk lets f use the store even when the
// pool has one connection.
func TestBaselinesVerbatim(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, err := postgres.Open(ctx, pgtest.DSN(t), postgres.Options{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	profiles := map[string]string{
		"a": `{ "calls" : 2, "mean": 1.50, "big": 1e300 }`,
		"b": `{"z":1,"a":"\u0000"}`,
	}
	for agent, p := range profiles {
		if err := db.PutBaseline(ctx, agent, []byte(p), pgT0); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.PutBaseline(ctx, "c", []byte(`{"unterminated":`), pgT0); err == nil {
		t.Error("PutBaseline of invalid JSON accepted")
	}
	got := map[string]string{}
	var order []string
	err = db.Baselines(ctx, func(agent string, p []byte) error {
		if _, err := db.Breakers(ctx); err != nil { // the store, from inside the walk
			return err
		}
		got[agent] = string(p)
		order = append(order, agent)
		return nil
	})
	if err != nil {
		t.Fatalf("Baselines: %v", err)
	}
	if diff := cmp.Diff(profiles, got); diff != "" {
		t.Errorf("Baselines (-want +got):\n%s", diff)
	}
	if !cmp.Equal(order, []string{"a", "b"}) {
		t.Errorf("Baselines walked %v, want [a b]", order)
	}
	stop := errors.New("stop")
	if err := db.Baselines(ctx, func(string, []byte) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("Baselines with a failing f = %v, want its error", err)
	}
}
