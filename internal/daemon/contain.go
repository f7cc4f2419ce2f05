package daemon

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/chaperone-dev/chaperone/internal/api"
	"github.com/chaperone-dev/chaperone/internal/approval"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/pipeline"
	"github.com/chaperone-dev/chaperone/internal/store"
)

// containWait bounds how long a kill waits for the calls it cancelled to end before it
// returns.
const containWait = 5 * time.Second

// buildContainment builds the brakes of the configuration and restores their state: kill
// switches and open breakers from the store, baselines from the store, budgets and caps
// from the audit log.
func (d *Daemon) buildContainment(ctx context.Context) (pipeline.Containment, error) {
	cc := d.cfg.Containment
	var cs pipeline.Containment
	var err error
	if cs.Kills, err = contain.NewSwitches(ctx, d.store, nil); err != nil {
		return cs, err
	}
	d.kills = cs.Kills
	if d.containHooks, err = newWebhooks("containment.webhooks", cc.Webhooks); err != nil {
		return cs, err
	}

	if len(cc.Breakers.Triggers) > 0 {
		opts := contain.BreakerOptions{Degrade: contain.Degrade(cc.Breakers.Degrade), Cooldown: cc.Breakers.Cooldown.D(), OnChange: d.breakerChanged}
		for _, t := range cc.Breakers.Triggers {
			opts.Triggers = append(opts.Triggers, contain.Trigger{Signal: contain.Signal(t.Signal), Threshold: t.Threshold, Window: t.Window.D()})
		}
		if cs.Breakers, err = contain.NewBreakers(opts); err != nil {
			return cs, fmt.Errorf("containment.breakers: %w", err)
		}
		recs, err := d.store.Breakers(ctx)
		if err != nil {
			return cs, err
		}
		for _, r := range recs {
			if err := cs.Breakers.Restore(r.Agent, contain.BreakerState(r.State), r.Signal, r.Detail, r.OpenedAt); err != nil {
				// A breaker that was open must not come back closed: hold it open until an
				// operator looks.
				d.log.ErrorContext(ctx, "stored breaker unreadable; tripping it", "agent", r.Agent, "err", err)
				if terr := cs.Breakers.Trip(r.Agent, "chaperone", "its stored state could not be restored: "+err.Error()); terr != nil {
					return cs, fmt.Errorf("containment: breaker of %q: %w", r.Agent, errors.Join(err, terr))
				}
			}
		}
		d.breakers = cs.Breakers
	}

	b := cc.Budgets
	if b.MaxSteps > 0 || b.MaxSpend > 0 || b.MaxTokens > 0 || len(cc.Caps) > 0 || anyCost(d.cfg) {
		opts := contain.LedgerOptions{Limits: contain.Limits{MaxSteps: b.MaxSteps, MaxSpend: b.MaxSpend, MaxTokens: b.MaxTokens}}
		lookback := 24 * time.Hour
		for _, c := range cc.Caps {
			opts.Caps = append(opts.Caps, contain.Cap{Name: c.Name, Tools: c.Tools, Sum: c.Sum, Per: c.Per, Window: c.Window.D(), Max: c.Max})
			lookback = max(lookback, c.Window.D())
		}
		if d.shared != nil {
			// Replicas keep the use in the database, taken atomically: nothing to rebuild.
			opts.Store = d.shared
			opts.OnStoreError = func(err error) { d.log.Error("budgets: store failed; calls are refused", "err", err) }
		}
		if cs.Ledger, err = contain.NewLedger(opts); err != nil {
			return cs, fmt.Errorf("containment: %w", err)
		}
		if d.shared == nil {
			if err := d.replayLedger(ctx, cs.Ledger, time.Now().Add(-lookback)); err != nil {
				return cs, fmt.Errorf("containment: rebuild budgets from the audit log: %w", err)
			}
		}
		d.ledger = cs.Ledger
	}

	for i, rl := range cc.RateLimits {
		rate, err := contain.ParseRate(rl.Rate)
		if err != nil {
			return cs, fmt.Errorf("containment.rate_limits[%d]: %w", i, err)
		}
		var l *contain.Limiter
		if d.shared != nil {
			// The name ties the buckets to this limit: a changed rate or burst starts
			// afresh rather than reading buckets filled under other terms.
			name := fmt.Sprintf("%d/%s/%g/%d", i, rl.Per, rate, rl.Burst)
			l, err = contain.NewSharedLimiter(name, rate, rl.Burst, d.shared, 0, nil)
			if l != nil {
				l.OnError = func(err error) { d.log.Error("rate limits: store failed; calls are refused", "err", err) }
			}
		} else {
			l, err = contain.NewLimiter(rate, rl.Burst, 0, nil)
		}
		if err != nil {
			return cs, fmt.Errorf("containment.rate_limits[%d]: %w", i, err)
		}
		cs.RateLimits = append(cs.RateLimits, pipeline.RateLimit{Per: rl.Per, Limiter: l})
	}
	if cc.Loops.On() {
		if cs.Loops, err = contain.NewLoops(cc.Loops.MaxRepeats, cc.Loops.Window.D(), 0, nil); err != nil {
			return cs, fmt.Errorf("containment.loops: %w", err)
		}
	}
	if cc.Baselines.On() {
		if cs.Baselines, err = contain.NewBaselines(contain.BaselineOptions{MinCalls: cc.Baselines.MinCalls,
			RateFactor: cc.Baselines.RateFactor, RangeFactor: cc.Baselines.RangeFactor}); err != nil {
			return cs, fmt.Errorf("containment.baselines: %w", err)
		}
		err := d.store.Baselines(ctx, func(agent string, profile []byte) error {
			if err := cs.Baselines.Restore(agent, profile); err != nil {
				d.log.WarnContext(ctx, "stored baseline not restored; it is learned again", "agent", agent, "err", err)
			}
			return nil
		})
		if err != nil {
			return cs, err
		}
		d.baselines = cs.Baselines
	}
	if cs.Idempotency, err = contain.NewIdempotency(contain.IdempotencyOptions{Store: d.store, Retention: cc.Idempotency.Retention.D()}); err != nil {
		return cs, fmt.Errorf("containment.idempotency: %w", err)
	}
	d.idem = cs.Idempotency
	return cs, nil
}

func anyCost(cfg *config.Config) bool {
	for _, t := range cfg.Tools {
		if t.Cost > 0 {
			return true
		}
	}
	return false
}

// replayLedger charges the ledger with what the calls recorded since from took: the
// budgets and caps survive a restart.
func (d *Daemon) replayLedger(ctx context.Context, l *contain.Ledger, from time.Time) error {
	seq, err := d.firstSeqSince(ctx, from)
	if err != nil {
		return err
	}
	for {
		evs, err := d.store.ScanEvents(ctx, seq, 1000)
		if err != nil {
			return err
		}
		for i := range evs {
			e := &evs[i]
			seq = e.Seq
			if e.Time.Before(from) {
				continue
			}
			key := pipeline.BudgetKey(e.Agent, e.Task, e.SessionID)
			switch {
			case e.Kind == audit.KindCallIntent:
				l.Replay(e.Time, key, e.Agent, e.User, e.Task, e.Tool, e.Spend, e.Tokens, e.Charges, true)
			case e.Spend > 0 || e.Tokens > 0:
				// What the agent reported with a call that did not run (refused, suggested,
				// answered from an idempotency record): spent all the same.
				l.Replay(e.Time, key, e.Agent, e.User, e.Task, e.Tool, e.Spend, e.Tokens, nil, false)
			}
		}
		if len(evs) < 1000 {
			return nil
		}
	}
}

// firstSeqSince returns the sequence number after which the events at or after t begin,
// by binary search: events are appended in time order, give or take the clocks of
// concurrent writers, which the replay's own time check absorbs.
func (d *Daemon) firstSeqSince(ctx context.Context, t time.Time) (int64, error) {
	last, ok, err := d.store.LastEvent(ctx)
	if err != nil || !ok {
		return 0, err
	}
	lo, hi := int64(0), last.Seq // the answer is in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo)/2
		evs, err := d.store.ScanEvents(ctx, mid, 1)
		if err != nil {
			return 0, err
		}
		if len(evs) == 0 || !evs[0].Time.Before(t) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, nil
}

// breakerChanged stores, audits and announces a breaker's transition.
func (d *Daemon) breakerChanged(ch contain.BreakerChange) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec := store.BreakerRecord{Agent: ch.Agent, State: string(ch.To), Signal: string(ch.Signal), Detail: ch.Detail, OpenedAt: ch.At}
	if err := d.store.SetBreaker(ctx, rec); err != nil {
		d.log.ErrorContext(ctx, "breaker state not stored", "agent", ch.Agent, "err", err)
	}
	detail := ch.Detail
	if ch.By != "" {
		detail += fmt.Sprintf(" (by %s: %s)", ch.By, ch.Reason)
	}
	e := &audit.Event{Time: ch.At, Kind: audit.KindBreakerChanged, Agent: ch.Agent, Decision: string(ch.To),
		Reason: string(ch.Signal), Message: fmt.Sprintf("breaker %s → %s", ch.From, ch.To), Detail: detail}
	if err := d.audit.Append(ctx, e); err != nil {
		d.log.ErrorContext(ctx, "breaker change not recorded", "agent", ch.Agent, "err", err)
	}
	level := d.log.Info
	if ch.To == contain.BreakerOpen {
		level = d.log.Warn
	}
	level("circuit breaker", "agent", ch.Agent, "from", ch.From, "to", ch.To, "signal", ch.Signal, "detail", detail)
	d.notify(ctx, audit.KindBreakerChanged, fmt.Sprintf("Circuit breaker of %s: %s → %s. %s", ch.Agent, ch.From, ch.To, detail), map[string]any{
		"agent": ch.Agent, "from": ch.From, "to": ch.To, "signal": ch.Signal, "degrade": ch.Degrade,
		"total": finiteOr0(ch.Total), "threshold": finiteOr0(ch.Threshold), "window": ch.Window.String(), "detail": detail, "at": ch.At.UTC(),
	})
}

func finiteOr0(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

// notify tells the containment webhooks; failures are logged.
func (d *Daemon) notify(ctx context.Context, kind, text string, event map[string]any) {
	for _, w := range d.containHooks {
		if err := w.Post(ctx, kind, text, event); err != nil {
			d.log.WarnContext(ctx, "containment notification failed", "kind", kind, "err", err)
		}
	}
}

// Kill pulls a kill switch: refused from the next call on, calls in flight cancelled,
// held approvals voided, tokens issued before it revoked. It returns once the cancelled
// calls have ended, or after containWait.
func (d *Daemon) Kill(ctx context.Context, scope, by, reason string) (api.KillResult, error) {
	sc, err := contain.ParseScope(scope)
	if err != nil {
		return api.KillResult{}, err
	}
	start := time.Now()
	e, err := d.kills.Engage(ctx, sc, by, reason)
	if err != nil {
		return api.KillResult{}, err
	}
	res := api.KillResult{Kill: e.Kill, CancelledInFlight: e.Cancelled}
	if d.approvals != nil {
		voided, err := d.approvals.Void(context.WithoutCancel(ctx), func(r *approval.Request) bool {
			return sc.Covers(&contain.Subject{Agents: []string{r.Agent}, User: r.User, Task: r.Task, Tool: r.Tool, Upstream: r.Upstream})
		}, "kill switch ("+by+")", "voided by the kill switch on "+sc.String()+": "+reason)
		res.VoidedApprovals = len(voided)
		if err != nil {
			d.log.ErrorContext(ctx, "kill: approvals not all voided", "scope", sc.String(), "err", err)
		}
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), containWait)
	res.StillRunning = e.Wait(wctx)
	cancel()
	res.ContainedMicros = time.Since(start).Microseconds()

	detail := fmt.Sprintf("by %s; %d calls in flight cancelled, %d held approvals voided, contained in %s",
		by, res.CancelledInFlight, res.VoidedApprovals, time.Duration(res.ContainedMicros)*time.Microsecond)
	if res.StillRunning > 0 {
		detail += fmt.Sprintf("; %d cancelled calls still running after %s", res.StillRunning, containWait)
	}
	// LatencyMicros is the time to contain: from the switch to the last cancelled call's end.
	d.recordContain(ctx, &audit.Event{Time: e.Kill.EngagedAt, Kind: audit.KindKillEngaged, Scope: sc.String(), Reason: reason, Detail: detail,
		LatencyMicros: res.ContainedMicros})
	d.log.WarnContext(ctx, "kill switch engaged", "scope", sc.String(), "by", by, "reason", reason, "cancelled", res.CancelledInFlight, "contained", time.Duration(res.ContainedMicros)*time.Microsecond)
	d.notify(ctx, audit.KindKillEngaged, fmt.Sprintf("Kill switch engaged on %s by %s: %s", sc, by, reason), map[string]any{
		"scope": sc.String(), "by": by, "reason": reason, "cancelled_in_flight": res.CancelledInFlight,
		"voided_approvals": res.VoidedApprovals, "at": e.Kill.EngagedAt,
	})
	return res, nil
}

// Unkill lifts a kill switch. What it voided stays void.
func (d *Daemon) Unkill(ctx context.Context, scope, by, reason string) (contain.Kill, error) {
	sc, err := contain.ParseScope(scope)
	if err != nil {
		return contain.Kill{}, err
	}
	k, err := d.kills.Lift(ctx, sc, by, reason)
	if err != nil {
		return contain.Kill{}, err
	}
	d.recordContain(ctx, &audit.Event{Time: k.LiftedAt, Kind: audit.KindKillLifted, Scope: sc.String(), Reason: reason,
		Detail: fmt.Sprintf("by %s; engaged %s by %s", by, k.EngagedAt.UTC().Format(time.RFC3339), k.By)})
	d.log.WarnContext(ctx, "kill switch lifted", "scope", sc.String(), "by", by, "reason", reason)
	d.notify(ctx, audit.KindKillLifted, fmt.Sprintf("Kill switch lifted on %s by %s: %s", sc, by, reason), map[string]any{
		"scope": sc.String(), "by": by, "reason": reason, "at": k.LiftedAt,
	})
	return k, nil
}

func (d *Daemon) recordContain(ctx context.Context, e *audit.Event) {
	// The kill is in force whatever becomes of its record: undoing it would fail open.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := d.audit.Append(actx, e); err != nil {
		d.log.ErrorContext(ctx, "containment event not recorded", "kind", e.Kind, "scope", e.Scope, "err", err)
	}
}

// Kills returns the engaged kills, or with all every kill ever pulled.
func (d *Daemon) Kills(ctx context.Context, all bool) ([]contain.Kill, error) {
	if all {
		return d.kills.History(ctx)
	}
	return d.kills.Engaged(), nil
}

// tokenRevoked reports whether a kill covering an access token was pulled after it was
// issued. Token times are whole seconds: a token issued in the second of a kill is
// revoked too (fail closed).
func (d *Daemon) tokenRevoked(p *identity.Principal) bool {
	return d.kills.VoidedSince(pipeline.TokenSubject(p), p.IssuedAt)
}

// approvalVoided reports whether a kill covering a held call was pulled after its
// approval request was made.
func (d *Daemon) approvalVoided(r *approval.Request) bool {
	return d.kills.VoidedSince(&contain.Subject{Agents: []string{r.Agent}, User: r.User, Task: r.Task}, r.CreatedAt)
}

// containAPI is the daemon's containment for the admin API: Kill, Unkill and Kills are
// the daemon's own.
type containAPI struct{ *Daemon }

func (c containAPI) Breakers() ([]contain.BreakerStatus, bool) {
	if c.breakers == nil {
		return nil, false
	}
	return c.breakers.List(), true
}

func (c containAPI) Breaker(agent string) (contain.BreakerStatus, bool) {
	if c.breakers == nil {
		return contain.BreakerStatus{}, false
	}
	return c.breakers.Status(agent), true
}

func (c containAPI) SetBreaker(ctx context.Context, agent string, trip bool, by, reason string) error {
	if c.breakers == nil {
		return api.ErrNoBreakers
	}
	if trip {
		return c.breakers.Trip(agent, by, reason)
	}
	return c.breakers.Reset(agent, by, reason)
}

func (c containAPI) Budget(task string) (api.Budget, error) {
	rec, ok := c.tasks.Get(task)
	if !ok {
		return api.Budget{}, api.ErrUnknownTask
	}
	b := api.Budget{Task: rec.ID, Agent: rec.Agent, MaxSteps: c.cfg.Containment.Budgets.MaxSteps,
		MaxSpend: c.cfg.Containment.Budgets.MaxSpend, MaxTokens: c.cfg.Containment.Budgets.MaxTokens}
	if c.ledger != nil {
		b.Steps, b.Spend, b.Tokens = c.ledger.Usage(pipeline.BudgetKey(rec.Agent, rec.ID, ""))
	}
	return b, nil
}

func (c containAPI) Baseline(agent string) (contain.Profile, bool) {
	if c.baselines == nil {
		return contain.Profile{}, false
	}
	return c.baselines.Profile(agent)
}

// saveBaselines stores the baselines that changed since they were last stored.
func (d *Daemon) saveBaselines(ctx context.Context) {
	if d.baselines == nil {
		return
	}
	now := time.Now()
	for _, agent := range d.baselines.Dirty() {
		b, ok := d.baselines.Encode(agent)
		if !ok {
			continue
		}
		if err := d.store.PutBaseline(ctx, agent, b, now); err != nil && !errors.Is(err, context.Canceled) {
			d.log.WarnContext(ctx, "baseline not stored", "agent", agent, "err", err)
		}
	}
}

// expireContainment forgets idle budgets and expired idempotency keys, and stores the
// baselines that changed.
func (d *Daemon) expireContainment(ctx context.Context, now time.Time) {
	if d.ledger != nil {
		d.ledger.Expire(now)
	}
	if d.shared != nil && len(d.cfg.Containment.RateLimits) > 0 {
		d.exclusively(ctx, "rate-expiry", func() {
			if _, err := d.shared.ExpireRateBuckets(ctx, now); err != nil && ctx.Err() == nil {
				d.log.WarnContext(ctx, "rate buckets not expired", "err", err)
			}
		})
	}
	if d.idem != nil {
		if _, err := d.idem.Expire(ctx); err != nil && ctx.Err() == nil {
			d.log.WarnContext(ctx, "idempotency keys not expired", "err", err)
		}
	}
	d.saveBaselines(ctx)
}
