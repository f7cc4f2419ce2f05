package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/internal/api"
	"github.com/chaperone-dev/chaperone/internal/approval"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/pipeline"
)

// newApprovals builds the approval manager of a configuration: requests in the store,
// webhooks and the audit log notified.
func newApprovals(cfg *config.Config, store approval.Store, log *audit.Log, logger *slog.Logger) (*approval.Manager, error) {
	notifiers := []approval.Notifier{auditNotifier{log}}
	hooks, err := newWebhooks("approvals.webhooks", cfg.Approvals.Webhooks)
	if err != nil {
		return nil, err
	}
	for _, wh := range hooks {
		notifiers = append(notifiers, wh)
	}
	opts := approval.Options{
		Store: store, Notifiers: notifiers, Timeout: cfg.Approvals.Timeout.D(),
		DeclineReasons: cfg.Approvals.DeclineReasons, AllowSelfApproval: cfg.Approvals.AllowSelfApproval,
		Logger: logger,
	}
	if two := cfg.Approvals.TwoPerson; len(two) > 0 {
		opts.TwoPerson = func(tool string) bool { return slices.Contains(two, tool) }
	}
	if base := strings.TrimRight(cfg.Approvals.URL, "/"); base != "" {
		opts.ApproveURL = func(id string) string { return base + "/approvals/" + id }
	}
	return approval.NewManager(opts), nil
}

// newWebhooks builds configured webhooks, reading their secret files; field names the
// configuration list in errors.
func newWebhooks(field string, ws []config.Webhook) ([]*approval.Webhook, error) {
	var out []*approval.Webhook
	for i, w := range ws {
		var secret string
		if w.SecretFile != "" {
			b, err := os.ReadFile(w.SecretFile)
			if err != nil {
				return nil, fmt.Errorf("%s[%d].secret_file: %w", field, i, err)
			}
			secret = strings.TrimSpace(string(b))
		}
		wh, err := approval.NewWebhook(w.URL, approval.WebhookOptions{Secret: secret, Timeout: w.Timeout.D()})
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		out = append(out, wh)
	}
	return out, nil
}

// auditNotifier records every request and decision in the audit log.
type auditNotifier struct{ log *audit.Log }

func (n auditNotifier) Notify(ctx context.Context, ev approval.Event) error {
	r := ev.Request
	e := &audit.Event{
		Time: time.Now(), Kind: ev.Kind, Approval: r.ID, SessionID: r.SessionID, Agent: r.Agent, User: r.User,
		Task: r.Task, Tool: r.Tool, Upstream: r.Upstream, Rules: r.Rules, PolicyVersion: r.PolicyVersion,
		Risk: r.Risk, RiskFactors: r.RiskFactors, Explanation: r.Explanation, Decision: string(r.Status),
	}
	if !r.DecidedAt.IsZero() && (ev.Kind == approval.EventApproved || ev.Kind == approval.EventDenied) {
		e.LatencyMicros = r.DecidedAt.Sub(r.CreatedAt).Microseconds() // the time to decide
	}
	switch ev.Kind {
	case approval.EventApproved:
		by := make([]string, len(r.Approvals))
		for i, v := range r.Approvals {
			by[i] = v.By
		}
		e.Detail = "approved by " + strings.Join(by, " and ")
	case approval.EventDenied:
		e.Reason, e.Detail = r.DenyCode, "declined by "+r.DeniedBy
		e.Message = r.DenyText
	case approval.EventExpired:
		e.Detail = "nobody decided by " + r.ExpiresAt.UTC().Format(time.RFC3339)
	case approval.EventRequested:
		e.Detail = fmt.Sprintf("%d approval(s) required by %s", r.Required, r.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return n.log.Append(ctx, e)
}

// approver decides the calls policy holds: it asks people through the approval manager,
// holds the agent's request for up to hold, and lets the call run only on an approval
// bound to exactly this call, consumed once.
type approver struct {
	m    *approval.Manager
	hold time.Duration
	// voided reports whether a kill switch voided an approved request (nil: never).
	voided func(*approval.Request) bool
}

func (a *approver) approve(ctx context.Context, h *pipeline.Hold) (string, *pipeline.Refusal) {
	c, pr := h.Call, h.Call.Principal
	args := c.Arguments
	if t := bytes.TrimSpace(args); len(t) == 0 || string(t) == "null" {
		args = json.RawMessage(`{}`)
	}
	hash, err := approval.Hash(h.Tool.Name, args, pr.Agent.ID, pr.User, pr.Task)
	if err != nil {
		return "", &pipeline.Refusal{Code: pipeline.CodeApprovalRequired, Message: "This call needs a person's approval, and its arguments cannot be bound to one."}
	}
	if c.ApprovalID != "" {
		r, err := a.m.Get(ctx, c.ApprovalID)
		switch {
		case errors.Is(err, approval.ErrNotFound):
			return "", &pipeline.Refusal{Code: pipeline.CodeApprovalDenied, Message: fmt.Sprintf("There is no approval %q: ask for one by calling without it.", truncateID(c.ApprovalID))}
		case err != nil:
			return "", unavailable()
		case r.CallHash == hash && r.Status != approval.StatusUsed:
			return a.settle(ctx, r, hash, c.NoWait)
		}
		// A changed call, or an approval already used: it needs a new approval.
	}
	// The manager compacts the arguments and binds the request to the same hash.
	r, _, err := a.m.Request(ctx, &approval.Request{
		Tool: h.Tool.Name, Upstream: h.Tool.Upstream, Arguments: args,
		Agent: pr.Agent.ID, User: pr.User, Task: pr.Task, SessionID: c.SessionID, Reason: c.Reason,
		Rules: h.Decision.Rules, PolicyVersion: h.Decision.Version, Risk: h.Risk.Value, RiskFactors: h.Risk.FactorNames(),
		Explanation: h.Explanation, Undo: h.Tool.Undo,
	})
	if err != nil {
		return "", unavailable()
	}
	return a.settle(ctx, r, hash, c.NoWait)
}

// settle waits, if the agent can, for a person to decide request r, and consumes the
// approval of an approved one.
func (a *approver) settle(ctx context.Context, r *approval.Request, hash string, noWait bool) (string, *pipeline.Refusal) {
	if r.Status == approval.StatusPending && !noWait && a.hold > 0 {
		// Wait in steps, telling the client (if it asked for progress) what it waits for.
		deadline := time.Now().Add(a.hold)
		for r.Status == approval.StatusPending && ctx.Err() == nil {
			left := time.Until(deadline)
			if left <= 0 {
				break
			}
			pipeline.Progress(ctx, fmt.Sprintf("waiting for a person to approve this call (approval %s)", r.ID))
			w, err := a.m.Wait(ctx, r.ID, min(left, progressEvery))
			if err != nil {
				break
			}
			r = w
		}
	}
	switch r.Status {
	case approval.StatusApproved:
		if a.voided != nil && a.voided(r) {
			return r.ID, &pipeline.Refusal{Code: pipeline.CodeApprovalDenied, Message: fmt.Sprintf("Approval %s was voided by a kill switch pulled after it was requested: ask for a new one.", r.ID)}
		}
		if _, err := a.m.Consume(ctx, r.ID, hash); err != nil {
			// Another request of the same call won the approval (it runs once).
			return r.ID, &pipeline.Refusal{Code: pipeline.CodeApprovalDenied, Message: fmt.Sprintf("Approval %s was already used: an approval covers one execution.", r.ID)}
		}
		return r.ID, nil
	case approval.StatusPending:
		return r.ID, &pipeline.Refusal{Code: pipeline.CodeApprovalPending, Message: fmt.Sprintf(
			"A person has been asked to approve this call (approval %s, open until %s). It has not run. Retry the same call with _meta %q: %q once it is approved.",
			r.ID, r.ExpiresAt.UTC().Format(time.RFC3339), "dev.chaperone/approval", r.ID)}
	case approval.StatusDenied:
		msg := fmt.Sprintf("A person declined this call (%s)", r.DenyCode)
		if r.DenyText != "" {
			msg += ": " + r.DenyText
		}
		return r.ID, &pipeline.Refusal{Code: pipeline.CodeApprovalDenied, Message: msg + "."}
	case approval.StatusExpired:
		return r.ID, &pipeline.Refusal{Code: pipeline.CodeApprovalExpired, Message: "Nobody approved this call in time, so it is refused."}
	}
	return r.ID, &pipeline.Refusal{Code: pipeline.CodeApprovalDenied, Message: fmt.Sprintf("Approval %s was already used: an approval covers one execution.", r.ID)}
}

// progressEvery is how often a held call tells a client that asked for progress that it
// is still waiting.
const progressEvery = 10 * time.Second

func unavailable() *pipeline.Refusal {
	return &pipeline.Refusal{Code: pipeline.CodeApprovalRequired, Message: "This call needs a person's approval, and the request could not be recorded, so it is refused."}
}

func truncateID(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// approvalsAPI is the approval manager for the admin API; nil (501) when approvals are off.
func (d *Daemon) approvalsAPI() api.Approvals {
	if d.approvals == nil {
		return nil
	}
	return d.approvals
}

// Approvals returns the approval manager; nil when approvals are off.
func (d *Daemon) Approvals() *approval.Manager { return d.approvals }
