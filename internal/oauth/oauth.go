// Package oauth is the gateway's authorization server for agents: the OAuth 2.0 token
// endpoint that turns an agent's registered credential into a short-lived, task-scoped
// access token, the token exchange (RFC 8693) that lets an agent act on behalf of a user or
// hand a narrower token to a sub-agent, and the metadata MCP clients use to find it
// (RFC 8414 authorization server metadata, RFC 9728 protected resource metadata, JWKS).
//
// # Token requests
//
// POST /oauth/token, application/x-www-form-urlencoded. The client — always an agent —
// authenticates with exactly one of: HTTP Basic (client_secret_basic), client_id and
// client_secret in the body (client_secret_post), or a signed JWT assertion (private_key_jwt,
// RFC 7523) checked against its registered Ed25519 key, never accepted twice.
//
//   - grant_type=client_credentials: a token for the agent itself.
//   - grant_type=urn:ietf:params:oauth:grant-type:token-exchange with a subject_token from a
//     configured OIDC provider: a token whose subject is the user and whose actor is the
//     agent (on behalf of).
//   - the same grant with a subject_token this gateway issued: a delegated token for the
//     authenticating sub-agent, narrower than its parent in every respect.
//
// Optional parameters: scope (space-separated tool names; default every tool the agent may
// have), task (an open task of the agent's; default a new task), expires_in (seconds, up to
// the configured maximum), max_calls.
//
// # What it guarantees
//
// Tokens only narrow: the tools granted are within the agent's registered capabilities and
// what policy could ever allow it; a delegated token is within its parent's tools, expiry
// and remaining calls, with a bounded depth. A request that asks for more is refused, not
// trimmed, and audited. Every issued token and every refusal is an audit event; the client
// sees RFC 6749 error codes and a safe sentence, the audit log the precise reason.
package oauth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/identity"
)

// Grant and token type URIs.
const (
	GrantClientCredentials = "client_credentials"
	GrantTokenExchange     = "urn:ietf:params:oauth:grant-type:token-exchange"
	AssertionType          = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	TokenTypeAccessToken   = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeJWT           = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeIDToken       = "urn:ietf:params:oauth:token-type:id_token"
)

// Paths served.
const (
	TokenPath            = "/oauth/token"
	JWKSPath             = "/oauth/jwks"
	ServerMetadataPath   = "/.well-known/oauth-authorization-server"
	ResourceMetadataPath = "/.well-known/oauth-protected-resource"
)

// Agents is the agent directory.
type Agents interface {
	Agent(id string) (*identity.Agent, bool)
	VerifySecret(id, secret string) bool
	PublicKey(id string) (ed25519.PublicKey, bool)
}

// agentLoader is a directory shared with other gateway replicas: an agent registered
// through another replica is looked up in the store before its credentials are checked.
type agentLoader interface {
	Load(ctx context.Context, id string) (*identity.Agent, bool, error)
}

// Tasks is the task registry.
type Tasks interface {
	Start(ctx context.Context, rec identity.TaskRecord) (identity.TaskRecord, error)
	Get(id string) (identity.TaskRecord, bool)
	Active(id string) bool
}

// Budgets tracks call budgets of bounded tokens.
type Budgets interface {
	Use(tokenID string, n, max int64, exp time.Time) bool
	Remaining(tokenID string, max int64) int64
}

// Auditor records events.
type Auditor interface {
	Append(ctx context.Context, e *audit.Event) error
}

// Options wires the server.
type Options struct {
	// IssuerURL is the issuer (and base URL of these endpoints); Resource is the MCP URL.
	IssuerURL, Resource string
	Issuer              *identity.Issuer
	Keys                func() *identity.KeySet
	Assertions          *identity.AssertionVerifier
	// OIDC maps a trusted provider's issuer to its verifier.
	OIDC    map[string]*identity.OIDCVerifier
	Agents  Agents
	Tasks   Tasks
	Budgets Budgets
	// Tools returns the declared tools, by exposed name; Visible whether policy could ever
	// let the agent call one.
	Tools    func() []string
	Visible  func(agentID, tool string) bool
	TokenTTL time.Duration
	MaxTTL   time.Duration
	MaxDepth int
	Audit    Auditor
	Logger   *slog.Logger
	Now      func() time.Time
	// Killed, if set, returns the scope of an engaged kill switch covering the agents,
	// user and task of a token about to be issued; no token is issued then. Revoked
	// reports whether a parent token was issued before a kill covering it.
	Killed  func(chain []string, user, task string) (scope string, killed bool)
	Revoked func(c *identity.Claims) bool
}

// Server serves the OAuth endpoints.
type Server struct {
	o Options
}

// New returns the server.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Server{o: o}
}

// Register adds the endpoints to mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST "+TokenPath, s.token)
	mux.HandleFunc("GET "+JWKSPath, s.jwks)
	mux.HandleFunc("GET "+ServerMetadataPath, s.serverMetadata)
	mux.HandleFunc("GET "+ResourceMetadataPath, s.resourceMetadata)
	// RFC 9728 §3.1: the metadata of a resource with a path lives under that path too.
	if u, err := url.Parse(s.o.Resource); err == nil && u.Path != "" && u.Path != "/" {
		mux.HandleFunc("GET "+ResourceMetadataPath+u.Path, s.resourceMetadata)
	}
}

// ResourceMetadataURL is where the protected resource metadata is, for WWW-Authenticate.
func (s *Server) ResourceMetadataURL() string {
	return strings.TrimRight(s.o.IssuerURL, "/") + ResourceMetadataPath
}

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Write(s.o.Keys().JWKS(s.o.Now()))
}

func (s *Server) serverMetadata(w http.ResponseWriter, r *http.Request) {
	base := strings.TrimRight(s.o.IssuerURL, "/")
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                base,
		"token_endpoint":                        base + TokenPath,
		"jwks_uri":                              base + JWKSPath,
		"grant_types_supported":                 []string{GrantClientCredentials, GrantTokenExchange},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"EdDSA"},
		"scopes_supported":         s.o.Tools(),
		"response_types_supported": []string{},
	})
}

func (s *Server) resourceMetadata(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"resource":                 s.o.Resource,
		"authorization_servers":    []string{strings.TrimRight(s.o.IssuerURL, "/")},
		"bearer_methods_supported": []string{"header"},
		"scopes_supported":         s.o.Tools(),
		"resource_name":            "Chaperone MCP gateway",
	})
}

// tokenError is an RFC 6749 §5.2 error: code and description go to the client; reason (the
// precise cause) only to the audit log.
type tokenError struct {
	status int
	code   string
	desc   string
	reason string
}

func (e *tokenError) Error() string { return e.code + ": " + e.reason }

func fail(status int, code, desc, reason string) *tokenError {
	return &tokenError{status: status, code: code, desc: desc, reason: reason}
}

// request is one parsed token request.
type request struct {
	agent     *identity.Agent
	grant     string
	scope     []string
	task      string
	ttl       time.Duration
	maxCalls  int64
	subject   string
	subjectTy string
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	ev := audit.Event{Time: s.o.Now(), RequestID: newRequestID()}
	res, err := s.issue(r, &ev)
	if err != nil {
		var te *tokenError
		if !errors.As(err, &te) {
			te = fail(http.StatusInternalServerError, "server_error", "The token could not be issued.", err.Error())
		}
		ev.Kind, ev.Decision, ev.Reason, ev.Detail = audit.KindTokenRefused, "refused", te.code, te.reason
		if te.code == "invalid_scope" && strings.HasPrefix(te.reason, "delegation") {
			ev.Kind = audit.KindDelegationRefused
		}
		s.record(r.Context(), &ev)
		if te.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="chaperone"`)
		}
		writeJSON(w, te.status, map[string]string{"error": te.code, "error_description": te.desc})
		return
	}
	ev.Kind, ev.Decision = audit.KindTokenIssued, "allow"
	if err := s.record(r.Context(), &ev); err != nil {
		// A token whose issue is not on record is not handed out.
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable", "error_description": "The audit log cannot record the token, so it is not issued."})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) record(ctx context.Context, ev *audit.Event) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.o.Audit.Append(actx, ev); err != nil {
		s.o.Logger.ErrorContext(ctx, "audit append failed", "kind", ev.Kind, "err", err)
		return err
	}
	return nil
}

// issue authenticates the client, checks the grant and mints the token.
func (s *Server) issue(r *http.Request, ev *audit.Event) (map[string]any, error) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		return nil, fail(http.StatusBadRequest, "invalid_request", "The body must be application/x-www-form-urlencoded.", "content type "+ct)
	}
	if err := r.ParseForm(); err != nil {
		return nil, fail(http.StatusBadRequest, "invalid_request", "The body could not be read.", "parse form: "+err.Error())
	}
	for k, v := range r.PostForm {
		if len(v) > 1 {
			return nil, fail(http.StatusBadRequest, "invalid_request", fmt.Sprintf("Parameter %q is given more than once.", k), "repeated parameter "+k)
		}
	}
	agent, err := s.authenticateClient(r)
	if err != nil {
		return nil, err
	}
	ev.Agent = agent.ID
	req, err := s.parse(r, agent)
	if err != nil {
		return nil, err
	}
	now := s.o.Now()
	var claims identity.Claims
	var reserve func() error
	switch {
	case req.grant == GrantClientCredentials:
		claims, err = s.direct(r.Context(), req, "", nil, now)
	case req.subjectTy == TokenTypeAccessToken:
		claims, reserve, err = s.delegate(req, now)
	default:
		claims, err = s.onBehalf(r.Context(), req, now)
	}
	if err != nil {
		return nil, err
	}
	if s.o.Killed != nil {
		if scope, killed := s.o.Killed(claims.Chain, claims.User, claims.Task); killed {
			return nil, fail(http.StatusForbidden, "access_denied", fmt.Sprintf("A kill switch covering this token (%s) is engaged: no token is issued until an operator lifts it.", scope), "killed: "+scope)
		}
	}
	tok, err := s.o.Issuer.Mint(claims)
	if err != nil {
		return nil, fmt.Errorf("mint: %w", err)
	}
	if reserve != nil {
		if err := reserve(); err != nil {
			return nil, err
		}
	}
	minted, err := s.o.Issuer.Verify(tok)
	if err != nil {
		return nil, fmt.Errorf("verify minted token: %w", err)
	}
	ev.User, ev.Task, ev.Chain, ev.TokenID = minted.User, minted.Task, minted.Chain, minted.ID
	ev.Detail = fmt.Sprintf("tools %s; expires %s; max_calls %d; depth %d", strings.Join(minted.Tools, ","), minted.Expiry.UTC().Format(time.RFC3339), minted.MaxCalls, minted.Depth)
	res := map[string]any{
		"access_token":      tok,
		"token_type":        "Bearer",
		"expires_in":        max(int64(minted.Expiry.Sub(now).Seconds()), 1),
		"scope":             strings.Join(minted.Tools, " "),
		"task":              minted.Task,
		"issued_token_type": TokenTypeAccessToken,
	}
	return res, nil
}

// authenticateClient checks exactly one client authentication method and returns the
// agent, which must be registered and active.
func (s *Server) authenticateClient(r *http.Request) (*identity.Agent, error) {
	bad := func(reason string) error {
		return fail(http.StatusUnauthorized, "invalid_client", "Client authentication failed.", reason)
	}
	id, secret, basic := r.BasicAuth()
	postID, postSecret := r.PostFormValue("client_id"), r.PostFormValue("client_secret")
	assertion, assertionType := r.PostFormValue("client_assertion"), r.PostFormValue("client_assertion_type")
	methods := 0
	for _, used := range []bool{basic, postSecret != "", assertion != ""} {
		if used {
			methods++
		}
	}
	if methods != 1 {
		return nil, bad(fmt.Sprintf("%d client authentication methods used, want exactly 1", methods))
	}
	switch {
	case basic:
		// RFC 6749 §2.3.1: the client id and secret are form-urlencoded inside Basic.
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return nil, bad("basic credentials not form-urlencoded")
		}
		if postID != "" && postID != id {
			return nil, bad("client_id differs from the Basic user")
		}
	case postSecret != "":
		id, secret = postID, postSecret
	default:
		if assertionType != AssertionType {
			return nil, bad("client_assertion_type is not jwt-bearer")
		}
		publicKey := s.o.Agents.PublicKey
		if l, ok := s.o.Agents.(agentLoader); ok {
			publicKey = func(id string) (ed25519.PublicKey, bool) {
				if _, ok, err := l.Load(r.Context(), id); err != nil || !ok {
					return nil, false
				}
				return s.o.Agents.PublicKey(id)
			}
		}
		agentID, err := s.o.Assertions.Verify(assertion, publicKey)
		if err != nil {
			return nil, bad("client assertion: " + err.Error())
		}
		if postID != "" && postID != agentID {
			return nil, bad("client_id differs from the assertion's subject")
		}
		id = agentID
	}
	if l, ok := s.o.Agents.(agentLoader); ok && (basic || postSecret != "") {
		if _, _, err := l.Load(r.Context(), id); err != nil {
			return nil, fail(http.StatusServiceUnavailable, "temporarily_unavailable", "The agent directory cannot be read; try again.", err.Error())
		}
	}
	// A secret method checks the secret whatever it is — an empty one included.
	if (basic || postSecret != "") && !s.o.Agents.VerifySecret(id, secret) {
		return nil, bad("wrong secret, unknown agent or agent not active")
	}
	a, ok := s.o.Agents.Agent(id)
	if !ok || a.Status != identity.StatusActive {
		return nil, bad("agent unknown or not active")
	}
	return a, nil
}

func (s *Server) parse(r *http.Request, agent *identity.Agent) (*request, error) {
	invalid := func(desc string) error { return fail(http.StatusBadRequest, "invalid_request", desc, desc) }
	req := &request{agent: agent, grant: r.PostFormValue("grant_type"), task: r.PostFormValue("task")}
	switch req.grant {
	case GrantClientCredentials:
	case GrantTokenExchange:
		req.subject, req.subjectTy = r.PostFormValue("subject_token"), r.PostFormValue("subject_token_type")
		if req.subject == "" {
			return nil, invalid("subject_token is required for token exchange.")
		}
		if !slices.Contains([]string{TokenTypeAccessToken, TokenTypeJWT, TokenTypeIDToken}, req.subjectTy) {
			return nil, invalid("subject_token_type must be access_token (a token of this gateway), jwt or id_token (a user's token).")
		}
		if r.PostFormValue("actor_token") != "" {
			return nil, invalid("actor_token is not supported: the authenticated client is the actor.")
		}
	case "":
		return nil, invalid("grant_type is required.")
	default:
		return nil, fail(http.StatusBadRequest, "unsupported_grant_type", "Supported grants: client_credentials and token exchange.", "grant "+req.grant)
	}
	if sc := strings.TrimSpace(r.PostFormValue("scope")); sc != "" {
		req.scope = strings.Fields(sc)
		if len(req.scope) > 256 {
			return nil, invalid("scope names more than 256 tools.")
		}
	}
	if v := r.PostFormValue("expires_in"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		// Compare in seconds: n * time.Second overflows for large n.
		if err != nil || n <= 0 || n > int64(s.o.MaxTTL/time.Second) {
			return nil, fail(http.StatusBadRequest, "invalid_request", fmt.Sprintf("expires_in must be between 1 and %d seconds.", int64(s.o.MaxTTL.Seconds())), "expires_in "+v)
		}
		req.ttl = time.Duration(n) * time.Second
	}
	if v := r.PostFormValue("max_calls"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n > 1_000_000_000 {
			return nil, invalid("max_calls must be between 1 and 1000000000.")
		}
		req.maxCalls = n
	}
	return req, nil
}

// grantTools returns the tools a token may carry for the agent: the requested ones (every
// one must be a declared tool within the agent's capabilities), or all such tools; then
// those policy could ever allow it.
func (s *Server) grantTools(agent *identity.Agent, requested []string) ([]string, error) {
	declared := s.o.Tools()
	if len(requested) == 0 {
		for _, t := range declared {
			if agent.MayHave(t) {
				requested = append(requested, t)
			}
		}
	}
	var out []string
	for _, t := range requested {
		if !slices.Contains(declared, t) {
			return nil, fail(http.StatusBadRequest, "invalid_scope", fmt.Sprintf("There is no tool %q.", truncate(t, 64)), "unknown tool "+truncate(t, 64))
		}
		if !agent.MayHave(t) {
			return nil, fail(http.StatusBadRequest, "invalid_scope", fmt.Sprintf("Tool %q is not among the agent's capabilities.", t), "tool outside capabilities: "+t)
		}
		if s.o.Visible(agent.ID, t) && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, fail(http.StatusBadRequest, "invalid_scope", "No requested tool may be granted to this agent.", "empty grant after capabilities and policy")
	}
	slices.Sort(out)
	return out, nil
}

// direct builds the claims of a token for the agent itself or, with user set, on behalf of
// that user.
func (s *Server) direct(ctx context.Context, req *request, user string, groups []string, now time.Time) (identity.Claims, error) {
	requested := req.scope
	if t, ok := s.o.Tasks.Get(req.task); ok && len(requested) == 0 && t.Agent == req.agent.ID {
		requested = t.Tools // another token for an open task: by default, the task's tools
	}
	tools, err := s.grantTools(req.agent, requested)
	if err != nil {
		return identity.Claims{}, err
	}
	ttl := s.o.TokenTTL
	if req.ttl > 0 {
		ttl = req.ttl
	}
	exp := now.Add(ttl)
	task, err := s.task(ctx, req, user, tools, exp)
	if err != nil {
		return identity.Claims{}, err
	}
	if task.ExpiresAt.Before(exp) {
		exp = task.ExpiresAt
	}
	for _, t := range tools {
		if !slices.Contains(task.Tools, t) {
			return identity.Claims{}, fail(http.StatusBadRequest, "invalid_scope", fmt.Sprintf("Tool %q is outside the task's tools.", t), "tool outside task: "+t)
		}
	}
	subject := req.agent.ID
	if user != "" {
		subject = user
	}
	return identity.Claims{
		Subject: subject, Agent: req.agent.ID, Chain: []string{req.agent.ID}, User: user, UserGroups: groups,
		Task: task.ID, Tools: tools, MaxCalls: req.maxCalls, Expiry: exp,
	}, nil
}

// task returns the open task named in the request, which must be the agent's and the
// user's, or starts a new one.
func (s *Server) task(ctx context.Context, req *request, user string, tools []string, exp time.Time) (identity.TaskRecord, error) {
	if req.task == "" {
		t, err := s.o.Tasks.Start(ctx, identity.TaskRecord{Agent: req.agent.ID, User: user, Tools: tools, ExpiresAt: exp})
		if err != nil {
			return t, fmt.Errorf("start task: %w", err)
		}
		return t, nil
	}
	t, ok := s.o.Tasks.Get(req.task)
	if !ok || t.Agent != req.agent.ID || t.User != user || !s.o.Tasks.Active(req.task) {
		return t, fail(http.StatusBadRequest, "invalid_grant", "The task is unknown, ended, expired, or not this agent's.", "task "+truncate(req.task, 64)+" not usable")
	}
	return t, nil
}

// onBehalf exchanges a user's token from a trusted identity provider.
func (s *Server) onBehalf(ctx context.Context, req *request, now time.Time) (identity.Claims, error) {
	iss, err := unverifiedIssuer(req.subject)
	if err != nil {
		return identity.Claims{}, fail(http.StatusBadRequest, "invalid_grant", "The subject token is not a JWT.", "subject token: "+err.Error())
	}
	v, ok := s.o.OIDC[iss]
	if !ok {
		return identity.Claims{}, fail(http.StatusBadRequest, "invalid_grant", "The subject token's issuer is not trusted.", "untrusted issuer "+truncate(iss, 128))
	}
	u, err := v.Verify(ctx, req.subject)
	if err != nil {
		return identity.Claims{}, fail(http.StatusBadRequest, "invalid_grant", "The subject token is not valid.", "user token: "+err.Error())
	}
	user := u.Subject
	if u.Email != "" {
		user = u.Email
	}
	return s.direct(ctx, req, user, u.Groups, now)
}

// delegate derives a narrower token for the authenticating sub-agent from a token of this
// gateway.
func (s *Server) delegate(req *request, now time.Time) (identity.Claims, func() error, error) {
	parent, err := s.o.Issuer.Verify(req.subject)
	if err != nil {
		return identity.Claims{}, nil, fail(http.StatusBadRequest, "invalid_grant", "The subject token is not a valid token of this gateway.", "parent token: "+err.Error())
	}
	for _, id := range parent.Chain {
		if a, ok := s.o.Agents.Agent(id); !ok || a.Status != identity.StatusActive {
			return identity.Claims{}, nil, fail(http.StatusBadRequest, "invalid_grant", "The subject token's agents are not all active.", "parent chain agent "+id+" not active")
		}
	}
	if !s.o.Tasks.Active(parent.Task) {
		return identity.Claims{}, nil, fail(http.StatusBadRequest, "invalid_grant", "The subject token's task has ended.", "parent task "+parent.Task+" not active")
	}
	if s.o.Revoked != nil && s.o.Revoked(parent) {
		return identity.Claims{}, nil, fail(http.StatusBadRequest, "invalid_grant", "The subject token was revoked by a kill switch.", "parent token revoked")
	}
	if req.task != "" && req.task != parent.Task {
		return identity.Claims{}, nil, fail(http.StatusBadRequest, "invalid_scope", "A delegated token stays in its parent's task.", "delegation to another task")
	}
	remaining := s.o.Budgets.Remaining(parent.ID, parent.MaxCalls)
	child, err := identity.Delegate(parent, remaining, identity.DelegationRequest{
		Agent: req.agent.ID, Capabilities: req.agent.Capabilities, Tools: req.scope, TTL: req.ttl, MaxCalls: req.maxCalls,
	}, s.o.MaxDepth, now)
	if err != nil {
		var we *identity.WideningError
		if errors.As(err, &we) {
			return identity.Claims{}, nil, fail(http.StatusBadRequest, "invalid_scope", "A delegated token can only narrow its parent: "+we.What+".", "delegation widening: "+err.Error())
		}
		// Anything else is about the parent itself (say, expired within the leeway).
		return identity.Claims{}, nil, fail(http.StatusBadRequest, "invalid_grant", "The subject token cannot be delegated.", "delegation: "+err.Error())
	}
	// Tools policy hides from the sub-agent: refused when asked for by name, left out of a
	// default grant (as for a direct token).
	tools := child.Tools[:0:0]
	for _, t := range child.Tools {
		switch {
		case s.o.Visible(req.agent.ID, t):
			tools = append(tools, t)
		case len(req.scope) > 0:
			return identity.Claims{}, nil, fail(http.StatusBadRequest, "invalid_scope", fmt.Sprintf("Tool %q may not be granted to this agent.", t), "delegation: policy hides "+t+" from "+req.agent.ID)
		}
	}
	if len(tools) == 0 {
		return identity.Claims{}, nil, fail(http.StatusBadRequest, "invalid_scope", "No tool of the parent may be granted to this agent.", "delegation: empty grant after policy")
	}
	child.Tools = tools
	// The child's calls come out of the parent's budget. They are reserved only once
	// the child token exists, so a refused delegation costs the parent nothing.
	reserve := func() error {
		if parent.MaxCalls > 0 && !s.o.Budgets.Use(parent.ID, child.MaxCalls, parent.MaxCalls, parent.Expiry) {
			return fail(http.StatusBadRequest, "invalid_scope", "The parent token has not enough calls left.", "delegation widening: max_calls over parent's remainder")
		}
		return nil
	}
	return child, reserve, nil
}

// unverifiedIssuer reads the iss claim of a JWT without verifying it, to choose the
// verifier; the verifier then checks everything, iss included.
func unverifiedIssuer(raw string) (string, error) {
	if len(raw) > 16<<10 {
		return "", errors.New("token too large")
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "", errors.New("not three parts")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", errors.New("payload not base64url")
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &c); err != nil || c.Iss == "" {
		return "", errors.New("no issuer")
	}
	return c.Iss, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	return "tok_" + base64.RawURLEncoding.EncodeToString(b[:])
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
