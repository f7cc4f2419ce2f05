package daemon

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/chaperone-dev/chaperone/internal/api"
	"github.com/chaperone-dev/chaperone/internal/approval"
	"github.com/chaperone-dev/chaperone/internal/audit"
)

// errNotEligible refuses a promotion the criteria do not support.
var errNotEligible = errors.New("the agent is not eligible for that level: see its criteria, or force it")

// autonomyReport computes an agent's autonomy level and its eligibility for the next one,
// from the audit log (its calls, first call and policy denials) and the approval requests
// (how many of its held calls people approved).
func (d *Daemon) autonomyReport(ctx context.Context, id string) (api.AutonomyReport, error) {
	rec, ok := d.agents.Record(id)
	if !ok {
		return api.AutonomyReport{}, api.ErrUnknownAgent
	}
	rep := api.AutonomyReport{Agent: id, Configured: rec.Agent.Autonomy, Enforced: d.cfg.Autonomy.Enforce}
	rep.Level = d.pipeline.Autonomy(id, rec.Agent.Autonomy)
	var first time.Time
	calls, denials := 0, 0
	for after := int64(0); ; {
		evs, err := d.store.ScanEvents(ctx, after, 1000)
		if err != nil {
			return rep, fmt.Errorf("read audit log: %w", err)
		}
		if len(evs) == 0 {
			break
		}
		for _, e := range evs {
			after = e.Seq
			if e.Agent != id {
				continue
			}
			switch e.Kind {
			case audit.KindCallIntent, audit.KindCallRefused, audit.KindCallSuggested:
				calls++
				if first.IsZero() {
					first = e.Time
				}
				if e.Kind == audit.KindCallRefused && e.Reason == "denied_by_policy" {
					denials++
				}
			}
		}
	}
	approved, decided := 0, 0
	if d.approvals != nil {
		list, err := d.approvals.List(ctx, approval.Filter{Limit: 1000})
		if err != nil {
			return rep, err
		}
		for _, r := range list {
			if r.Agent != id {
				continue
			}
			switch r.Status {
			case approval.StatusApproved, approval.StatusUsed:
				approved++
				decided++
			case approval.StatusDenied, approval.StatusExpired:
				decided++
			}
		}
	}
	crit := d.cfg.Autonomy.Promotion
	days := 0.0
	if !first.IsZero() {
		days = time.Since(first).Hours() / 24
	}
	rate := 1.0
	rateGot := "no held calls decided"
	if decided > 0 {
		rate = float64(approved) / float64(decided)
		rateGot = fmt.Sprintf("%.2f (%d of %d)", rate, approved, decided)
	}
	rep.Criteria = []api.Criterion{
		{Name: "days since first call", Want: fmt.Sprintf("≥ %d", crit.MinDays), Got: fmt.Sprintf("%.1f", days), Met: days >= float64(crit.MinDays)},
		{Name: "calls", Want: fmt.Sprintf("≥ %d", crit.MinCalls), Got: strconv.Itoa(calls), Met: calls >= crit.MinCalls},
		{Name: "calls denied by policy", Want: fmt.Sprintf("≤ %d", crit.MaxDenials), Got: strconv.Itoa(denials), Met: denials <= crit.MaxDenials},
		{Name: "held calls approved", Want: fmt.Sprintf("≥ %.2f", crit.MinApprovalRate), Got: rateGot, Met: rate >= crit.MinApprovalRate},
	}
	rep.Eligible = rep.Level < 3
	for _, c := range rep.Criteria {
		rep.Eligible = rep.Eligible && c.Met
	}
	return rep, nil
}

// setAutonomy sets an agent's level while the gateway runs, and audits it. Raising it
// needs the agent to be eligible for the next level, unless forced, and goes one level at
// a time.
func (d *Daemon) setAutonomy(ctx context.Context, id string, level int, by, reason string, force bool) (api.AutonomyReport, error) {
	rep, err := d.autonomyReport(ctx, id)
	if err != nil {
		return rep, err
	}
	if level < 0 || level > 3 {
		return rep, fmt.Errorf("%w: level must be 0 to 3, got %d", api.ErrBadAutonomy, level)
	}
	if level > rep.Level && !force {
		if level > rep.Level+1 {
			return rep, fmt.Errorf("%w: promote one level at a time (from %d)", api.ErrBadAutonomy, rep.Level)
		}
		if !rep.Eligible {
			return rep, fmt.Errorf("%w: %v", api.ErrBadAutonomy, errNotEligible)
		}
	}
	kind := audit.KindAgentPromoted
	if level < rep.Level {
		kind = audit.KindAgentDemoted
	}
	if err := d.audit.Append(ctx, &audit.Event{Time: time.Now(), Kind: kind, Agent: id, Decision: strconv.Itoa(level),
		Detail: fmt.Sprintf("autonomy %d → %d by %s (forced %t): %s", rep.Level, level, by, force, reason)}); err != nil {
		return rep, fmt.Errorf("record the change: %w", err)
	}
	d.pipeline.SetAutonomy(id, level)
	return d.autonomyReport(ctx, id)
}
