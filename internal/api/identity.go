package api

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/internal/identity"
)

// Agent is one agent as the API shows it: never a secret, at most a key fingerprint.
type Agent struct {
	ID           string            `json:"id"`
	Owner        string            `json:"owner"`
	Purpose      string            `json:"purpose,omitempty"`
	Environment  string            `json:"environment"`
	Capabilities []string          `json:"capabilities"`
	Autonomy     int               `json:"autonomy"`
	Labels       map[string]string `json:"labels,omitempty"`
	Status       string            `json:"status"`
	StatusReason string            `json:"status_reason,omitempty"`
	// Source is "registry" for an agent registered through the API, "config" for one
	// declared in the configuration (read-only here).
	Source    string `json:"source"`
	HasSecret bool   `json:"has_secret"`
	// KeyFingerprint is "sha256:<hex>" of the raw Ed25519 public key, if the agent has one.
	KeyFingerprint string    `json:"key_fingerprint,omitempty"`
	CreatedAt      time.Time `json:"created_at,omitzero"`
	UpdatedAt      time.Time `json:"updated_at,omitzero"`
}

// RegisteredAgent answers a registration: the agent and, when one was asked for, its
// client secret. The secret is shown this once; only its hash is kept.
type RegisteredAgent struct {
	Agent
	Secret string `json:"secret,omitempty"`
}

// Task is one task as the API shows it.
type Task struct {
	ID        string    `json:"id"`
	Agent     string    `json:"agent"`
	User      string    `json:"user,omitempty"`
	Tools     []string  `json:"tools"`
	State     string    `json:"state"` // open, ended or expired
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
	EndedBy   string    `json:"ended_by,omitempty"`
	EndReason string    `json:"end_reason,omitempty"`
}

// KeyInfo describes a token signing key, never its private part.
type KeyInfo struct {
	ID      string    `json:"kid"`
	Created time.Time `json:"created"`
	Retired time.Time `json:"retired,omitzero"` // zero while the key signs
}

// registerRequest is the body of POST /v1/agents.
type registerRequest struct {
	ID           string            `json:"id"`
	Owner        string            `json:"owner"`
	Purpose      string            `json:"purpose"`
	Environment  string            `json:"environment"`
	Capabilities []string          `json:"capabilities"`
	Autonomy     int               `json:"autonomy"`
	Labels       map[string]string `json:"labels"`
	// PublicKey is the base64 (standard or URL alphabet, padded or not) of the raw 32-byte
	// Ed25519 key, or a PEM "PUBLIC KEY" block.
	PublicKey  string `json:"public_key"`
	WithSecret bool   `json:"with_secret"`
	// By names who registers the agent, for the audit log; default "admin-api".
	By string `json:"by"`
}

// actionRequest is the body of the agent status and task end routes.
type actionRequest struct {
	By     string `json:"by"`
	Reason string `json:"reason"`
}

func (a *server) identityRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/agents", a.needAgents(a.listAgents))
	mux.HandleFunc("POST /v1/agents", a.needAgents(a.registerAgent))
	mux.HandleFunc("GET /v1/agents/{id}", a.needAgents(a.showAgent))
	mux.HandleFunc("POST /v1/agents/{id}/suspend", a.needAgents(a.setStatus(identity.StatusSuspended)))
	mux.HandleFunc("POST /v1/agents/{id}/resume", a.needAgents(a.setStatus(identity.StatusActive)))
	mux.HandleFunc("POST /v1/agents/{id}/revoke", a.needAgents(a.setStatus(identity.StatusRevoked)))
	mux.HandleFunc("GET /v1/tasks", a.needTasks(a.listTasks))
	mux.HandleFunc("POST /v1/tasks/{id}/end", a.needTasks(a.endTask))
	mux.HandleFunc("GET /v1/keys", a.listKeys)
	mux.HandleFunc("POST /v1/keys/rotate", a.rotateKeys)
}

func (a *server) needAgents(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.opts.Agents == nil {
			a.fail(w, r, http.StatusNotImplemented, "the agent directory is not enabled in this gateway", nil)
			return
		}
		h(w, r)
	}
}

func (a *server) needTasks(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.opts.Tasks == nil {
			a.fail(w, r, http.StatusNotImplemented, "tasks are not enabled in this gateway", nil)
			return
		}
		h(w, r)
	}
}

// decodeBody decodes exactly one JSON object with only known fields.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// badBody answers a body that is not the JSON expected; JSON errors name the field
// or offset, never more than the client sent.
func (a *server) badBody(w http.ResponseWriter, r *http.Request, shape string, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		a.fail(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("body exceeds %d bytes", mbe.Limit), err)
		return
	}
	msg := "body must be " + shape
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) && ute.Field != "" {
		msg = fmt.Sprintf("%s: wrong type for %q", msg, ute.Field)
	} else if err != nil && strings.HasPrefix(err.Error(), "json: unknown field ") {
		msg = fmt.Sprintf("%s: %s", msg, strings.TrimPrefix(err.Error(), "json: "))
	}
	a.fail(w, r, http.StatusBadRequest, msg, err)
}

// AgentView is an agent as the API shows it: never a secret.
func AgentView(rec identity.AgentRecord) Agent {
	v := Agent{
		ID: rec.Agent.ID, Owner: rec.Agent.Owner, Purpose: rec.Agent.Purpose, Environment: rec.Agent.Environment,
		Capabilities: rec.Agent.Capabilities, Autonomy: rec.Agent.Autonomy, Labels: rec.Agent.Labels,
		Status: string(rec.Agent.Status), StatusReason: rec.StatusReason, Source: "registry",
		HasSecret: rec.SecretSHA256 != "", CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt,
	}
	if v.Capabilities == nil {
		v.Capabilities = []string{}
	}
	if rec.Declared {
		v.Source = "config"
	}
	if rec.PublicKey != nil {
		sum := sha256.Sum256(rec.PublicKey)
		v.KeyFingerprint = "sha256:" + hex.EncodeToString(sum[:])
	}
	return v
}

func (a *server) listAgents(w http.ResponseWriter, r *http.Request) {
	out := []Agent{}
	for _, rec := range a.opts.Agents.List() {
		out = append(out, AgentView(rec))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *server) showAgent(w http.ResponseWriter, r *http.Request) {
	rec, ok := a.opts.Agents.Record(r.PathValue("id"))
	if !ok {
		a.fail(w, r, http.StatusNotFound, "no agent has that id", nil)
		return
	}
	writeJSON(w, http.StatusOK, AgentView(rec))
}

func (a *server) registerAgent(w http.ResponseWriter, r *http.Request) {
	var req registerRequest
	if err := decodeBody(r, &req); err != nil {
		a.badBody(w, r, "an agent: {id, owner, purpose, environment, capabilities, autonomy, labels, public_key, with_secret, by}", err)
		return
	}
	spec := identity.AgentSpec{
		Agent: identity.Agent{
			ID: req.ID, Owner: req.Owner, Purpose: req.Purpose, Environment: req.Environment,
			Capabilities: req.Capabilities, Autonomy: req.Autonomy, Labels: req.Labels,
		},
		WithSecret: req.WithSecret,
	}
	if req.PublicKey != "" {
		k, err := parsePublicKey(req.PublicKey)
		if err != nil {
			a.fail(w, r, http.StatusBadRequest, "invalid: public_key: "+err.Error(), nil)
			return
		}
		spec.PublicKey = k
	}
	by := req.By
	if by == "" {
		by = "admin-api"
	}
	secret, err := a.opts.Agents.Register(r.Context(), spec, by)
	if err != nil {
		a.identityError(w, r, "the agent could not be registered", err)
		return
	}
	rec, _ := a.opts.Agents.Record(req.ID)
	writeJSON(w, http.StatusCreated, RegisteredAgent{Agent: AgentView(rec), Secret: secret})
}

// maxPublicKeyText bounds the public_key field: a PEM Ed25519 key is about 113 bytes.
const maxPublicKeyText = 1024

// parsePublicKey reads an Ed25519 public key: the base64 of its 32 raw bytes (either
// alphabet, padded or not), or a PEM "PUBLIC KEY" (PKIX) block. Errors are safe to show.
func parsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if len(s) > maxPublicKeyText {
		return nil, fmt.Errorf("at most %d bytes, got %d", maxPublicKeyText, len(s))
	}
	if strings.HasPrefix(s, "-----BEGIN") {
		block, rest := pem.Decode([]byte(s))
		if block == nil || block.Type != "PUBLIC KEY" || len(bytes.TrimSpace(rest)) != 0 {
			return nil, errors.New(`PEM must be exactly one "PUBLIC KEY" block`)
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, errors.New("PEM block is not a valid public key")
		}
		ek, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("must be an Ed25519 key, got %T", k)
		}
		return ek, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("must be a %d-byte Ed25519 key, got %d bytes", ed25519.PublicKeySize, len(b))
			}
			return ed25519.PublicKey(b), nil
		}
	}
	return nil, errors.New(`must be the base64 of a raw 32-byte Ed25519 key or a PEM "PUBLIC KEY" block`)
}

func (a *server) setStatus(to identity.Status) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req actionRequest
		if err := decodeBody(r, &req); err != nil {
			a.badBody(w, r, `{"by": "<who>", "reason": "<why>"}`, err)
			return
		}
		id := r.PathValue("id")
		if err := a.opts.Agents.SetStatus(r.Context(), id, to, req.Reason, req.By); err != nil {
			a.identityError(w, r, "the status change could not be recorded", err)
			return
		}
		rec, _ := a.opts.Agents.Record(id)
		writeJSON(w, http.StatusOK, AgentView(rec))
	}
}

func (a *server) taskView(t identity.TaskRecord) Task {
	v := Task{ID: t.ID, Agent: t.Agent, User: t.User, Tools: t.Tools, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt,
		EndedAt: t.EndedAt, EndedBy: t.EndedBy, EndReason: t.EndReason}
	if v.Tools == nil {
		v.Tools = []string{}
	}
	switch {
	case !t.EndedAt.IsZero():
		v.State = "ended"
	case a.opts.Tasks.Active(t.ID):
		v.State = "open"
	default:
		v.State = "expired"
	}
	return v
}

func (a *server) listTasks(w http.ResponseWriter, r *http.Request) {
	var all bool
	switch q := r.URL.Query().Get("all"); q {
	case "", "0", "false":
	case "1", "true":
		all = true
	default:
		a.fail(w, r, http.StatusBadRequest, fmt.Sprintf("all: must be 1 or 0, got %q", truncate(q, 16)), nil)
		return
	}
	out := []Task{}
	for _, t := range a.opts.Tasks.List(all) {
		out = append(out, a.taskView(t))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *server) endTask(w http.ResponseWriter, r *http.Request) {
	var req actionRequest
	if err := decodeBody(r, &req); err != nil {
		a.badBody(w, r, `{"by": "<who>", "reason": "<why, optional>"}`, err)
		return
	}
	id := r.PathValue("id")
	if err := a.opts.Tasks.End(r.Context(), id, req.By, req.Reason); err != nil {
		a.identityError(w, r, "the task could not be ended", err)
		return
	}
	t, ok := a.opts.Tasks.Get(id)
	if !ok { // ended in the store; too old to be held in memory
		writeJSON(w, http.StatusOK, Task{ID: id, State: "ended", Tools: []string{}})
		return
	}
	writeJSON(w, http.StatusOK, a.taskView(t))
}

func (a *server) listKeys(w http.ResponseWriter, r *http.Request) {
	if a.opts.Keys == nil {
		a.fail(w, r, http.StatusNotImplemented, "token signing keys are not enabled in this gateway", nil)
		return
	}
	keys := a.opts.Keys()
	if keys == nil {
		keys = []KeyInfo{}
	}
	writeJSON(w, http.StatusOK, keys)
}

func (a *server) rotateKeys(w http.ResponseWriter, r *http.Request) {
	if a.opts.RotateKeys == nil {
		a.fail(w, r, http.StatusNotImplemented, "token signing keys are not enabled in this gateway", nil)
		return
	}
	kid, err := a.opts.RotateKeys(r.Context())
	if err != nil {
		a.fail(w, r, http.StatusInternalServerError, "key rotation failed", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"kid": kid})
}

// identityError answers an error of the directory or the tasks. Validation problems and
// the sentinels are safe to show; anything else is logged and summarised by fallback.
func (a *server) identityError(w http.ResponseWriter, r *http.Request, fallback string, err error) {
	status, msg := DescribeIdentityError(err, fallback)
	a.fail(w, r, status, msg, err)
}

// DescribeIdentityError returns the HTTP status and the message safe to show for an error
// of the agent directory or the tasks: the sentinels are safe to show; anything else is
// summarised by fallback.
func DescribeIdentityError(err error, fallback string) (int, string) {
	var ve *identity.ValidationError
	switch {
	case errors.As(err, &ve):
		return http.StatusBadRequest, ve.Error()
	case errors.Is(err, identity.ErrUnknownAgent):
		return http.StatusNotFound, "no agent has that id"
	case errors.Is(err, identity.ErrUnknownTask):
		return http.StatusNotFound, "no task has that id"
	case errors.Is(err, identity.ErrAgentExists):
		return http.StatusConflict, "an agent with that id already exists (ids are never reused, even after revocation)"
	case errors.Is(err, identity.ErrAgentRevoked):
		return http.StatusConflict, "the agent is revoked: revocation is final"
	case errors.Is(err, identity.ErrStatusUnchanged):
		return http.StatusConflict, "the agent already has that status"
	case errors.Is(err, identity.ErrDeclaredAgent):
		return http.StatusConflict, "the agent is declared in the configuration: edit the configuration"
	case errors.Is(err, identity.ErrTaskEnded):
		return http.StatusConflict, "the task has already ended"
	case errors.Is(err, identity.ErrNotAudited):
		return http.StatusInternalServerError, "the change took effect, but its audit record could not be written: check the audit log"
	}
	return http.StatusInternalServerError, fallback
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
