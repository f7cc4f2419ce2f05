// Package credential is the gateway's credential broker: it holds the credentials of the
// upstreams (API keys, passwords, OAuth clients and the tokens they obtain, decision
// receipts) and attaches, to each upstream request, the credential configured for that
// upstream and, where the credential depends on it, for the call's user. Agents never see
// a credential: they talk to the gateway, and the gateway talks to the upstream.
//
// # What it guarantees
//
//   - A credential goes only to its own upstream: [Broker.Apply] and [Broker.Transport]
//     take the upstream's name, and a call ([CallInfo]) naming another upstream is refused.
//   - Secrets never travel on errors or logs: errors and log records name a reference
//     ("secret:crm-key") or an upstream, never a value, and a token endpoint's error text
//     is shortened, stripped of control characters and passed through the [Redactor]
//     before it is shown. Token endpoint responses are parsed strictly and bounded.
//   - Tokens obtained for one user are never used for another: token exchange tokens are
//     cached per upstream, user and agent; a call without a user is refused.
//   - Token endpoints are not hammered: concurrent callers share one fetch per cache key,
//     a failed fetch is retried at most once a second per key, and redirects are not
//     followed (a token request is never re-sent elsewhere).
//   - Every credential value the broker resolves or obtains is known to its [Redactor], so
//     tool results and logs can be scrubbed of them.
//
// # What it does not do
//
//   - It does not store secrets: a [Resolver] (the daemon's, backed by the vault) returns
//     them, and is called on every [Broker.Apply] of a static credential, so a rotated
//     secret is used as soon as the resolver returns it. The resolver does its own caching.
//   - It does not decide whether a call may run; it is called after policy has allowed it.
//   - It does not protect values in memory, and the [Redactor] finds values only in the
//     forms it documents (raw, JSON-escaped, base64); values shorter than 8 bytes are not
//     redacted at all.
//   - OAuth clients authenticate with client_secret_basic only (or as public clients,
//     with client_id in the body, when no client secret is configured).
package credential

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/secrets"
)

// Credential types, as [Spec.Type].
const (
	TypeBearer                 = "bearer"
	TypeHeader                 = "header"
	TypeBasic                  = "basic"
	TypeOAuthClientCredentials = "oauth_client_credentials"
	TypeOAuthRefreshToken      = "oauth_refresh_token"
	TypeTokenExchange          = "token_exchange"
	TypeReceipt                = "receipt"
)

var types = []string{TypeBearer, TypeHeader, TypeBasic, TypeOAuthClientCredentials, TypeOAuthRefreshToken, TypeTokenExchange, TypeReceipt}

// Bounds of a [Spec] and of resolved values.
const (
	DefaultReceiptTTL = 30 * time.Second
	maxField          = 256     // client_id, username, a scope
	maxURL            = 2048    // token_url, resource
	maxAudience       = 1024    // audience
	maxPrefix         = 64      // prefix
	maxScopes         = 32      // number of scopes
	maxSecret         = 8 << 10 // a resolved secret, in bytes
	maxRef            = 4096    // a reference, in bytes
	maxSecretName     = 64      // secret:NAME
	maxEnvName        = 255     // env:VAR
)

// Resolver returns the plaintext of a secret reference ("secret:NAME", "env:VAR",
// "file:/path"); the daemon backs it with the vault. Errors name the ref, never a value.
// It is called on every use of a static credential and must be safe for concurrent use.
type Resolver func(ctx context.Context, ref string) ([]byte, error)

// Spec is one upstream's credential, as the configuration declares it. Fields that hold
// secrets (Secret, Password, ClientSecret, RefreshToken) are references, never values.
type Spec struct {
	// Type is one of bearer, header, basic, oauth_client_credentials, oauth_refresh_token,
	// token_exchange or receipt.
	Type string
	// Header is the header to set; default "Authorization".
	Header string
	// Prefix goes before the value for type header (e.g. "Token "). Every other type but
	// basic sends "Bearer <token>"; basic sends "Basic <base64>".
	Prefix string
	// Secret is the reference of the key or token for bearer and header.
	Secret string
	// Username and Password (a reference) for basic.
	Username string
	Password string
	// TokenURL, ClientID and ClientSecret (a reference) for the OAuth types. TokenURL is
	// https, or http to a loopback host. ClientSecret is required for
	// oauth_client_credentials and optional for the others (a public client).
	TokenURL     string
	ClientID     string
	ClientSecret string
	// Scopes, Audience and Resource are sent to the token endpoint when set. For
	// token_exchange, Audience (or else TokenURL) is also the aud of the subject token;
	// for receipt, Audience (or else the upstream's name) is the aud of the receipt.
	Scopes   []string
	Audience string
	Resource string
	// RefreshToken is the reference of the refresh token for oauth_refresh_token.
	RefreshToken string
	// TTL is a receipt's lifetime: 1s to 5m; 0 means 30s.
	TTL time.Duration
}

// specField is one field of a Spec, for the applicability check.
type specField struct {
	name string
	set  func(*Spec) bool
}

var specFields = []specField{
	{"header", func(s *Spec) bool { return s.Header != "" }},
	{"prefix", func(s *Spec) bool { return s.Prefix != "" }},
	{"secret", func(s *Spec) bool { return s.Secret != "" }},
	{"username", func(s *Spec) bool { return s.Username != "" }},
	{"password", func(s *Spec) bool { return s.Password != "" }},
	{"token_url", func(s *Spec) bool { return s.TokenURL != "" }},
	{"client_id", func(s *Spec) bool { return s.ClientID != "" }},
	{"client_secret", func(s *Spec) bool { return s.ClientSecret != "" }},
	{"scopes", func(s *Spec) bool { return len(s.Scopes) > 0 }},
	{"audience", func(s *Spec) bool { return s.Audience != "" }},
	{"resource", func(s *Spec) bool { return s.Resource != "" }},
	{"refresh_token", func(s *Spec) bool { return s.RefreshToken != "" }},
	{"ttl", func(s *Spec) bool { return s.TTL != 0 }},
}

// applies lists, per type, the fields it uses; any other field set is an error.
var applies = map[string][]string{
	TypeBearer:                 {"header", "secret"},
	TypeHeader:                 {"header", "prefix", "secret"},
	TypeBasic:                  {"header", "username", "password"},
	TypeOAuthClientCredentials: {"header", "token_url", "client_id", "client_secret", "scopes", "audience", "resource"},
	TypeOAuthRefreshToken:      {"header", "token_url", "client_id", "client_secret", "scopes", "audience", "resource", "refresh_token"},
	TypeTokenExchange:          {"header", "token_url", "client_id", "client_secret", "scopes", "audience", "resource"},
	TypeReceipt:                {"header", "audience", "ttl"},
}

// reserved are headers a credential may not set: they frame the request or belong to the
// MCP transport.
var reserved = []string{
	"Host", "Content-Length", "Content-Type", "Content-Encoding", "Transfer-Encoding",
	"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Upgrade", "Accept",
	"Mcp-Session-Id", "Mcp-Protocol-Version", "Last-Event-Id",
}

// Validate reports every problem of the spec at once (errors.Join of [Spec.Problems]).
func (s Spec) Validate() error { return errors.Join(s.Problems()...) }

// Problems lists every problem of the spec, each naming the field (as in the
// configuration: token_url, client_id, ...) and the bound it broke; none for a valid spec.
// It never echoes a value that should be a reference: a secret pasted in its place must
// not reach a log.
func (s Spec) Problems() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	uses, known := applies[s.Type]
	switch {
	case s.Type == "":
		bad("type", "is required, want one of %s", strings.Join(types, ", "))
	case !known:
		bad("type", "%q is not one of %s", quote(s.Type, 32), strings.Join(types, ", "))
	}
	if known {
		for _, f := range specFields {
			if f.set(&s) && !slices.Contains(uses, f.name) {
				bad(f.name, "does not apply to type %s", s.Type)
			}
		}
	}
	required := func(field, v string) bool {
		if v == "" {
			bad(field, "is required for type %s", s.Type)
			return false
		}
		return true
	}
	ref := func(field, v string) {
		if err := checkRef(v); err != nil {
			bad(field, "%v", err)
		}
	}

	if s.Header != "" {
		switch {
		case !httpguts.ValidHeaderFieldName(s.Header):
			bad("header", "%q is not a valid HTTP header name", quote(s.Header, 64))
		case slices.Contains(reserved, http.CanonicalHeaderKey(s.Header)):
			bad("header", "%s frames the request or belongs to MCP and cannot carry a credential", http.CanonicalHeaderKey(s.Header))
		}
	}
	if s.Prefix != "" && (len(s.Prefix) > maxPrefix || !httpguts.ValidHeaderFieldValue(s.Prefix)) {
		bad("prefix", "must be at most %d bytes of header text without control characters", maxPrefix)
	}

	switch s.Type {
	case TypeBearer, TypeHeader:
		if required("secret", s.Secret) {
			ref("secret", s.Secret)
		}
	case TypeBasic:
		if required("username", s.Username) {
			if len(s.Username) > maxField || strings.ContainsRune(s.Username, ':') || !printable(s.Username) {
				bad("username", "must be 1 to %d printable bytes without ':' (RFC 7617)", maxField)
			}
		}
		if required("password", s.Password) {
			ref("password", s.Password)
		}
	case TypeOAuthClientCredentials, TypeOAuthRefreshToken, TypeTokenExchange:
		if required("token_url", s.TokenURL) {
			if err := checkTokenURL(s.TokenURL); err != nil {
				bad("token_url", "%v", err)
			}
		}
		if required("client_id", s.ClientID) && (len(s.ClientID) > maxField || !vschar(s.ClientID)) {
			bad("client_id", "must be 1 to %d printable ASCII bytes (RFC 6749 VSCHAR)", maxField)
		}
		if s.Type == TypeOAuthClientCredentials {
			required("client_secret", s.ClientSecret)
		}
		if s.ClientSecret != "" {
			ref("client_secret", s.ClientSecret)
		}
		if s.Type == TypeOAuthRefreshToken && required("refresh_token", s.RefreshToken) {
			ref("refresh_token", s.RefreshToken)
		}
	case TypeReceipt:
		if s.TTL != 0 && (s.TTL < identity.MinReceiptTTL || s.TTL > identity.MaxReceiptTTL) {
			bad("ttl", "%s is not between %s and %s", s.TTL, identity.MinReceiptTTL, identity.MaxReceiptTTL)
		}
	}

	if len(s.Scopes) > maxScopes {
		bad("scopes", "%d scopes, more than %d", len(s.Scopes), maxScopes)
	}
	for i, sc := range s.Scopes {
		switch {
		case sc == "" || len(sc) > maxField || !nqchar(sc):
			bad(fmt.Sprintf("scopes[%d]", i), "must be 1 to %d bytes of RFC 6749 scope characters (no spaces, quotes or backslashes)", maxField)
		case slices.Contains(s.Scopes[:i], sc):
			bad(fmt.Sprintf("scopes[%d]", i), "%q is listed twice", sc)
		}
	}
	if s.Audience != "" && (len(s.Audience) > maxAudience || !vschar(s.Audience)) {
		bad("audience", "must be 1 to %d printable ASCII bytes", maxAudience)
	}
	if s.Resource != "" {
		if err := checkResource(s.Resource); err != nil {
			bad("resource", "%v", err)
		}
	}
	return errs
}

// checkTokenURL accepts an absolute https URL, or http to a loopback host, with no user
// info or fragment: identity's check of identity-provider URLs, which token endpoints are.
func checkTokenURL(raw string) error {
	if err := identity.CheckIdPURL(raw); err != nil {
		return err
	}
	if strings.Contains(raw, "#") {
		return errors.New("must not have a fragment")
	}
	return nil
}

// checkResource accepts an RFC 8707 resource indicator: an absolute URI without fragment.
func checkResource(raw string) error {
	if len(raw) > maxURL {
		return fmt.Errorf("is %d bytes, more than %d", len(raw), maxURL)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() {
		return errors.New("is not an absolute URI (RFC 8707)")
	}
	if strings.Contains(raw, "#") {
		return errors.New("must not have a fragment (RFC 8707)")
	}
	return nil
}

// checkRef checks a secret reference's form (secrets.ParseRef, whose errors never echo
// the reference, which may be a secret pasted where a reference belongs).
func checkRef(ref string) error {
	_, err := secrets.ParseRef(ref)
	return err
}

// refName is the part of a (valid) reference after its scheme: the secret's or variable's
// name, or the file's path. It names the credential in the audit log.
func refName(ref string) string {
	_, name, _ := strings.Cut(ref, ":")
	return name
}

// printable reports whether s is printable ASCII (space to tilde).
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// vschar reports whether s is non-empty RFC 6749 VSCHAR (%x20-7E).
func vschar(s string) bool { return s != "" && printable(s) }

// nqchar reports whether s is RFC 6749 NQCHAR (%x21 / %x23-5B / %x5D-7E), a scope token.
func nqchar(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// quote shortens s to at most n bytes and escapes it, for echoing a bad non-secret value.
func quote(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "…"
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// CallInfo is the one call a credential is for: what a receipt says, and whose user a
// token exchange acts for.
//
// The labels of the credentials used for the call's requests, and the first error met
// attaching one, are recorded on it (see [CallInfo.Used] and [CallInfo.Err]), guarded by
// an internal mutex: share a CallInfo by pointer and do not copy it once in use.
type CallInfo struct {
	Upstream, Tool, Agent, User, Task, RequestID, PolicyVersion, ArgsHash string
	// Rules are the rules that allowed the call.
	Rules []string
	// Chain is the delegation chain, first agent to the one acting now.
	Chain []string

	mu sync.Mutex
	// used are the labels recorded by [Broker.Transport], in order; guarded by mu.
	used []string
	// err is the first error the transport met applying a credential; guarded by mu.
	err error
}

// Used returns the labels ("bearer:crm-key", "receipt:billing") of the credentials the
// broker's transport attached to the requests of this call, in order, one per request.
func (ci *CallInfo) Used() []string {
	ci.mu.Lock()
	defer ci.mu.Unlock()
	return slices.Clone(ci.used)
}

func (ci *CallInfo) addUsed(label string) {
	ci.mu.Lock()
	ci.used = append(ci.used, label)
	ci.mu.Unlock()
}

// Err returns the first error [Broker.Transport] met attaching a credential for this call
// (nil if none). The transport also returns it, but an MCP client wraps or replaces what
// its transport returns; Err keeps the cause for the audit log. Like every error of the
// package it names references and upstreams, never secrets.
func (ci *CallInfo) Err() error {
	ci.mu.Lock()
	defer ci.mu.Unlock()
	return ci.err
}

func (ci *CallInfo) setErr(err error) {
	ci.mu.Lock()
	if ci.err == nil {
		ci.err = err
	}
	ci.mu.Unlock()
}

type callKey struct{}

// WithCall returns a context that carries ci to [Broker.Transport].
func WithCall(ctx context.Context, ci *CallInfo) context.Context {
	return context.WithValue(ctx, callKey{}, ci)
}

// CallFrom returns the CallInfo ctx carries, if any.
func CallFrom(ctx context.Context) (*CallInfo, bool) {
	ci, ok := ctx.Value(callKey{}).(*CallInfo)
	return ci, ok && ci != nil
}

// Options configure a [Broker].
type Options struct {
	// Resolve returns secrets; required unless every spec is a receipt.
	Resolve Resolver
	// Receipts signs receipts and the subject tokens of token_exchange; required when a
	// spec has one of those types.
	Receipts *identity.Receipts
	// HTTPClient calls token endpoints; default: a 10s timeout, redirects not followed.
	// One given should not follow redirects either.
	HTTPClient *http.Client
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives debug records of token fetches and errors the caller cannot see
	// (a rotated refresh token that could not be saved); default: discard.
	Logger *slog.Logger
	// SaveRefreshToken persists a refresh token the token endpoint rotated (ref is the
	// Spec's RefreshToken ref); nil keeps it in memory only. If it fails, the new token is
	// still used from memory and the failure is logged at Error: after a restart the old
	// token, probably no longer valid, would be read again.
	SaveRefreshToken func(ctx context.Context, ref string, token []byte) error
}

// upstreamCred is one upstream's credential, validated and with defaults applied.
type upstreamCred struct {
	upstream string
	spec     Spec
	header   string // canonical header name
	label    string // "<type>:<name>" for the audit log
	audience string // receipt aud, or token exchange subject aud
}

// Broker attaches upstream credentials to requests. It is safe for concurrent use.
type Broker struct {
	o        Options
	creds    map[string]*upstreamCred // immutable after New
	redactor *Redactor
	tokens   tokenCache
}

// New returns a broker for specs (upstream name → Spec), or an error naming every problem
// with the options and with each upstream's spec.
func New(o Options, specs map[string]Spec) (*Broker, error) {
	var errs []error
	needResolve, needReceipts := false, false
	creds := make(map[string]*upstreamCred, len(specs))
	for _, name := range sortedKeys(specs) {
		s := specs[name]
		if name == "" {
			errs = append(errs, errors.New("an upstream has no name"))
			continue
		}
		if err := s.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("upstream %q: %w", name, err))
			continue
		}
		u := &upstreamCred{upstream: name, spec: s, header: "Authorization"}
		u.spec.Scopes = slices.Clone(s.Scopes)
		if s.Header != "" {
			u.header = http.CanonicalHeaderKey(s.Header)
		}
		switch s.Type {
		case TypeBearer, TypeHeader:
			u.label = s.Type + ":" + refName(s.Secret)
		case TypeBasic:
			u.label = s.Type + ":" + refName(s.Password)
		default:
			u.label = s.Type + ":" + name
		}
		switch s.Type {
		case TypeReceipt:
			needReceipts = true
			u.audience = cmpOr(s.Audience, name)
			if u.spec.TTL == 0 {
				u.spec.TTL = DefaultReceiptTTL
			}
		case TypeTokenExchange:
			needReceipts, needResolve = true, needResolve || s.ClientSecret != ""
			u.audience = cmpOr(s.Audience, s.TokenURL)
		case TypeOAuthRefreshToken:
			needResolve = true
		default:
			needResolve = true
		}
		creds[name] = u
	}
	if needResolve && o.Resolve == nil {
		errs = append(errs, errors.New("resolve is required to read the credentials' secrets"))
	}
	if needReceipts && o.Receipts == nil {
		errs = append(errs, errors.New("receipts is required for credentials of type receipt or token_exchange"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("new credential broker: %w", err)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{
			Timeout:       fetchTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	b := &Broker{o: o, creds: creds, redactor: newRedactor(o.Now)}
	b.tokens.init()
	return b, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func sortedKeys(m map[string]Spec) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Has reports whether upstream has a credential.
func (b *Broker) Has(upstream string) bool {
	_, ok := b.creds[upstream]
	return ok
}

// Redactor returns the broker's redactor: it knows every credential value the broker has
// resolved or obtained so far.
func (b *Broker) Redactor() *Redactor { return b.redactor }

// Apply sets the credential of upstream on h for the call in ci, and returns what it used
// as "<type>:<name>" for the audit log: for bearer and header the reference's name
// ("bearer:crm-key"), for basic the password reference's name, for the other types the
// upstream's name ("oauth_client_credentials:crm", "receipt:billing"). An upstream with no
// Spec: ("", nil), h untouched. A nil ci is a request no call is behind (only Upstream
// known); a ci naming another upstream is refused. Any failure is an error that names the upstream and what failed (the reference,
// the token endpoint's status and OAuth error code) but never a secret or token; h is then
// untouched.
func (b *Broker) Apply(ctx context.Context, upstream string, ci *CallInfo, h http.Header) (used string, err error) {
	u, ok := b.creds[upstream]
	if !ok {
		return "", nil
	}
	if h == nil {
		return "", fmt.Errorf("credential for upstream %q: no header map to set", upstream)
	}
	if ci == nil {
		ci = &CallInfo{Upstream: upstream}
	}
	if ci.Upstream != "" && ci.Upstream != upstream {
		return "", fmt.Errorf("credential for upstream %q: the call is for upstream %q", upstream, ci.Upstream)
	}
	v, err := b.value(ctx, u, ci)
	if err != nil {
		return "", fmt.Errorf("credential for upstream %q: %w", upstream, err)
	}
	h.Set(u.header, v)
	return u.label, nil
}

// value computes the header value of u's credential for the call ci.
func (b *Broker) value(ctx context.Context, u *upstreamCred, ci *CallInfo) (string, error) {
	switch u.spec.Type {
	case TypeBearer:
		s, err := b.resolve(ctx, u.spec.Secret)
		if err != nil {
			return "", err
		}
		return "Bearer " + s, nil
	case TypeHeader:
		s, err := b.resolve(ctx, u.spec.Secret)
		if err != nil {
			return "", err
		}
		return u.spec.Prefix + s, nil
	case TypeBasic:
		p, err := b.resolve(ctx, u.spec.Password)
		if err != nil {
			return "", err
		}
		pair := u.spec.Username + ":" + p
		b.redactor.add(pair, time.Time{})
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(pair)), nil
	case TypeReceipt:
		raw, err := b.o.Receipts.Mint(identity.ReceiptClaims{
			Audience: u.audience, Agent: ci.Agent, User: ci.User, Tool: ci.Tool, Task: ci.Task,
			RequestID: ci.RequestID, PolicyVersion: ci.PolicyVersion, ArgsHash: ci.ArgsHash,
			Rules: ci.Rules, Chain: ci.Chain, TTL: u.spec.TTL,
		})
		if err != nil {
			return "", err
		}
		b.redactor.add(raw, b.o.Now().Add(u.spec.TTL+receiptGrace))
		return "Bearer " + raw, nil
	default: // the OAuth types
		tok, err := b.token(ctx, u, ci)
		if err != nil {
			return "", err
		}
		return "Bearer " + tok, nil
	}
}

// resolve returns the secret ref names, without a trailing line break (files usually end
// with one), checked to be header text of at most 8 KiB. It becomes known to the redactor.
func (b *Broker) resolve(ctx context.Context, ref string) (string, error) {
	v, err := b.o.Resolve(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", ref, err)
	}
	s := strings.TrimRight(string(v), "\r\n")
	switch {
	case s == "":
		return "", fmt.Errorf("resolve %s: the secret is empty", ref)
	case len(s) > maxSecret:
		return "", fmt.Errorf("resolve %s: the secret is %d bytes, more than %d", ref, len(s), maxSecret)
	case !httpguts.ValidHeaderFieldValue(s):
		return "", fmt.Errorf("resolve %s: the secret holds control characters and cannot be sent in a header", ref)
	}
	b.redactor.add(s, time.Time{})
	return s, nil
}
