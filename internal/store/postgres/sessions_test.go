package postgres

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/gateway"
	"github.com/chaperone-dev/chaperone/internal/store"
	"github.com/chaperone-dev/chaperone/internal/store/pgtest"
)

// The assertion lives here rather than in sessions.go so that the store does not import
// the ingress (see sessions.go).
var _ gateway.SessionStore = (*DB)(nil)

func TestSessionStoreContract(t *testing.T) {
	t.Parallel()
	db := sjOpen(t, pgtest.DSN(t))
	ctx := t.Context()
	if err := db.CreateSession(ctx, "ses_1", "a1", "2025-06-18", sjT0); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateSession(ctx, "ses_1", "a2", "2025-06-18", sjT0); err == nil {
		t.Error("CreateSession of a taken id succeeded")
	}
	for _, tc := range []struct {
		name, id, agent string
		found           bool
	}{
		{"its agent", "ses_1", "a1", true},
		{"another agent", "ses_1", "a2", false},
		{"unknown id", "ses_2", "a1", false},
		{"id not UTF-8", "ses_\xff", "a1", false},
		{"id with NUL", "ses_1\x00", "a1", false},
		{"id too long", strings.Repeat("s", sjMaxSessionField+1), "a1", false},
		{"empty id", "", "a1", false},
	} {
		proto, found, err := db.LookupSession(ctx, tc.id, tc.agent)
		if err != nil || found != tc.found || (found && proto != "2025-06-18") {
			t.Errorf("%s: LookupSession = %q, %v, %v; want found %v", tc.name, proto, found, err, tc.found)
		}
		proto, found, err = db.TouchSession(ctx, tc.id, tc.agent, sjT0.Add(time.Minute))
		if err != nil || found != tc.found || (found && proto != "2025-06-18") {
			t.Errorf("%s: TouchSession = %q, %v, %v; want found %v", tc.name, proto, found, err, tc.found)
		}
	}
	for _, bad := range [][3]string{{"", "a1", "p"}, {"s", "", "p"}, {"s", "a1", ""}, {"s\x00", "a1", "p"}, {"s", "a\xff", "p"}} {
		if err := db.CreateSession(ctx, bad[0], bad[1], bad[2], sjT0); err == nil {
			t.Errorf("CreateSession(%q, %q, %q) succeeded", bad[0], bad[1], bad[2])
		}
	}

	// Touches only move last_seen forward; expiry takes what is older than its bound.
	if err := db.CreateSession(ctx, "ses_old", "a1", "2025-06-18", sjT0.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.TouchSession(ctx, "ses_1", "a1", sjT0.Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	ids, err := db.ExpireSessions(ctx, sjT0, 10)
	if err != nil || !slices.Equal(ids, []string{"ses_old"}) {
		t.Errorf("ExpireSessions = %q, %v; want [ses_old]", ids, err)
	}
	if _, found, _ := db.LookupSession(ctx, "ses_old", "a1"); found {
		t.Error("an expired session is still found")
	}
	if ids, err := db.ExpireSessions(ctx, sjT0.Add(2*time.Minute), 0); err != nil || len(ids) != 0 {
		t.Errorf("ExpireSessions(limit 0) = %q, %v", ids, err)
	}

	if found, err := db.DeleteSession(ctx, "ses_1", "a2"); err != nil || found {
		t.Errorf("DeleteSession by another agent = %v, %v; want not found", found, err)
	}
	if found, err := db.DeleteSession(ctx, "ses_1", "a1"); err != nil || !found {
		t.Errorf("DeleteSession = %v, %v; want found", found, err)
	}
	if found, err := db.DeleteSession(ctx, "ses_1", "a1"); err != nil || found {
		t.Errorf("DeleteSession again = %v, %v; want not found", found, err)
	}
}

// TestExpireSessionsOnce: replicas expiring at once each get their own share of the
// expired sessions, and no session twice.
func TestExpireSessionsOnce(t *testing.T) {
	t.Parallel()
	a, b := sjReplicas(t)
	ctx := t.Context()
	want := make([]string, 60)
	for i := range want {
		want[i] = "ses_" + string(rune('A'+i))
		if err := a.CreateSession(ctx, want[i], "a1", "2025-06-18", sjT0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var got []string
	var wg sync.WaitGroup
	for i := range 6 {
		db := []*DB{a, b}[i%2]
		wg.Go(func() {
			for {
				ids, err := db.ExpireSessions(context.Background(), sjT0.Add(time.Hour), 7)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				got = append(got, ids...)
				mu.Unlock()
				if len(ids) == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("expired %d sessions %q, want each of %d once", len(got), got, len(want))
	}
}

func TestSessionStoreReadOnly(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	db := sjOpen(t, dsn)
	if err := db.CreateSession(t.Context(), "ses_1", "a1", "2025-06-18", sjT0); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenReadOnly(t.Context(), dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, found, err := ro.LookupSession(t.Context(), "ses_1", "a1"); err != nil || !found {
		t.Errorf("LookupSession read-only = %v, %v", found, err)
	}
	_, _, terr := ro.TouchSession(t.Context(), "ses_1", "a1", sjT0)
	_, derr := ro.DeleteSession(t.Context(), "ses_1", "a1")
	_, eerr := ro.ExpireSessions(t.Context(), sjT0, 1)
	for name, err := range map[string]error{"CreateSession": ro.CreateSession(t.Context(), "ses_2", "a1", "p", sjT0), "TouchSession": terr, "DeleteSession": derr, "ExpireSessions": eerr} {
		if !errors.Is(err, store.ErrReadOnly) {
			t.Errorf("%s read-only = %v, want ErrReadOnly", name, err)
		}
	}
}
