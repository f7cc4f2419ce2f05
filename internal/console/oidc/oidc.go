// Package oidc signs operators in to the console with OpenID Connect: the authorization
// code flow with PKCE (S256), state and nonce, as a relying party of one provider.
//
// The console starts a sign-in with [NewState] (twice: state and nonce) and [NewVerifier],
// keeps the three values on the browser's side, and sends the browser to
// [Client.AuthCodeURL]. When the provider sends it back, the console compares the state
// itself and calls [Client.Exchange] with the code, which redeems it at the token endpoint
// and returns the user the ID token names.
//
// # Guarantees
//
//   - The provider's discovery document must name exactly the configured issuer (a defence
//     against mix-up attacks), and every endpoint it lists must be https (http only on a
//     loopback host). Responses are bounded to 1 MiB.
//   - The ID token is verified by [identity.OIDCVerifier]: pinned algorithms, a key from the
//     provider's JWKS, signature, issuer, audience (the client ID), exp, nbf and iat, sub.
//     Its nonce must equal the one the sign-in started with (compared in constant time).
//   - The client secret is sent only to the token endpoint (client_secret_basic) and never
//     appears in an error.
//   - Every outbound request has a deadline; the token request follows no redirect.
//
// # Assumptions and limits
//
// The caller checks state and keeps state, nonce and verifier from being read or replayed
// by anyone but the browser that started the sign-in. The access token is not used and not
// returned. The azp and at_hash claims and email_verified are not checked: a caller that
// grants rights by e-mail address must trust the provider to vouch for it.
package oidc

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/chaperone-dev/chaperone/internal/identity"
)

// Config configures a [Client] for one OpenID provider.
type Config struct {
	// Issuer is the provider's issuer identifier; its discovery document is read from
	// <Issuer>/.well-known/openid-configuration and must name this issuer exactly.
	// Required: an https URL (http only on a loopback host) without query or fragment.
	Issuer string
	// ClientID is the console's client at the provider. Required, at most 256 bytes.
	ClientID string
	// ClientSecret authenticates the client at the token endpoint (client_secret_basic);
	// "" for a public client, which relies on PKCE alone.
	ClientSecret string
	// RedirectURL is where the provider sends the browser back. Required: an absolute
	// https URL (http only on a loopback host) without fragment.
	RedirectURL string
	// Scopes are asked for; default openid, email and profile. "openid" is always
	// included.
	Scopes []string
	// GroupsClaim names the ID token claim holding the user's groups; default "groups".
	GroupsClaim string
	// HTTPClient talks to the provider; default a client with a 10s timeout that follows at
	// most 3 redirects, none off https (except to loopback). Every request also has a 10s
	// deadline.
	HTTPClient *http.Client
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Bounds on what the client sends and accepts.
const (
	maxResponseBytes  = 1 << 20 // a discovery document or token response
	maxClientIDBytes  = 256
	maxScopes         = 32
	maxScopeBytes     = 64
	maxURLBytes       = identity.MaxIdPURL
	maxStateBytes     = 512 // state and nonce
	maxCodeBytes      = 4096
	minVerifierBytes  = 43 // RFC 7636 §4.1
	maxVerifierBytes  = 128
	requestTimeout    = 10 * time.Second
	discoveryCooldown = 10 * time.Second // least time between a failed discovery and the next
	maxRedirects      = 3
)

var defaultScopes = []string{"openid", "email", "profile"}

// ErrDiscovery reports that the provider's discovery document could not be fetched or
// was not acceptable; errors.Is(err, ErrDiscovery) holds for every such error, so a caller
// can tell "the provider cannot be reached" from "the sign-in was refused".
var ErrDiscovery = errors.New("oidc discovery")

// ErrNonceMismatch reports an ID token whose nonce is not the one the sign-in started with:
// the token was issued for another sign-in, or replayed.
var ErrNonceMismatch = errors.New("id token nonce does not match the sign-in's")

// ProviderError is an OAuth error response (RFC 6749 §5.2) from the token endpoint, such
// as invalid_grant for a used, expired or foreign code or a wrong PKCE verifier. Code and
// Description are the provider's, reduced to printable ASCII and bounded in length.
type ProviderError struct {
	Status      int    // the HTTP status
	Code        string // the OAuth error code, e.g. "invalid_grant"
	Description string // the provider's error_description, "" if none
}

// Error names the provider's error code, the status and the description; it is safe to
// log.
func (e *ProviderError) Error() string {
	s := fmt.Sprintf("token endpoint refused the request: %s (status %d)", e.Code, e.Status)
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

// Client is an OpenID Connect relying party for one provider. It discovers the provider's
// endpoints on first use and caches them; a failed discovery is retried by a later call, at
// most once per 10s. It is safe for concurrent use.
type Client struct {
	c            Config
	discoveryURL string
	tokenClient  *http.Client // c.HTTPClient, but following no redirect

	mu sync.Mutex
	// The fields below are guarded by mu.
	prov        *provider       // nil until a discovery succeeds
	inflight    *discoveryFetch // the discovery under way, if any
	lastFailure time.Time       // when the last discovery failed, zero if none did
	lastErr     error           // why it failed
}

// provider is what discovery found: the endpoints and a verifier for the provider's keys.
type provider struct {
	authURL  *url.URL
	tokenURL string
	verifier *identity.OIDCVerifier
}

// discoveryFetch is one discovery that concurrent callers wait for; prov or err, and
// abandoned, are set before done closes.
type discoveryFetch struct {
	done      chan struct{}
	prov      *provider
	err       error
	abandoned bool // the fetching caller's context ended: the others should try again
}

// New returns a client, or an error naming every problem with the config. It does no I/O:
// the provider is contacted on first use.
func New(c Config) (*Client, error) {
	var errs []error
	if err := checkIssuer(c.Issuer); err != nil {
		errs = append(errs, fmt.Errorf("issuer: %w", err))
	}
	switch {
	case c.ClientID == "":
		errs = append(errs, errors.New("client id is required"))
	case len(c.ClientID) > maxClientIDBytes || !printable(c.ClientID):
		errs = append(errs, fmt.Errorf("client id must be 1 to %d printable ASCII characters, got %d bytes", maxClientIDBytes, len(c.ClientID)))
	}
	if len(c.ClientSecret) > maxClientIDBytes*4 || !printable(c.ClientSecret) {
		// The secret itself is never shown.
		errs = append(errs, fmt.Errorf("client secret must be at most %d printable ASCII characters", maxClientIDBytes*4))
	}
	if err := checkRedirectURL(c.RedirectURL); err != nil {
		errs = append(errs, fmt.Errorf("redirect url: %w", err))
	}
	if len(c.Scopes) > maxScopes {
		errs = append(errs, fmt.Errorf("scopes: at most %d, got %d", maxScopes, len(c.Scopes)))
	} else {
		for i, s := range c.Scopes {
			if !validScope(s) {
				errs = append(errs, fmt.Errorf("scopes[%d]: must be 1 to %d printable ASCII characters without space, quote or backslash, got %q", i, maxScopeBytes, s))
			}
		}
	}
	if c.GroupsClaim != "" && (len(c.GroupsClaim) > maxScopeBytes || !printable(c.GroupsClaim)) {
		errs = append(errs, fmt.Errorf("groups claim must be 1 to %d printable ASCII characters, got %q", maxScopeBytes, c.GroupsClaim))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("oidc client for %q: %w", redactUserInfo(c.Issuer), err)
	}

	c.Scopes = withOpenID(c.Scopes)
	if c.GroupsClaim == "" {
		c.GroupsClaim = "groups"
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{
			Timeout: requestTimeout,
			// A redirect must not lead a request to the provider off https.
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= maxRedirects {
					return fmt.Errorf("more than %d redirects", maxRedirects)
				}
				return identity.CheckIdPURL(req.URL.String())
			},
		}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	// The token request carries the code, the verifier and the secret: a redirect could
	// replay them to another endpoint, so it is refused rather than followed.
	tc := *c.HTTPClient
	tc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Client{
		c:            c,
		discoveryURL: strings.TrimSuffix(c.Issuer, "/") + "/.well-known/openid-configuration",
		tokenClient:  &tc,
	}, nil
}

// String names the client without its secret, so that printing one is safe.
func (c *Client) String() string { return fmt.Sprintf("oidc.Client(%s, %s)", c.c.Issuer, c.c.ClientID) }

// GoString is String: %#v must not print the secret either.
func (c *Client) GoString() string { return c.String() }

// withOpenID returns the scopes with "openid" first and duplicates dropped; the defaults if
// there are none.
func withOpenID(scopes []string) []string {
	if len(scopes) == 0 {
		return slices.Clone(defaultScopes)
	}
	out := []string{"openid"}
	for _, s := range scopes {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// AuthCodeURL returns the provider's authorization URL that starts a sign-in with state,
// nonce and the PKCE challenge of verifier. It discovers the provider on first use, hence
// the context.
func (c *Client) AuthCodeURL(ctx context.Context, state, nonce, verifier string) (string, error) {
	var errs []error
	if err := checkRandomValue(state); err != nil {
		errs = append(errs, fmt.Errorf("state: %w", err))
	}
	if err := checkRandomValue(nonce); err != nil {
		errs = append(errs, fmt.Errorf("nonce: %w", err))
	}
	if err := checkVerifier(verifier); err != nil {
		errs = append(errs, fmt.Errorf("code verifier: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("oidc auth code url: %w", err)
	}
	p, err := c.provider(ctx)
	if err != nil {
		return "", fmt.Errorf("oidc auth code url: %w", err)
	}
	u := *p.authURL
	q := u.Query()
	q.Set("response_type", "code")
	q.Set("client_id", c.c.ClientID)
	q.Set("redirect_uri", c.c.RedirectURL)
	q.Set("scope", strings.Join(c.c.Scopes, " "))
	q.Set("state", state)
	q.Set("nonce", nonce)
	q.Set("code_challenge", challengeS256(verifier))
	q.Set("code_challenge_method", "S256")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// challengeS256 is the PKCE S256 code challenge of verifier (RFC 7636 §4.2).
func challengeS256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Exchange redeems an authorization code at the token endpoint with the sign-in's PKCE
// verifier, verifies the ID token and checks that its nonce is the sign-in's. The errors it
// returns wrap, where they apply: [ErrDiscovery]; a *[ProviderError] when the provider
// refuses the code; a *[identity.TokenError] when the ID token is not valid;
// [ErrNonceMismatch].
func (c *Client) Exchange(ctx context.Context, code, verifier, nonce string) (*identity.UserIdentity, error) {
	var errs []error
	switch {
	case code == "":
		errs = append(errs, errors.New("code is required"))
	case len(code) > maxCodeBytes || !printable(code):
		errs = append(errs, fmt.Errorf("code must be 1 to %d printable ASCII characters, got %d bytes", maxCodeBytes, len(code)))
	}
	if err := checkVerifier(verifier); err != nil {
		errs = append(errs, fmt.Errorf("code verifier: %w", err))
	}
	if err := checkRandomValue(nonce); err != nil {
		errs = append(errs, fmt.Errorf("nonce: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("oidc exchange: %w", err)
	}
	p, err := c.provider(ctx)
	if err != nil {
		return nil, fmt.Errorf("oidc exchange: %w", err)
	}
	raw, err := c.redeem(ctx, p.tokenURL, code, verifier)
	if err != nil {
		return nil, fmt.Errorf("oidc exchange: %w", err)
	}
	id, err := p.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("oidc exchange: verify id token: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(id.Nonce), []byte(nonce)) != 1 {
		return nil, fmt.Errorf("oidc exchange: %w", ErrNonceMismatch)
	}
	return id, nil
}

// redeem posts the code to the token endpoint and returns the raw ID token.
func (c *Client) redeem(ctx context.Context, tokenURL, code, verifier string) (string, error) {
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {c.c.RedirectURL},
		"code_verifier": {verifier},
	}
	if c.c.ClientSecret == "" {
		form.Set("client_id", c.c.ClientID)
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if c.c.ClientSecret != "" {
		// RFC 6749 §2.3.1: both are form-encoded before they go into the Basic header.
		req.SetBasicAuth(url.QueryEscape(c.c.ClientID), url.QueryEscape(c.c.ClientSecret))
	}
	resp, err := c.tokenClient.Do(req)
	if err != nil {
		// The url.Error names the endpoint only: the code and secret are in the body and
		// header, never in the URL.
		return "", fmt.Errorf("token request: %w", err)
	}
	defer resp.Body.Close()
	body, err := readBounded(resp.Body)
	if err != nil {
		return "", fmt.Errorf("token response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		if pe := providerError(resp.StatusCode, body, c.c.ClientSecret); pe != nil {
			return "", pe
		}
		return "", fmt.Errorf("token response: status %d", resp.StatusCode)
	}
	var tr struct {
		IDToken *string `json:"id_token"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		return "", fmt.Errorf("token response: not a JSON object with a string id_token: %w", jsonDetail(err))
	}
	if tr.IDToken == nil || *tr.IDToken == "" {
		return "", errors.New("token response: no id_token (was the openid scope granted?)")
	}
	return *tr.IDToken, nil
}

// providerError decodes an OAuth error response, or returns nil if body is not one. The
// client secret is cut out in case a provider echoes it.
func providerError(status int, body []byte, secret string) *ProviderError {
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		return nil
	}
	pe := &ProviderError{Status: status, Code: sanitize(e.Error, 64), Description: sanitize(e.Description, 256)}
	if secret != "" {
		pe.Code = strings.ReplaceAll(pe.Code, secret, "[redacted]")
		pe.Description = strings.ReplaceAll(pe.Description, secret, "[redacted]")
	}
	return pe
}

// sanitize keeps s safe to log: printable ASCII only (others become '?'), at most n bytes.
func sanitize(s string, n int) string {
	b := []byte(s)
	if len(b) > n {
		b = append(b[:n:n], "..."...)
	}
	for i, ch := range b {
		if ch < 0x20 || ch > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}

// readBounded reads at most maxResponseBytes, failing clearly on more.
func readBounded(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxResponseBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxResponseBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxResponseBytes)
	}
	return b, nil
}

// jsonDetail keeps the part of a JSON error that says what was wrong, without quoting the
// document.
func jsonDetail(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("member %q is a JSON %s", te.Field, te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at offset %d", se.Offset)
	}
	return errors.New("invalid JSON")
}

// NewVerifier returns a fresh PKCE code verifier: 32 random bytes, base64url-encoded (43
// characters, as RFC 7636 §4.1 recommends).
func NewVerifier() (string, error) { return randomToken() }

// NewState returns a fresh random token for the state or the nonce of a sign-in: 32 random
// bytes, base64url-encoded, safe in URLs and cookies (it contains no '.').
func NewState() (string, error) { return randomToken() }

func randomToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// checkVerifier checks a PKCE code verifier's form (RFC 7636 §4.1): 43 to 128 characters
// from [A-Za-z0-9-._~].
func checkVerifier(v string) error {
	if len(v) < minVerifierBytes || len(v) > maxVerifierBytes {
		return fmt.Errorf("must be %d to %d characters, got %d", minVerifierBytes, maxVerifierBytes, len(v))
	}
	for i := range len(v) {
		if !unreserved(v[i]) {
			return fmt.Errorf("character %d is not one of A-Z a-z 0-9 - . _ ~", i)
		}
	}
	return nil
}

// checkRandomValue checks a state or nonce: it must be there, and short and plain enough
// to travel in a URL and a cookie.
func checkRandomValue(s string) error {
	if s == "" {
		return errors.New("is required")
	}
	if len(s) > maxStateBytes {
		return fmt.Errorf("must be at most %d characters, got %d", maxStateBytes, len(s))
	}
	for i := range len(s) {
		if !unreserved(s[i]) {
			return fmt.Errorf("character %d is not one of A-Z a-z 0-9 - . _ ~", i)
		}
	}
	return nil
}

func unreserved(ch byte) bool {
	return ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' ||
		ch == '-' || ch == '.' || ch == '_' || ch == '~'
}

// printable reports whether s is printable ASCII (space included).
func printable(s string) bool {
	for i := range len(s) {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// validScope checks an OAuth scope token (RFC 6749 §3.3), bounded.
func validScope(s string) bool {
	if s == "" || len(s) > maxScopeBytes {
		return false
	}
	for i := range len(s) {
		ch := s[i]
		if ch <= 0x20 || ch > 0x7e || ch == '"' || ch == '\\' {
			return false
		}
	}
	return true
}

// checkIssuer checks an issuer identifier (OpenID Connect Discovery §2): a provider URL
// without query or fragment.
func checkIssuer(s string) error {
	if err := identity.CheckIdPURL(s); err != nil {
		return err
	}
	if strings.ContainsAny(s, "?#") {
		return fmt.Errorf("%q must have no query or fragment", s)
	}
	return nil
}

// checkRedirectURL checks the redirect URL: like a provider URL, without fragment (RFC
// 6749 §3.1.2).
func checkRedirectURL(s string) error {
	if err := identity.CheckIdPURL(s); err != nil {
		return err
	}
	if strings.Contains(s, "#") {
		return fmt.Errorf("%q must have no fragment", s)
	}
	return nil
}

// redactUserInfo returns a URL for an error message, without the user info a mistaken
// configuration may have put in it (a password).
func redactUserInfo(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = url.User("redacted")
	return u.String()
}
