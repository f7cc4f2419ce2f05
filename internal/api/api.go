// Package api is the admin HTTP API that the command line (and later the console) uses. It
// listens apart from agents and every request needs the admin bearer token.
//
// Routes (JSON in and out):
//
//	GET  /v1/status                  version, policy version, sessions, upstream readiness
//	GET  /v1/tools                   the registry: every declared tool and its state
//	POST /v1/tools/{name}/approve    pin the definition the upstream offers now  {"by": "alice", "hash": "sha256:…"}
//	GET  /v1/tools/{name}/diff       the live definition against the approved one, field by field
//	POST /v1/policy/reload           recompile the policy files; the old policy stays on error
//	GET  /v1/policy/shadow           per shadow rule: calls it would have decided and changed
//	GET  /v1/agents                  every agent (no secrets; a key fingerprint at most)
//	POST /v1/agents                  register an agent; a generated secret is shown only here
//	GET  /v1/agents/{id}             one agent
//	POST /v1/agents/{id}/suspend     {"by": "alice", "reason": "..."}; also resume and revoke
//	GET  /v1/tasks[?all=1]           open tasks; with all=1 also those closed within a day
//	POST /v1/tasks/{id}/end          end a task: every token bound to it stops working
//	GET  /v1/keys                    the token signing keys
//	POST /v1/keys/rotate             start signing with a new key
//	GET  /v1/approvals[?status=pending|approved|denied|expired|used|all&tool=&limit=]
//	                                 approval requests, newest first (default: pending)
//	GET  /v1/approvals/stats[?since=24h]   per tool: requests, approval rate, latency;
//	                                 decline reasons counted
//	GET  /v1/approvals/{id}          one request: the preview approvers decide on
//	GET  /v1/agents/{id}/autonomy    the agent's level and eligibility for the next one
//	POST /v1/agents/{id}/autonomy    {"level": 2, "by": "alice", "reason": "...", "force": false}
//	POST /v1/approvals/{id}/approve  {"by": "alice"}
//	POST /v1/approvals/{id}/deny     {"by": "alice", "reason": "wrong_recipient", "text": "..."}
//	POST /v1/kills                   pull a kill switch {"scope": "agent:x", "by": "alice", "reason": "..."};
//	                                 returns once the calls it cancelled have ended
//	POST /v1/kills/lift              lift it {"scope": "agent:x", "by": "alice", "reason": "..."}
//	GET  /v1/kills[?all=1]           engaged kill switches; with all=1 every one ever pulled
//	GET  /v1/breakers                circuit breakers that are not closed
//	GET  /v1/breakers/{agent}        one agent's breaker, with its triggers' totals
//	POST /v1/breakers/{agent}/trip   trip it by hand {"by": "alice", "reason": "..."}; also reset
//	GET  /v1/tasks/{id}/budget       a task's steps, spend and tokens against their bounds
//	GET  /v1/agents/{id}/baseline    what the agent's learned baseline holds
//	GET  /v1/secrets                 every secret's name, key id, version and times; never a value
//	GET  /v1/secrets/{name}          one secret, without its value
//	PUT  /v1/secrets/{name}          store a secret {"value": "...", "description": "..."}; the
//	                                 value is write-only: no route returns it
//	DELETE /v1/secrets/{name}        delete a secret
//	POST /v1/secret-keys/rotate      re-encrypt every secret under the primary key
//
// Routes whose component is not wired answer 501.
//
// Errors are {"error": "<safe message>", "request_id": "..."}; causes are logged with the
// request id, never sent.
package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/pipeline"
	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/registry"
)

// Status is the gateway's state.
type Status struct {
	Version       string          `json:"version"`
	PolicyVersion string          `json:"policy_version"`
	Sessions      int             `json:"sessions"`
	Upstreams     map[string]bool `json:"upstreams"`
}

// Tool is one registry entry as the API shows it.
type Tool struct {
	Name         string `json:"name"`
	Upstream     string `json:"upstream"`
	UpstreamName string `json:"upstream_name"`
	Class        string `json:"class"`
	Status       string `json:"status"`
	Reason       string `json:"reason,omitempty"`
	Hash         string `json:"hash,omitempty"`
	LiveHash     string `json:"live_hash,omitempty"`
	// Environment is the environment of the tool's upstream ("" means any).
	Environment string `json:"environment,omitempty"`
	// Finding is what the review of the live definition found.
	Finding string `json:"finding,omitempty"`
	// Manifest describes the signed manifest that governs the tool, if any.
	Manifest *ToolManifest `json:"manifest,omitempty"`
}

// ToolManifest is what a tool's signed manifest says of it, in brief.
type ToolManifest struct {
	Signer  string `json:"signer"`
	Version string `json:"version,omitempty"`
	Owner   string `json:"owner,omitempty"`
	Path    string `json:"path"`
	Digest  string `json:"digest"`
}

// Registry is what the API needs of the tool registry.
type Registry interface {
	Tools() []*registry.Tool
	Approve(ctx context.Context, name, by string, opts registry.ApproveOptions) (*registry.Tool, error)
	Compare(ctx context.Context, name string) (*registry.Comparison, error)
}

// Options wires the API.
type Options struct {
	Token    string
	Registry Registry
	Reload   func(ctx context.Context) (string, error)
	Policy   func() *policy.Policy
	Status   func() Status
	// Shadow reports the shadow rules' counts; nil answers 501.
	Shadow func() (string, []pipeline.ShadowCount)
	Logger *slog.Logger
	// Agents is the agent directory; nil answers 501 on /v1/agents.
	Agents *identity.Directory
	// Tasks are the tasks tokens are bound to; nil answers 501 on /v1/tasks.
	Tasks *identity.Tasks
	// RotateKeys starts signing tokens with a new key and returns its kid; nil answers 501.
	RotateKeys func(ctx context.Context) (string, error)
	// Keys lists the signing keys; nil answers 501.
	Keys func() []KeyInfo
	// Approvals is the approval manager; nil answers 501 on /v1/approvals.
	Approvals Approvals
	// Autonomy reports an agent's autonomy level and eligibility; SetAutonomy changes the
	// level (errors: ErrUnknownAgent, ErrBadAutonomy). Nil answers 501.
	Autonomy    func(ctx context.Context, id string) (AutonomyReport, error)
	SetAutonomy func(ctx context.Context, id string, level int, by, reason string, force bool) (AutonomyReport, error)
	// Containment is kill switches, breakers, budgets and baselines; nil answers 501.
	Containment Containment
	// Secrets is the secret vault; nil answers 501 on /v1/secrets and /v1/secret-keys.
	Secrets SecretsAdmin
}

// New returns the API handler.
func New(opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	a := &server{opts: opts, token: sha256.Sum256([]byte(opts.Token))}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", a.status)
	mux.HandleFunc("GET /v1/tools", a.tools)
	mux.HandleFunc("POST /v1/tools/{name}/approve", a.approve)
	mux.HandleFunc("GET /v1/tools/{name}/diff", a.diff)
	mux.HandleFunc("POST /v1/policy/reload", a.reload)
	mux.HandleFunc("GET /v1/policy/shadow", a.shadow)
	a.identityRoutes(mux)
	a.approvalRoutes(mux)
	a.autonomyRoutes(mux)
	a.containRoutes(mux)
	a.secretRoutes(mux)
	return a.auth(mux)
}

type server struct {
	opts  Options
	token [32]byte
}

func (a *server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		h := sha256.Sum256([]byte(got))
		if !ok || !strings.EqualFold(scheme, "Bearer") || got == "" || subtle.ConstantTimeCompare(h[:], a.token[:]) != 1 {
			a.fail(w, r, http.StatusUnauthorized, "unauthenticated: the admin token is required", nil)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, bodyLimit(r))
		next.ServeHTTP(w, r)
	})
}

func (a *server) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.opts.Status())
}

func (a *server) tools(w http.ResponseWriter, r *http.Request) {
	out := []Tool{}
	for _, t := range a.opts.Registry.Tools() {
		out = append(out, toolView(t))
	}
	writeJSON(w, http.StatusOK, out)
}

func toolView(t *registry.Tool) Tool {
	v := Tool{Name: t.Name, Upstream: t.Upstream, UpstreamName: t.UpstreamName, Class: t.Class,
		Status: string(t.Status), Reason: t.Reason, Hash: t.Hash, LiveHash: t.LiveHash,
		Environment: t.Environment, Finding: t.Finding}
	if m := t.Manifest; m != nil {
		v.Manifest = &ToolManifest{Signer: m.Signer, Version: m.Version, Owner: m.Owner, Path: m.Path, Digest: m.Digest}
	}
	return v
}

func (a *server) diff(w http.ResponseWriter, r *http.Request) {
	c, err := a.opts.Registry.Compare(r.Context(), r.PathValue("name"))
	switch {
	case errors.Is(err, registry.ErrUnknownTool):
		a.fail(w, r, http.StatusNotFound, "no declared tool has that name", err)
	case err != nil:
		a.fail(w, r, http.StatusInternalServerError, "the tool's definitions could not be compared", err)
	default:
		writeJSON(w, http.StatusOK, c)
	}
}

// ApproveRequest is the body of POST /v1/tools/{name}/approve.
type ApproveRequest struct {
	// By names who approves (1 to 128 characters).
	By string `json:"by"`
	// Hash, if set, is the live hash the approver reviewed: the approval fails if the
	// upstream offers another definition now.
	Hash string `json:"hash,omitempty"`
	// AcceptFindings approves a definition the review flagged.
	AcceptFindings bool `json:"accept_findings,omitempty"`
}

func (a *server) approve(w http.ResponseWriter, r *http.Request) {
	var body ApproveRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.By == "" || len(body.By) > 128 || len(body.Hash) > 128 {
		a.fail(w, r, http.StatusBadRequest, `body must be {"by": "<who approves, 1 to 128 characters>", "hash": "<the reviewed live hash, optional>", "accept_findings": false}`, err)
		return
	}
	t, err := a.opts.Registry.Approve(r.Context(), r.PathValue("name"), "operator:"+body.By,
		registry.ApproveOptions{Hash: body.Hash, AcceptFindings: body.AcceptFindings})
	switch {
	case errors.Is(err, registry.ErrUnknownTool):
		a.fail(w, r, http.StatusNotFound, "no declared tool has that name", err)
	case errors.Is(err, registry.ErrNothingToApprove):
		a.fail(w, r, http.StatusConflict, "the tool's upstream has not offered a definition yet", err)
	case errors.Is(err, registry.ErrDefinitionChanged), errors.Is(err, registry.ErrFindings),
		errors.Is(err, registry.ErrManifestMismatch), errors.Is(err, registry.ErrUnsigned):
		// The message names hashes and review findings: what the operator needs, no secret.
		a.fail(w, r, http.StatusConflict, "not approved: "+err.Error(), err)
	case err != nil && t != nil:
		a.fail(w, r, http.StatusUnprocessableEntity, "the definition was pinned but cannot be enforced: "+t.Reason, err)
	case err != nil:
		a.fail(w, r, http.StatusInternalServerError, "approval could not be recorded", err)
	default:
		writeJSON(w, http.StatusOK, toolView(t))
	}
}

// ShadowReport is what the shadow rules of the policy in force would have done.
type ShadowReport struct {
	PolicyVersion string                 `json:"policy_version"`
	Rules         []pipeline.ShadowCount `json:"rules"`
}

func (a *server) shadow(w http.ResponseWriter, r *http.Request) {
	if a.opts.Shadow == nil {
		a.fail(w, r, http.StatusNotImplemented, "shadow statistics are not available on this gateway", nil)
		return
	}
	v, rules := a.opts.Shadow()
	writeJSON(w, http.StatusOK, ShadowReport{PolicyVersion: v, Rules: rules})
}

func (a *server) reload(w http.ResponseWriter, r *http.Request) {
	v, err := a.opts.Reload(r.Context())
	if err != nil {
		// Policy errors name files, rules and lines the operator wrote: safe and needed here.
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error(), "policy_version": a.opts.Policy().Version()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"policy_version": v})
}

func (a *server) fail(w http.ResponseWriter, r *http.Request, status int, msg string, cause error) {
	var b [8]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	if cause != nil {
		a.opts.Logger.WarnContext(r.Context(), "admin request failed", "request_id", id, "path", r.URL.Path, "status", status, "err", cause)
	}
	writeJSON(w, status, map[string]string{"error": msg, "request_id": id})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
