package oidc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/chaperone-dev/chaperone/internal/identity"
)

// discoveryError is a failed discovery: errors.Is(err, ErrDiscovery) holds.
type discoveryError struct {
	url string
	err error
}

func (e *discoveryError) Error() string                { return fmt.Sprintf("oidc discovery %s: %v", e.url, e.err) }
func (e *discoveryError) Unwrap() error                { return e.err }
func (e *discoveryError) Is(target error) bool         { return target == ErrDiscovery }
func discoveryErr(u string, err error) *discoveryError { return &discoveryError{url: u, err: err} }

// provider returns the discovered provider, discovering it if no discovery has succeeded
// yet. Concurrent callers share one discovery; after a failure the next discovery waits
// discoveryCooldown, and calls in between get the failure again. The lock is never held
// across the fetch.
func (c *Client) provider(ctx context.Context) (*provider, error) {
	for {
		c.mu.Lock()
		if p := c.prov; p != nil {
			c.mu.Unlock()
			return p, nil
		}
		f := c.inflight
		if f == nil {
			break // with c.mu held
		}
		c.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, discoveryErr(c.discoveryURL, ctx.Err())
		}
		if !f.abandoned {
			if f.err != nil {
				return nil, discoveryErr(c.discoveryURL, f.err)
			}
			return f.prov, nil
		}
		// The caller that fetched gave up before the provider answered; try again.
	}
	if !c.lastFailure.IsZero() {
		if wait := discoveryCooldown - c.c.Now().Sub(c.lastFailure); wait > 0 {
			err := c.lastErr
			c.mu.Unlock()
			return nil, discoveryErr(c.discoveryURL, fmt.Errorf("not retried for another %s after: %w", wait.Round(time.Millisecond), err))
		}
	}
	f := &discoveryFetch{done: make(chan struct{})}
	c.inflight = f
	c.mu.Unlock()

	p, err := c.discover(ctx)

	c.mu.Lock()
	c.inflight = nil
	switch {
	case err == nil:
		c.prov = p
		c.lastFailure, c.lastErr = time.Time{}, nil
	case ctx.Err() != nil:
		// The caller gave up; that says nothing about the provider, so the next caller may
		// try at once.
		f.abandoned = true
	default:
		c.lastFailure, c.lastErr = c.c.Now(), err
	}
	f.prov, f.err = p, err
	c.mu.Unlock()
	close(f.done)
	if err != nil {
		return nil, discoveryErr(c.discoveryURL, err)
	}
	return p, nil
}

// discover fetches and checks the discovery document and builds the ID token verifier.
func (c *Client) discover(ctx context.Context) (*provider, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.discoveryURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.c.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	body, err := readBounded(resp.Body)
	if err != nil {
		return nil, err
	}
	d, err := parseDiscovery(body, c.c.Issuer)
	if err != nil {
		return nil, err
	}
	if err := d.supports(c.c.ClientSecret != ""); err != nil {
		return nil, err
	}
	authURL, err := url.Parse(d.AuthorizationEndpoint)
	if err != nil {
		return nil, fmt.Errorf("authorization_endpoint: %w", err) // parseDiscovery checked it
	}
	v, err := identity.NewOIDCVerifier(identity.OIDCConfig{
		Issuer:      c.c.Issuer,
		JWKSURL:     d.JWKSURI,
		Audience:    c.c.ClientID,
		GroupsClaim: c.c.GroupsClaim,
		HTTPClient:  c.c.HTTPClient,
		Now:         c.c.Now,
	})
	if err != nil {
		return nil, err
	}
	return &provider{authURL: authURL, tokenURL: d.TokenEndpoint, verifier: v}, nil
}

// discoveryDoc is the part of a provider's metadata (OpenID Connect Discovery §3) the
// client uses. A list member is nil when the document does not have it.
type discoveryDoc struct {
	Issuer                string
	AuthorizationEndpoint string
	TokenEndpoint         string
	JWKSURI               string
	ResponseTypes         []string // response_types_supported
	CodeChallengeMethods  []string // code_challenge_methods_supported
	AuthMethods           []string // token_endpoint_auth_methods_supported
	SigningAlgs           []string // id_token_signing_alg_values_supported
}

// Bounds on a discovery document's members that the client reads.
const (
	maxDiscoveryMembers = 1000
	maxListItems        = 100
	maxListItemBytes    = 256
)

// parseDiscovery decodes a discovery document and checks it belongs to issuer: one JSON
// object, no member twice (a second "issuer" must not be able to hide behind the first),
// the members the client reads of the right types and bounded, issuer equal to issuer
// byte for byte, and every endpoint an https (or loopback http) URL. Members the client
// does not read are skipped.
func parseDiscovery(b []byte, issuer string) (*discoveryDoc, error) {
	members, err := decodeObject(b)
	if err != nil {
		return nil, err
	}
	d := &discoveryDoc{}
	var errs []error
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"issuer", &d.Issuer},
		{"authorization_endpoint", &d.AuthorizationEndpoint},
		{"token_endpoint", &d.TokenEndpoint},
		{"jwks_uri", &d.JWKSURI},
	} {
		raw, ok := members[f.name]
		if !ok {
			errs = append(errs, fmt.Errorf("%s is missing", f.name))
			continue
		}
		if err := json.Unmarshal(raw, f.dst); err != nil || *f.dst == "" {
			errs = append(errs, fmt.Errorf("%s must be a non-empty string", f.name))
			continue
		}
		if f.name == "issuer" {
			if *f.dst != issuer {
				errs = append(errs, fmt.Errorf("issuer %q is not the configured issuer %q", sanitize(*f.dst, maxURLBytes), issuer))
			}
			continue
		}
		if err := identity.CheckIdPURL(*f.dst); err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", f.name, sanitizeErr(err)))
		}
	}
	for _, f := range []struct {
		name string
		dst  *[]string
	}{
		{"response_types_supported", &d.ResponseTypes},
		{"code_challenge_methods_supported", &d.CodeChallengeMethods},
		{"token_endpoint_auth_methods_supported", &d.AuthMethods},
		{"id_token_signing_alg_values_supported", &d.SigningAlgs},
	} {
		raw, ok := members[f.name]
		if !ok || string(raw) == "null" {
			continue
		}
		if err := json.Unmarshal(raw, f.dst); err != nil {
			errs = append(errs, fmt.Errorf("%s must be an array of strings", f.name))
			continue
		}
		if *f.dst == nil {
			*f.dst = []string{}
		}
		if len(*f.dst) > maxListItems {
			errs = append(errs, fmt.Errorf("%s has more than %d items", f.name, maxListItems))
			continue
		}
		for i, s := range *f.dst {
			if len(s) > maxListItemBytes {
				errs = append(errs, fmt.Errorf("%s[%d] is longer than %d bytes", f.name, i, maxListItemBytes))
				break
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return d, nil
}

// sanitizeErr makes an error about provider-supplied text safe to log.
func sanitizeErr(err error) string { return sanitize(err.Error(), 2*maxURLBytes) }

// decodeObject splits one JSON object into its members, refusing duplicates, more than
// maxDiscoveryMembers members and anything after the object.
func decodeObject(b []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	members := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errors.New("not a JSON object: invalid JSON")
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("not a JSON object: member name is not a string")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("member %q: %v", sanitize(name, 64), jsonDetail(err))
		}
		if _, dup := members[name]; dup {
			return nil, fmt.Errorf("member %q appears more than once", sanitize(name, 64))
		}
		if len(members) == maxDiscoveryMembers {
			return nil, fmt.Errorf("more than %d members", maxDiscoveryMembers)
		}
		members[name] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, errors.New("not a JSON object: invalid JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return members, nil
}

// supports checks that the provider offers what the client needs: the code flow, PKCE with
// S256, client_secret_basic for a confidential client, and a signing algorithm the verifier
// accepts. Each list is checked only when the document has it: many providers omit some,
// and RFC 8414 gives each a default or leaves it unsaid.
func (d *discoveryDoc) supports(confidential bool) error {
	var errs []error
	if d.ResponseTypes != nil && !slices.Contains(d.ResponseTypes, "code") {
		errs = append(errs, errors.New(`response_types_supported does not include "code"`))
	}
	if d.CodeChallengeMethods != nil && !slices.Contains(d.CodeChallengeMethods, "S256") {
		errs = append(errs, errors.New(`code_challenge_methods_supported does not include "S256"`))
	}
	if confidential && d.AuthMethods != nil && !slices.Contains(d.AuthMethods, "client_secret_basic") {
		errs = append(errs, errors.New(`token_endpoint_auth_methods_supported does not include "client_secret_basic"`))
	}
	if d.SigningAlgs != nil && !slices.ContainsFunc(d.SigningAlgs, func(a string) bool {
		return a == "RS256" || a == "ES256" || a == "EdDSA"
	}) {
		errs = append(errs, errors.New("id_token_signing_alg_values_supported has none of RS256, ES256, EdDSA"))
	}
	return errors.Join(errs...)
}
