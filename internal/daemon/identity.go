package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/chaperone-dev/chaperone/internal/api"
	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/oauth"
	"github.com/chaperone-dev/chaperone/internal/store"
)

// buildIdentity sets up the token issuer: signing keys (created at first start, kept in the
// store), the issuer, client assertion and OIDC verifiers, and the OAuth endpoints. It needs
// the MCP listener, whose address is the default issuer URL.
func (d *Daemon) buildIdentity(ctx context.Context) error {
	cfg := d.cfg.Identity
	issuerURL := cfg.Issuer
	if issuerURL == "" {
		issuerURL = "http://" + d.mcpLn.Addr().String()
	}
	d.issuerURL = issuerURL
	audience := cfg.Audience
	if audience == "" {
		audience = issuerURL
	}
	ks, err := d.loadKeys(ctx)
	if err != nil {
		return err
	}
	d.keys.Store(ks)
	if d.issuer, err = identity.NewIssuer(identity.IssuerOptions{
		Issuer: issuerURL, Audience: audience, Keys: d.keys.Load, Leeway: cfg.Leeway.D(), MaxTTL: cfg.MaxTokenTTL.D(),
	}); err != nil {
		return fmt.Errorf("token issuer: %w", err)
	}
	oidc := map[string]*identity.OIDCVerifier{}
	for _, p := range cfg.OIDC {
		v, err := identity.NewOIDCVerifier(identity.OIDCConfig{
			Issuer: p.Issuer, JWKSURL: p.JWKSURL, Audience: p.Audience, GroupsClaim: p.GroupsClaim,
			HTTPClient: &http.Client{Timeout: 10 * time.Second}, Leeway: cfg.Leeway.D(),
		})
		if err != nil {
			return fmt.Errorf("identity provider %q: %w", p.Issuer, err)
		}
		oidc[p.Issuer] = v
	}
	d.oauth = oauth.New(oauth.Options{
		IssuerURL: issuerURL, Resource: "http://" + d.mcpLn.Addr().String() + d.cfg.Server.Path,
		Issuer: d.issuer, Keys: d.keys.Load,
		Assertions: identity.NewAssertionVerifier(identity.AssertionOptions{Audience: issuerURL + oauth.TokenPath, Leeway: cfg.Leeway.D()}),
		OIDC:       oidc, Agents: d.agents, Tasks: d.tasks, Budgets: d.budgets,
		Tools: d.toolNames, Visible: func(agent, tool string) bool { return d.policy.Load().Visible(agent, tool) },
		TokenTTL: cfg.TokenTTL.D(), MaxTTL: cfg.MaxTokenTTL.D(), MaxDepth: cfg.MaxDelegationDepth,
		Audit: d.audit, Logger: d.log.With("component", "oauth"),
		Killed: func(chain []string, user, task string) (string, bool) {
			k, ok := d.kills.Killed(&contain.Subject{Agents: chain, User: user, Task: task})
			return k.Scope.String(), ok
		},
		Revoked: func(c *identity.Claims) bool {
			return d.kills.VoidedSince(&contain.Subject{Agents: c.Chain, User: c.User, Task: c.Task}, c.IssuedAt)
		},
	})
	return nil
}

// toolNames lists the declared tools' exposed names, sorted.
func (d *Daemon) toolNames() []string {
	tools := d.decl.Load().tools
	names := make([]string, 0, len(tools))
	for n := range tools {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// loadKeys reads the signing keys from the store, creating the first at first start —
// once, even when several replicas start together on an empty database.
func (d *Daemon) loadKeys(ctx context.Context) (*identity.KeySet, error) {
	if d.shared != nil {
		release, err := d.shared.Lock(ctx, "signing-keys")
		if err != nil {
			return nil, fmt.Errorf("signing keys: %w", err)
		}
		defer release()
	}
	recs, err := d.store.SigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	if len(recs) == 0 {
		k, err := identity.GenerateSigningKey(time.Now())
		if err != nil {
			return nil, fmt.Errorf("signing keys: %w", err)
		}
		if err := d.store.PutSigningKey(ctx, keyRecord(k)); err != nil {
			return nil, fmt.Errorf("signing keys: %w", err)
		}
		recs = append(recs, keyRecord(k))
	}
	return d.keySet(recs)
}

// readKeys reads the signing keys from the store.
func (d *Daemon) readKeys(ctx context.Context) (*identity.KeySet, error) {
	recs, err := d.store.SigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	if len(recs) == 0 {
		return nil, errors.New("signing keys: the store holds none")
	}
	return d.keySet(recs)
}

func (d *Daemon) keySet(recs []store.SigningKeyRecord) (*identity.KeySet, error) {
	keys := make([]identity.SigningKey, len(recs))
	for i, r := range recs {
		keys[i] = identity.SigningKey{ID: r.ID, Private: r.Private, Created: r.Created, Retired: r.Retired}
	}
	ks, err := identity.NewKeySet(keys, d.cfg.Identity.MaxTokenTTL.D())
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	return ks, nil
}

func keyRecord(k identity.SigningKey) store.SigningKeyRecord {
	return store.SigningKeyRecord{ID: k.ID, Private: k.Private, Created: k.Created, Retired: k.Retired}
}

// RotateKeys makes a fresh key the signing key; the previous one keeps verifying the tokens
// it signed until they expire. It returns the new key's id.
func (d *Daemon) RotateKeys(ctx context.Context) (string, error) {
	d.keysMu.Lock()
	defer d.keysMu.Unlock()
	now := time.Now()
	old := d.keys.Load()
	next, k, err := old.Rotate(now)
	if err != nil {
		return "", err
	}
	// Store the new key first: a crash after it leaves two active keys, and the newest signs.
	if err := d.store.PutSigningKey(ctx, keyRecord(k)); err != nil {
		return "", fmt.Errorf("rotate keys: %w", err)
	}
	for _, prev := range old.Keys() {
		if prev.Retired.IsZero() {
			if err := d.store.RetireSigningKey(ctx, prev.ID, now); err != nil {
				return "", fmt.Errorf("rotate keys: %w", err)
			}
		}
	}
	d.keys.Store(next)
	return k.ID, nil
}

func (d *Daemon) keyInfo() []api.KeyInfo {
	var out []api.KeyInfo
	for _, k := range d.keys.Load().Keys() {
		out = append(out, api.KeyInfo{ID: k.ID, Created: k.Created, Retired: k.Retired})
	}
	return out
}
