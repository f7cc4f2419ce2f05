package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/store"
	"github.com/chaperone-dev/chaperone/internal/store/pgtest"
)

// These tests run store-backed contain.Ledgers and contain.Limiters over real
// PostgreSQL. Each DB handle stands for one gateway replica: its own pool, its own
// Ledger or Limiter, sharing only the database.

// shClock is a fake clock safe for concurrent use.
type shClock struct {
	mu sync.Mutex
	t  time.Time
}

func shNewClock() *shClock { return &shClock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)} }

func (c *shClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *shClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// shOpen opens a replica's handle on dsn, closed when the test ends.
func shOpen(tb testing.TB, dsn string) *DB {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := Open(ctx, dsn, Options{MaxConns: 8})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// shLedger returns a Ledger over db whose store errors fail the test.
func shLedger(tb testing.TB, db *DB, now func() time.Time, o contain.LedgerOptions) *contain.Ledger {
	tb.Helper()
	o.Store, o.Now = db, now
	o.OnStoreError = func(err error) { tb.Errorf("store error: %v", err) }
	l, err := contain.NewLedger(o)
	if err != nil {
		tb.Fatalf("NewLedger: %v", err)
	}
	return l
}

// shHandles opens n replicas' handles on dsn.
func shHandles(tb testing.TB, dsn string, n int) []*DB {
	tb.Helper()
	dbs := make([]*DB, n)
	for i := range dbs {
		dbs[i] = shOpen(tb, dsn)
	}
	return dbs
}

// shReplicas returns a ledger with options o over each handle.
func shReplicas(tb testing.TB, dbs []*DB, now func() time.Time, o contain.LedgerOptions) []*contain.Ledger {
	tb.Helper()
	ls := make([]*contain.Ledger, len(dbs))
	for i, db := range dbs {
		ls[i] = shLedger(tb, db, now, o)
	}
	return ls
}

func shExhausted(tb testing.TB, err error) *contain.Exhausted {
	tb.Helper()
	ex, ok := errors.AsType[*contain.Exhausted](err)
	if !ok {
		tb.Fatalf("Reserve error = %v, want an *Exhausted", err)
	}
	return ex
}

// TestSharedLedgerLimits is the in-memory TestLedgerLimitsExhaustAtBound with calls
// alternating between two replicas: the bound is exact across them, and the refusal
// is the same.
func TestSharedLedgerLimits(t *testing.T) {
	t.Parallel()
	dbs := shHandles(t, pgtest.DSN(t), 2)
	clk := shNewClock()
	tests := []struct {
		name    string
		limits  contain.Limits
		charge  contain.Charge
		fit     int
		want    contain.Exhausted
		wantMsg string
	}{{
		name:    "steps",
		limits:  contain.Limits{MaxSteps: 3},
		charge:  contain.Charge{Context: "t\x00steps", Tool: "search"},
		fit:     3,
		want:    contain.Exhausted{Budget: "steps", Used: 3, Asked: 1, Max: 3, Per: "task"},
		wantMsg: `budget "steps" exhausted: 3 of 3 used, this call needs 1`,
	}, {
		name:    "spend from costs",
		limits:  contain.Limits{MaxSpend: 1},
		charge:  contain.Charge{Context: "t\x00costs", Tool: "lookup", Cost: 0.01},
		fit:     100, // 0.01 added a hundred times is not quite 1 in float64
		want:    contain.Exhausted{Budget: "spend", Used: 1, Asked: 0.01, Max: 1, Per: "task"},
		wantMsg: `budget "spend" exhausted: 1 of 1 used, this call needs 0.01`,
	}, {
		name:    "spend from reports",
		limits:  contain.Limits{MaxSpend: 10},
		charge:  contain.Charge{Context: "t\x00reports", Tool: "lookup", ReportedSpend: 2.5},
		fit:     4,
		want:    contain.Exhausted{Budget: "spend", Used: 12.5, Max: 10, Per: "task"},
		wantMsg: `budget "spend" exhausted: 12.5 of 10 used`,
	}, {
		name:    "tokens",
		limits:  contain.Limits{MaxTokens: 1000},
		charge:  contain.Charge{Context: "t\x00tokens", Tool: "lookup", ReportedTokens: 250},
		fit:     4,
		want:    contain.Exhausted{Budget: "tokens", Used: 1250, Max: 1000, Per: "task"},
		wantMsg: `budget "tokens" exhausted: 1250 of 1000 used`,
	}, {
		name: "cap",
		charge: contain.Charge{Context: "t\x00cap", Agent: "finance", Tool: "send_money",
			Args: map[string]any{"amount": 2450.0}},
		fit:     4,
		want:    contain.Exhausted{Budget: "payments-per-day", Used: 9800, Asked: 2450, Max: 10000, Per: "agent"},
		wantMsg: `budget "payments-per-day" exhausted: 9800 of 10000 used, this call needs 2450`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ls := shReplicas(t, dbs, clk.Now, contain.LedgerOptions{Limits: tt.limits, Caps: []contain.Cap{{
				Name: "payments-per-day", Tools: []string{"send_money"}, Sum: "amount", Per: "agent",
				Window: 24 * time.Hour, Max: 10000,
			}}})
			for i := range tt.fit {
				if _, err := ls[i%2].Reserve(tt.charge); err != nil {
					t.Fatalf("Reserve #%d of %d on replica %d: %v", i+1, tt.fit, i%2, err)
				}
			}
			for i, l := range ls {
				_, err := l.Reserve(tt.charge)
				ex := shExhausted(t, err)
				want := tt.want
				if tt.charge.ReportedSpend > 0 || tt.charge.ReportedTokens > 0 {
					// Each refused call's report is kept, and the next refusal counts it.
					want.Used += float64(i) * (tt.charge.ReportedSpend + float64(tt.charge.ReportedTokens))
				}
				opt := cmp.Comparer(func(a, b float64) bool { return math.Abs(a-b) < 1e-9 })
				if diff := cmp.Diff(&want, ex, opt); diff != "" {
					t.Errorf("Reserve #%d on replica %d (-want +got):\n%s", tt.fit+1+i, i, diff)
				}
				if got := ex.Error(); i == 0 && got != tt.wantMsg {
					t.Errorf("Exhausted.Error() = %q, want %q", got, tt.wantMsg)
				}
				if steps, _, _ := l.Usage(tt.charge.Context); steps != int64(tt.fit) {
					t.Errorf("Usage on replica %d: steps = %d after a refusal, want %d", i, steps, tt.fit)
				}
			}
		})
	}
}

func TestSharedLedgerReportedUseKept(t *testing.T) {
	t.Parallel()
	l := shLedger(t, shOpen(t, pgtest.DSN(t)), shNewClock().Now,
		contain.LedgerOptions{Limits: contain.Limits{MaxSteps: 1, MaxSpend: 100, MaxTokens: 1e6}})
	if _, err := l.Reserve(contain.Charge{Context: "c", Cost: 5}); err != nil {
		t.Fatalf("Reserve #1: %v", err)
	}
	_, err := l.Reserve(contain.Charge{Context: "c", Cost: 5, ReportedSpend: 7, ReportedTokens: 300})
	if ex := shExhausted(t, err); ex.Budget != "steps" {
		t.Errorf("Reserve #2 exhausted %q, want steps", ex.Budget)
	}
	steps, spend, tokens := l.Usage("c")
	if steps != 1 || spend != 12 || tokens != 300 {
		t.Errorf("Usage(c) = %d, %v, %d; want 1, 12, 300 (the report is kept, the cost is not)", steps, spend, tokens)
	}
	_, err = l.Reserve(contain.Charge{Context: "c", ReportedSpend: -3, ReportedTokens: -100})
	shExhausted(t, err)
	if _, spend, tokens := l.Usage("c"); spend != 15 || tokens != 400 {
		t.Errorf("Usage(c) after negative reports = %v, %d; want 15, 400", spend, tokens)
	}
	// Tokens saturate rather than wrap.
	_, err = l.Reserve(contain.Charge{Context: "c", ReportedTokens: math.MaxInt64})
	shExhausted(t, err)
	_, err = l.Reserve(contain.Charge{Context: "c", ReportedTokens: math.MaxInt64})
	shExhausted(t, err)
	if _, _, tokens := l.Usage("c"); tokens != math.MaxInt64 {
		t.Errorf("Usage(c) tokens after two huge reports = %d, want %d", tokens, int64(math.MaxInt64))
	}
	for _, c := range []contain.Charge{
		{Context: "c", ReportedSpend: math.NaN()},
		{Context: "c", Cost: math.Inf(-1)},
		{Context: ""},
	} {
		if r, err := l.Reserve(c); err == nil || errors.As(err, new(*contain.Exhausted)) || errors.Is(err, contain.ErrBudgetUnavailable) {
			t.Errorf("Reserve(%+v) = %v, %v; want a validation error", c, r, err)
		}
	}
}

// What an agent reports with a call refused before its reservation is charged on the
// replica that refused it and counts on every other: the next reservation anywhere
// sees it.
func TestSharedLedgerReportOfRefusedCall(t *testing.T) {
	t.Parallel()
	dbs := shHandles(t, pgtest.DSN(t), 2)
	ls := shReplicas(t, dbs, shNewClock().Now, contain.LedgerOptions{Limits: contain.Limits{MaxSpend: 1, MaxTokens: 1000}})
	ls[0].Report(time.Now(), "c", 0.75, 400)
	ls[0].Report(time.Now(), "c", -0.125, -100) // counted as its absolute value
	ls[0].Report(time.Now(), "c", math.NaN(), 0)
	if _, spend, tokens := ls[1].Usage("c"); spend != 0.875 || tokens != 500 {
		t.Fatalf("Usage on the other replica = %v, %d; want 0.875, 500", spend, tokens)
	}
	_, err := ls[1].Reserve(contain.Charge{Context: "c", Cost: 0.25})
	if ex := shExhausted(t, err); ex.Budget != "spend" || ex.Used != 0.875 {
		t.Errorf("Reserve after the reports exhausted %+v, want spend with 0.875 used", ex)
	}
}

func TestSharedLedgerRelease(t *testing.T) {
	t.Parallel()
	clk := shNewClock()
	ls := shReplicas(t, shHandles(t, pgtest.DSN(t), 2), clk.Now, contain.LedgerOptions{
		Limits: contain.Limits{MaxSteps: 2, MaxSpend: 10},
		Caps: []contain.Cap{
			{Name: "calls", Per: "agent", Window: time.Hour, Max: 2},
			{Name: "amount", Sum: "n", Per: "task", Window: time.Hour, Max: 10},
		},
	})
	c := contain.Charge{Context: "tsk_1", Agent: "a", Task: "tsk_1", Cost: 4, ReportedSpend: 1, ReportedTokens: 9,
		Args: map[string]any{"n": 6.0}}
	r, err := ls[0].Reserve(c)
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	spend, tokens, caps := r.Charged()
	if diff := cmp.Diff(map[string]float64{"calls": 1, "amount": 6}, caps); spend != 5 || tokens != 9 || diff != "" {
		t.Errorf("Charged() = %v, %d, caps (-want +got):\n%s; want spend 5, tokens 9", spend, tokens, diff)
	}
	_, err = ls[1].Reserve(c)
	if ex := shExhausted(t, err); ex.Budget != "amount" || ex.Used != 6 {
		t.Fatalf("Reserve on the other replica = %+v, want amount exhausted at 6", ex)
	}
	r.Release()
	r.Release() // harmless
	// Released on replica 0, seen on replica 1.
	steps, spend, _ := ls[1].Usage("tsk_1")
	if steps != 0 || spend != 2 {
		t.Errorf("Usage after Release = %d steps, %v spend; want 0, 2 (reported spend stays)", steps, spend)
	}
	for _, cp := range []struct{ name, key string }{{"calls", "a"}, {"amount", "tsk_1"}} {
		if got, ok := ls[1].CapUsage(cp.name, cp.key); !ok || got != 0 {
			t.Errorf("CapUsage(%q, %q) after Release = %v, %v; want 0, true", cp.name, cp.key, got, ok)
		}
	}
	c.ReportedSpend, c.ReportedTokens = 0, 0
	if _, err := ls[1].Reserve(c); err != nil {
		t.Errorf("Reserve after Release: %v", err)
	}
	if spend, _, _ := r.Charged(); spend != 5 {
		t.Errorf("Charged() after Release: spend %v, want 5", spend)
	}
}

func TestSharedLedgerCapsApply(t *testing.T) {
	t.Parallel()
	caps := []contain.Cap{
		{Name: "deletes-per-hour", Tools: []string{"delete_records", "purge"}, Sum: "count", Per: "agent", Window: time.Hour, Max: 100},
		{Name: "user-calls", Per: "user", Window: time.Hour, Max: 1000},
		{Name: "task-calls", Per: "task", Window: time.Hour, Max: 1000},
	}
	db := shOpen(t, pgtest.DSN(t))
	l := shLedger(t, db, shNewClock().Now, contain.LedgerOptions{Caps: caps})
	calls := []contain.Charge{
		{Context: "s1", Agent: "a", User: "u", Task: "t", Tool: "delete_records", Args: map[string]any{"count": 30.0}},
		{Context: "s1", Agent: "a", User: "u", Tool: "purge", Args: map[string]any{"count": "20"}},
		{Context: "s2", Agent: "a", Tool: "search", Args: map[string]any{"count": 1e9}},
		{Context: "s3", Agent: "b", Task: "t", Tool: "delete_records", Args: map[string]any{"count": -5.0}},
		{Context: "s3", Agent: "b", Tool: "delete_records"},
	}
	for _, c := range calls {
		if _, err := l.Reserve(c); err != nil {
			t.Fatalf("Reserve(%+v): %v", c, err)
		}
	}
	for _, tt := range []struct {
		name, key string
		want      float64
	}{
		{"deletes-per-hour", "a", 50},
		{"deletes-per-hour", "b", 5},
		{"user-calls", "u", 2},
		{"user-calls", "", 0},
		{"task-calls", "t", 2},
		{"task-calls", "", 0},
	} {
		if got, ok := l.CapUsage(tt.name, tt.key); !ok || got != tt.want {
			t.Errorf("CapUsage(%q, %q) = %v, %v; want %v, true", tt.name, tt.key, got, ok, tt.want)
		}
	}
	if _, err := l.Reserve(contain.Charge{Context: "s3", Agent: "b", Tool: "purge", Args: map[string]any{"count": 95.0}}); err != nil {
		t.Errorf("Reserve(b, 95 of 100): %v", err)
	}
	_, err := l.Reserve(contain.Charge{Context: "s1", Agent: "a", Tool: "purge", Args: map[string]any{"count": 51.0}})
	if ex := shExhausted(t, err); ex.Budget != "deletes-per-hour" || ex.Used != 50 || ex.Asked != 51 || ex.Per != "agent" {
		t.Errorf("Reserve(a, 51 more) = %+v, want deletes-per-hour 50 used asking 51", ex)
	}
	// The first cap that does not fit, in configuration order, is the one reported.
	many := contain.Charge{Context: "s4", Agent: "a", User: "u", Task: "t", Tool: "purge", Args: map[string]any{"count": 51.0}}
	_, err = shLedger(t, db, shNewClock().Now, contain.LedgerOptions{Caps: []contain.Cap{
		{Name: "z-first", Per: "task", Window: time.Hour, Max: 0.5},
		{Name: "a-second", Per: "agent", Window: time.Hour, Max: 0.5},
	}}).Reserve(many)
	if ex := shExhausted(t, err); ex.Budget != "z-first" {
		t.Errorf("Reserve over two caps exhausted %q, want z-first (configuration order)", ex.Budget)
	}
}

func TestSharedLedgerCapWindowSlides(t *testing.T) {
	t.Parallel()
	const window = time.Hour
	clk := shNewClock()
	l := shLedger(t, shOpen(t, pgtest.DSN(t)), clk.Now, contain.LedgerOptions{Caps: []contain.Cap{
		{Name: "per-hour", Sum: "n", Per: "agent", Window: window, Max: 10},
	}})
	reserve := func(n float64) error {
		_, err := l.Reserve(contain.Charge{Context: "c", Agent: "a", Tool: "t", Args: map[string]any{"n": n}})
		return err
	}
	if err := reserve(6); err != nil {
		t.Fatalf("Reserve(6) at 0: %v", err)
	}
	clk.Advance(30 * time.Minute)
	if err := reserve(4); err != nil {
		t.Fatalf("Reserve(4) at 30m: %v", err)
	}
	if err := reserve(1); err == nil {
		t.Fatalf("Reserve(1) at 30m fit over 10")
	}
	clk.Advance(30 * time.Minute)
	if err := reserve(1); err == nil {
		t.Fatalf("Reserve(1) at 60m fit: the charge at 0 was forgotten before a full window")
	}
	clk.Advance(window / 60)
	if got, _ := l.CapUsage("per-hour", "a"); got != 4 {
		t.Errorf("CapUsage at 61m = %v, want 4", got)
	}
	if err := reserve(6); err != nil {
		t.Fatalf("Reserve(6) at 61m: %v", err)
	}
	clk.Advance(30 * time.Minute)
	if got, _ := l.CapUsage("per-hour", "a"); got != 6 {
		t.Errorf("CapUsage at 91m = %v, want 6", got)
	}
	// A step back of the clock frees nothing. Unlike the in-memory ledger, which forgets
	// a bucket once a read found it out of the window, the store counts by the caller's
	// clock: the charge at 30m counts again at 81m.
	clk.Advance(-10 * time.Minute)
	if got, _ := l.CapUsage("per-hour", "a"); got != 10 {
		t.Errorf("CapUsage after a clock step back to 81m = %v, want 10", got)
	}
	if err := reserve(1); err == nil {
		t.Errorf("Reserve(1) after a clock step back fit over 10")
	}
	clk.Advance(10*time.Minute + window + window/60)
	if got, _ := l.CapUsage("per-hour", "a"); got != 0 {
		t.Errorf("CapUsage after the window = %v, want 0", got)
	}
}

// TestSharedLedgerClockSkew checks that a replica whose clock is behind adds to the
// bucket a replica ahead made, so that its charge counts as long as that one.
func TestSharedLedgerClockSkew(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	behind := shNewClock()
	ahead := func() time.Time { return behind.Now().Add(30 * time.Second) }
	o := contain.LedgerOptions{Caps: []contain.Cap{{Name: "per-minute", Per: "agent", Window: time.Minute, Max: 10}}}
	la := shLedger(t, shOpen(t, dsn), ahead, o)
	lb := shLedger(t, shOpen(t, dsn), behind.Now, o)
	if _, err := la.Reserve(contain.Charge{Context: "c", Agent: "a"}); err != nil {
		t.Fatalf("Reserve on the replica ahead: %v", err)
	}
	if _, err := lb.Reserve(contain.Charge{Context: "c", Agent: "a"}); err != nil {
		t.Fatalf("Reserve on the replica behind: %v", err)
	}
	// 61s later by the clock behind, its own bucket would no longer count; the one it
	// added to (30s newer) does.
	behind.Advance(61 * time.Second)
	if got, _ := lb.CapUsage("per-minute", "a"); got != 2 {
		t.Errorf("CapUsage 61s later on the replica behind = %v, want 2", got)
	}
}

func TestSharedLedgerExpire(t *testing.T) {
	t.Parallel()
	clk := shNewClock()
	l := shLedger(t, shOpen(t, pgtest.DSN(t)), clk.Now, contain.LedgerOptions{
		Caps: []contain.Cap{{Name: "calls", Per: "agent", Window: time.Hour, Max: 100}},
	})
	reserve := func(ctx, agent string) {
		t.Helper()
		if _, err := l.Reserve(contain.Charge{Context: ctx, Agent: agent}); err != nil {
			t.Fatalf("Reserve(%s, %s): %v", ctx, agent, err)
		}
	}
	t0 := clk.Now()
	reserve("a", "x")
	reserve("b", "y")
	clk.Advance(30 * time.Minute)
	reserve("a", "y")
	if cs, ks := l.Expire(clk.Now()); cs != 0 || ks != 0 {
		t.Errorf("Expire at 30m = %d contexts, %d keys; want 0, 0", cs, ks)
	}
	// A bucket counts for 61m; the store keeps it a minute more for replicas behind.
	if cs, ks := l.Expire(t0.Add(62*time.Minute - time.Nanosecond)); cs != 0 || ks != 0 {
		t.Errorf("Expire just before 62m = %d contexts, %d keys; want 0, 0", cs, ks)
	}
	if cs, ks := l.Expire(t0.Add(62 * time.Minute)); cs != 0 || ks != 1 {
		t.Errorf("Expire at 62m = %d contexts, %d keys; want 0, 1 (x's only bucket went; y has one left)", cs, ks)
	}
	if got, _ := l.CapUsage("calls", "y"); got != 1 {
		t.Errorf("CapUsage(calls, y) after Expire = %v, want 1", got)
	}
	// Replay adds nothing: the store has every use already.
	l.Replay(clk.Now(), "b", "y", "", "", "", 5, 5, map[string]float64{"calls": 5}, true)
	if steps, spend, tokens := l.Usage("b"); steps != 1 || spend != 0 || tokens != 0 {
		t.Errorf("Usage(b) after Replay = %d, %v, %d; want 1, 0, 0", steps, spend, tokens)
	}
	// b was last used at 0, a at 30m.
	if cs, ks := l.Expire(t0.Add(contain.DefaultContextIdle + time.Minute)); cs != 1 || ks != 1 {
		t.Errorf("Expire at 24h1m = %d contexts, %d keys; want 1 (b), 1 (y)", cs, ks)
	}
	if steps, _, _ := l.Usage("b"); steps != 0 {
		t.Errorf("Usage(b) after Expire = %d steps, want 0", steps)
	}
	if steps, _, _ := l.Usage("a"); steps != 2 {
		t.Errorf("Usage(a) after Expire = %d steps, want 2", steps)
	}
}

// TestSharedLedgerReplicas is the headline: replicas reserving at once never jointly
// take more than a bound, and take exactly it.
func TestSharedLedgerReplicas(t *testing.T) {
	t.Parallel()
	const (
		replicas   = 3
		goroutines = 60
	)
	dsn := pgtest.DSN(t)
	dbs := shHandles(t, dsn, replicas)
	clk := shNewClock()
	run := func(t *testing.T, ls []*contain.Ledger, charge func(i int) contain.Charge) (fit int64, kept []*contain.Reservation) {
		t.Helper()
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			start = make(chan struct{})
		)
		for i := range goroutines {
			wg.Go(func() {
				<-start
				r, err := ls[i%len(ls)].Reserve(charge(i))
				switch {
				case err == nil:
					mu.Lock()
					kept = append(kept, r)
					mu.Unlock()
				case !errors.As(err, new(*contain.Exhausted)):
					t.Errorf("Reserve #%d: %v", i, err)
				}
			})
		}
		close(start)
		wg.Wait()
		return int64(len(kept)), kept
	}

	t.Run("steps", func(t *testing.T) {
		ls := shReplicas(t, dbs, clk.Now, contain.LedgerOptions{Limits: contain.Limits{MaxSteps: 37}})
		got, _ := run(t, ls, func(int) contain.Charge { return contain.Charge{Context: "tsk-steps"} })
		for i, l := range ls {
			if steps, _, _ := l.Usage("tsk-steps"); got != 37 || steps != 37 {
				t.Errorf("%d concurrent Reserves: %d fit, usage on replica %d %d; want 37, 37", goroutines, got, i, steps)
			}
		}
	})
	t.Run("cap across contexts", func(t *testing.T) {
		ls := shReplicas(t, dbs, clk.Now, contain.LedgerOptions{Caps: []contain.Cap{
			{Name: "amount", Sum: "n", Per: "agent", Window: time.Hour, Max: 50},
			{Name: "calls", Per: "user", Window: time.Hour, Max: 1000},
		}})
		got, _ := run(t, ls, func(i int) contain.Charge {
			return contain.Charge{Context: fmt.Sprint("s", i), Agent: "cap-agent", User: "cap-user", Args: map[string]any{"n": 2.0}}
		})
		amount, _ := ls[1].CapUsage("amount", "cap-agent")
		calls, _ := ls[2].CapUsage("calls", "cap-user")
		if got != 25 || amount != 50 || calls != 25 {
			t.Errorf("%d concurrent Reserves: %d fit, amount %v, calls %v; want 25, 50, 25", goroutines, got, amount, calls)
		}
	})
	t.Run("context and two caps", func(t *testing.T) {
		ls := shReplicas(t, dbs, clk.Now, contain.LedgerOptions{Limits: contain.Limits{MaxSteps: 45}, Caps: []contain.Cap{
			{Name: "per-agent", Per: "agent", Window: time.Hour, Max: 30},
			{Name: "per-task", Sum: "n", Per: "task", Window: time.Hour, Max: 1e6},
		}})
		got, _ := run(t, ls, func(i int) contain.Charge {
			return contain.Charge{Context: "tsk-two", Task: "tsk-two", Agent: []string{"two-a", "two-b"}[i%2], Args: map[string]any{"n": 3.0}}
		})
		steps, _, _ := ls[0].Usage("tsk-two")
		a, _ := ls[1].CapUsage("per-agent", "two-a")
		b, _ := ls[2].CapUsage("per-agent", "two-b")
		sum, _ := ls[0].CapUsage("per-task", "tsk-two")
		if got != 45 || steps != 45 || a+b != 45 || a > 30 || b > 30 || sum != 135 {
			t.Errorf("%d concurrent Reserves: %d fit, steps %d, per agent %v+%v, per task %v; want 45, 45, 45 at most 30 each, 135",
				goroutines, got, steps, a, b, sum)
		}
	})
	t.Run("release gives back", func(t *testing.T) {
		ls := shReplicas(t, dbs, clk.Now, contain.LedgerOptions{Limits: contain.Limits{MaxSteps: 20}, Caps: []contain.Cap{
			{Name: "rel-calls", Per: "agent", Window: time.Hour, Max: 20},
		}})
		charge := contain.Charge{Context: "tsk-rel", Agent: "rel"}
		got, kept := run(t, ls, func(int) contain.Charge { return charge })
		if got != 20 {
			t.Fatalf("%d concurrent Reserves: %d fit, want 20", goroutines, got)
		}
		// Seven released, concurrently, through whichever replica took them...
		var wg sync.WaitGroup
		for _, r := range kept[:7] {
			wg.Go(r.Release)
		}
		wg.Wait()
		// ...make room for exactly seven more on another.
		if got, _ := run(t, ls[2:], func(int) contain.Charge { return charge }); got != 7 {
			t.Errorf("Reserves after 7 Releases: %d fit, want 7", got)
		}
		steps, _, _ := ls[0].Usage("tsk-rel")
		calls, _ := ls[1].CapUsage("rel-calls", "rel")
		if steps != 20 || calls != 20 {
			t.Errorf("after releases and retakes: steps %d, calls %v; want 20, 20", steps, calls)
		}
	})
	t.Run("overlapping caps with releases and expiry", func(t *testing.T) {
		// Calls touch two of three cap keys in varying combinations, some are released,
		// and expiry runs throughout: no deadlock (an error), and what is kept is within
		// every bound and equal to the usage.
		o := contain.LedgerOptions{Limits: contain.Limits{MaxSteps: 1000}, Caps: []contain.Cap{
			{Name: "ov-agent", Per: "agent", Window: time.Hour, Max: 12},
			{Name: "ov-user", Per: "user", Window: time.Hour, Max: 12},
		}}
		ls := shReplicas(t, dbs, clk.Now, o)
		// Two days old use, for expiry to delete while the calls run.
		old := shLedger(t, dbs[0], func() time.Time { return clk.Now().Add(-48 * time.Hour) }, o)
		for i := range 50 {
			n := fmt.Sprint("old", i)
			if _, err := old.Reserve(contain.Charge{Context: n, Agent: n, User: n}); err != nil {
				t.Fatalf("Reserve(%s): %v", n, err)
			}
		}
		stop := make(chan struct{})
		var expiring sync.WaitGroup
		expiring.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					ls[0].Expire(clk.Now())
				}
			}
		})
		var kept, released atomic.Int64
		var wg sync.WaitGroup
		for i := range goroutines {
			wg.Go(func() {
				names := []string{"p", "q", "r"}
				c := contain.Charge{Context: fmt.Sprint("ov", i%4), Agent: names[i%3], User: names[(i+1)%3]}
				r, err := ls[i%replicas].Reserve(c)
				if err != nil {
					if !errors.As(err, new(*contain.Exhausted)) {
						t.Errorf("Reserve #%d: %v", i, err)
					}
					return
				}
				if i%3 == 0 {
					r.Release()
					released.Add(1)
					return
				}
				kept.Add(1)
			})
		}
		wg.Wait()
		close(stop)
		expiring.Wait()
		ls[1].Expire(clk.Now())
		for i := range 50 {
			n := fmt.Sprint("old", i)
			if steps, _, _ := ls[2].Usage(n); steps != 0 {
				t.Errorf("Usage(%s) of a context idle for two days, after Expire = %d steps, want 0", n, steps)
			}
			if used, _ := ls[2].CapUsage("ov-agent", n); used != 0 {
				t.Errorf("CapUsage(ov-agent, %s) after Expire = %v, want 0", n, used)
			}
		}
		var agents, users float64
		for _, n := range []string{"p", "q", "r"} {
			a, _ := ls[1].CapUsage("ov-agent", n)
			u, _ := ls[2].CapUsage("ov-user", n)
			if a > 12 || u > 12 {
				t.Errorf("cap use of %q: agent %v, user %v; want at most 12 each", n, a, u)
			}
			agents += a
			users += u
		}
		var steps int64
		for i := range 4 {
			s, _, _ := ls[0].Usage(fmt.Sprint("ov", i))
			steps += s
		}
		if k := kept.Load(); steps != k || agents != float64(k) || users != float64(k) || k == 0 || released.Load() == 0 {
			t.Errorf("kept %d, released %d; usage: steps %d, agent caps %v, user caps %v; want all equal to kept",
				k, released.Load(), steps, agents, users)
		}
	})
}

// TestSharedLimiter is the in-memory limiter's behaviour with calls alternating
// between two replicas.
func TestSharedLimiter(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	dbs := []*DB{shOpen(t, dsn), shOpen(t, dsn)}
	limiters := func(t *testing.T, name string, rate float64, burst int, now func() time.Time) []*contain.Limiter {
		t.Helper()
		ls := make([]*contain.Limiter, len(dbs))
		for i, db := range dbs {
			l, err := contain.NewSharedLimiter(name, rate, burst, db, 0, now)
			if err != nil {
				t.Fatalf("NewSharedLimiter: %v", err)
			}
			l.OnError = func(err error) { t.Errorf("store error: %v", err) }
			ls[i] = l
		}
		return ls
	}
	allow := func(t *testing.T, l *contain.Limiter, key string, want bool, wantRetry time.Duration) {
		t.Helper()
		if ok, retry := l.Allow(key); ok != want || retry != wantRetry {
			t.Fatalf("Allow(%q) = %v, %v, want %v, %v", key, ok, retry, want, wantRetry)
		}
	}

	t.Run("burst then refill", func(t *testing.T) {
		clk := shNewClock()
		ls := limiters(t, "burst", 2, 3, clk.Now)
		for i := range 3 {
			allow(t, ls[i%2], "agent", true, 0)
		}
		allow(t, ls[1], "agent", false, 500*time.Millisecond)
		clk.Advance(499 * time.Millisecond)
		allow(t, ls[0], "agent", false, time.Millisecond)
		clk.Advance(time.Millisecond)
		allow(t, ls[1], "agent", true, 0)
		allow(t, ls[0], "agent", false, 500*time.Millisecond)
		// A long pause refills to the burst, not beyond.
		clk.Advance(time.Hour)
		for i := range 3 {
			allow(t, ls[i%2], "agent", true, 0)
		}
		allow(t, ls[0], "agent", false, 500*time.Millisecond)
		// A clock set back earns nothing and does not disturb the bucket.
		clk.Advance(-time.Minute)
		allow(t, ls[1], "agent", false, 500*time.Millisecond)
		clk.Advance(time.Minute + 500*time.Millisecond)
		allow(t, ls[1], "agent", true, 0)
		// Keys, and limiters of another name, have buckets of their own.
		allow(t, ls[0], "other", true, 0)
		allow(t, limiters(t, "burst-2", 2, 1, clk.Now)[1], "agent", true, 0)
	})
	t.Run("retry after", func(t *testing.T) {
		for _, tt := range []struct {
			rate      float64
			burst     int
			wantRetry time.Duration
		}{
			{rate: 1, burst: 1, wantRetry: time.Second},
			{rate: 3, burst: 1, wantRetry: 334 * time.Millisecond},
			{rate: 1.5, burst: 2, wantRetry: 667 * time.Millisecond},
			{rate: 1.0 / 60, burst: 1, wantRetry: time.Minute},
			{rate: 1e6, burst: 5, wantRetry: time.Millisecond},
			{rate: 1e-12, burst: 1, wantRetry: math.MaxInt64 / time.Millisecond * time.Millisecond},
		} {
			clk := shNewClock()
			ls := limiters(t, fmt.Sprint("retry-", tt.rate), tt.rate, tt.burst, clk.Now)
			for i := range tt.burst {
				allow(t, ls[i%2], "k", true, 0)
			}
			allow(t, ls[0], "k", false, tt.wantRetry)
			if tt.rate > 1e-12 {
				clk.Advance(tt.wantRetry)
				allow(t, ls[1], "k", true, 0)
			}
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		// At a fixed time, 60 calls through two replicas get exactly the burst; two
		// tokens' worth of time later, exactly two more.
		const (
			goroutines = 60
			burst      = 5
			rate       = 0.5
		)
		clk := shNewClock()
		ls := limiters(t, "concurrent", rate, burst, clk.Now)
		round := func() int64 {
			var n atomic.Int64
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range goroutines {
				wg.Go(func() {
					<-start
					if ok, _ := ls[i%2].Allow("shared"); ok {
						n.Add(1)
					}
				})
			}
			close(start)
			wg.Wait()
			return n.Load()
		}
		if got := round(); got != burst {
			t.Errorf("%d concurrent Allows: %d granted, want the burst %d", goroutines, got, burst)
		}
		clk.Advance(4 * time.Second)
		if got := round(); got != 2 {
			t.Errorf("%d concurrent Allows 4s later at 0.5/s: %d granted, want 2", goroutines, got)
		}
	})
	t.Run("expire full buckets", func(t *testing.T) {
		clk := shNewClock()
		l := limiters(t, "expire", 1, 2, clk.Now)[0]
		allow(t, l, "a", true, 0)
		allow(t, l, "b", true, 0)
		allow(t, l, "b", true, 0)
		ctx := t.Context()
		count := func() (n int) {
			t.Helper()
			if err := dbs[0].pool.QueryRow(ctx, `SELECT count(*) FROM rate_buckets WHERE limiter = 'expire'`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		// a is full again 1s later, b 2s later.
		clk.Advance(time.Second)
		if n, err := dbs[1].ExpireRateBuckets(ctx, clk.Now()); err != nil || n < 1 || count() != 1 {
			t.Errorf("ExpireRateBuckets at 1s = %d, %v, %d left; want a gone, b left", n, err, count())
		}
		allow(t, l, "b", true, 0) // b had refilled one token: not reset to full
		allow(t, l, "b", false, time.Second)
	})
}

// TestSharedStoreDown checks that a replica whose database is gone refuses: Reserve
// with ErrBudgetUnavailable, Allow with 1s, and neither shows the database's error.
func TestSharedStoreDown(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	db := shOpen(t, dsn)
	var storeErrs, limitErrs atomic.Int64
	l, err := contain.NewLedger(contain.LedgerOptions{Store: db, Limits: contain.Limits{MaxSteps: 10},
		Caps:         []contain.Cap{{Name: "calls", Per: "agent", Window: time.Hour, Max: 10}},
		OnStoreError: func(error) { storeErrs.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	lim, err := contain.NewSharedLimiter("down", 10, 10, db, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	lim.OnError = func(error) { limitErrs.Add(1) }
	r, err := l.Reserve(contain.Charge{Context: "c", Agent: "a"})
	if err != nil {
		t.Fatalf("Reserve while up: %v", err)
	}
	if ok, _ := lim.Allow("k"); !ok {
		t.Fatalf("Allow while up refused")
	}
	db.Close()

	_, err = l.Reserve(contain.Charge{Context: "c", Agent: "a"})
	if !errors.Is(err, contain.ErrBudgetUnavailable) || errors.As(err, new(*contain.Exhausted)) {
		t.Fatalf("Reserve with the database closed = %v, want ErrBudgetUnavailable", err)
	}
	if msg := err.Error(); msg != "contain: reserve: "+contain.ErrBudgetUnavailable.Error() {
		t.Errorf("Reserve error text = %q, want the operation and ErrBudgetUnavailable only", msg)
	}
	if ok, retry := lim.Allow("k"); ok || retry != time.Second {
		t.Errorf("Allow with the database closed = %v, %v; want false, 1s", ok, retry)
	}
	r.Release()
	if steps, _, _ := l.Usage("c"); steps != 0 {
		t.Errorf("Usage with the database closed = %d steps, want 0", steps)
	}
	if n := storeErrs.Load(); n != 3 {
		t.Errorf("OnStoreError called %d times (reserve, release, usage), want 3", n)
	}
	if n := limitErrs.Load(); n != 1 {
		t.Errorf("OnError called %d times, want 1", n)
	}

	t.Run("read-only", func(t *testing.T) {
		ro, err := OpenReadOnly(t.Context(), dsn, Options{MaxConns: 2})
		if err != nil {
			t.Fatalf("OpenReadOnly: %v", err)
		}
		defer ro.Close()
		l, err := contain.NewLedger(contain.LedgerOptions{Store: ro})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Reserve(contain.Charge{Context: "c"}); !errors.Is(err, contain.ErrBudgetUnavailable) || !errors.Is(err, store.ErrReadOnly) {
			t.Errorf("Reserve on a read-only store = %v, want ErrBudgetUnavailable and ErrReadOnly", err)
		}
	})
	t.Run("slow", func(t *testing.T) {
		// A context row locked by another transaction: Reserve waits StoreTimeout, not
		// the database's lock timeout, and refuses.
		db := shOpen(t, dsn)
		l := shLedger(t, db, nil, contain.LedgerOptions{})
		if _, err := l.Reserve(contain.Charge{Context: "busy"}); err != nil {
			t.Fatalf("Reserve: %v", err)
		}
		tx, err := shOpen(t, dsn).pool.Begin(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer rollback(tx)
		if _, err := tx.Exec(t.Context(), `SELECT 1 FROM budget_contexts WHERE context = $1 FOR UPDATE`, shKey("busy")); err != nil {
			t.Fatal(err)
		}
		var failed atomic.Int64
		slow, err := contain.NewLedger(contain.LedgerOptions{Store: db, StoreTimeout: 200 * time.Millisecond,
			OnStoreError: func(error) { failed.Add(1) }})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = slow.Reserve(contain.Charge{Context: "busy"})
		if !errors.Is(err, contain.ErrBudgetUnavailable) || time.Since(start) > 3*time.Second || failed.Load() != 1 {
			t.Errorf("Reserve of a locked context = %v after %v (%d reported), want ErrBudgetUnavailable after about 200ms",
				err, time.Since(start), failed.Load())
		}
	})
}

func FuzzSharedKey(f *testing.F) {
	for _, s := range []string{"", "a", "t\x00agent\x00task", strings.Repeat("k", shMaxKey), strings.Repeat("k", shMaxKey+1)} {
		f.Add(s, s+"x")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ka, kb := shKey(a), shKey(b)
		if len(ka) > 1+shMaxKey || len(ka) == 0 || ka[0] > 1 {
			t.Fatalf("shKey(%d bytes) is %d bytes with tag %d", len(a), len(ka), ka[0])
		}
		if (a == b) != bytes.Equal(ka, kb) {
			t.Fatalf("shKey(%q) and shKey(%q) are equal: %v, want %v", a, b, bytes.Equal(ka, kb), a == b)
		}
		// A short key never equals a long key's stored digest.
		if len(a) > shMaxKey && bytes.Equal(shKey(string(ka[1:])), ka) {
			t.Fatalf("a short key stores as the digest of %q", a)
		}
	})
}

func BenchmarkSharedLedgerReserve(b *testing.B) {
	db := shOpen(b, pgtest.DSN(b))
	l := shLedger(b, db, nil, contain.LedgerOptions{
		Limits: contain.Limits{MaxSteps: 1 << 40, MaxSpend: 1e15},
		Caps:   []contain.Cap{{Name: "amount", Tools: []string{"pay"}, Sum: "amount", Per: "agent", Window: time.Hour, Max: 1e300}},
	})
	for _, bc := range []struct {
		name   string
		shared bool // every goroutine on one context and cap key
	}{{"own context", false}, {"one context", true}} {
		b.Run(bc.name, func(b *testing.B) {
			var next atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				id := fmt.Sprint(bc.name, next.Add(1))
				if bc.shared {
					id = bc.name
				}
				c := contain.Charge{Context: id, Agent: id, Tool: "pay", Cost: 0.01, Args: map[string]any{"amount": 12.5}}
				for pb.Next() {
					if _, err := l.Reserve(c); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func BenchmarkSharedLimiterAllow(b *testing.B) {
	l, err := contain.NewSharedLimiter("bench", 1e6, 1000, shOpen(b, pgtest.DSN(b)), 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	l.OnError = func(err error) { b.Error(err) }
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("agent-%d", i)
	}
	var seq atomic.Uint32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(7919))
		for pb.Next() {
			l.Allow(keys[i%len(keys)])
			i++
		}
	})
}
