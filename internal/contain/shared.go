package contain

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// Budgets and rate limits shared by gateway replicas.
//
// A Ledger or Limiter built over a store keeps no state in the process: every
// reservation, release and token is one atomic operation in the store, so replicas that
// share it never jointly take more than a bound allows. A store that cannot answer in
// time refuses the call (fail closed). The checks themselves, their order and their
// errors are the in-memory ones, so an agent sees the same refusal whichever replica
// served it.

// DefaultStoreTimeout is the default of [LedgerOptions.StoreTimeout] and of the timeout
// of [NewSharedLimiter].
const DefaultStoreTimeout = 2 * time.Second

// BudgetSlack is the relative tolerance of a spend or cap check: a total fits under a
// bound max if it is at most max + max*BudgetSlack. See [BudgetTake.Bounds].
const BudgetSlack = lgSlack

// TokenSlack is the rounding a token bucket forgives: a bucket holding at least
// 1 - TokenSlack tokens grants a call. A [RateStore] applies it as [Limiter] does.
const TokenSlack = rlEpsilon

const (
	shMaxStoreTimeout = time.Minute
	// shExpireTimeout bounds one Ledger.Expire through a store. The store deletes in
	// batches, each bounded by the database's own statement timeout.
	shExpireTimeout = 30 * time.Second
	// shClockSkew is how far apart replicas' clocks are assumed to be at most. A cap
	// bucket is expired only this long after it stopped counting by the expiring
	// replica's clock, so that a replica whose clock is behind still counts it.
	shClockSkew = time.Minute
	// shMaxLimiterName bounds a shared limiter's name, which every bucket row carries.
	shMaxLimiterName = 128
	// shRefusedRetry is the retryAfter of a call refused because the store failed.
	shRefusedRetry = time.Second
)

// ErrBudgetUnavailable is returned, wrapped, by [Ledger.Reserve] when the ledger's
// [LedgerStore] fails or does not answer within [LedgerOptions.StoreTimeout]: the call is
// refused (fail closed). The error's text is the operation and this sentence only, since
// the agent is shown it and the store's error may name the database; errors.Is and
// errors.As reach the store's error, and [LedgerOptions.OnStoreError] receives it.
var ErrBudgetUnavailable = errors.New("budgets are unavailable; try again later")

// LedgerStore keeps a [Ledger]'s state where gateway replicas share it: contexts'
// steps, spend and tokens, and caps' windows. Every method is safe for concurrent use
// by any number of replicas, and TakeBudget and ReleaseBudget are atomic: whatever the
// interleaving, two takes never both fit under a bound only one of them fits under.
type LedgerStore interface {
	// TakeBudget does, in one transaction: add t's ReportedSpend and ReportedTokens to
	// its context (creating the context), which stays added whatever follows; then check
	// the context and each cap's window as [BudgetTake.Check] does and, only if
	// everything fits, take one step, Cost, and each cap's Amount, and return what it
	// took. A cap's Amount goes into the bucket at its Epoch, or into the newest bucket
	// of its window if that is newer (a clock that stepped back, or a replica ahead).
	// If something does not fit, it takes nothing more and returns the [*Exhausted] that
	// Check returns for the state it read. Any other error means nothing is known to be
	// taken.
	TakeBudget(ctx context.Context, t BudgetTake) (BudgetTaken, error)
	// ReleaseBudget gives back what a take took: its step, Cost and cap amounts, each
	// never below zero. What the take reported stays spent. A context or bucket that no
	// longer exists is ignored.
	ReleaseBudget(ctx context.Context, t BudgetTaken) error
	// ReportBudget adds what an agent reports having spent (spend and tokens, both
	// non-negative) to a context, creating it, with no check: it was spent already.
	ReportBudget(ctx context.Context, key string, at time.Time, spend float64, tokens int64) error
	// BudgetUsage reports a context's steps, spend and tokens (zero for an unknown one).
	BudgetUsage(ctx context.Context, key string) (steps int64, spend float64, tokens int64, err error)
	// CapUsage reports the sum of w's buckets that count at w.Epoch (see
	// [CapWindow.Span]).
	CapUsage(ctx context.Context, w CapWindow) (float64, error)
	// ExpireBudgets deletes the contexts whose last call was before idleBefore and the
	// cap buckets that no longer count at now (their start plus
	// [CapWindow.BucketLife] is at or before now), and reports how many contexts, and how
	// many cap keys left with no bucket, it deleted. It never waits for a row another
	// transaction holds: what is busy is expired next time.
	ExpireBudgets(ctx context.Context, idleBefore, now time.Time) (contexts, keys int, err error)
}

// CapWindow names one cap's sliding window for one agent, user or task, and where the
// window stands now.
type CapWindow struct {
	Name  string        // the cap's name
	Per   string        // the cap's Per: "agent", "user" or "task"
	Key   string        // the agent id, user or task
	Width time.Duration // a bucket's width: the cap's Window / 60, rounded up
	Epoch int64         // the bucket now: nanoseconds since the Unix epoch / Width, rounded down
}

// Span returns, in nanoseconds since the Unix epoch, the start of the oldest bucket that
// counts now and the start of the bucket now: a bucket starting at s counts if s >= from,
// including buckets newer than cur.
func (w CapWindow) Span() (from, cur int64) {
	width := int64(w.Width)
	return (w.Epoch - lgBuckets) * width, w.Epoch * width
}

// BucketLife is how long after its start a bucket counts: the 60 buckets of the window
// and the bucket filling now.
func (w CapWindow) BucketLife() time.Duration {
	return (lgBuckets + 1) * w.Width
}

// CapTake is one cap's share of a [BudgetTake].
type CapTake struct {
	CapWindow
	Max    float64 // the cap's Max
	Amount float64 // what the call adds: the Sum argument's absolute value, or 1
}

// Bound is what the window's sum plus Amount must not exceed: Max give or take
// [BudgetSlack].
func (c CapTake) Bound() float64 { return c.Max + c.Max*lgSlack }

// BudgetTake is what one call asks of a [LedgerStore]. Every amount is finite and not
// negative.
type BudgetTake struct {
	Context        string    // the budget context: a task, session or agent
	At             time.Time // the ledger's clock at the call: the context's last use
	ReportedSpend  float64   // what the agent reports it spent: always added
	ReportedTokens int64     // what the agent reports it used: always added
	Cost           float64   // the tool's declared cost, taken with the step
	Limits         Limits    // the bounds of the context; 0 is no bound
	// Caps are the caps the call counts against, in configuration order, which is the
	// order they are checked in. A store must lock them in an order of its own that
	// every transaction follows (after the context), so that takes cannot deadlock.
	Caps []CapTake
}

// Bounds returns the limits as a store checks them against the context after the report
// is added: the take fits if steps < maxSteps, spend + Cost <= spendBound and tokens <=
// maxTokens. A limit of 0 (none) is the largest int64, or +Inf.
func (t BudgetTake) Bounds() (maxSteps int64, spendBound float64, maxTokens int64) {
	maxSteps, spendBound, maxTokens = math.MaxInt64, math.Inf(1), math.MaxInt64
	if t.Limits.MaxSteps > 0 {
		maxSteps = t.Limits.MaxSteps
	}
	if m := t.Limits.MaxSpend; m > 0 {
		spendBound = m + m*lgSlack
	}
	if t.Limits.MaxTokens > 0 {
		maxTokens = t.Limits.MaxTokens
	}
	return maxSteps, spendBound, maxTokens
}

// BudgetState is what a store read while holding a take's locks: the context's use
// after the report was added, and the sum of each cap's window before the take.
type BudgetState struct {
	Steps   int64
	Spend   float64
	Tokens  int64
	CapUsed []float64 // one per BudgetTake.Caps, in its order
}

// Check returns the first budget t does not fit given s, in the order steps, spend,
// tokens, then caps in configuration order, as [Ledger.Reserve] does in memory; or nil
// if everything fits. A cap with no entry in s.CapUsed does not fit.
func (t BudgetTake) Check(s BudgetState) *Exhausted {
	lim := t.Limits
	switch {
	case lim.MaxSteps > 0 && s.Steps+1 > lim.MaxSteps:
		return &Exhausted{Budget: "steps", Used: float64(s.Steps), Asked: 1, Max: float64(lim.MaxSteps), Per: "task"}
	case lim.MaxSpend > 0 && !lgFits(s.Spend, t.Cost, lim.MaxSpend):
		return &Exhausted{Budget: "spend", Used: s.Spend, Asked: t.Cost, Max: lim.MaxSpend, Per: "task"}
	case lim.MaxTokens > 0 && s.Tokens > lim.MaxTokens:
		return &Exhausted{Budget: "tokens", Used: float64(s.Tokens), Max: float64(lim.MaxTokens), Per: "task"}
	}
	for i, c := range t.Caps {
		used := math.Inf(1)
		if i < len(s.CapUsed) {
			used = s.CapUsed[i]
		}
		if !lgFits(used, c.Amount, c.Max) {
			return &Exhausted{Budget: c.Name, Used: used, Asked: c.Amount, Max: c.Max, Per: c.Per}
		}
	}
	return nil
}

// BudgetTaken is what a [LedgerStore] took for one call, for [LedgerStore.ReleaseBudget].
type BudgetTaken struct {
	Context string
	Cost    float64
	Caps    []CapTaken // in the order of BudgetTake.Caps
}

// CapTaken is one cap's share of a [BudgetTaken].
type CapTaken struct {
	Name, Per, Key string
	Start          int64 // the start of the bucket it went into, in nanoseconds since the Unix epoch
	Amount         float64
}

// shStoreError is a store's failure as a Ledger returns it; see [ErrBudgetUnavailable].
type shStoreError struct {
	op  string
	err error
}

func (e *shStoreError) Error() string {
	return "contain: " + e.op + ": " + ErrBudgetUnavailable.Error()
}

func (e *shStoreError) Unwrap() []error { return []error{ErrBudgetUnavailable, e.err} }

// shStoreOptions checks and applies the store options of o to l.
func (l *Ledger) shStoreOptions(o LedgerOptions) error {
	if o.StoreTimeout < 0 || o.StoreTimeout > shMaxStoreTimeout {
		return fmt.Errorf("store timeout must be between 0 (for %s) and %s, got %s", DefaultStoreTimeout, shMaxStoreTimeout, o.StoreTimeout)
	}
	l.store, l.storeTimeout, l.onStoreError = o.Store, o.StoreTimeout, o.OnStoreError
	if l.storeTimeout == 0 {
		l.storeTimeout = DefaultStoreTimeout
	}
	return nil
}

// shFail reports a store's error to OnStoreError and returns the error a caller sees.
func (l *Ledger) shFail(op string, err error) error {
	e := &shStoreError{op: op, err: err}
	if l.onStoreError != nil {
		l.onStoreError(fmt.Errorf("contain: %s: budget store: %w", op, err))
	}
	return e
}

// shReserve is Reserve over the store, once the charge is checked and its caps planned.
func (l *Ledger) shReserve(key string, cost, reported float64, rtokens int64, plans []lgPlan, now time.Time) (*Reservation, error) {
	t := BudgetTake{Context: key, At: now, ReportedSpend: reported, ReportedTokens: rtokens, Cost: cost, Limits: l.limits}
	if len(plans) > 0 {
		t.Caps = make([]CapTake, len(plans))
		for i, p := range plans {
			lc := &l.caps[p.cap]
			t.Caps[i] = CapTake{
				CapWindow: CapWindow{Name: lc.Name, Per: lc.Per, Key: p.key, Width: time.Duration(lc.bucket), Epoch: lgEpoch(now, lc.bucket)},
				Max:       lc.Max,
				Amount:    p.amt,
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.storeTimeout)
	defer cancel()
	taken, err := l.store.TakeBudget(ctx, t)
	if err != nil {
		if ex, ok := errors.AsType[*Exhausted](err); ok {
			return nil, ex
		}
		return nil, l.shFail("reserve", err)
	}
	r := &Reservation{l: l, cost: cost, spend: cost + reported, tokens: rtokens, shared: &taken}
	if len(plans) > 0 {
		r.caps = r.capBuf[:0]
		if len(plans) > len(r.capBuf) {
			r.caps = make([]lgTaken, 0, len(plans))
		}
		for _, p := range plans {
			r.caps = append(r.caps, lgTaken{cap: p.cap, amt: p.amt})
		}
	}
	return r, nil
}

// shRelease gives a store's reservation back. A failure leaves the use taken, which
// errs on the side of refusing; it is reported, since Release returns nothing.
func (l *Ledger) shRelease(t *BudgetTaken) {
	ctx, cancel := context.WithTimeout(context.Background(), l.storeTimeout)
	defer cancel()
	if err := l.store.ReleaseBudget(ctx, *t); err != nil {
		l.shFail("release", err)
	}
}

// shReport is Report over the store. A failure loses the report, which is reported:
// Report returns nothing, since the call it came with is refused anyway.
func (l *Ledger) shReport(key string, at time.Time, spend float64, tokens int64) {
	ctx, cancel := context.WithTimeout(context.Background(), l.storeTimeout)
	defer cancel()
	if err := l.store.ReportBudget(ctx, key, at, spend, tokens); err != nil {
		l.shFail("report", err)
	}
}

// shUsage is Usage over the store; a failure reads as no use, and is reported.
func (l *Ledger) shUsage(key string) (steps int64, spend float64, tokens int64) {
	ctx, cancel := context.WithTimeout(context.Background(), l.storeTimeout)
	defer cancel()
	steps, spend, tokens, err := l.store.BudgetUsage(ctx, key)
	if err != nil {
		l.shFail("usage", err)
		return 0, 0, 0
	}
	return steps, spend, tokens
}

// shCapUsage is CapUsage over the store for cap i; a failure reads as no use, and is
// reported.
func (l *Ledger) shCapUsage(i int, key string) float64 {
	lc := &l.caps[i]
	w := CapWindow{Name: lc.Name, Per: lc.Per, Key: key, Width: time.Duration(lc.bucket), Epoch: lgEpoch(l.now(), lc.bucket)}
	ctx, cancel := context.WithTimeout(context.Background(), l.storeTimeout)
	defer cancel()
	used, err := l.store.CapUsage(ctx, w)
	if err != nil {
		l.shFail("cap usage", err)
		return 0
	}
	return used
}

// shExpire is Expire over the store. Buckets are expired shClockSkew late, so that a
// replica whose clock is behind this one's does not lose use it still counts.
func (l *Ledger) shExpire(now time.Time) (contexts, keys int) {
	ctx, cancel := context.WithTimeout(context.Background(), max(l.storeTimeout, shExpireTimeout))
	defer cancel()
	contexts, keys, err := l.store.ExpireBudgets(ctx, now.Add(-l.idle), now.Add(-shClockSkew))
	if err != nil {
		l.shFail("expire", err)
	}
	return contexts, keys
}

// RateStore keeps token buckets where gateway replicas share them. It is safe for
// concurrent use by any number of replicas.
type RateStore interface {
	// TakeToken atomically takes one token from the bucket of key in the limiter named
	// limiter, and reports whether it did; if not, retryAfter is how long until a token
	// is due (the Limiter rounds it up to the millisecond). A bucket holds at most burst
	// tokens, refills at perSecond from the time of its last take, and starts full. A
	// now before the bucket's last take earns nothing (a replica's clock behind another's
	// never counts time twice). A bucket with at least 1 - [TokenSlack] tokens grants.
	TakeToken(ctx context.Context, limiter, key string, perSecond float64, burst int, now time.Time) (ok bool, retryAfter time.Duration, err error)
}

// shRate is what a Limiter over a RateStore holds.
type shRate struct {
	store   RateStore
	name    string
	timeout time.Duration
}

// NewSharedLimiter returns a [Limiter] whose buckets live in st, shared by every
// replica that uses st with the same name; the rate and burst are checked as by
// [NewLimiter]. name tells this limiter's buckets from others' in st (1 to 128 bytes of
// UTF-8, without control characters). Each Allow waits at most timeout for st (0 means
// [DefaultStoreTimeout], at most 1m); when st fails or does not answer in time, Allow
// refuses with a retryAfter of 1s (fail closed) and passes the error to
// [Limiter.OnError]. now is the clock (time.Now if nil); it is the replicas' clocks that
// refill buckets, so they should agree (NTP).
func NewSharedLimiter(name string, perSecond float64, burst int, st RateStore, timeout time.Duration, now func() time.Time) (*Limiter, error) {
	var errs []error
	if !(perSecond > 0 && perSecond <= rlMaxRate) {
		errs = append(errs, fmt.Errorf("rate must be more than 0 and at most 1e6 per second, got %g", perSecond))
	}
	if burst < 1 || burst > rlMaxBurst {
		errs = append(errs, fmt.Errorf("burst must be from 1 to %d, got %d", rlMaxBurst, burst))
	}
	if !shValidName(name) {
		errs = append(errs, fmt.Errorf("name must be 1 to %d bytes of UTF-8 without control characters, got %d bytes", shMaxLimiterName, len(name)))
	}
	if st == nil {
		errs = append(errs, errors.New("store is nil"))
	}
	if timeout < 0 || timeout > shMaxStoreTimeout {
		errs = append(errs, fmt.Errorf("timeout must be between 0 (for %s) and %s, got %s", DefaultStoreTimeout, shMaxStoreTimeout, timeout))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("contain: shared limiter: %w", err)
	}
	if timeout == 0 {
		timeout = DefaultStoreTimeout
	}
	if now == nil {
		now = time.Now
	}
	return &Limiter{rate: perSecond, burst: float64(burst), now: now,
		sh: &shRate{store: st, name: name, timeout: timeout}}, nil
}

func shValidName(s string) bool {
	if s == "" || len(s) > shMaxLimiterName || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// shAllow is Allow over the store.
func (l *Limiter) shAllow(key string) (ok bool, retryAfter time.Duration) {
	now := l.now()
	ctx, cancel := context.WithTimeout(context.Background(), l.sh.timeout)
	defer cancel()
	ok, retry, err := l.sh.store.TakeToken(ctx, l.sh.name, key, l.rate, int(l.burst), now)
	switch {
	case err != nil:
		if l.OnError != nil {
			l.OnError(fmt.Errorf("contain: shared limiter %q: %w", l.sh.name, err))
		}
		return false, shRefusedRetry
	case ok:
		return true, 0
	}
	return false, shRound(retry)
}

// shRound rounds a store's retryAfter as Limiter.wait does: up to the millisecond,
// forgiving float noise of TokenSlack, at least 1ms.
func shRound(d time.Duration) time.Duration {
	const maxMS = math.MaxInt64 / int64(time.Millisecond)
	x := float64(d) / float64(time.Millisecond)
	if x >= float64(maxMS) {
		// The store saturated, or nearly: the slack must not pull it below the longest.
		return time.Duration(maxMS) * time.Millisecond
	}
	if ms := math.Ceil(x - x*rlEpsilon); ms >= 1 {
		return time.Duration(ms) * time.Millisecond
	}
	return time.Millisecond
}
