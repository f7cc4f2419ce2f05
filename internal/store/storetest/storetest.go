// Package storetest is the contract test suite of [store.Store]: one set of behavioural
// tests that every backend runs, so that the embedded sqlite store and the postgres store
// cannot drift apart. A backend's tests call [Run] with a function that opens a fresh,
// empty, migrated store:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "chaperone.db"))
//			...
//			t.Cleanup(func() { db.Close() })
//			return db
//		})
//	}
//
// The suite checks what the interfaces promise, not how a backend keeps it: round trips
// of every field (times in UTC, to the microsecond, which is what both backends keep),
// the order of every list, filters and limits, the sentinel errors callers branch on,
// and the atomicity of every decision that several goroutines (or gateway replicas) may
// race for: consuming an approval, the two-person rule, one pending request per call,
// one engaged kill per scope, one creator per idempotency key, and one audit chain with
// no fork and no gap however many logs append to it.
//
// Every subtest opens its own store and runs in parallel with the others.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/approval"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/store"
)

// Run runs the contract suite against the stores open returns. open must return a fresh,
// empty, migrated store for the test it is given, and close it when that test ends
// (t.Cleanup); the suite may close it earlier itself. Run starts one subtest per area
// (Events, Chain, Checkpoints, Approvals, ...), and in each one parallel subtest per
// behaviour, each with its own store.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	if open == nil {
		t.Fatal("storetest.Run: nil open function")
	}
	for _, area := range ctAreas() {
		t.Run(area.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range area.cases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					st := open(t)
					if st == nil {
						t.Fatal("open returned a nil store")
					}
					c.f(t, st)
				})
			}
		})
	}
}

// ctCase is one behaviour of the contract, run against a fresh store.
type ctCase struct {
	name string
	f    func(t *testing.T, st store.Store)
}

// ctArea groups the cases of one part of the interface.
type ctArea struct {
	name  string
	cases []ctCase
}

func ctAreas() []ctArea {
	return []ctArea{
		{"Events", ctEventCases()},
		{"Chain", ctChainCases()},
		{"Checkpoints", ctCheckpointCases()},
		{"Prune", ctPruneCases()},
		{"Approvals", ctApprovalCases()},
		{"Agents", ctAgentCases()},
		{"Tasks", ctTaskCases()},
		{"SigningKeys", ctSigningKeyCases()},
		{"Pins", ctPinCases()},
		{"Kills", ctKillCases()},
		{"Breakers", ctBreakerCases()},
		{"Baselines", ctBaselineCases()},
		{"Idempotency", ctIdemCases()},
		{"Console", ctConsoleCases()},
		{"Secrets", ctSecretCases()},
		{"Database", ctDatabaseCases()},
	}
}

// ctT0 is the base time of the suite: UTC, with microseconds, which every backend keeps.
var ctT0 = time.Date(2026, 3, 1, 9, 0, 7, 123456000, time.UTC)

// ctRaceN is how many goroutines race for each atomic decision, and ctRounds how many
// times the races that are cheap to repeat are run: the first round can be serialised by
// connections being opened, later ones race on warm connections.
const (
	ctRaceN  = 16
	ctRounds = 5
)

// ctRace runs f(0) to f(n-1) in n goroutines released together, and returns their
// errors by index.
func ctRace(n int, f func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = f(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// ctOneWinner checks that exactly one of errs is nil and that every other one wraps
// one of losers (any error at all if losers is empty), and returns the winner's index.
func ctOneWinner(t *testing.T, what string, errs []error, losers ...error) int {
	t.Helper()
	winner := -1
	var wins int
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
			winner = i
		case len(losers) > 0 && !slices.ContainsFunc(losers, func(l error) bool { return errors.Is(err, l) }):
			t.Errorf("%s: racer %d failed with %v, want an error wrapping one of %v", what, i, err, losers)
		}
	}
	if wins != 1 {
		t.Fatalf("%s: %d of %d racers succeeded, want exactly 1 (errors: %v)", what, wins, len(errs), errs)
	}
	return winner
}

// ctAllSet fails the test if a field of the struct v (or *v) other than those named in
// except is its zero value: a round trip of v then covers every field, including any
// added to the type later.
func ctAllSet(t *testing.T, what string, v any, except ...string) {
	t.Helper()
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		rv = rv.Elem()
	}
	for i := range rv.NumField() {
		name := rv.Type().Field(i).Name
		if !slices.Contains(except, name) && rv.Field(i).IsZero() {
			t.Fatalf("%s: field %s is not set, so the round trip would not cover it", what, name)
		}
	}
}

// ctUTC fails the test for a time not in UTC: both backends hand out UTC.
func ctUTC(t *testing.T, what string, times ...time.Time) {
	t.Helper()
	for i, tm := range times {
		if loc := tm.Location(); loc != time.UTC {
			t.Errorf("%s: time #%d (%v) is in location %q, want UTC", what, i, tm, loc)
		}
	}
}

// ctCheckErr fails the test unless err wraps want.
func ctCheckErr(t *testing.T, call string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s = %v, want an error wrapping %q", call, err, want)
	}
}

// ctDatabaseCases cover the methods about the database itself.
func ctDatabaseCases() []ctCase {
	return []ctCase{
		{"Backend", func(t *testing.T, st store.Store) {
			if b := st.Backend(); b != "sqlite" && b != "postgres" {
				t.Errorf("Backend() = %q, want sqlite or postgres", b)
			}
		}},
		{"Ping", func(t *testing.T, st store.Store) {
			if err := st.Ping(t.Context()); err != nil {
				t.Errorf("Ping on an open store: %v", err)
			}
		}},
		{"Migrations", func(t *testing.T, st store.Store) {
			ms, err := st.Migrations(t.Context())
			if err != nil {
				t.Fatalf("Migrations: %v", err)
			}
			if len(ms) == 0 {
				t.Fatal("Migrations() is empty, want at least the initial schema")
			}
			now := time.Now()
			for i, m := range ms {
				if i > 0 && m.Version <= ms[i-1].Version {
					t.Errorf("Migrations()[%d].Version = %d after %d, want strictly ascending versions", i, m.Version, ms[i-1].Version)
				}
				if m.Version < 1 {
					t.Errorf("Migrations()[%d].Version = %d, want at least 1", i, m.Version)
				}
				if m.Name == "" {
					t.Errorf("Migrations()[%d] (version %d) has no name", i, m.Version)
				}
				// A freshly opened store has every migration this binary knows applied.
				if m.Applied.IsZero() {
					t.Errorf("Migrations()[%d] (version %d %q) is not applied on a freshly opened store", i, m.Version, m.Name)
				} else if m.Applied.After(now.Add(time.Minute)) || m.Applied.Before(now.Add(-time.Hour)) {
					t.Errorf("Migrations()[%d] (version %d) applied at %v, want about now (%v)", i, m.Version, m.Applied, now)
				}
			}
			again, err := st.Migrations(t.Context())
			if err != nil || !reflect.DeepEqual(ctMigrationKeys(ms), ctMigrationKeys(again)) {
				t.Errorf("Migrations() again = %v, %v; want the same versions and names as %v", again, err, ms)
			}
		}},
		{"CancelledContext", ctCancelled},
		{"Close", func(t *testing.T, st store.Store) {
			if err := st.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			// Closed, the store fails closed: every call returns an error, none panics.
			if err := st.Ping(t.Context()); err == nil {
				t.Error("Ping after Close succeeded, want an error")
			}
			if _, _, err := st.LastEvent(t.Context()); err == nil {
				t.Error("LastEvent after Close succeeded, want an error")
			}
			if err := st.AppendEvents(t.Context(), ctChain(audit.Event{}, 1, "closed")); err == nil {
				t.Error("AppendEvents after Close succeeded, want an error")
			}
		}},
	}
}

// ctMigrationKeys is what two listings of the same schema agree on.
func ctMigrationKeys(ms []store.Migration) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = fmt.Sprint(m.Version, " ", m.Name)
	}
	return out
}

// ctCancelled checks that calls with a cancelled context fail and write nothing: a
// caller that gave up must not have its write happen behind its back.
func ctCancelled(t *testing.T, st store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := st.Ping(ctx); err == nil {
		t.Error("Ping with a cancelled context succeeded, want an error")
	}
	if err := st.AppendEvents(ctx, ctChain(audit.Event{}, 1, "cancelled")); err == nil {
		t.Error("AppendEvents with a cancelled context succeeded, want an error")
	}
	if err := ctChainStore(t, st).AppendChained(ctx, ctUnchained(1, "cancelled"), func(seq int64, hash string) error {
		return nil
	}); err == nil {
		t.Error("AppendChained with a cancelled context succeeded, want an error")
	}
	if err := st.CreateApproval(ctx, ctPending("apr_cancelled", "sha256:cancelled", ctT0)); err == nil {
		t.Error("CreateApproval with a cancelled context succeeded, want an error")
	}
	if _, err := st.EngageKill(ctx, contain.Kill{Scope: contain.Scope{Kind: contain.ScopeAll}, Reason: "r", By: "op", EngagedAt: ctT0}); err == nil {
		t.Error("EngageKill with a cancelled context succeeded, want an error")
	}
	live := t.Context()
	if e, ok, err := st.LastEvent(live); ok || err != nil {
		t.Errorf("LastEvent after cancelled appends = seq %d, %v, %v; want none", e.Seq, ok, err)
	}
	if _, err := st.Approval(live, "apr_cancelled"); !errors.Is(err, approval.ErrNotFound) {
		t.Errorf("Approval(apr_cancelled) after a cancelled create = %v, want ErrNotFound", err)
	}
	if kills, err := st.Kills(live); err != nil || len(kills) != 0 {
		t.Errorf("Kills() after a cancelled engage = %v, %v; want none", kills, err)
	}
}
