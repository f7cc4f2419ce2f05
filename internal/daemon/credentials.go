package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/chaperone-dev/chaperone/internal/api"
	"github.com/chaperone-dev/chaperone/internal/credential"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/pipeline"
	"github.com/chaperone-dev/chaperone/internal/secrets"
)

// egressCredentialPrefix prefixes the broker's name for an egress rule's credential, so it
// cannot collide with an upstream's (upstream names have no colon).
const egressCredentialPrefix = "egress:"

// buildSecrets opens the secret store when a key source is configured: the keyring from
// the key file (or variable) and the vault over the store.
func (d *Daemon) buildSecrets() error {
	s := d.cfg.Secrets
	if !s.Configured() {
		return nil
	}
	kr, err := d.loadKeyring()
	if err != nil {
		return err
	}
	d.keyring.Store(kr)
	ttl := s.CacheFor()
	if ttl == 0 {
		ttl = -1 // the vault's "no cache"
	}
	d.vault, err = secrets.NewVault(secrets.VaultOptions{Store: d.store, Keyring: d.keyring.Load, Audit: d.audit.Append, CacheTTL: ttl})
	if err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	return nil
}

func (d *Daemon) loadKeyring() (*secrets.Keyring, error) {
	s := d.cfg.Secrets
	if s.KeyFile != "" {
		kr, err := secrets.LoadKeyring(s.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("secrets.key_file: %w", err)
		}
		return kr, nil
	}
	v, ok := os.LookupEnv(s.KeyEnv)
	if !ok || v == "" {
		return nil, fmt.Errorf("secrets.key_env: the variable %s is not set", s.KeyEnv)
	}
	kr, err := secrets.KeyringFromEnv(v)
	if err != nil {
		return nil, fmt.Errorf("secrets.key_env %s: %w", s.KeyEnv, err)
	}
	return kr, nil
}

// ReloadSecretKeys re-reads the key file (or variable): how a new key reaches a running
// gateway before `chaperone secrets rotate` re-encrypts under it. A keyring that does not
// load leaves the old one in force.
func (d *Daemon) ReloadSecretKeys() error {
	if d.vault == nil {
		return errors.New("the secret store is off: set secrets.key_file or secrets.key_env")
	}
	kr, err := d.loadKeyring()
	if err != nil {
		return err
	}
	d.keyring.Store(kr)
	d.log.Info("secret keys reloaded", "primary", kr.Primary(), "keys", len(kr.IDs()))
	return nil
}

// resolveSecret returns the plaintext of a reference; the broker's Resolver.
func (d *Daemon) resolveSecret(ctx context.Context, ref string) ([]byte, error) {
	r, err := secrets.ParseRef(ref)
	if err != nil {
		return nil, err
	}
	v, err := secrets.Resolve(ctx, r, d.vault)
	if err != nil {
		return nil, err
	}
	return v.Bytes(), nil
}

// buildBroker sets up the credential broker over every upstream's and egress rule's
// credential. It needs the token issuer (receipts are signed with its keys).
func (d *Daemon) buildBroker() error {
	specs := map[string]credential.Spec{}
	for _, u := range d.cfg.Upstreams {
		if u.Credential != nil {
			specs[u.Name] = u.Credential.Spec()
		}
	}
	for _, r := range d.cfg.Egress.Rules {
		if r.Credential != nil {
			specs[egressCredentialPrefix+r.Name] = r.Credential.Spec()
		}
	}
	receipts, err := identity.NewReceipts(identity.ReceiptOptions{Issuer: d.issuerURL, Keys: d.keys.Load})
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	opts := credential.Options{Resolve: d.resolveSecret, Receipts: receipts, Logger: d.log.With("component", "credentials")}
	if d.vault != nil {
		opts.SaveRefreshToken = func(ctx context.Context, ref string, token []byte) error {
			r, err := secrets.ParseRef(ref)
			if err != nil || r.Kind != secrets.RefSecret {
				return fmt.Errorf("refresh token %s is not in the secret store: the rotated token is kept in memory only", ref)
			}
			_, err = d.vault.Set(ctx, r.Target, token, "refresh token, rotated by the token endpoint", "credential-broker")
			return err
		}
	}
	if d.broker, err = credential.New(opts, specs); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	d.credentialsOn = len(specs) > 0
	for _, u := range d.cfg.Upstreams {
		d.credentialsOn = d.credentialsOn || len(u.SecretEnv) > 0
	}
	return nil
}

// lateCredentials is an upstream's credential transport, bound to the broker when the
// first request goes out: upstreams are configured before the token issuer (and so the
// broker) exists, and connect only once the daemon runs.
type lateCredentials struct {
	d        *Daemon
	upstream string
	base     http.RoundTripper
	once     sync.Once
	rt       http.RoundTripper
}

func (l *lateCredentials) RoundTrip(r *http.Request) (*http.Response, error) {
	l.once.Do(func() { l.rt = l.d.broker.Transport(l.upstream, l.base) })
	return l.rt.RoundTrip(r)
}

// secretEnv returns a command upstream's SecretEnv: its variables resolved at each start.
func (d *Daemon) secretEnv(name string, vars map[string]string) func(context.Context) ([]string, error) {
	keys := slices.Sorted(maps.Keys(vars))
	return func(ctx context.Context) ([]string, error) {
		out := make([]string, 0, len(keys))
		for _, k := range keys {
			v, err := d.resolveSecret(ctx, vars[k])
			if err != nil {
				return nil, fmt.Errorf("secret_env %s: %w", k, err)
			}
			if strings.IndexByte(string(v), 0) >= 0 {
				return nil, fmt.Errorf("secret_env %s: %s holds a NUL byte, which an environment cannot carry", k, vars[k])
			}
			d.broker.Redactor().Add(v)
			out = append(out, k+"="+string(v))
		}
		d.log.Debug("upstream credentials resolved", "upstream", name, "variables", keys)
		return out, nil
	}
}

// redactResult removes credentials the broker knows from a tool result.
func (d *Daemon) redactResult(res json.RawMessage) (json.RawMessage, int) {
	return d.broker.Redactor().Redact(res)
}

// callRouter is the pipeline's Upstreams: it sends a call to its upstream with the
// credential context the broker's transport reads, and reports what was used back to the
// pipeline; the egress proxy's calls go to their forwarder.
type callRouter struct {
	d   *Daemon
	ups upstreamSet
}

func (r callRouter) Call(ctx context.Context, up, tool string, args json.RawMessage) (json.RawMessage, error) {
	if up == egressUpstream {
		return forwardEgress(ctx)
	}
	ex, ok := pipeline.ExecutionFrom(ctx)
	if !ok || !r.d.credentialsOn {
		return r.ups.Call(ctx, up, tool, args)
	}
	ci := callInfo(up, ex.Call.Principal, ex)
	res, err := r.ups.Call(credential.WithCall(ctx, ci), up, tool, args)
	for _, u := range ci.Used() {
		ex.UsedCredential(u)
	}
	if cerr := ci.Err(); cerr != nil {
		ex.CredentialFailed(cerr)
	}
	return res, err
}

// secretsAPI is the admin API's view of the secret store; nil (501) when it is off.
func (d *Daemon) secretsAPI() api.SecretsAdmin {
	if d.vault == nil {
		return nil
	}
	return secretsAdmin{d.vault, d}
}

// secretsAdmin is the vault, with rotation reloading the key file first: an operator adds
// the new key to the file and rotates, without a separate reload.
type secretsAdmin struct {
	*secrets.Vault
	d *Daemon
}

func (s secretsAdmin) Rotate(ctx context.Context, by string) (secrets.RotateResult, error) {
	if err := s.d.ReloadSecretKeys(); err != nil {
		return secrets.RotateResult{}, err
	}
	return s.Vault.Rotate(ctx, by)
}

// SigningKeys returns the gateway's token signing keys, which also sign decision
// receipts; upstreams verify receipts with their public half, published as the JWKS.
func (d *Daemon) SigningKeys() *identity.KeySet { return d.keys.Load() }

// callInfo describes, for the credential broker, the call an allowed execution ex makes to
// the credential named name on behalf of pr.
func callInfo(name string, pr *identity.Principal, ex *pipeline.Execution) *credential.CallInfo {
	ci := &credential.CallInfo{Upstream: name, Tool: ex.Tool.Name, RequestID: ex.Call.RequestID,
		PolicyVersion: ex.Decision.Version, Rules: ex.Decision.Rules, ArgsHash: ex.ArgsHash}
	if pr != nil {
		ci.User, ci.Task, ci.Chain = pr.User, pr.Task, pr.Chain
		if pr.Agent != nil {
			ci.Agent = pr.Agent.ID
		}
	}
	return ci
}
