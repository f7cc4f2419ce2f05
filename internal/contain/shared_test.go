package contain_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/contain"
)

// These tests check what a store-backed Ledger and Limiter ask of their store and how
// they treat its answers. The stores' own behaviour, across replicas, is tested against
// PostgreSQL in internal/store/postgres.

// shStore is a LedgerStore and RateStore whose methods are function fields; a method
// left nil fails.
type shStore struct {
	take     func(ctx context.Context, t contain.BudgetTake) (contain.BudgetTaken, error)
	release  func(ctx context.Context, t contain.BudgetTaken) error
	usage    func(ctx context.Context, key string) (int64, float64, int64, error)
	report   func(ctx context.Context, key string, at time.Time, spend float64, tokens int64) error
	capUsage func(ctx context.Context, w contain.CapWindow) (float64, error)
	expire   func(ctx context.Context, idleBefore, now time.Time) (int, int, error)
	token    func(ctx context.Context, limiter, key string, perSecond float64, burst int, now time.Time) (bool, time.Duration, error)
}

var errShUnexpected = errors.New("unexpected store call")

func (s *shStore) TakeBudget(ctx context.Context, t contain.BudgetTake) (contain.BudgetTaken, error) {
	if s.take == nil {
		return contain.BudgetTaken{}, errShUnexpected
	}
	return s.take(ctx, t)
}

func (s *shStore) ReleaseBudget(ctx context.Context, t contain.BudgetTaken) error {
	if s.release == nil {
		return errShUnexpected
	}
	return s.release(ctx, t)
}

func (s *shStore) ReportBudget(ctx context.Context, key string, at time.Time, spend float64, tokens int64) error {
	if s.report == nil {
		return errShUnexpected
	}
	return s.report(ctx, key, at, spend, tokens)
}

func (s *shStore) BudgetUsage(ctx context.Context, key string) (int64, float64, int64, error) {
	if s.usage == nil {
		return 0, 0, 0, errShUnexpected
	}
	return s.usage(ctx, key)
}

func (s *shStore) CapUsage(ctx context.Context, w contain.CapWindow) (float64, error) {
	if s.capUsage == nil {
		return 0, errShUnexpected
	}
	return s.capUsage(ctx, w)
}

func (s *shStore) ExpireBudgets(ctx context.Context, idleBefore, now time.Time) (int, int, error) {
	if s.expire == nil {
		return 0, 0, errShUnexpected
	}
	return s.expire(ctx, idleBefore, now)
}

func (s *shStore) TakeToken(ctx context.Context, limiter, key string, perSecond float64, burst int, now time.Time) (bool, time.Duration, error) {
	if s.token == nil {
		return false, 0, errShUnexpected
	}
	return s.token(ctx, limiter, key, perSecond, burst, now)
}

// shDeadline fails the test unless ctx ends within about d.
func shDeadline(tb testing.TB, ctx context.Context, d time.Duration) {
	tb.Helper()
	dl, ok := ctx.Deadline()
	if left := time.Until(dl); !ok || left > d || left < d-time.Second {
		tb.Errorf("store call's context deadline in %v (set: %v), want about %v", left, ok, d)
	}
}

// shLedger returns a ledger over st whose store errors are collected in errs.
func shLedger(tb testing.TB, st contain.LedgerStore, o contain.LedgerOptions) (*contain.Ledger, *lgClock, *[]error) {
	tb.Helper()
	clk := newLgClock()
	var (
		mu   sync.Mutex
		errs []error
	)
	o.Store, o.Now = st, clk.Now
	o.OnStoreError = func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	l, err := contain.NewLedger(o)
	if err != nil {
		tb.Fatalf("NewLedger: %v", err)
	}
	return l, clk, &errs
}

func TestSharedLedgerOptions(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		timeout time.Duration
		wantErr string
	}{
		{timeout: 0},
		{timeout: time.Millisecond},
		{timeout: time.Minute},
		{timeout: -time.Second, wantErr: "store timeout must be between 0 (for 2s) and 1m0s, got -1s"},
		{timeout: time.Minute + 1, wantErr: "store timeout must be between"},
	} {
		_, err := contain.NewLedger(contain.LedgerOptions{Store: &shStore{}, StoreTimeout: tt.timeout})
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("NewLedger(StoreTimeout %v): %v", tt.timeout, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("NewLedger(StoreTimeout %v) = %v, want an error containing %q", tt.timeout, err, tt.wantErr)
		}
	}
}

// TestSharedLedgerDelegates checks that each Ledger method asks the store the right
// thing, and returns what it answers.
func TestSharedLedgerDelegates(t *testing.T) {
	t.Parallel()
	var (
		gotTake    contain.BudgetTake
		gotRelease []contain.BudgetTaken
		gotWindow  contain.CapWindow
		gotExpire  [2]time.Time
	)
	taken := contain.BudgetTaken{Context: "tsk", Cost: 0.5, Caps: []contain.CapTaken{{Name: "amount", Per: "user", Key: "u", Start: 42, Amount: 12.5}}}
	st := &shStore{
		take: func(ctx context.Context, t2 contain.BudgetTake) (contain.BudgetTaken, error) {
			shDeadline(t, ctx, 3*time.Second)
			gotTake = t2
			return taken, nil
		},
		release: func(ctx context.Context, t2 contain.BudgetTaken) error {
			shDeadline(t, ctx, 3*time.Second)
			gotRelease = append(gotRelease, t2)
			return nil
		},
		usage: func(_ context.Context, key string) (int64, float64, int64, error) {
			if key != "tsk" {
				t.Errorf("BudgetUsage(%q), want tsk", key)
			}
			return 3, 1.5, 70, nil
		},
		capUsage: func(_ context.Context, w contain.CapWindow) (float64, error) {
			gotWindow = w
			return 99, nil
		},
		expire: func(ctx context.Context, idleBefore, now time.Time) (int, int, error) {
			shDeadline(t, ctx, 30*time.Second)
			gotExpire = [2]time.Time{idleBefore, now}
			return 4, 5, nil
		},
	}
	limits := contain.Limits{MaxSteps: 10, MaxSpend: 5, MaxTokens: 1000}
	l, clk, errs := shLedger(t, st, contain.LedgerOptions{
		Limits:       limits,
		StoreTimeout: 3 * time.Second,
		Caps: []contain.Cap{
			{Name: "zz-calls", Per: "agent", Window: time.Hour, Max: 100},
			{Name: "amount", Tools: []string{"pay"}, Sum: "amount", Per: "user", Window: 24 * time.Hour, Max: 1000},
			{Name: "per-task", Per: "task", Window: time.Minute, Max: 3}, // no task: does not apply
			{Name: "other-tool", Tools: []string{"read"}, Per: "agent", Window: time.Minute, Max: 3},
		},
	})
	clk.Advance(90 * time.Second)
	now := clk.Now()
	r, err := l.Reserve(contain.Charge{Context: "tsk", Agent: "a", User: "u", Tool: "pay", Cost: -0.5,
		ReportedSpend: 1, ReportedTokens: -20, Args: map[string]any{"amount": "-12.5"}})
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	want := contain.BudgetTake{Context: "tsk", At: now, ReportedSpend: 1, ReportedTokens: 20, Cost: 0.5, Limits: limits,
		Caps: []contain.CapTake{{
			CapWindow: contain.CapWindow{Name: "zz-calls", Per: "agent", Key: "a", Width: time.Minute, Epoch: now.UnixNano() / int64(time.Minute)},
			Max:       100, Amount: 1,
		}, {
			CapWindow: contain.CapWindow{Name: "amount", Per: "user", Key: "u", Width: 24 * time.Minute, Epoch: now.UnixNano() / int64(24*time.Minute)},
			Max:       1000, Amount: 12.5,
		}}}
	if diff := cmp.Diff(want, gotTake); diff != "" {
		t.Errorf("TakeBudget (-want +got):\n%s", diff)
	}
	spend, tokens, caps := r.Charged()
	if diff := cmp.Diff(map[string]float64{"zz-calls": 1, "amount": 12.5}, caps); spend != 1.5 || tokens != 20 || diff != "" {
		t.Errorf("Charged() = %v, %d, caps (-want +got):\n%s; want spend 1.5, tokens 20", spend, tokens, diff)
	}

	// Releasing twice, even at once, releases once.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(r.Release)
	}
	wg.Wait()
	if diff := cmp.Diff([]contain.BudgetTaken{taken}, gotRelease); diff != "" {
		t.Errorf("ReleaseBudget calls (-want +got):\n%s", diff)
	}

	if s, sp, tk := l.Usage("tsk"); s != 3 || sp != 1.5 || tk != 70 {
		t.Errorf("Usage = %d, %v, %d; want the store's 3, 1.5, 70", s, sp, tk)
	}
	if used, ok := l.CapUsage("amount", "u"); used != 99 || !ok {
		t.Errorf("CapUsage(amount, u) = %v, %v; want 99, true", used, ok)
	}
	if wantW := want.Caps[1].CapWindow; gotWindow != wantW {
		t.Errorf("CapUsage asked for %+v, want %+v", gotWindow, wantW)
	}
	if _, ok := l.CapUsage("nope", "u"); ok {
		t.Errorf("CapUsage(nope) reported a cap")
	}

	// Replay asks nothing of the store: a call would fail the test through errs.
	l.Replay(now, "tsk", "a", "u", "", "pay", 5, 5, map[string]float64{"amount": 5}, true)

	if cs, ks := l.Expire(now); cs != 4 || ks != 5 {
		t.Errorf("Expire = %d, %d; want the store's 4, 5", cs, ks)
	}
	if want := [2]time.Time{now.Add(-contain.DefaultContextIdle), now.Add(-time.Minute)}; gotExpire != want {
		t.Errorf("ExpireBudgets(idleBefore, now) = %v, want %v (idle, and a minute for clock skew)", gotExpire, want)
	}
	if len(*errs) != 0 {
		t.Errorf("store errors: %v", *errs)
	}
}

// TestSharedLedgerStoreFails checks that a store failure refuses the call, without the
// store's text, and that the store's *Exhausted is what Reserve returns.
func TestSharedLedgerStoreFails(t *testing.T) {
	t.Parallel()
	cause := errors.New(`dial postgres://chaperone:s3cret@db.internal:5432: connection refused`)
	exhausted := &contain.Exhausted{Budget: "steps", Used: 3, Asked: 1, Max: 3, Per: "task"}
	var answer error
	var calls atomic.Int64
	st := &shStore{take: func(context.Context, contain.BudgetTake) (contain.BudgetTaken, error) {
		calls.Add(1)
		return contain.BudgetTaken{}, answer
	}}
	l, _, errs := shLedger(t, st, contain.LedgerOptions{Limits: contain.Limits{MaxSteps: 3}})

	answer = cause
	_, err := l.Reserve(contain.Charge{Context: "c"})
	if !errors.Is(err, contain.ErrBudgetUnavailable) || !errors.Is(err, cause) {
		t.Fatalf("Reserve with a failing store = %v, want ErrBudgetUnavailable wrapping the cause", err)
	}
	if errors.As(err, new(*contain.Exhausted)) {
		t.Errorf("Reserve with a failing store = %v, an *Exhausted", err)
	}
	if got, want := err.Error(), "contain: reserve: budgets are unavailable; try again later"; got != want {
		t.Errorf("Reserve error text = %q, want %q (never the store's text)", got, want)
	}
	if len(*errs) != 1 || !errors.Is((*errs)[0], cause) {
		t.Errorf("OnStoreError got %v, want the cause once", *errs)
	}

	answer = &shWrapped{exhausted}
	_, err = l.Reserve(contain.Charge{Context: "c"})
	if ex, ok := errors.AsType[*contain.Exhausted](err); !ok || ex != exhausted || errors.Is(err, contain.ErrBudgetUnavailable) {
		t.Errorf("Reserve with the store's *Exhausted = %v, want it as is", err)
	}
	if len(*errs) != 1 {
		t.Errorf("OnStoreError called for an *Exhausted: %v", *errs)
	}

	// Charges the ledger rejects never reach the store.
	before := calls.Load()
	for _, c := range []contain.Charge{{Context: ""}, {Context: "c", Cost: math.NaN()}, {Context: "c", ReportedSpend: math.Inf(1)}} {
		if _, err := l.Reserve(c); err == nil || errors.Is(err, contain.ErrBudgetUnavailable) {
			t.Errorf("Reserve(%+v) = %v, want a validation error", c, err)
		}
	}
	if calls.Load() != before {
		t.Errorf("invalid charges reached the store %d times", calls.Load()-before)
	}

	// Reads and expiry that fail report and return nothing.
	st.usage = func(context.Context, string) (int64, float64, int64, error) { return 1, 1, 1, cause }
	st.capUsage = func(context.Context, contain.CapWindow) (float64, error) { return 1, cause }
	l2, _, errs2 := shLedger(t, st, contain.LedgerOptions{Caps: []contain.Cap{{Name: "c", Per: "agent", Window: time.Hour, Max: 1}}})
	if s, sp, tk := l2.Usage("c"); s != 0 || sp != 0 || tk != 0 {
		t.Errorf("Usage with a failing store = %d, %v, %d; want zeros", s, sp, tk)
	}
	if used, ok := l2.CapUsage("c", "a"); used != 0 || !ok {
		t.Errorf("CapUsage with a failing store = %v, %v; want 0, true", used, ok)
	}
	if cs, ks := l2.Expire(time.Now()); cs != 0 || ks != 0 {
		t.Errorf("Expire with a failing store = %d, %d; want 0, 0", cs, ks)
	}
	if len(*errs2) != 3 {
		t.Errorf("OnStoreError called %d times for usage, cap usage and expire, want 3: %v", len(*errs2), *errs2)
	}
}

// shWrapped hides an error behind one layer, as a store's own wrapping would.
type shWrapped struct{ err error }

func (w *shWrapped) Error() string { return "store: " + w.err.Error() }
func (w *shWrapped) Unwrap() error { return w.err }

func TestBudgetTakeCheck(t *testing.T) {
	t.Parallel()
	take := contain.BudgetTake{Cost: 2, Limits: contain.Limits{MaxSteps: 5, MaxSpend: 10, MaxTokens: 100}, Caps: []contain.CapTake{
		{CapWindow: contain.CapWindow{Name: "first", Per: "user"}, Max: 10, Amount: 4},
		{CapWindow: contain.CapWindow{Name: "second", Per: "agent"}, Max: 1, Amount: 1},
	}}
	fits := contain.BudgetState{Steps: 4, Spend: 8, Tokens: 100, CapUsed: []float64{6, 0}}
	tests := []struct {
		name string
		edit func(*contain.BudgetState)
		want *contain.Exhausted
	}{
		{name: "fits at every bound", edit: func(*contain.BudgetState) {}},
		{name: "spend within slack", edit: func(s *contain.BudgetState) { s.Spend = 8 + 5e-9 }},
		{name: "steps first", edit: func(s *contain.BudgetState) { s.Steps, s.Spend, s.CapUsed[0] = 5, 100, 100 },
			want: &contain.Exhausted{Budget: "steps", Used: 5, Asked: 1, Max: 5, Per: "task"}},
		{name: "spend", edit: func(s *contain.BudgetState) { s.Spend, s.Tokens = 8.1, 1000 },
			want: &contain.Exhausted{Budget: "spend", Used: 8.1, Asked: 2, Max: 10, Per: "task"}},
		{name: "tokens", edit: func(s *contain.BudgetState) { s.Tokens = 101 },
			want: &contain.Exhausted{Budget: "tokens", Used: 101, Max: 100, Per: "task"}},
		{name: "caps in order", edit: func(s *contain.BudgetState) { s.CapUsed = []float64{6.5, 1} },
			want: &contain.Exhausted{Budget: "first", Used: 6.5, Asked: 4, Max: 10, Per: "user"}},
		{name: "second cap", edit: func(s *contain.BudgetState) { s.CapUsed = []float64{0, 0.5} },
			want: &contain.Exhausted{Budget: "second", Used: 0.5, Asked: 1, Max: 1, Per: "agent"}},
		{name: "missing cap use", edit: func(s *contain.BudgetState) { s.CapUsed = s.CapUsed[:1] },
			want: &contain.Exhausted{Budget: "second", Used: math.Inf(1), Asked: 1, Max: 1, Per: "agent"}},
	}
	for _, tt := range tests {
		s := fits
		s.CapUsed = append([]float64(nil), fits.CapUsed...)
		tt.edit(&s)
		if diff := cmp.Diff(tt.want, take.Check(s)); diff != "" {
			t.Errorf("%s: Check(%+v) (-want +got):\n%s", tt.name, s, diff)
		}
	}
	// Check and Bounds agree at the edge.
	steps, spend, tokens := take.Bounds()
	if steps != 5 || spend != 10+10*contain.BudgetSlack || tokens != 100 {
		t.Errorf("Bounds() = %d, %v, %d; want 5, 10+slack, 100", steps, spend, tokens)
	}
	if b := take.Caps[0].Bound(); b != 10+10*contain.BudgetSlack {
		t.Errorf("CapTake.Bound() = %v, want 10+slack", b)
	}
	steps, spend, tokens = contain.BudgetTake{}.Bounds()
	if steps != math.MaxInt64 || !math.IsInf(spend, 1) || tokens != math.MaxInt64 {
		t.Errorf("Bounds() of no limits = %d, %v, %d; want none", steps, spend, tokens)
	}
}

func TestCapWindowSpan(t *testing.T) {
	t.Parallel()
	w := contain.CapWindow{Width: time.Minute, Epoch: 1000}
	from, cur := w.Span()
	if from != 940*int64(time.Minute) || cur != 1000*int64(time.Minute) {
		t.Errorf("Span() = %d, %d; want 60 buckets before and the bucket now", from, cur)
	}
	if got := w.BucketLife(); got != 61*time.Minute {
		t.Errorf("BucketLife() = %v, want 61m", got)
	}
	// A bucket counts from its start for BucketLife: the last epoch it counts at is the
	// one whose window starts at it.
	last := contain.CapWindow{Width: time.Minute, Epoch: 1060}
	if f, _ := last.Span(); f != cur {
		t.Errorf("window at epoch 1060 starts at %d, want the bucket at 1000 (%d)", f, cur)
	}
	if cur+int64(w.BucketLife()) != 1061*int64(time.Minute) {
		t.Errorf("bucket at 1000 stops counting at %d, want epoch 1061", cur+int64(w.BucketLife()))
	}
	// Before 1970 epochs are negative and the span with them.
	if from, cur := (contain.CapWindow{Width: time.Second, Epoch: -1}).Span(); from != -61e9 || cur != -1e9 {
		t.Errorf("Span() at epoch -1 = %d, %d; want -61s, -1s", from, cur)
	}
}

func TestNewSharedLimiter(t *testing.T) {
	t.Parallel()
	st := &shStore{}
	tests := []struct {
		name    string
		lname   string
		rate    float64
		burst   int
		st      contain.RateStore
		timeout time.Duration
		wantErr string
	}{
		{name: "valid", lname: "per-agent", rate: 1, burst: 1, st: st},
		{name: "longest", lname: strings.Repeat("é", 64), rate: 1e6, burst: 1_000_000, st: st, timeout: time.Minute},
		{name: "zero rate", lname: "l", rate: 0, burst: 1, st: st, wantErr: "rate must be more than 0 and at most 1e6 per second, got 0"},
		{name: "NaN rate", lname: "l", rate: math.NaN(), burst: 1, st: st, wantErr: "rate must be more than 0"},
		{name: "fast rate", lname: "l", rate: 1e6 + 1, burst: 1, st: st, wantErr: "rate must be more than 0"},
		{name: "zero burst", lname: "l", rate: 1, burst: 0, st: st, wantErr: "burst must be from 1 to 1000000, got 0"},
		{name: "empty name", lname: "", rate: 1, burst: 1, st: st, wantErr: "name must be 1 to 128 bytes of UTF-8 without control characters, got 0 bytes"},
		{name: "long name", lname: strings.Repeat("a", 129), rate: 1, burst: 1, st: st, wantErr: "got 129 bytes"},
		{name: "NUL in name", lname: "a\x00b", rate: 1, burst: 1, st: st, wantErr: "without control characters"},
		{name: "C1 in name", lname: "a\u0085b", rate: 1, burst: 1, st: st, wantErr: "without control characters"},
		{name: "bad UTF-8", lname: "a\xffb", rate: 1, burst: 1, st: st, wantErr: "of UTF-8"},
		{name: "no store", lname: "l", rate: 1, burst: 1, wantErr: "store is nil"},
		{name: "negative timeout", lname: "l", rate: 1, burst: 1, st: st, timeout: -1, wantErr: "timeout must be between 0 (for 2s) and 1m0s, got -1ns"},
		{name: "every problem", lname: "", rate: -1, burst: -1, timeout: time.Hour,
			wantErr: "rate must be more than 0 and at most 1e6 per second, got -1\nburst must be from 1 to 1000000, got -1\nname must be"},
	}
	for _, tt := range tests {
		l, err := contain.NewSharedLimiter(tt.lname, tt.rate, tt.burst, tt.st, tt.timeout, nil)
		switch {
		case tt.wantErr == "" && (err != nil || l == nil):
			t.Errorf("%s: NewSharedLimiter: %v", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: NewSharedLimiter = %v, want an error containing %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestSharedLimiterAllow(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	type answer struct {
		ok    bool
		retry time.Duration
		err   error
	}
	var next answer
	st := &shStore{token: func(ctx context.Context, limiter, key string, perSecond float64, burst int, at time.Time) (bool, time.Duration, error) {
		shDeadline(t, ctx, 5*time.Second)
		if limiter != "per-agent" || key != "agent-1" || perSecond != 2.5 || burst != 7 || !at.Equal(now) {
			t.Errorf("TakeToken(%q, %q, %v, %d, %v), want per-agent, agent-1, 2.5, 7, %v", limiter, key, perSecond, burst, at, now)
		}
		return next.ok, next.retry, next.err
	}}
	l, err := contain.NewSharedLimiter("per-agent", 2.5, 7, st, 5*time.Second, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	var reported []error
	l.OnError = func(err error) { reported = append(reported, err) }
	cause := errors.New("connection refused")
	const maxRetry = math.MaxInt64 / time.Millisecond * time.Millisecond
	for _, tt := range []struct {
		name      string
		answer    answer
		want      bool
		wantRetry time.Duration
	}{
		{name: "granted", answer: answer{ok: true, retry: time.Hour}, want: true},
		{name: "whole ms", answer: answer{retry: 400 * time.Millisecond}, wantRetry: 400 * time.Millisecond},
		{name: "rounded up", answer: answer{retry: 333333333}, wantRetry: 334 * time.Millisecond},
		{name: "float noise forgiven", answer: answer{retry: 1000*time.Second + 500}, wantRetry: 1000 * time.Second},
		{name: "more than noise", answer: answer{retry: 1000*time.Second + 2000}, wantRetry: 1000*time.Second + time.Millisecond},
		{name: "at least 1ms", answer: answer{retry: time.Microsecond}, wantRetry: time.Millisecond},
		{name: "zero", answer: answer{}, wantRetry: time.Millisecond},
		{name: "negative", answer: answer{retry: -time.Second}, wantRetry: time.Millisecond},
		{name: "longest", answer: answer{retry: math.MaxInt64}, wantRetry: maxRetry},
		{name: "store fails", answer: answer{ok: true, err: cause}, wantRetry: time.Second},
	} {
		next = tt.answer
		if ok, retry := l.Allow("agent-1"); ok != tt.want || retry != tt.wantRetry {
			t.Errorf("%s: Allow = %v, %v; want %v, %v", tt.name, ok, retry, tt.want, tt.wantRetry)
		}
	}
	if len(reported) != 1 || !errors.Is(reported[0], cause) || !strings.Contains(reported[0].Error(), `"per-agent"`) {
		t.Errorf("OnError got %v, want the cause once, naming the limiter", reported)
	}
}

// BenchmarkSharedLedgerReserve measures what the Ledger adds to a store's take: the
// store here answers at once.
func BenchmarkSharedLedgerReserve(b *testing.B) {
	st := &shStore{take: func(_ context.Context, t contain.BudgetTake) (contain.BudgetTaken, error) {
		return contain.BudgetTaken{Context: t.Context, Cost: t.Cost}, nil
	}}
	l, err := contain.NewLedger(contain.LedgerOptions{
		Store:  st,
		Limits: contain.Limits{MaxSteps: 1 << 40, MaxSpend: 1e15},
		Caps:   []contain.Cap{{Name: "amount", Tools: []string{"pay"}, Sum: "amount", Per: "agent", Window: time.Hour, Max: 1e300}},
	})
	if err != nil {
		b.Fatal(err)
	}
	c := contain.Charge{Context: "ctx", Agent: "a", Tool: "pay", Cost: 0.01, Args: map[string]any{"amount": 12.5}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Reserve(c); err != nil {
			b.Fatal(err)
		}
	}
}

// Report sends the absolute values of a report to the store, skips empty and
// non-finite ones, and hands a store failure to OnStoreError.
func TestSharedLedgerReport(t *testing.T) {
	type call struct {
		key    string
		spend  float64
		tokens int64
	}
	var calls []call
	fail := false
	st := &shStore{report: func(ctx context.Context, key string, at time.Time, spend float64, tokens int64) error {
		calls = append(calls, call{key, spend, tokens})
		if fail {
			return errors.New("connection reset")
		}
		return nil
	}}
	l, _, errs := shLedger(t, st, contain.LedgerOptions{Limits: contain.Limits{MaxSpend: 1}})
	l.Report(time.Now(), "c", -0.5, -20)
	l.Report(time.Now(), "c", 0, 0)
	l.Report(time.Now(), "c", math.Inf(1), 3)
	l.Report(time.Now(), "", 1, 1)
	if want := []call{{"c", 0.5, 20}}; !slices.Equal(calls, want) {
		t.Errorf("store reports = %+v, want %+v", calls, want)
	}
	fail = true
	l.Report(time.Now(), "c", 0.25, 0)
	if len(*errs) != 1 || !strings.Contains((*errs)[0].Error(), "connection reset") {
		t.Errorf("OnStoreError got %v, want the store's failure", *errs)
	}
}
