package credential

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// OAuth grant and token type URIs the broker sends.
const (
	grantClientCredentials = "client_credentials"
	grantRefreshToken      = "refresh_token"
	grantTokenExchange     = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeJWT           = "urn:ietf:params:oauth:token-type:jwt"
	tokenTypeAccessToken   = "urn:ietf:params:oauth:token-type:access_token"
)

// Bounds of the token endpoint client.
const (
	// MaxTokenResponse bounds a token endpoint's response body.
	MaxTokenResponse = 64 << 10
	// MaxTokenLen bounds an access or refresh token.
	MaxTokenLen = 8192
	// MaxExpiresIn bounds expires_in, in seconds (one day).
	MaxExpiresIn = 86400
	// DefaultExpiresIn is the lifetime assumed when a response has no expires_in.
	DefaultExpiresIn = 300 * time.Second
	// subjectTTL is the lifetime of a token exchange's subject token.
	subjectTTL = 60 * time.Second
	// fetchTimeout bounds one token request, whatever the HTTP client's own timeout.
	fetchTimeout = 10 * time.Second
	// retryAfter is how long a failed fetch is not retried for the same cache key.
	retryAfter = time.Second
	// maxRefreshSkew bounds how long before expiry a cached token is replaced; it is also
	// at most a tenth of the token's lifetime.
	maxRefreshSkew = 60 * time.Second
	// maxDescription bounds the error_description shown from an error response, in bytes.
	maxDescription = 200
	// maxTokenEntries bounds the token cache (token exchange adds an entry per user and
	// agent); beyond it, idle entries are dropped.
	maxTokenEntries = 10000
)

// TokenEndpointError is a token endpoint's refusal or failure: its HTTP status and, when
// the body was an RFC 6749 §5.2 error response, the error code and a shortened,
// sanitised, redacted description. It never holds the response body itself.
type TokenEndpointError struct {
	Status      int
	Code        string // "" when the body was not an OAuth error response
	Description string // at most 200 bytes, no control characters, credentials redacted
	// Problem says what was wrong with a response that was not an error response (a body
	// that is not JSON, a token_type that is not Bearer, ...); "" for error responses.
	Problem string
}

func (e *TokenEndpointError) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "token endpoint: status %d", e.Status)
	if e.Code != "" {
		sb.WriteString(": " + e.Code)
		if e.Description != "" {
			fmt.Fprintf(&sb, " (%q)", e.Description)
		}
	}
	if e.Problem != "" {
		sb.WriteString(": " + e.Problem)
	}
	return sb.String()
}

// tokenResponse is a successful token response, checked.
type tokenResponse struct {
	AccessToken  string
	ExpiresIn    time.Duration
	RefreshToken string // "" if none
}

// parseTokenResponse checks a token endpoint's answer (RFC 6749 §5.1, §5.2): body at most
// 64 KiB; on status 200 a JSON object with access_token (1 to 8192 printable ASCII bytes
// without spaces), token_type Bearer (any case) or absent, expires_in an integer 1..86400
// (absent: 300s), refresh_token like access_token if present, and no error member;
// otherwise an error, a *TokenEndpointError, that never quotes the body or a token.
func parseTokenResponse(status int, body []byte) (tokenResponse, error) {
	fail := func(problem string) (tokenResponse, error) {
		return tokenResponse{}, &TokenEndpointError{Status: status, Problem: problem}
	}
	if len(body) > MaxTokenResponse {
		return fail(fmt.Sprintf("response is larger than %d bytes", MaxTokenResponse))
	}
	var obj map[string]json.RawMessage
	isObject := json.Unmarshal(body, &obj) == nil && obj != nil
	if raw, ok := obj["error"]; ok && (status == http.StatusOK || status >= 400) {
		var code string
		if json.Unmarshal(raw, &code) != nil || !errorCode(code) {
			return fail("the error member is not an RFC 6749 error code")
		}
		e := &TokenEndpointError{Status: status, Code: code}
		if rd, ok := obj["error_description"]; ok {
			var d string
			if json.Unmarshal(rd, &d) == nil {
				e.Description = sanitize(d, maxDescription)
			}
		}
		return tokenResponse{}, e
	}
	if status != http.StatusOK {
		if isObject {
			return fail("the body is not an OAuth error response")
		}
		return fail("")
	}
	if !isObject {
		return fail("the body is not a JSON object")
	}
	var r tokenResponse
	at, ok := obj["access_token"]
	if !ok {
		return fail("no access_token")
	}
	if err := tokenString(at, &r.AccessToken); err != nil {
		return fail("access_token " + err.Error())
	}
	if tt, ok := obj["token_type"]; ok {
		var s string
		if json.Unmarshal(tt, &s) != nil {
			return fail("token_type is not a string")
		}
		if !strings.EqualFold(s, "Bearer") {
			return fail(fmt.Sprintf("token_type %q is not Bearer", sanitize(s, 32)))
		}
	}
	r.ExpiresIn = DefaultExpiresIn
	if ei, ok := obj["expires_in"]; ok {
		// A json.Number would also take a string holding a number: check for a number first.
		var n json.Number
		d := json.NewDecoder(bytes.NewReader(ei))
		d.UseNumber()
		if len(ei) == 0 || (ei[0] != '-' && (ei[0] < '0' || ei[0] > '9')) || d.Decode(&n) != nil {
			return fail("expires_in is not a number")
		}
		secs, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil || secs < 1 || secs > MaxExpiresIn {
			return fail(fmt.Sprintf("expires_in is not an integer between 1 and %d", MaxExpiresIn))
		}
		r.ExpiresIn = time.Duration(secs) * time.Second
	}
	if rt, ok := obj["refresh_token"]; ok {
		if err := tokenString(rt, &r.RefreshToken); err != nil {
			return fail("refresh_token " + err.Error())
		}
	}
	return r, nil
}

// tokenString decodes a token: a JSON string of 1 to MaxTokenLen printable ASCII bytes
// without spaces, safe in a header. Its errors do not quote the token.
func tokenString(raw json.RawMessage, dst *string) error {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return errors.New("is not a string")
	}
	if s == "" || len(s) > MaxTokenLen {
		return fmt.Errorf("is %d bytes, want 1 to %d", len(s), MaxTokenLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return errors.New("holds a byte that is not printable ASCII")
		}
	}
	*dst = s
	return nil
}

// errorCode reports whether s is an RFC 6749 §5.2 error code (%x20-21 / %x23-5B /
// %x5D-7E), at most 64 bytes.
func errorCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// sanitize shortens s to at most n bytes (at a character boundary) and replaces every
// character that is not printable (controls, format characters such as bidi overrides,
// invalid UTF-8) with a space.
func sanitize(s string, n int) string {
	var sb strings.Builder
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			r = ' '
		}
		if sb.Len()+utf8.RuneLen(r) > n {
			break
		}
		sb.WriteRune(r)
	}
	return strings.TrimSpace(sb.String())
}

// tokenKey names one cached token: per upstream, and for token exchange per user and agent.
type tokenKey struct {
	upstream, user, agent string
	// setup marks the gateway's own token for a token_exchange upstream: the requests that
	// carry no call (the MCP session's set-up, tool lists) act for nobody, so they use a
	// client_credentials token of the same client.
	setup bool
}

// tokenEntry is one cache slot.
type tokenEntry struct {
	token     string    // "" if none
	refreshAt time.Time // replace the token from then on
	expiresAt time.Time // the token is usable until then
	flight    *flight   // the fetch under way, if any
	err       error     // the last fetch's error, if it failed
	retryAt   time.Time // no fetch before then after a failure
}

// flight is one fetch that concurrent callers wait for.
type flight struct {
	done  chan struct{} // closed when token and err are set
	token string
	err   error
}

// tokenCache holds obtained tokens.
type tokenCache struct {
	mu sync.Mutex
	// entries and refresh are guarded by mu.
	entries map[tokenKey]*tokenEntry
	// refresh holds, per upstream, the refresh token in use when the endpoint rotated it
	// (it then wins over the reference, which is re-read only after invalid_grant).
	refresh map[string]string
}

func (c *tokenCache) init() {
	c.entries = map[tokenKey]*tokenEntry{}
	c.refresh = map[string]string{}
}

// entry returns key's entry, making one (and making room) if needed. Called with mu held.
func (c *tokenCache) entry(key tokenKey, now time.Time) *tokenEntry {
	if e, ok := c.entries[key]; ok {
		return e
	}
	if len(c.entries) >= maxTokenEntries {
		for k, e := range c.entries { // expired and idle first
			if e.flight == nil && !now.Before(e.expiresAt) && !now.Before(e.retryAt) {
				delete(c.entries, k)
			}
		}
		for k, e := range c.entries { // then any idle, in the map's random order
			if len(c.entries) < maxTokenEntries*3/4 {
				break
			}
			if e.flight == nil {
				delete(c.entries, k)
			}
		}
	}
	e := &tokenEntry{}
	c.entries[key] = e
	return e
}

// token returns an access token for u and the call ci, from the cache or the endpoint.
//
// A token is used until its refresh time (expiry minus min(60s, a tenth of its lifetime)).
// Then one caller fetches a new one while the others keep using the old token until it
// expires, or wait for the fetch if it has. A failed fetch is not cached, but none is made
// for the same key for a second; callers in that second get the error (or the old token
// while it lasts). The fetch runs without the caller's cancellation, since others may wait
// for it, bounded by 10s.
func (b *Broker) token(ctx context.Context, u *upstreamCred, ci *CallInfo) (string, error) {
	key := tokenKey{upstream: u.upstream}
	if u.spec.Type == TypeTokenExchange {
		switch {
		case ci.User != "":
			key.user, key.agent = ci.User, ci.Agent
		case ci.Tool == "" && u.spec.ClientSecret != "":
			key.setup = true // no call: the gateway's own session traffic
		case ci.Tool == "":
			return "", errors.New("token_exchange: requests without a call (the upstream session's set-up) use the client's own client_credentials token, which needs client_secret")
		default:
			return "", errors.New("token_exchange needs a user to act for, and the call has none")
		}
	}
	c := &b.tokens
	c.mu.Lock()
	now := b.o.Now()
	e := c.entry(key, now)
	valid := e.token != "" && now.Before(e.expiresAt)
	switch {
	case e.token != "" && now.Before(e.refreshAt):
		t := e.token
		c.mu.Unlock()
		return t, nil
	case e.flight != nil || now.Before(e.retryAt):
		if valid {
			t := e.token
			c.mu.Unlock()
			return t, nil
		}
		if f := e.flight; f != nil {
			c.mu.Unlock()
			select {
			case <-f.done:
				return f.token, f.err
			case <-ctx.Done():
				return "", fmt.Errorf("wait for token: %w", ctx.Err())
			}
		}
		err := e.err
		c.mu.Unlock()
		return "", err
	}
	f := &flight{done: make(chan struct{})}
	e.flight = f
	c.mu.Unlock()

	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	resp, start, err := b.fetch(fctx, u, key)
	cancel()

	c.mu.Lock()
	e.flight = nil
	stale := false
	if err != nil {
		e.err, e.retryAt = err, b.o.Now().Add(retryAfter)
		if e.token != "" && b.o.Now().Before(e.expiresAt) {
			f.token, stale = e.token, true // the old token still works until it expires
		} else {
			f.err = err
		}
	} else {
		life := resp.ExpiresIn
		e.token, e.err, e.retryAt = resp.AccessToken, nil, time.Time{}
		e.expiresAt = start.Add(life)
		e.refreshAt = e.expiresAt.Add(-min(maxRefreshSkew, life/10))
		f.token = resp.AccessToken
	}
	c.mu.Unlock()
	close(f.done)
	if stale {
		// Not returned, so logged: the caller got a token that still works.
		b.o.Logger.WarnContext(ctx, "upstream token not renewed; the current one is used until it expires",
			slog.String("upstream", u.upstream), slog.String("error", err.Error()))
	}
	return f.token, f.err
}

// fetch asks u's token endpoint for a token for key, and returns it with the time the
// request started (from which expires_in counts).
func (b *Broker) fetch(ctx context.Context, u *upstreamCred, key tokenKey) (tokenResponse, time.Time, error) {
	s := &u.spec
	form := url.Values{}
	var usedRefresh string
	switch s.Type {
	case TypeOAuthClientCredentials:
		form.Set("grant_type", grantClientCredentials)
	case TypeOAuthRefreshToken:
		b.tokens.mu.Lock()
		usedRefresh = b.tokens.refresh[u.upstream]
		b.tokens.mu.Unlock()
		if usedRefresh == "" {
			v, err := b.resolve(ctx, s.RefreshToken)
			if err != nil {
				return tokenResponse{}, time.Time{}, err
			}
			usedRefresh = v
		}
		form.Set("grant_type", grantRefreshToken)
		form.Set("refresh_token", usedRefresh)
	case TypeTokenExchange:
		if key.setup {
			form.Set("grant_type", grantClientCredentials)
			break
		}
		subject, err := b.o.Receipts.MintSubject(key.user, key.agent, u.audience, subjectTTL)
		if err != nil {
			return tokenResponse{}, time.Time{}, err
		}
		b.redactor.add(subject, b.o.Now().Add(subjectTTL+receiptGrace))
		form.Set("grant_type", grantTokenExchange)
		form.Set("subject_token", subject)
		form.Set("subject_token_type", tokenTypeJWT)
		form.Set("requested_token_type", tokenTypeAccessToken)
	}
	if len(s.Scopes) > 0 {
		form.Set("scope", strings.Join(s.Scopes, " "))
	}
	if s.Audience != "" {
		form.Set("audience", s.Audience)
	}
	if s.Resource != "" {
		form.Set("resource", s.Resource)
	}
	var clientSecret string
	if s.ClientSecret != "" {
		v, err := b.resolve(ctx, s.ClientSecret)
		if err != nil {
			return tokenResponse{}, time.Time{}, err
		}
		clientSecret = v
	} else {
		form.Set("client_id", s.ClientID) // a public client identifies itself in the body
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return tokenResponse{}, time.Time{}, fmt.Errorf("token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if clientSecret != "" {
		// RFC 6749 §2.3.1: both are form-urlencoded before they become the Basic pair.
		req.SetBasicAuth(url.QueryEscape(s.ClientID), url.QueryEscape(clientSecret))
		b.redactor.add(url.QueryEscape(clientSecret), time.Time{})
	}
	start := b.o.Now()
	res, err := b.o.HTTPClient.Do(req)
	if err != nil {
		return tokenResponse{}, time.Time{}, fmt.Errorf("token request: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, MaxTokenResponse+1))
	if err != nil {
		return tokenResponse{}, time.Time{}, fmt.Errorf("token endpoint: status %d: read response: %w", res.StatusCode, err)
	}
	tr, err := parseTokenResponse(res.StatusCode, body)
	if err != nil {
		var te *TokenEndpointError
		if errors.As(err, &te) {
			te.Description = b.redactor.redactString(te.Description)
			if s.Type == TypeOAuthRefreshToken && te.Code == "invalid_grant" {
				// The refresh token in use is dead: next time, read the reference again
				// (an operator may have put a new one there).
				b.tokens.mu.Lock()
				if b.tokens.refresh[u.upstream] == usedRefresh {
					delete(b.tokens.refresh, u.upstream)
				}
				b.tokens.mu.Unlock()
			}
		}
		return tokenResponse{}, time.Time{}, err
	}
	b.redactor.add(tr.AccessToken, start.Add(tr.ExpiresIn+tokenGrace))
	b.o.Logger.DebugContext(ctx, "upstream token obtained",
		slog.String("upstream", u.upstream), slog.String("credential", s.Type),
		slog.Int64("expires_in_s", int64(tr.ExpiresIn/time.Second)))
	if tr.RefreshToken != "" && s.Type == TypeOAuthRefreshToken && tr.RefreshToken != usedRefresh {
		b.rotateRefresh(ctx, u, tr.RefreshToken)
	} else if tr.RefreshToken != "" {
		b.redactor.add(tr.RefreshToken, time.Time{})
	}
	return tr, start, nil
}

// rotateRefresh makes a refresh token the endpoint rotated the one in use, and saves it.
func (b *Broker) rotateRefresh(ctx context.Context, u *upstreamCred, token string) {
	b.redactor.add(token, time.Time{})
	b.tokens.mu.Lock()
	b.tokens.refresh[u.upstream] = token
	b.tokens.mu.Unlock()
	if b.o.SaveRefreshToken == nil {
		return
	}
	if err := b.o.SaveRefreshToken(ctx, u.spec.RefreshToken, []byte(token)); err != nil {
		b.o.Logger.ErrorContext(ctx, "rotated refresh token not saved; it is used from memory until restart",
			slog.String("upstream", u.upstream), slog.String("ref", u.spec.RefreshToken),
			slog.String("error", b.redactor.redactString(err.Error())))
	}
}
