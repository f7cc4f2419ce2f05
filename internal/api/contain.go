package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/chaperone-dev/chaperone/internal/contain"
)

// Errors a [Containment] returns besides those of package contain.
var (
	// ErrNoBreakers: no breaker triggers are configured.
	ErrNoBreakers = errors.New("no circuit breakers are configured (containment.breakers.triggers)")
	// ErrUnknownTask: no task has the id.
	ErrUnknownTask = errors.New("unknown task")
)

// KillResult is what pulling a kill switch did.
type KillResult struct {
	Kill contain.Kill `json:"kill"`
	// CancelledInFlight counts the calls in flight it cancelled; StillRunning those of them
	// still running when it returned.
	CancelledInFlight int `json:"cancelled_in_flight"`
	StillRunning      int `json:"still_running"`
	// VoidedApprovals counts the held calls' approval requests it voided.
	VoidedApprovals int `json:"voided_approvals"`
	// ContainedMicros is the time from the kill to the end of the last call it cancelled.
	ContainedMicros int64 `json:"contained_us"`
}

// Budget is a task's use of its budget; a max of 0 means no bound.
type Budget struct {
	Task      string  `json:"task"`
	Agent     string  `json:"agent"`
	Steps     int64   `json:"steps"`
	MaxSteps  int64   `json:"max_steps"`
	Spend     float64 `json:"spend"`
	MaxSpend  float64 `json:"max_spend"`
	Tokens    int64   `json:"tokens"`
	MaxTokens int64   `json:"max_tokens"`
}

// Containment is what the API needs of the brakes.
type Containment interface {
	Kill(ctx context.Context, scope, by, reason string) (KillResult, error)
	Unkill(ctx context.Context, scope, by, reason string) (contain.Kill, error)
	Kills(ctx context.Context, all bool) ([]contain.Kill, error)
	// Breakers lists the breakers that are not closed; false when none are configured.
	Breakers() ([]contain.BreakerStatus, bool)
	Breaker(agent string) (contain.BreakerStatus, bool)
	// SetBreaker trips (trip) or resets an agent's breaker.
	SetBreaker(ctx context.Context, agent string, trip bool, by, reason string) error
	Budget(task string) (Budget, error)
	Baseline(agent string) (contain.Profile, bool)
}

func (a *server) containRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/kills", a.needContain(a.kill))
	mux.HandleFunc("POST /v1/kills/lift", a.needContain(a.unkill))
	mux.HandleFunc("GET /v1/kills", a.needContain(a.kills))
	mux.HandleFunc("GET /v1/breakers", a.needContain(a.breakers))
	mux.HandleFunc("GET /v1/breakers/{agent}", a.needContain(a.breaker))
	mux.HandleFunc("POST /v1/breakers/{agent}/trip", a.needContain(a.setBreaker(true)))
	mux.HandleFunc("POST /v1/breakers/{agent}/reset", a.needContain(a.setBreaker(false)))
	mux.HandleFunc("GET /v1/tasks/{id}/budget", a.needContain(a.budget))
	mux.HandleFunc("GET /v1/agents/{id}/baseline", a.needContain(a.baseline))
}

func (a *server) needContain(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.opts.Containment == nil {
			a.fail(w, r, http.StatusNotImplemented, "containment is not wired in this gateway", nil)
			return
		}
		h(w, r)
	}
}

// actRequest is the body of every containment action.
type actRequest struct {
	Scope  string `json:"scope"`
	By     string `json:"by"`
	Reason string `json:"reason"`
}

func (a *server) actBody(w http.ResponseWriter, r *http.Request, scoped bool) (actRequest, bool) {
	var req actRequest
	err := decodeBody(r, &req)
	if err != nil || (scoped && req.Scope == "") || strings.TrimSpace(req.By) == "" || strings.TrimSpace(req.Reason) == "" {
		shape := `{"by": "<who>", "reason": "<why>"}`
		if scoped {
			shape = `{"scope": "all | agent:ID | user:ID | task:ID | tool:NAME | upstream:NAME", "by": "<who>", "reason": "<why>"}`
		}
		a.badBody(w, r, shape, err)
		return req, false
	}
	return req, true
}

// containError answers a containment error; the messages of package contain are safe:
// they name the scope, the field and the bound.
func (a *server) containError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := DescribeContainError(err)
	if status == http.StatusInternalServerError {
		a.fail(w, r, status, msg, err)
		return
	}
	a.fail(w, r, status, msg, nil)
}

// DescribeContainError returns the HTTP status and the message safe to show for an error
// of the brakes (kill switches, breakers, budgets).
func DescribeContainError(err error) (int, string) {
	switch {
	case errors.Is(err, contain.ErrInvalidScope), errors.Is(err, contain.ErrKillInput), errors.Is(err, contain.ErrBreakerInput):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, contain.ErrKillEngaged), errors.Is(err, contain.ErrBreakerOpen), errors.Is(err, contain.ErrBreakerClosed):
		return http.StatusConflict, err.Error()
	case errors.Is(err, contain.ErrNotKilled), errors.Is(err, ErrUnknownTask):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, ErrNoBreakers):
		return http.StatusNotImplemented, err.Error()
	}
	return http.StatusInternalServerError, "the containment change could not be made or recorded"
}

func (a *server) kill(w http.ResponseWriter, r *http.Request) {
	req, ok := a.actBody(w, r, true)
	if !ok {
		return
	}
	res, err := a.opts.Containment.Kill(r.Context(), req.Scope, req.By, req.Reason)
	if err != nil {
		a.containError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, res)
}

func (a *server) unkill(w http.ResponseWriter, r *http.Request) {
	req, ok := a.actBody(w, r, true)
	if !ok {
		return
	}
	k, err := a.opts.Containment.Unkill(r.Context(), req.Scope, req.By, req.Reason)
	if err != nil {
		a.containError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, k)
}

func (a *server) kills(w http.ResponseWriter, r *http.Request) {
	ks, err := a.opts.Containment.Kills(r.Context(), r.URL.Query().Get("all") == "1")
	if err != nil {
		a.fail(w, r, http.StatusInternalServerError, "the kill switches could not be read", err)
		return
	}
	if ks == nil {
		ks = []contain.Kill{}
	}
	writeJSON(w, http.StatusOK, ks)
}

func (a *server) breakers(w http.ResponseWriter, r *http.Request) {
	bs, ok := a.opts.Containment.Breakers()
	if !ok {
		a.containError(w, r, ErrNoBreakers)
		return
	}
	if bs == nil {
		bs = []contain.BreakerStatus{}
	}
	writeJSON(w, http.StatusOK, bs)
}

func (a *server) breaker(w http.ResponseWriter, r *http.Request) {
	b, ok := a.opts.Containment.Breaker(r.PathValue("agent"))
	if !ok {
		a.containError(w, r, ErrNoBreakers)
		return
	}
	writeJSON(w, http.StatusOK, b)
}

func (a *server) setBreaker(trip bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, ok := a.actBody(w, r, false)
		if !ok {
			return
		}
		agent := r.PathValue("agent")
		if err := a.opts.Containment.SetBreaker(r.Context(), agent, trip, req.By, req.Reason); err != nil {
			a.containError(w, r, err)
			return
		}
		b, _ := a.opts.Containment.Breaker(agent)
		writeJSON(w, http.StatusOK, b)
	}
}

func (a *server) budget(w http.ResponseWriter, r *http.Request) {
	b, err := a.opts.Containment.Budget(r.PathValue("id"))
	if err != nil {
		a.containError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, b)
}

func (a *server) baseline(w http.ResponseWriter, r *http.Request) {
	p, ok := a.opts.Containment.Baseline(r.PathValue("id"))
	if !ok {
		a.fail(w, r, http.StatusNotFound, "no baseline has been learned for that agent (or baselines are off)", nil)
		return
	}
	writeJSON(w, http.StatusOK, p)
}
