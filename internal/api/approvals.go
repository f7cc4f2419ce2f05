package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/internal/approval"
)

// Approvals is what the API needs of the approval manager.
type Approvals interface {
	List(ctx context.Context, f approval.Filter) ([]approval.Request, error)
	Get(ctx context.Context, id string) (*approval.Request, error)
	Approve(ctx context.Context, id, by string) (*approval.Request, error)
	Deny(ctx context.Context, id, by, code, text string) (*approval.Request, error)
	DeclineReasons() []string
	DeclineCounts(ctx context.Context, since time.Time) (map[string]int, error)
}

// Approval is one approval request as approvers see it: a preview of the held call with
// secret-looking argument values redacted.
type Approval struct {
	ID            string          `json:"id"`
	Status        string          `json:"status"`
	Tool          string          `json:"tool"`
	Upstream      string          `json:"upstream,omitempty"`
	Arguments     json.RawMessage `json:"arguments"`
	Agent         string          `json:"agent"`
	User          string          `json:"user,omitempty"`
	Task          string          `json:"task,omitempty"`
	SessionID     string          `json:"session_id,omitempty"`
	Reason        string          `json:"reason,omitempty"`
	Rules         []string        `json:"rules,omitempty"`
	PolicyVersion string          `json:"policy_version,omitempty"`
	Risk          int             `json:"risk"`
	RiskFactors   []string        `json:"risk_factors,omitempty"`
	Explanation   string          `json:"explanation,omitempty"`
	Undo          string          `json:"undo,omitempty"`
	Required      int             `json:"required"`
	Approvals     []Verdict       `json:"approvals,omitempty"`
	DeniedBy      string          `json:"denied_by,omitempty"`
	DenyCode      string          `json:"deny_code,omitempty"`
	DenyText      string          `json:"deny_text,omitempty"`
	CreatedAt     time.Time       `json:"created_at"`
	ExpiresAt     time.Time       `json:"expires_at"`
	DecidedAt     time.Time       `json:"decided_at,omitzero"`
	UsedAt        time.Time       `json:"used_at,omitzero"`
}

// Verdict is one approval given.
type Verdict struct {
	By string    `json:"by"`
	At time.Time `json:"at"`
}

// ApprovalStats are the approval figures of one tool over a period.
type ApprovalStats struct {
	Tool      string `json:"tool"`
	Requested int    `json:"requested"`
	Approved  int    `json:"approved"` // approved or approved and used
	Denied    int    `json:"denied"`
	Expired   int    `json:"expired"`
	Pending   int    `json:"pending"`
	// ApprovalRate is approved / decided (approved, denied or expired); 0 with none decided.
	ApprovalRate float64 `json:"approval_rate"`
	// MedianSeconds and P90Seconds are the time from request to decision of the decided.
	MedianSeconds float64 `json:"median_seconds"`
	P90Seconds    float64 `json:"p90_seconds"`
}

// ApprovalReport is GET /v1/approvals/stats.
type ApprovalReport struct {
	Since time.Time       `json:"since"`
	Tools []ApprovalStats `json:"tools"`
	// Truncated says the per-tool figures cover only the newest requests the API reads
	// (maxStatsRequests); the decline reasons are always complete.
	Truncated      bool           `json:"truncated,omitempty"`
	DeclineReasons map[string]int `json:"decline_reasons"`
}

// maxStatsRequests bounds the requests the per-tool figures are computed from.
const maxStatsRequests = 1000

// ApprovalView is a request as approvers see it, its arguments redacted for preview.
func ApprovalView(r *approval.Request) Approval {
	v := Approval{
		ID: r.ID, Status: string(r.Status), Tool: r.Tool, Upstream: r.Upstream, Arguments: approval.Preview(r.Arguments),
		Agent: r.Agent, User: r.User, Task: r.Task, SessionID: r.SessionID, Reason: r.Reason, Rules: r.Rules,
		PolicyVersion: r.PolicyVersion, Risk: r.Risk, RiskFactors: r.RiskFactors, Explanation: r.Explanation, Undo: r.Undo,
		Required: r.Required, DeniedBy: r.DeniedBy, DenyCode: r.DenyCode, DenyText: r.DenyText,
		CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, DecidedAt: r.DecidedAt, UsedAt: r.UsedAt,
	}
	for _, a := range r.Approvals {
		v.Approvals = append(v.Approvals, Verdict{By: a.By, At: a.At})
	}
	return v
}

func (a *server) approvalRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/approvals", a.needApprovals(a.listApprovals))
	mux.HandleFunc("GET /v1/approvals/stats", a.needApprovals(a.approvalStats))
	mux.HandleFunc("GET /v1/approvals/{id}", a.needApprovals(a.showApproval))
	mux.HandleFunc("POST /v1/approvals/{id}/approve", a.needApprovals(a.decide(true)))
	mux.HandleFunc("POST /v1/approvals/{id}/deny", a.needApprovals(a.decide(false)))
}

func (a *server) needApprovals(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.opts.Approvals == nil {
			a.fail(w, r, http.StatusNotImplemented, "approvals are not enabled in this gateway", nil)
			return
		}
		h(w, r)
	}
}

func (a *server) listApprovals(w http.ResponseWriter, r *http.Request) {
	f := approval.Filter{Tool: r.URL.Query().Get("tool")}
	switch st := r.URL.Query().Get("status"); st {
	case "", "pending":
		f.Status = approval.StatusPending
	case "all":
	case string(approval.StatusApproved), string(approval.StatusDenied), string(approval.StatusExpired), string(approval.StatusUsed):
		f.Status = approval.Status(st)
	default:
		a.fail(w, r, http.StatusBadRequest, fmt.Sprintf("status must be pending, approved, denied, expired, used or all, got %q", truncate(st, 32)), nil)
		return
	}
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			a.fail(w, r, http.StatusBadRequest, "limit must be an integer from 1 to 1000", nil)
			return
		}
		f.Limit = n
	}
	list, err := a.opts.Approvals.List(r.Context(), f)
	if err != nil {
		a.fail(w, r, http.StatusInternalServerError, "the approval requests could not be read", err)
		return
	}
	out := make([]Approval, 0, len(list))
	for i := range list {
		out = append(out, ApprovalView(&list[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *server) showApproval(w http.ResponseWriter, r *http.Request) {
	req, err := a.opts.Approvals.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		a.approvalError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ApprovalView(req))
}

// decideRequest is the body of POST /v1/approvals/{id}/approve and .../deny.
type decideRequest struct {
	By     string `json:"by"`
	Reason string `json:"reason"`
	Text   string `json:"text"`
}

func (a *server) decide(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req decideRequest
		if err := decodeBody(r, &req); err != nil {
			a.badBody(w, r, `{"by": "<approver>", "reason": "<decline reason>", "text": "..."}`, err)
			return
		}
		if strings.TrimSpace(req.By) == "" {
			a.fail(w, r, http.StatusBadRequest, `"by" is required: every decision names the person who made it`, nil)
			return
		}
		var res *approval.Request
		var err error
		if approve {
			res, err = a.opts.Approvals.Approve(r.Context(), r.PathValue("id"), req.By)
		} else {
			res, err = a.opts.Approvals.Deny(r.Context(), r.PathValue("id"), req.By, req.Reason, req.Text)
		}
		if err != nil {
			a.approvalError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, ApprovalView(res))
	}
}

// approvalError answers an error of the approval manager.
func (a *server) approvalError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := DescribeApprovalError(err, a.opts.Approvals.DeclineReasons())
	if status == http.StatusInternalServerError {
		a.fail(w, r, status, msg, err)
		return
	}
	a.fail(w, r, status, msg, nil)
}

// DescribeApprovalError returns the HTTP status and the message safe to show for an error
// of the approval manager; reasons are the decline reasons configured.
func DescribeApprovalError(err error, reasons []string) (int, string) {
	switch {
	case errors.Is(err, approval.ErrNotFound):
		return http.StatusNotFound, "no approval request has that id"
	case errors.Is(err, approval.ErrNotPending):
		return http.StatusConflict, "the request is already decided: nothing was changed"
	case errors.Is(err, approval.ErrExpired):
		return http.StatusConflict, "the request has expired: nobody decided in time, so the call stays refused"
	case errors.Is(err, approval.ErrSelfApproval):
		return http.StatusForbidden, "the user a call acts for may not approve it"
	case errors.Is(err, approval.ErrSameApprover):
		return http.StatusConflict, "this call needs two different approvers, and you have already approved it"
	case errors.Is(err, approval.ErrUnknownDeclineReason):
		return http.StatusBadRequest, fmt.Sprintf("reason must be one of %s (other needs a text)", strings.Join(reasons, ", "))
	case errors.Is(err, approval.ErrInvalid):
		return http.StatusBadRequest, err.Error()
	}
	return http.StatusInternalServerError, "the decision could not be recorded"
}

func (a *server) approvalStats(w http.ResponseWriter, r *http.Request) {
	since := 24 * time.Hour
	if s := r.URL.Query().Get("since"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > 90*24*time.Hour {
			a.fail(w, r, http.StatusBadRequest, "since must be a duration from 1s to 2160h, like 24h", nil)
			return
		}
		since = d
	}
	from := time.Now().Add(-since)
	list, err := a.opts.Approvals.List(r.Context(), approval.Filter{Limit: maxStatsRequests})
	if err != nil {
		a.fail(w, r, http.StatusInternalServerError, "the approval requests could not be read", err)
		return
	}
	declines, err := a.opts.Approvals.DeclineCounts(r.Context(), from)
	if err != nil {
		a.fail(w, r, http.StatusInternalServerError, "the decline reasons could not be counted", err)
		return
	}
	rep := ApprovalStatsOf(list, from)
	rep.DeclineReasons = declines
	rep.Truncated = len(list) == maxStatsRequests && list[len(list)-1].CreatedAt.After(from)
	writeJSON(w, http.StatusOK, rep)
}

// ApprovalStatsOf computes the approval figures, by tool, of the requests made since a
// time; DeclineReasons is left to the store's exact count.
func ApprovalStatsOf(list []approval.Request, since time.Time) ApprovalReport {
	rep := ApprovalReport{Since: since}
	byTool := map[string]*ApprovalStats{}
	latencies := map[string][]float64{}
	for _, r := range list {
		if r.CreatedAt.Before(since) {
			continue
		}
		st := byTool[r.Tool]
		if st == nil {
			st = &ApprovalStats{Tool: r.Tool}
			byTool[r.Tool] = st
		}
		st.Requested++
		switch r.Status {
		case approval.StatusApproved, approval.StatusUsed:
			st.Approved++
		case approval.StatusDenied:
			st.Denied++
		case approval.StatusExpired:
			st.Expired++
		default:
			st.Pending++
		}
		if !r.DecidedAt.IsZero() {
			latencies[r.Tool] = append(latencies[r.Tool], r.DecidedAt.Sub(r.CreatedAt).Seconds())
		}
	}
	for tool, st := range byTool {
		if decided := st.Approved + st.Denied + st.Expired; decided > 0 {
			st.ApprovalRate = float64(st.Approved) / float64(decided)
		}
		if l := latencies[tool]; len(l) > 0 {
			slices.Sort(l)
			st.MedianSeconds = l[len(l)/2]
			st.P90Seconds = l[min(len(l)-1, len(l)*9/10)]
		}
		rep.Tools = append(rep.Tools, *st)
	}
	slices.SortFunc(rep.Tools, func(x, y ApprovalStats) int { return strings.Compare(x.Tool, y.Tool) })
	return rep
}

// AutonomyReport is an agent's autonomy level and its eligibility for the next one.
type AutonomyReport struct {
	Agent      string `json:"agent"`
	Configured int    `json:"configured"`
	// Level is the effective level: the configured one, or the one set while running.
	Level    int         `json:"level"`
	Enforced bool        `json:"enforced"`
	Eligible bool        `json:"eligible_for_next"`
	Criteria []Criterion `json:"criteria"`
}

// Criterion is one promotion criterion and how the agent fares.
type Criterion struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

// Errors the autonomy functions return.
var (
	ErrUnknownAgent = errors.New("no agent has that id")
	ErrBadAutonomy  = errors.New("autonomy change refused")
)

type autonomyRequest struct {
	Level  *int   `json:"level"`
	By     string `json:"by"`
	Reason string `json:"reason"`
	Force  bool   `json:"force"`
}

func (a *server) autonomyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/agents/{id}/autonomy", a.needAutonomy(a.showAutonomy))
	mux.HandleFunc("POST /v1/agents/{id}/autonomy", a.needAutonomy(a.changeAutonomy))
}

func (a *server) needAutonomy(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.opts.Autonomy == nil || a.opts.SetAutonomy == nil {
			a.fail(w, r, http.StatusNotImplemented, "autonomy levels are not wired in this gateway", nil)
			return
		}
		h(w, r)
	}
}

func (a *server) autonomyError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrUnknownAgent):
		a.fail(w, r, http.StatusNotFound, "no agent has that id", nil)
	case errors.Is(err, ErrBadAutonomy):
		a.fail(w, r, http.StatusConflict, err.Error(), nil)
	default:
		a.fail(w, r, http.StatusInternalServerError, "the agent's autonomy could not be read or changed", err)
	}
}

func (a *server) showAutonomy(w http.ResponseWriter, r *http.Request) {
	rep, err := a.opts.Autonomy(r.Context(), r.PathValue("id"))
	if err != nil {
		a.autonomyError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (a *server) changeAutonomy(w http.ResponseWriter, r *http.Request) {
	var req autonomyRequest
	if err := decodeBody(r, &req); err != nil || req.Level == nil {
		a.badBody(w, r, `{"level": 0-3, "by": "<who>", "reason": "...", "force": false}`, err)
		return
	}
	if strings.TrimSpace(req.By) == "" {
		a.fail(w, r, http.StatusBadRequest, `"by" is required: every change names the person who made it`, nil)
		return
	}
	rep, err := a.opts.SetAutonomy(r.Context(), r.PathValue("id"), *req.Level, req.By, req.Reason, req.Force)
	if err != nil {
		a.autonomyError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
