package contain

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of [LedgerOptions].
const (
	// MaxCaps bounds the caps of a ledger: every call is checked against each of them.
	MaxCaps = 64
	// DefaultMaxContexts is the default of [LedgerOptions.MaxContexts].
	DefaultMaxContexts = 1_000_000
	// DefaultContextIdle is the default of [LedgerOptions.ContextIdle].
	DefaultContextIdle = 24 * time.Hour
	// MinCapWindow and MaxCapWindow bound [Cap.Window].
	MinCapWindow = time.Second
	MaxCapWindow = 8760 * time.Hour

	lgMaxMaxContexts = 100_000_000
	lgMinIdle        = time.Minute
	lgMaxIdle        = 8760 * time.Hour
	// lgBuckets is the resolution of a cap's sliding window: it is exact to 1/lgBuckets
	// of the window.
	lgBuckets = 60
	// lgShards spreads contexts and cap keys over locks, so that calls of unrelated
	// tasks and agents do not contend.
	lgShards = 64
	// lgSlack is the relative tolerance of a money or sum check: 0.01 added a hundred
	// times is 1.0000000000000007 in float64, and a budget of 1 must admit the hundredth
	// call. One part in a billion of a bound is far below anything an operator can mean.
	lgSlack = 1e-9
)

// ErrLedgerFull is returned, wrapped, by [Ledger.Reserve] when the call needs a new
// context or cap key and MaxContexts are tracked already: the call is refused rather than
// its use forgotten (fail closed). [Ledger.Expire] makes room.
var ErrLedgerFull = errors.New("too many budgets are tracked at once; try again later")

// Limits bound one context (a task): 0 means no bound.
type Limits struct {
	MaxSteps  int64   // tool calls
	MaxSpend  float64 // money, in the operator's currency: tools' declared costs plus what the agent reports
	MaxTokens int64   // model tokens the agent reports
}

// Cap bounds the sum of an argument (or the number of calls) over a sliding window, per
// agent, user or task: "total amount per day per agent", "records deleted per hour".
//
// The window is kept as 60 buckets of Window/60 plus the bucket filling now, so a charge
// counts against the cap for at least Window and at most Window + Window/60: the cap errs
// on the side of refusing. A cap whose Per is "user" or "task" does not apply to a call
// without a user or a task: such a call has nothing to be counted against (bound those
// with a cap per agent). A call without an agent is counted under the empty agent.
type Cap struct {
	Name   string        // [a-z0-9][a-z0-9_-]{0,63}, unique, and not "steps", "spend" or "tokens"
	Tools  []string      // exposed tool names it applies to; empty = every tool
	Sum    string        // top-level numeric argument summed; "" counts calls (1 each)
	Per    string        // "agent", "user" or "task"
	Window time.Duration // 1s..8760h
	Max    float64       // > 0, finite
}

// LedgerOptions configure a [Ledger].
type LedgerOptions struct {
	// Limits bound each context.
	Limits Limits
	// Caps are the impact caps, at most [MaxCaps].
	Caps []Cap
	// MaxContexts bounds the contexts tracked at once, and separately the cap keys
	// (cap, agent/user/task) tracked at once: default 1,000,000, at most 100,000,000.
	MaxContexts int
	// ContextIdle is how long a context is kept after its last call: default 24h,
	// 1m..8760h. Forgetting a context forgets its use, so this must outlast the tasks
	// (and sessions) whose budgets it holds.
	ContextIdle time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Store, if set, keeps the ledger's state in a store that gateway replicas share
	// instead of in process memory (see [LedgerStore]); nil keeps it in memory.
	// MaxContexts bounds memory only: with a store, [Ledger.Expire] bounds what it holds.
	Store LedgerStore
	// StoreTimeout bounds each call to Store: default 2s, at most 1m. A call that does
	// not answer in time is refused with [ErrBudgetUnavailable].
	StoreTimeout time.Duration
	// OnStoreError, if set, receives each error of Store, for the log: the error
	// Reserve returns does not carry the store's text, and Release, Usage, CapUsage and
	// Expire have no error to return.
	OnStoreError func(error)
}

// Ledger keeps the use of each context (task, session or agent) against [Limits] and of
// each agent, user and task against the [Cap]s, and takes what a call needs atomically.
// It is safe for concurrent use. State is per process, and [Ledger.Replay] rebuilds it
// from the audit log at start; or, with [LedgerOptions.Store], it is in a store that
// replicas share.
type Ledger struct {
	limits   Limits
	caps     []lgCap
	capIndex map[string]int
	max      int64
	idle     time.Duration
	now      func() time.Time
	seed     maphash.Seed

	// store, when set, holds the state instead of shards; see shared.go.
	store        LedgerStore
	storeTimeout time.Duration
	onStoreError func(error)

	contexts atomic.Int64 // contexts tracked, across shards
	keys     atomic.Int64 // cap keys tracked, across shards
	shards   [lgShards]lgShard
}

// lgCap is a validated cap with its lookup set.
type lgCap struct {
	Cap
	tools  map[string]bool // nil: every tool
	bucket int64           // bucket width in nanoseconds
}

// lgShard holds the contexts and cap keys that hash to it. A Reserve locks every shard it
// touches in ascending index order, so that two Reserves cannot deadlock.
type lgShard struct {
	// mu guards ctx, win and the contents of their values.
	mu  sync.Mutex
	ctx map[string]*lgContext
	win map[lgKey]*lgWindow
}

// lgContext is one context's use. Values are never moved between maps, so a Reservation
// may hold a pointer to one even after Expire dropped it.
type lgContext struct {
	steps  int64
	spend  float64
	tokens int64
	last   time.Time // the latest call, for idle expiry
}

// lgKey names one cap's window for one agent, user or task.
type lgKey struct {
	cap int
	key string
}

// lgWindow is a cap's sliding window for one key: buckets in ascending epoch order,
// where a bucket's epoch is its start in units of the cap's bucket width. It holds only
// the buckets that still count: at most lgBuckets+1 while the clock runs forward, and
// after it steps back, at most that many more than the step spans.
type lgWindow struct {
	b []lgBucket
}

type lgBucket struct {
	epoch int64
	amt   float64
}

var lgCapName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// NewLedger returns an empty ledger, or an error naming every problem with the options.
func NewLedger(o LedgerOptions) (*Ledger, error) {
	var errs []error
	if o.Limits.MaxSteps < 0 {
		errs = append(errs, fmt.Errorf("limits: max steps must be 0 (no bound) or positive, got %d", o.Limits.MaxSteps))
	}
	if o.Limits.MaxTokens < 0 {
		errs = append(errs, fmt.Errorf("limits: max tokens must be 0 (no bound) or positive, got %d", o.Limits.MaxTokens))
	}
	if m := o.Limits.MaxSpend; m < 0 || math.IsNaN(m) || math.IsInf(m, 0) {
		errs = append(errs, fmt.Errorf("limits: max spend must be 0 (no bound) or positive and finite, got %v", m))
	}
	if len(o.Caps) > MaxCaps {
		errs = append(errs, fmt.Errorf("caps: at most %d, got %d", MaxCaps, len(o.Caps)))
	}
	if o.MaxContexts < 0 || o.MaxContexts > lgMaxMaxContexts {
		errs = append(errs, fmt.Errorf("max contexts must be between 1 and %d (0 for the default), got %d", lgMaxMaxContexts, o.MaxContexts))
	}
	if o.ContextIdle != 0 && (o.ContextIdle < lgMinIdle || o.ContextIdle > lgMaxIdle) {
		errs = append(errs, fmt.Errorf("context idle must be between %s and %s (0 for the default), got %s", lgMinIdle, lgMaxIdle, o.ContextIdle))
	}
	l := &Ledger{
		limits:   o.Limits,
		capIndex: make(map[string]int, len(o.Caps)),
		max:      int64(o.MaxContexts),
		idle:     o.ContextIdle,
		now:      o.Now,
		seed:     maphash.MakeSeed(),
	}
	if err := l.shStoreOptions(o); err != nil {
		errs = append(errs, err)
	}
	for i, c := range o.Caps {
		if err := lgValidateCap(c); err != nil {
			errs = append(errs, fmt.Errorf("caps[%d] %q: %w", i, c.Name, err))
			continue
		}
		if _, dup := l.capIndex[c.Name]; dup {
			errs = append(errs, fmt.Errorf("caps[%d] %q: name is not unique", i, c.Name))
			continue
		}
		lc := lgCap{Cap: c, bucket: int64((c.Window + lgBuckets - 1) / lgBuckets)}
		lc.Tools = slices.Clone(c.Tools)
		if len(c.Tools) > 0 {
			lc.tools = make(map[string]bool, len(c.Tools))
			for _, t := range c.Tools {
				lc.tools[t] = true
			}
		}
		l.capIndex[c.Name] = len(l.caps)
		l.caps = append(l.caps, lc)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("contain: new ledger: %w", err)
	}
	if l.max == 0 {
		l.max = DefaultMaxContexts
	}
	if l.idle == 0 {
		l.idle = DefaultContextIdle
	}
	if l.now == nil {
		l.now = time.Now
	}
	for i := range l.shards {
		l.shards[i].ctx = map[string]*lgContext{}
		l.shards[i].win = map[lgKey]*lgWindow{}
	}
	return l, nil
}

func lgValidateCap(c Cap) error {
	var errs []error
	switch {
	case !lgCapName.MatchString(c.Name):
		errs = append(errs, errors.New("name must match [a-z0-9][a-z0-9_-]{0,63}"))
	case c.Name == "steps" || c.Name == "spend" || c.Name == "tokens":
		errs = append(errs, errors.New(`name must not be "steps", "spend" or "tokens", which name the limits`))
	}
	for j, t := range c.Tools {
		if t == "" {
			errs = append(errs, fmt.Errorf("tools[%d] is empty", j))
		}
	}
	if c.Per != "agent" && c.Per != "user" && c.Per != "task" {
		errs = append(errs, fmt.Errorf(`per must be "agent", "user" or "task", got %q`, c.Per))
	}
	if c.Window < MinCapWindow || c.Window > MaxCapWindow {
		errs = append(errs, fmt.Errorf("window must be between %s and %s, got %s", MinCapWindow, MaxCapWindow, c.Window))
	}
	if !(c.Max > 0) || math.IsInf(c.Max, 0) {
		errs = append(errs, fmt.Errorf("max must be positive and finite, got %v", c.Max))
	}
	return errors.Join(errs...)
}

// Charge is what one call would take.
type Charge struct {
	Context string // budget context key: the task, else the MCP session, else the agent
	Agent   string
	User    string
	Task    string
	Tool    string         // exposed tool name
	Args    map[string]any // decoded arguments (encoding/json types: float64, string, ...)
	Cost    float64        // the tool's declared cost per call
	// ReportedSpend is the money the agent reports having spent (its model calls) since
	// its last call, via call metadata; ReportedTokens the model tokens likewise.
	ReportedSpend  float64
	ReportedTokens int64
}

// Exhausted is the error for a charge that does not fit. Budget names the budget
// ("steps", "spend", "tokens", or a cap's name); Per is "task" for the limits, else the
// cap's Per.
type Exhausted struct {
	Budget string
	Used   float64 // use before this call (including what it reported)
	Asked  float64 // what this call needs
	Max    float64
	Per    string
}

// Error says which budget is exhausted in one sentence an agent can act on.
func (e *Exhausted) Error() string {
	if e.Asked == 0 {
		return fmt.Sprintf("budget %q exhausted: %s of %s used", e.Budget, lgNum(e.Used), lgNum(e.Max))
	}
	return fmt.Sprintf("budget %q exhausted: %s of %s used, this call needs %s",
		e.Budget, lgNum(e.Used), lgNum(e.Max), lgNum(e.Asked))
}

// lgNum formats v without float noise (0.30000000000000004 is "0.3").
func lgNum(v float64) string {
	if r := math.Round(v*1e9) / 1e9; !math.IsInf(r, 0) && !math.IsNaN(r) {
		v = r
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// Reservation is what one call took. Once the call reached its tool the reservation is
// kept, whatever the outcome; [Reservation.Release] gives it back when the call was
// refused before.
type Reservation struct {
	l        *Ledger
	ctx      *lgContext
	ctxShard int
	cost     float64 // given back by Release; reported spend is not
	spend    float64 // cost + reported
	tokens   int64
	caps     []lgTaken
	capBuf   [1]lgTaken // caps of a call under one cap, without another allocation
	released atomic.Bool
	shared   *BudgetTaken // what a store took; ctx and the caps' windows are then unset
}

// lgTaken is one cap's share of a reservation.
type lgTaken struct {
	cap   int
	shard int
	win   *lgWindow
	epoch int64
	amt   float64
}

// Release gives back the step, the cost and the cap amounts the call took; what the
// agent reported stays spent. Releasing twice, or a nil reservation, is a no-op.
func (r *Reservation) Release() {
	if r == nil || !r.released.CompareAndSwap(false, true) {
		return
	}
	if r.shared != nil {
		r.l.shRelease(r.shared)
		return
	}
	// One lock at a time: a release need not be atomic, and holding none while taking
	// the next cannot deadlock with a Reserve.
	s := &r.l.shards[r.ctxShard]
	s.mu.Lock()
	r.ctx.steps = max(r.ctx.steps-1, 0)
	r.ctx.spend = max(r.ctx.spend-r.cost, 0)
	s.mu.Unlock()
	for _, t := range r.caps {
		s := &r.l.shards[t.shard]
		s.mu.Lock()
		t.win.remove(t.epoch, t.amt)
		s.mu.Unlock()
	}
}

// Charged returns what the call was charged, for the audit record: spend is its cost
// plus the spend it reported, tokens what it reported, and caps the amount per cap name
// (nil if no cap applied). A released reservation still reports what it was charged.
func (r *Reservation) Charged() (spend float64, tokens int64, caps map[string]float64) {
	if r == nil {
		return 0, 0, nil
	}
	if len(r.caps) > 0 {
		caps = make(map[string]float64, len(r.caps))
		for _, t := range r.caps {
			caps[r.l.caps[t.cap].Name] = t.amt
		}
	}
	return r.spend, r.tokens, caps
}

// lgPlan is a cap a charge applies to, and its amount.
type lgPlan struct {
	cap   int
	key   string
	shard int
	amt   float64
}

// Reserve takes, atomically, what the call needs: one step, Cost in spend, and each
// applicable cap's amount (the Sum argument's value, or 1). The spend and tokens the
// agent reports are recorded first and always, since they were spent already, and count
// against the limits. If anything does not fit, nothing but the reported use is taken and
// the error is an [*Exhausted] for the first budget that does not fit, in the order
// steps, spend, tokens, then caps in configuration order. Two concurrent Reserves never
// both fit under a bound only one fits under.
//
// A cap's argument may be a JSON number or a numeric string ("12.50"); a negative value
// is charged as its absolute value, so that no amount frees room; an absent or null
// argument counts 0 (the tool receives no amount either). Any other value, NaN or an
// infinity is an error naming the cap and the argument; so are a non-finite cost or
// reported spend. A new context or cap key past MaxContexts is an error wrapping
// [ErrLedgerFull]. With a store, the store takes what the call needs in one transaction,
// and a store that fails or does not answer within StoreTimeout refuses the call with an
// error wrapping [ErrBudgetUnavailable].
func (l *Ledger) Reserve(c Charge) (*Reservation, error) {
	if c.Context == "" {
		return nil, errors.New("contain: reserve: charge has no context")
	}
	cost, err := lgAmount(c.Cost)
	if err != nil {
		return nil, fmt.Errorf("contain: reserve: cost %w", err)
	}
	reported, err := lgAmount(c.ReportedSpend)
	if err != nil {
		return nil, fmt.Errorf("contain: reserve: reported spend %w", err)
	}
	rtokens := lgAbs(c.ReportedTokens)

	// Work out the caps and the shards before locking anything.
	var planBuf [8]lgPlan
	plans := planBuf[:0]
	for i := range l.caps {
		lc := &l.caps[i]
		if lc.tools != nil && !lc.tools[c.Tool] {
			continue
		}
		key, ok := c.Agent, true
		switch lc.Per {
		case "user":
			key, ok = c.User, c.User != ""
		case "task":
			key, ok = c.Task, c.Task != ""
		}
		if !ok {
			continue
		}
		amt := 1.0
		if lc.Sum != "" {
			if amt, err = lgArg(c.Args[lc.Sum]); err != nil {
				return nil, fmt.Errorf("contain: reserve: cap %q: argument %q %w", lc.Name, lc.Sum, err)
			}
		}
		plans = append(plans, lgPlan{cap: i, key: key, shard: l.capShard(i, key), amt: amt})
	}
	if l.store != nil {
		return l.shReserve(c.Context, cost, reported, rtokens, plans, l.now())
	}
	ctxShard := l.ctxShard(c.Context)
	now := l.now() // before locking: the clock is the caller's code
	var lockBuf [8]int
	locks := append(lockBuf[:0], ctxShard)
	for _, p := range plans {
		locks = append(locks, p.shard)
	}
	slices.Sort(locks)
	locks = slices.Compact(locks)
	for _, i := range locks {
		l.shards[i].mu.Lock()
	}
	defer func() {
		for _, i := range locks {
			l.shards[i].mu.Unlock()
		}
	}()

	cx, err := l.context(ctxShard, c.Context)
	if err != nil {
		return nil, err
	}
	if now.After(cx.last) {
		cx.last = now
	}
	cx.spend += reported
	cx.tokens = lgSatAdd(cx.tokens, rtokens)

	lim := l.limits
	switch {
	case lim.MaxSteps > 0 && cx.steps+1 > lim.MaxSteps:
		return nil, &Exhausted{Budget: "steps", Used: float64(cx.steps), Asked: 1, Max: float64(lim.MaxSteps), Per: "task"}
	case lim.MaxSpend > 0 && !lgFits(cx.spend, cost, lim.MaxSpend):
		return nil, &Exhausted{Budget: "spend", Used: cx.spend, Asked: cost, Max: lim.MaxSpend, Per: "task"}
	case lim.MaxTokens > 0 && cx.tokens > lim.MaxTokens:
		return nil, &Exhausted{Budget: "tokens", Used: float64(cx.tokens), Max: float64(lim.MaxTokens), Per: "task"}
	}
	var wins [8]*lgWindow
	ws := wins[:0]
	for _, p := range plans {
		lc := &l.caps[p.cap]
		w, err := l.window(p.shard, p.cap, p.key)
		if err != nil {
			return nil, err
		}
		cur := lgEpoch(now, lc.bucket)
		used := w.sum(cur)
		if !lgFits(used, p.amt, lc.Max) {
			return nil, &Exhausted{Budget: lc.Name, Used: used, Asked: p.amt, Max: lc.Max, Per: lc.Per}
		}
		ws = append(ws, w)
	}

	// Everything fits: apply.
	cx.steps++
	cx.spend += cost
	r := &Reservation{l: l, ctx: cx, ctxShard: ctxShard, cost: cost, spend: cost + reported, tokens: rtokens}
	if len(plans) > 0 {
		r.caps = r.capBuf[:0]
		if len(plans) > len(r.capBuf) {
			r.caps = make([]lgTaken, len(plans))
		}
		r.caps = r.caps[:len(plans)]
		for i, p := range plans {
			r.caps[i] = lgTaken{cap: p.cap, shard: p.shard, win: ws[i], amt: p.amt,
				epoch: ws[i].add(lgEpoch(now, l.caps[p.cap].bucket), p.amt)}
		}
	}
	return r, nil
}

// context returns the context named key, creating it if there is room. Its shard must be
// locked.
func (l *Ledger) context(shard int, key string) (*lgContext, error) {
	s := &l.shards[shard]
	if cx, ok := s.ctx[key]; ok {
		return cx, nil
	}
	if l.contexts.Add(1) > l.max {
		l.contexts.Add(-1)
		return nil, fmt.Errorf("contain: reserve: %d contexts tracked: %w", l.max, ErrLedgerFull)
	}
	cx := &lgContext{}
	s.ctx[key] = cx
	return cx, nil
}

// window returns cap ci's window for key, creating it if there is room. Its shard must be
// locked.
func (l *Ledger) window(shard, ci int, key string) (*lgWindow, error) {
	s := &l.shards[shard]
	k := lgKey{cap: ci, key: key}
	if w, ok := s.win[k]; ok {
		return w, nil
	}
	if l.keys.Add(1) > l.max {
		l.keys.Add(-1)
		return nil, fmt.Errorf("contain: reserve: %d cap keys tracked: %w", l.max, ErrLedgerFull)
	}
	w := &lgWindow{}
	s.win[k] = w
	return w, nil
}

// Usage reports a context's steps, spend and tokens so far (zero for an unknown one).
func (l *Ledger) Usage(context string) (steps int64, spend float64, tokens int64) {
	if l.store != nil {
		return l.shUsage(context)
	}
	s := &l.shards[l.ctxShard(context)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if cx, ok := s.ctx[context]; ok {
		return cx.steps, cx.spend, cx.tokens
	}
	return 0, 0, 0
}

// CapUsage reports the use of the cap named name by key (an agent id, user or task,
// according to the cap's Per) within its window now, and false if there is no such cap.
func (l *Ledger) CapUsage(name, key string) (float64, bool) {
	i, ok := l.capIndex[name]
	if !ok {
		return 0, false
	}
	if l.store != nil {
		return l.shCapUsage(i, key), true
	}
	s := &l.shards[l.capShard(i, key)]
	cur := lgEpoch(l.now(), l.caps[i].bucket)
	s.mu.Lock()
	defer s.mu.Unlock()
	if w, ok := s.win[lgKey{cap: i, key: key}]; ok {
		return w.sum(cur), true
	}
	return 0, true
}

// Replay adds a past charge, as recorded in the audit log, at its time: it is how the
// ledger is rebuilt at start. It never refuses; step says whether the call took a step
// (it reached its tool). Cap amounts for caps no longer configured, or that no longer
// apply to the call, and amounts outside their window now are ignored; so is what does
// not fit under MaxContexts, since memory stays bounded. With a store, Replay does
// nothing: the store holds every use already.
// Report charges what an agent reports having spent with a call that does not reach
// its reservation (refused before it): spend and tokens count against the context's
// limits, as they would have with the reservation. Non-finite or empty reports are
// ignored; a negative one counts as its absolute value, as in [Ledger.Reserve].
func (l *Ledger) Report(at time.Time, context string, spend float64, tokens int64) {
	sp, err := lgAmount(spend)
	if err != nil || context == "" || (sp == 0 && tokens == 0) {
		return
	}
	if l.store != nil {
		l.shReport(context, at, sp, lgAbs(tokens))
		return
	}
	l.Replay(at, context, "", "", "", "", sp, tokens, nil, false)
}

func (l *Ledger) Replay(at time.Time, context, agent, user, task, tool string, spend float64, tokens int64, caps map[string]float64, step bool) {
	if l.store != nil {
		return
	}
	if sp, err := lgAmount(spend); err == nil && context != "" {
		s := &l.shards[l.ctxShard(context)]
		s.mu.Lock()
		if cx, err := l.context(l.ctxShard(context), context); err == nil {
			if at.After(cx.last) {
				cx.last = at
			}
			if step {
				cx.steps++
			}
			cx.spend += sp
			cx.tokens = lgSatAdd(cx.tokens, lgAbs(tokens))
		}
		s.mu.Unlock()
	}
	now := l.now()
	for name, amt := range caps {
		i, ok := l.capIndex[name]
		if !ok {
			continue
		}
		a, err := lgAmount(amt)
		if err != nil {
			continue
		}
		lc := &l.caps[i]
		if lc.tools != nil && !lc.tools[tool] {
			continue
		}
		key := agent
		switch lc.Per {
		case "user":
			key = user
		case "task":
			key = task
		}
		if key == "" && lc.Per != "agent" {
			continue
		}
		cur, e := lgEpoch(now, lc.bucket), lgEpoch(at, lc.bucket)
		if e < cur-lgBuckets {
			continue
		}
		sh := l.capShard(i, key)
		s := &l.shards[sh]
		s.mu.Lock()
		if w, err := l.window(sh, i, key); err == nil {
			w.insert(min(e, cur), a)
		}
		s.mu.Unlock()
	}
}

// Expire forgets the contexts idle for longer than ContextIdle at now and the cap keys
// with nothing left in their window, and reports how many of each it dropped. The
// gateway calls it periodically (each minute); it locks one shard at a time. With a
// store, it expires the store's contexts and cap buckets (see [LedgerStore.ExpireBudgets]).
func (l *Ledger) Expire(now time.Time) (contexts, keys int) {
	if l.store != nil {
		return l.shExpire(now)
	}
	cutoff := now.Add(-l.idle)
	curs := make([]int64, len(l.caps))
	for i := range l.caps {
		curs[i] = lgEpoch(now, l.caps[i].bucket)
	}
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for k, cx := range s.ctx {
			if cx.last.Before(cutoff) {
				delete(s.ctx, k)
				contexts++
			}
		}
		for k, w := range s.win {
			if w.prune(curs[k.cap]); w.empty() {
				delete(s.win, k)
				keys++
			}
		}
		s.mu.Unlock()
	}
	l.contexts.Add(-int64(contexts))
	l.keys.Add(-int64(keys))
	return contexts, keys
}

func (l *Ledger) ctxShard(key string) int {
	return int(maphash.String(l.seed, key) % lgShards)
}

func (l *Ledger) capShard(ci int, key string) int {
	h := maphash.String(l.seed, key) ^ (uint64(ci+1) * 0x9e3779b97f4a7c15)
	return int(h % lgShards)
}

// sum returns what counts in the window at epoch cur, dropping what no longer does.
func (w *lgWindow) sum(cur int64) float64 {
	w.prune(cur)
	var s float64
	for _, b := range w.b {
		s += b.amt
	}
	return s
}

// prune drops the buckets older than the window at cur: the lgBuckets before cur, and
// cur, count.
func (w *lgWindow) prune(cur int64) {
	n := 0
	for n < len(w.b) && w.b[n].epoch < cur-lgBuckets {
		n++
	}
	if n > 0 {
		w.b = slices.Delete(w.b, 0, n)
	}
}

func (w *lgWindow) empty() bool {
	for _, b := range w.b {
		if b.amt > 0 {
			return false
		}
	}
	return true
}

// add adds amt at cur and returns the epoch it was added at. If the clock stepped back,
// it adds to the newest bucket instead, so that buckets stay in order and few.
func (w *lgWindow) add(cur int64, amt float64) int64 {
	if n := len(w.b); n > 0 && w.b[n-1].epoch >= cur {
		w.b[n-1].amt += amt
		return w.b[n-1].epoch
	}
	w.b = append(w.b, lgBucket{epoch: cur, amt: amt})
	return cur
}

// insert adds amt at epoch e, which may be older than the newest bucket (a replay).
func (w *lgWindow) insert(e int64, amt float64) {
	i, found := slices.BinarySearchFunc(w.b, e, func(b lgBucket, e int64) int {
		switch {
		case b.epoch < e:
			return -1
		case b.epoch > e:
			return 1
		}
		return 0
	})
	if found {
		w.b[i].amt += amt
		return
	}
	w.b = slices.Insert(w.b, i, lgBucket{epoch: e, amt: amt})
}

// remove takes amt back from the bucket at epoch e, if it still counts.
func (w *lgWindow) remove(e int64, amt float64) {
	for i := len(w.b) - 1; i >= 0; i-- {
		if w.b[i].epoch == e {
			w.b[i].amt = max(w.b[i].amt-amt, 0)
			return
		}
	}
}

// lgEpoch returns the bucket of width (nanoseconds) that t falls in.
func lgEpoch(t time.Time, width int64) int64 {
	n := t.UnixNano()
	e := n / width
	if n%width < 0 {
		e--
	}
	return e
}

// lgFits reports whether used+asked stays within max, give or take float rounding.
func lgFits(used, asked, bound float64) bool {
	return used+asked <= bound+bound*lgSlack
}

// lgAmount checks a money amount: finite, and charged as its absolute value.
func lgAmount(v float64) (float64, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("is %v, not a finite number", v)
	}
	return math.Abs(v), nil
}

// lgArg returns the amount a cap argument stands for; see [Ledger.Reserve].
func lgArg(v any) (float64, error) {
	var f float64
	switch v := v.(type) {
	case nil:
		return 0, nil
	case float64:
		f = v
	case float32:
		f = float64(v)
	case int:
		f = float64(v)
	case int64:
		f = float64(v)
	case int32:
		f = float64(v)
	case uint64:
		f = float64(v)
	case json.Number:
		var err error
		if f, err = v.Float64(); err != nil {
			return 0, errors.New("is not a number")
		}
	case string:
		var err error
		if f, err = strconv.ParseFloat(v, 64); err != nil {
			return 0, errors.New("is a string that is not a number")
		}
	default:
		return 0, fmt.Errorf("is %s, not a number", lgKind(v))
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, errors.New("is not a finite number")
	}
	return math.Abs(f), nil
}

// lgKind names a decoded JSON value's kind without its content, which may be private.
func lgKind(v any) string {
	switch v.(type) {
	case bool:
		return "a boolean"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return fmt.Sprintf("a %T", v)
}

func lgAbs(n int64) int64 {
	switch {
	case n == math.MinInt64:
		return math.MaxInt64
	case n < 0:
		return -n
	}
	return n
}

// lgSatAdd adds non-negative a and b, saturating instead of wrapping.
func lgSatAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
