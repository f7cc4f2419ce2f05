// Package config is Chaperone's typed configuration: one [Config] value, loaded in three
// visible steps — strict decode (unknown keys are errors), [Config.ApplyDefaults], and
// [Config.Validate], which reports every problem at once and never mutates.
//
// Environment variables are read in exactly one place, [Expand], and only for the fields
// documented as expanding `${VAR}` (upstream headers and environment). Secrets are never
// printed: [Config.Redacted] is what `chaperone config check` shows.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/chaperone-dev/chaperone/internal/argcheck"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/boundedfile"
	"github.com/chaperone-dev/chaperone/internal/flow"
	"github.com/chaperone-dev/chaperone/internal/sign"
	"github.com/chaperone-dev/chaperone/internal/store"
)

// DefaultRetries is how many times a call of an idempotent tool is retried when its entry
// says nothing.
const DefaultRetries = 2

// MaxFileBytes bounds the size of a configuration file.
const MaxFileBytes = 4 << 20

// Config is the whole configuration of a gateway.
type Config struct {
	// DataDir holds the SQLite store, the admin token and other state. Default "chaperone-data".
	DataDir string `yaml:"data_dir"`
	// Server is the agent-facing MCP endpoint.
	Server Server `yaml:"server"`
	// Admin is the operator API used by the command line.
	Admin Admin `yaml:"admin"`
	// Store selects where state lives.
	Store Store `yaml:"store"`
	// Registry sets how tool definitions are pinned.
	Registry Registry `yaml:"registry"`
	// Upstreams are the MCP servers behind the gateway.
	Upstreams []Upstream `yaml:"upstreams"`
	// Tools is the tool registry: only tools listed here exist for agents.
	Tools []Tool `yaml:"tools"`
	// Agents are the registered agents and their token hashes.
	Agents []Agent `yaml:"agents"`
	// Identity configures the token issuer and trusted identity providers.
	Identity Identity `yaml:"identity"`
	// Policy says where the policy files are.
	Policy Policy `yaml:"policy"`
	// Trust lists the keys whose signatures the gateway accepts on tool manifests and
	// policy bundles.
	Trust Trust `yaml:"trust"`
	// Audit sets what the audit log records beyond its fixed fields.
	Audit Audit `yaml:"audit"`
	// Approvals configures how held calls are put to people.
	Approvals Approvals `yaml:"approvals"`
	// Risk configures risk scoring.
	Risk Risk `yaml:"risk"`
	// Autonomy configures agents' autonomy levels.
	Autonomy Autonomy `yaml:"autonomy"`
	// Containment configures the brakes: budgets, caps, rate limits, loop detection,
	// circuit breakers, baselines and idempotency keys.
	Containment Containment `yaml:"containment"`
	// Sensors configures the content sensors: injection, secrets, personal data,
	// sanitising, spotlighting and egress checks.
	Sensors Sensors `yaml:"sensors"`
	// Telemetry configures OpenTelemetry traces and the Prometheus metrics endpoint.
	Telemetry Telemetry `yaml:"telemetry"`
	// Log configures the daemon's own log.
	Log Log `yaml:"log"`
	// Console configures the operator web console.
	Console Console `yaml:"console"`
	// Secrets configures the encrypted store of upstream credentials.
	Secrets Secrets `yaml:"secrets"`
	// Egress is the HTTP forward proxy for agents' own web requests.
	Egress EgressProxy `yaml:"egress"`
}

// Approvals configures human approval of the calls policy holds.
type Approvals struct {
	// Enabled turns approvals on. Default true; false refuses every held call with
	// approval_required.
	Enabled *bool `yaml:"enabled"`
	// Hold is how long an agent's request waits for a decision before it ends with
	// approval_pending and the approval id (the agent retries with it). "0s": never
	// wait. Default "30s"; less than server.write_timeout.
	Hold *Duration `yaml:"hold"`
	// Timeout is how long a request stays open; undecided, it expires and counts as
	// declined. Default "15m"; from "5s" to "168h".
	Timeout Duration `yaml:"timeout"`
	// TwoPerson lists the exposed tools whose calls need two distinct approvers.
	TwoPerson []string `yaml:"two_person"`
	// AllowSelfApproval lets the user an agent acts for approve its calls. Default false.
	AllowSelfApproval bool `yaml:"allow_self_approval"`
	// DeclineReasons are the reasons an approver picks from when declining ("other"
	// needs a text). Default wrong_recipient, wrong_amount, not_requested, suspicious, other.
	DeclineReasons []string `yaml:"decline_reasons"`
	// Webhooks are notified of every request and decision.
	Webhooks []Webhook `yaml:"webhooks"`
	// URL is the base URL approvers open a request at (<url>/approvals/<id>); "" for none.
	URL string `yaml:"url"`
}

// On reports whether approvals are enabled.
func (a *Approvals) On() bool { return a.Enabled == nil || *a.Enabled }

// HoldFor returns how long a held call waits for a decision.
func (a *Approvals) HoldFor() time.Duration {
	if a.Hold == nil {
		return 30 * time.Second
	}
	return a.Hold.D()
}

// Webhook is an HTTP endpoint notified of approval requests and decisions.
type Webhook struct {
	// URL is https, or http on a loopback address.
	URL string `yaml:"url"`
	// SecretFile holds a shared secret; with it, requests carry an HMAC-SHA256 signature.
	SecretFile string `yaml:"secret_file"`
	// Timeout bounds one delivery. Default "5s", at most "60s".
	Timeout Duration `yaml:"timeout"`
}

// Autonomy configures how agents' autonomy levels act.
type Autonomy struct {
	// Enforce applies the levels: 0 suggest-only (writes, external and destructive calls
	// are recorded, not run), 1 approve-to-act (each needs a person), 2 autonomous below
	// RiskThreshold, 3 as policy says; and an agent whose call an information-flow rule
	// denies loses a level. Without it the level is only a fact for policy
	// (agent.autonomy). Default false.
	Enforce bool `yaml:"enforce"`
	// RiskThreshold is the risk score from which a level-2 agent's calls need approval.
	// Default 50; 1 to 100.
	RiskThreshold int `yaml:"risk_threshold"`
	// Promotion says when an agent is eligible for the next level; an operator promotes.
	Promotion Promotion `yaml:"promotion"`
}

// Promotion are the criteria of eligibility for the next autonomy level, over the audit
// log.
type Promotion struct {
	// MinDays since the agent's first call. Default 14.
	MinDays int `yaml:"min_days"`
	// MinCalls made. Default 200.
	MinCalls int `yaml:"min_calls"`
	// MaxDenials: calls denied by policy, at most. Default 0.
	MaxDenials int `yaml:"max_denials"`
	// MinApprovalRate: of its held calls that people decided, the share approved. Default 0.9.
	MinApprovalRate float64 `yaml:"min_approval_rate"`
}

// Risk configures risk scoring.
type Risk struct {
	// InternalDomains are the organisation's mail domains (and their subdomains); mail to
	// any other domain counts as going outside.
	InternalDomains []string `yaml:"internal_domains"`
}

// Server configures the agent-facing MCP endpoint (streamable HTTP).
type Server struct {
	// Listen is the TCP address. Default "127.0.0.1:8080".
	Listen string `yaml:"listen"`
	// Path is the MCP endpoint path. Default "/mcp".
	Path string `yaml:"path"`
	// MaxBodyBytes bounds one request body. Default 1 MiB; at most 64 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// ReadHeaderTimeout default "5s".
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// ReadTimeout default "30s".
	ReadTimeout Duration `yaml:"read_timeout"`
	// WriteTimeout default "120s"; it bounds a whole tool call as the agent sees it.
	WriteTimeout Duration `yaml:"write_timeout"`
	// IdleTimeout default "120s".
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxSessions bounds live MCP sessions. Default 10000.
	MaxSessions int `yaml:"max_sessions"`
	// SessionIdle ends a session unused for this long. Default "30m".
	SessionIdle Duration `yaml:"session_idle"`
}

// Admin configures the operator API. It listens apart from agents and needs the admin token.
type Admin struct {
	// Listen is the TCP address; "off" disables the admin API. Default "127.0.0.1:8081".
	Listen string `yaml:"listen"`
	// TokenFile holds the admin bearer token; created with a random token at first start.
	// Default "<data_dir>/admin.token".
	TokenFile string `yaml:"token_file"`
}

// Registry configures definition pinning.
type Registry struct {
	// FirstUse says what happens to a declared tool seen for the first time without a pin:
	// "pin" (trust on first use: pin it and make it callable) or "quarantine" (hold it until an
	// operator runs `chaperone tools approve`). Default "pin".
	FirstUse string `yaml:"first_use"`
	// RefreshInterval re-reads every upstream's tool list this often to catch definition
	// drift even from servers that do not announce changes. Default "5m"; "0s" disables.
	RefreshInterval Duration `yaml:"refresh_interval"`
	// Manifests are signed tool manifests (each with its signature in FILE.sig). A declared
	// tool a manifest describes is callable only while its upstream offers exactly the
	// manifest's definition; the manifest fills in what the tool's entry leaves out (cost,
	// undo, idempotency, flow labels) and its class is the least the entry may give.
	// Relative paths are relative to the configuration file. Needs trust.tool_publishers.
	Manifests []string `yaml:"manifests"`
	// RequireSigned makes only tools described by a signed manifest callable.
	RequireSigned bool `yaml:"require_signed"`
}

// Upstream is one MCP server behind the gateway: exactly one of Command, URL or Builtin.
type Upstream struct {
	// Name identifies the upstream; [a-z0-9][a-z0-9_-]{0,31}.
	Name string `yaml:"name"`
	// Command starts a stdio MCP server, supervised and restarted with backoff.
	Command string `yaml:"command"`
	// Args are the command's arguments.
	Args []string `yaml:"args"`
	// Env is added to a minimal environment (PATH, HOME); values expand ${VAR}.
	Env map[string]string `yaml:"env"`
	// Dir is the command's working directory.
	Dir string `yaml:"dir"`
	// URL is a streamable HTTP MCP server.
	URL string `yaml:"url"`
	// Headers are sent to the URL on every request; values expand ${VAR}.
	Headers map[string]string `yaml:"headers"`
	// Builtin names an in-process server: "demo".
	Builtin string `yaml:"builtin"`
	// Credential is how the gateway authenticates to a url upstream on the agent's
	// behalf, per call; the agent never sees it.
	Credential *Credential `yaml:"credential"`
	// SecretEnv adds environment variables with credentials to a command upstream:
	// variable name to reference ("secret:NAME", "env:VAR", "file:/path"), resolved each
	// time the command starts.
	SecretEnv map[string]string `yaml:"secret_env"`
	// Environment is dev, test or prod; only agents of the same environment reach it.
	// Default "dev".
	Environment string `yaml:"environment"`
	// CallTimeout bounds one tools/call. Default "30s".
	CallTimeout Duration `yaml:"call_timeout"`
	// Required makes the gateway report not ready (GET /readyz) while this upstream is
	// unreachable. Default true; false for an upstream the gateway can serve without.
	Required *bool `yaml:"required,omitempty"`
}

// Tool declares one upstream tool: only declared tools exist for agents.
type Tool struct {
	// Upstream is the name of the upstream that offers the tool.
	Upstream string `yaml:"upstream"`
	// Name is the tool's name at the upstream.
	Name string `yaml:"name"`
	// ExposeAs is the name agents see. Default: Name, or "<upstream>__<name>" when two
	// declared tools share a name.
	ExposeAs string `yaml:"expose_as"`
	// Class is the risk class: read, write, external (communicates outside) or destructive.
	Class string `yaml:"class"`
	// Environment, if set, must be the upstream's (dev, test or prod): a check that a tool
	// meant for one environment is not declared on another's upstream.
	Environment string `yaml:"environment"`
	// Pin, if set, is the expected definition hash ("sha256:..."); any other definition is
	// quarantined.
	Pin string `yaml:"pin"`
	// Arguments is a stricter overlay on the tool's JSON Schema, by top-level argument.
	Arguments argcheck.Overlay `yaml:"arguments"`
	// Flow labels the tool's results and names its sinks, for information-flow control.
	Flow ToolFlow `yaml:"flow"`
	// Undo says how to undo a call of the tool, for approvers; at most 1,000 bytes.
	Undo string `yaml:"undo"`
	// Cost is charged to the task's spend budget for each call, in the operator's
	// currency. Default 0; at most 1000000.
	Cost float64 `yaml:"cost"`
	// Timeout bounds one call of the tool; the upstream's call_timeout still applies, so
	// the shorter wins. Default: the upstream's.
	Timeout Duration `yaml:"timeout"`
	// Idempotent declares that calling the tool twice with the same arguments does no more
	// than calling it once. Only idempotent tools are retried.
	Idempotent bool `yaml:"idempotent"`
	// Retries is how many times a call of an idempotent tool is retried, with backoff,
	// when its server could not be reached or did not answer in time. Default 2 for
	// idempotent tools; 0 to 5; only idempotent tools may have any.
	Retries *int `yaml:"retries"`
	// Sensors are the tool's content-sensor settings; unset fields come from
	// sensors.defaults.
	Sensors ToolSensors `yaml:"sensors"`
}

// ToolFlow is what a tool's results are and which arguments choose where its effect lands.
type ToolFlow struct {
	// Trust is trusted or untrusted (content an outsider can influence). Default untrusted.
	Trust string `yaml:"trust"`
	// Data is private or public (data that must not leave). Default private.
	Data string `yaml:"data"`
	// Sinks are the arguments that choose where the call's effect lands: a recipient, an
	// account, a URL, a path. Default: every argument for write, external and destructive
	// tools, none for read tools; [] for none.
	Sinks []string `yaml:"sinks"`
}

// Labels returns the tool's flow labels.
func (t *Tool) Labels() (flow.Labels, error) {
	return flow.ParseLabels(t.Class, t.Flow.Trust, t.Flow.Data, t.Flow.Sinks)
}

// Agent is a registered agent. Its bearer token is stored only as a SHA-256 hash.
type Agent struct {
	// ID identifies the agent; [a-z0-9][a-z0-9._-]{0,63}.
	ID string `yaml:"id"`
	// Owner is the accountable person.
	Owner string `yaml:"owner"`
	// Purpose says what the agent is for.
	Purpose string `yaml:"purpose"`
	// Environment is dev, test or prod. Default "dev".
	Environment string `yaml:"environment"`
	// Labels are free key/value facts policy can use.
	Labels map[string]string `yaml:"labels"`
	// Capabilities are the exposed tool names the agent may ever be granted; "*" means any.
	// Default ["*"].
	Capabilities []string `yaml:"capabilities"`
	// Autonomy is 0 to 3. Default 0.
	Autonomy int `yaml:"autonomy"`
	// TokenSHA256 is the hex SHA-256 of the agent's bearer token (`chaperone token new`).
	TokenSHA256 string `yaml:"token_sha256"`
}

// Identity configures the gateway as the issuer of agents' short-lived access tokens.
type Identity struct {
	// Issuer is the iss of tokens and the base of the OAuth endpoints' URLs: the URL agents
	// reach the gateway at. Default "http://<the address the MCP endpoint listens on>".
	Issuer string `yaml:"issuer"`
	// Audience is the aud tokens are minted for and verified against. Default: Issuer.
	Audience string `yaml:"audience"`
	// TokenTTL is a token's lifetime when the agent asks for none. Default "10m".
	TokenTTL Duration `yaml:"token_ttl"`
	// MaxTokenTTL bounds every token's lifetime. Default "1h"; at most "24h".
	MaxTokenTTL Duration `yaml:"max_token_ttl"`
	// Leeway tolerates clock skew when checking times. Default "30s"; at most "5m".
	Leeway Duration `yaml:"leeway"`
	// MaxDelegationDepth bounds agent → sub-agent chains. Default 3; at most 8.
	MaxDelegationDepth int `yaml:"max_delegation_depth"`
	// OIDC lists the identity providers whose user tokens agents may exchange to act on
	// behalf of a user.
	OIDC []OIDCProvider `yaml:"oidc"`
}

// OIDCProvider is a trusted OpenID Connect issuer of user tokens.
type OIDCProvider struct {
	// Issuer is the provider's iss.
	Issuer string `yaml:"issuer"`
	// JWKSURL is where its signing keys are published (https, or http on loopback).
	JWKSURL string `yaml:"jwks_url"`
	// Audience is the aud its tokens must carry for this gateway.
	Audience string `yaml:"audience"`
	// GroupsClaim names the claim with the user's groups. Default "groups".
	GroupsClaim string `yaml:"groups_claim"`
}

// Policy says where policy files live.
type Policy struct {
	// Paths are policy files or directories (every *.yaml and *.yml in them, sorted).
	// Relative paths are relative to the configuration file.
	Paths []string `yaml:"paths"`
	// Bundle is a policy bundle file (`chaperone policy bundle`) to load instead of Paths.
	// Relative to the configuration file.
	Bundle string `yaml:"bundle"`
	// RequireSigned loads only a bundle signed by one of trust.policy_signers: an unsigned
	// or tampered bundle is refused and the last good one stays in force.
	RequireSigned bool `yaml:"require_signed"`
	// WatchInterval is how often the files are checked for changes, which are then
	// reloaded like on SIGHUP. Default "2s"; "0s" disables watching.
	WatchInterval Duration `yaml:"watch_interval"`
}

// Trust lists trusted signing keys, each under the name that names its signatures in
// the audit log and in `chaperone tools list`.
type Trust struct {
	// ToolPublishers sign tool manifests.
	ToolPublishers []TrustedKey `yaml:"tool_publishers"`
	// PolicySigners sign policy bundles.
	PolicySigners []TrustedKey `yaml:"policy_signers"`
}

// TrustedKey is one trusted Ed25519 public key.
type TrustedKey struct {
	// Name names the signer; [a-z0-9][a-z0-9._-]{0,63}.
	Name string `yaml:"name"`
	// KeyFile is a PEM file holding the public key (`chaperone keys generate` writes one).
	// Relative to the configuration file.
	KeyFile string `yaml:"key_file"`
}

// Keyring reads the keys' files and returns them as a keyring; nil keys give an empty one.
func Keyring(keys []TrustedKey) (*sign.Keyring, error) {
	var ks []sign.Key
	for _, k := range keys {
		b, _, err := boundedfile.Read(k.KeyFile, 64<<10)
		if err != nil {
			return nil, fmt.Errorf("trusted key %q: %w", k.Name, err)
		}
		pubs, err := sign.ParsePublicKeys(b)
		if err != nil {
			return nil, fmt.Errorf("trusted key %q: %s: %w", k.Name, k.KeyFile, err)
		}
		if len(pubs) != 1 {
			return nil, fmt.Errorf("trusted key %q: %s holds %d keys, want one", k.Name, k.KeyFile, len(pubs))
		}
		ks = append(ks, sign.Key{Name: k.Name, Public: pubs[0]})
	}
	return sign.NewKeyring(ks...)
}

func (t *Trust) validate(bad func(field, format string, args ...any)) {
	for _, list := range []struct {
		field string
		keys  []TrustedKey
	}{{"trust.tool_publishers", t.ToolPublishers}, {"trust.policy_signers", t.PolicySigners}} {
		names := map[string]bool{}
		for i, k := range list.keys {
			f := fmt.Sprintf("%s[%d]", list.field, i)
			if !agentID.MatchString(k.Name) {
				bad(f+".name", "must match %s, got %q", agentID, k.Name)
			} else if names[k.Name] {
				bad(f+".name", "duplicate name %q", k.Name)
			}
			names[k.Name] = true
			if k.KeyFile == "" {
				bad(f+".key_file", "is required: the PEM file of the signer's public key")
			}
		}
	}
}

// The values of [Audit].Capture.
const (
	CaptureNone                = "none"
	CaptureArguments           = "arguments"
	CaptureArgumentsAndResults = "arguments_and_results"
)

// Audit configures content capture in the audit log. Capture stores call content as it is,
// unredacted, inside the hash chain: it cannot be removed later without breaking the chain.
// It is read at start; a reload does not change it.
type Audit struct {
	// Capture says which call content the audit log records: "none" (a hash and a
	// summary of names and types only), "arguments" (also the arguments, on call.intent and
	// call.refused) or "arguments_and_results" (also the upstream's result, on
	// call.outcome). Default "none".
	Capture string `yaml:"capture"`
	// CaptureMaxBytes bounds one captured value (arguments or result, as received):
	// larger ones are not recorded, and their event says captured "too_large".
	// Default 65536; 1 KiB to 16 MiB.
	CaptureMaxBytes int64 `yaml:"capture_max_bytes"`
	// After says how the events written once a call is settled — its outcome, or its
	// refusal — are recorded: "durable" (committed before the agent gets the answer; if
	// that fails, a result is withheld) or "async" (committed with the next batch, after the
	// answer: a crash can lose them, and `audit verify` then reports intents without
	// outcomes). The intent of an allowed call is durable before the upstream is called
	// either way. Default "durable".
	After string `yaml:"after"`
	// Journal says where an event is made durable with the embedded SQLite store: "on"
	// (in an append-only journal beside the database file, DB-audit-journal/, one write
	// and one flush per batch, then copied into the database within milliseconds; a crash
	// in between is repaired at the next start) or "off" (by the database's own commit,
	// which writes and flushes several pages per batch). PostgreSQL stores ignore it: replicas share
	// the database's chain. Default "on".
	Journal string `yaml:"journal"`
	// GroupWait lets the audit writer hold a batch open for more events while calls
	// arrive faster than commits complete, so that more of them share one commit and its
	// flush: it then waits half as long as the last commit took, at most GroupWait. It
	// waits only when two or more events queued behind that commit, so at a low call
	// rate no call waits. Whether it pays depends on the disk and the concurrency: measure
	// with chaperone bench --group-wait (see the audit guide). "0s" (the default) never
	// waits; at most "10ms".
	GroupWait Duration `yaml:"group_wait"`
	// Checkpoints are the signed anchors of the chain; see [Checkpoints].
	Checkpoints Checkpoints `yaml:"checkpoints"`
	// Retention prunes old events' content behind signed checkpoints; see [Retention].
	Retention Retention `yaml:"retention"`
}

// CapturesArguments reports whether call arguments are captured.
func (a Audit) CapturesArguments() bool {
	return a.Capture == CaptureArguments || a.Capture == CaptureArgumentsAndResults
}

// CapturesResults reports whether call results are captured.
func (a Audit) CapturesResults() bool { return a.Capture == CaptureArgumentsAndResults }

// Log configures the daemon's log on standard error.
type Log struct {
	// Level is debug, info, warn or error. Default "info".
	Level string `yaml:"level"`
	// Format is text or json. Default "text".
	Format string `yaml:"format"`
}

// Duration is a time.Duration written like "30s" in YAML.
type Duration time.Duration

// UnmarshalYAML implements [yaml.Unmarshaler].
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: duration must be a string like \"30s\"", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: invalid duration %q", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements [yaml.Marshaler].
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Load reads, decodes, expands, defaults and validates the file at path. Relative paths in
// the file are resolved against the file's directory.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("load config %s: %w", path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("load config %s: larger than %d bytes", path, MaxFileBytes)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load config %s: %w", path, err)
	}
	base, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("load config %s: %w", path, err)
	}
	c.resolvePaths(base)
	if err := Expand(c, os.LookupEnv); err != nil {
		return nil, fmt.Errorf("load config %s: %w", path, err)
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("load config %s: %w", path, err)
	}
	return c, nil
}

// Parse strictly decodes one YAML document: unknown keys and trailing documents are errors.
func Parse(data []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return &c, nil
		}
		return nil, fmt.Errorf("decode: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("decode: more than one YAML document")
	}
	return &c, nil
}

func (c *Config) resolvePaths(base string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	c.DataDir = abs(c.DataDir)
	c.Store.SQLite = abs(c.Store.SQLite)
	c.Admin.TokenFile = abs(c.Admin.TokenFile)
	c.Secrets.KeyFile = abs(c.Secrets.KeyFile)
	if c.Console.OIDC != nil {
		c.Console.OIDC.ClientSecretFile = abs(c.Console.OIDC.ClientSecretFile)
	}
	c.Sensors.TokenKeyFile = abs(c.Sensors.TokenKeyFile)
	c.Audit.Checkpoints.KeyFile = abs(c.Audit.Checkpoints.KeyFile)
	for i := range c.Audit.Checkpoints.Publish {
		c.Audit.Checkpoints.Publish[i].File = abs(c.Audit.Checkpoints.Publish[i].File)
	}
	if m := c.Sensors.Injection.Model; m != "embedded" && m != "rules" {
		c.Sensors.Injection.Model = abs(m)
	}
	for i, p := range c.Policy.Paths {
		c.Policy.Paths[i] = abs(p)
	}
	c.Policy.Bundle = abs(c.Policy.Bundle)
	for i, p := range c.Registry.Manifests {
		c.Registry.Manifests[i] = abs(p)
	}
	for _, ks := range [][]TrustedKey{c.Trust.ToolPublishers, c.Trust.PolicySigners} {
		for i := range ks {
			ks[i].KeyFile = abs(ks[i].KeyFile)
		}
	}
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// Expand replaces ${VAR} in upstream headers and env values using lookup. A reference to an
// unset variable is an error naming the field and the variable (never its value).
func Expand(c *Config, lookup func(string) (string, bool)) error {
	var errs []error
	expand := func(field, v string) string {
		return envRef.ReplaceAllStringFunc(v, func(ref string) string {
			name := envRef.FindStringSubmatch(ref)[1]
			val, ok := lookup(name)
			if !ok {
				errs = append(errs, fmt.Errorf("%s: environment variable %s is not set", field, name))
			}
			return val
		})
	}
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		for k, v := range u.Headers {
			u.Headers[k] = expand(fmt.Sprintf("upstreams[%d].headers.%s", i, k), v)
		}
		for k, v := range u.Env {
			u.Env[k] = expand(fmt.Sprintf("upstreams[%d].env.%s", i, k), v)
		}
	}
	for k, v := range c.Telemetry.Traces.Headers {
		c.Telemetry.Traces.Headers[k] = expand("telemetry.traces.headers."+k, v)
	}
	if p := c.Store.Postgres; p != nil {
		p.URL = expand("store.postgres.url", p.URL)
	}
	for i, p := range c.Audit.Checkpoints.Publish {
		for _, h := range []*AnchorHTTP{p.Webhook, p.ObjectStore} {
			if h == nil {
				continue
			}
			for k, v := range h.Headers {
				h.Headers[k] = expand(fmt.Sprintf("audit.checkpoints.publish[%d].headers.%s", i, k), v)
			}
		}
	}
	if cl := c.Sensors.Injection.Classifier; cl != nil {
		for k, v := range cl.Headers {
			cl.Headers[k] = expand("sensors.injection.classifier.headers."+k, v)
		}
	}
	return errors.Join(errs...)
}

// ApplyDefaults fills every unset field with its documented default.
func (c *Config) ApplyDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defD := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	def(&c.DataDir, "chaperone-data")
	def(&c.Server.Listen, "127.0.0.1:8080")
	def(&c.Server.Path, "/mcp")
	if c.Server.MaxBodyBytes == 0 {
		c.Server.MaxBodyBytes = 1 << 20
	}
	defD(&c.Server.ReadHeaderTimeout, 5*time.Second)
	defD(&c.Server.ReadTimeout, 30*time.Second)
	defD(&c.Server.WriteTimeout, 120*time.Second)
	defD(&c.Server.IdleTimeout, 120*time.Second)
	if c.Server.MaxSessions == 0 {
		c.Server.MaxSessions = 10000
	}
	defD(&c.Server.SessionIdle, 30*time.Minute)
	def(&c.Admin.Listen, "127.0.0.1:8081")
	def(&c.Admin.TokenFile, filepath.Join(c.DataDir, "admin.token"))
	c.Console.applyDefaults()
	c.Egress.applyDefaults()
	c.Store.applyDefaults(c.DataDir)
	def(&c.Registry.FirstUse, "pin")
	if c.Registry.RefreshInterval == 0 {
		c.Registry.RefreshInterval = Duration(5 * time.Minute)
	}
	for i := range c.Upstreams {
		defD(&c.Upstreams[i].CallTimeout, 30*time.Second)
		def(&c.Upstreams[i].Environment, "dev")
	}
	for i := range c.Agents {
		def(&c.Agents[i].Environment, "dev")
		if c.Agents[i].Capabilities == nil {
			c.Agents[i].Capabilities = []string{"*"}
		}
	}
	defD(&c.Identity.TokenTTL, 10*time.Minute)
	defD(&c.Identity.MaxTokenTTL, time.Hour)
	defD(&c.Identity.Leeway, 30*time.Second)
	if c.Identity.MaxDelegationDepth == 0 {
		c.Identity.MaxDelegationDepth = 3
	}
	for i := range c.Identity.OIDC {
		def(&c.Identity.OIDC[i].GroupsClaim, "groups")
	}
	if c.Policy.WatchInterval == 0 {
		c.Policy.WatchInterval = Duration(2 * time.Second)
	}
	def(&c.Audit.Capture, CaptureNone)
	def(&c.Audit.After, "durable")
	def(&c.Audit.Journal, "on")
	if c.Audit.CaptureMaxBytes == 0 {
		c.Audit.CaptureMaxBytes = 64 << 10
	}
	def(&c.Log.Level, "info")
	def(&c.Log.Format, "text")
	defD(&c.Approvals.Timeout, 15*time.Minute)
	if c.Autonomy.RiskThreshold == 0 {
		c.Autonomy.RiskThreshold = 50
	}
	if c.Autonomy.Promotion.MinDays == 0 {
		c.Autonomy.Promotion.MinDays = 14
	}
	if c.Autonomy.Promotion.MinCalls == 0 {
		c.Autonomy.Promotion.MinCalls = 200
	}
	if c.Autonomy.Promotion.MinApprovalRate == 0 {
		c.Autonomy.Promotion.MinApprovalRate = 0.9
	}
	if c.Approvals.DeclineReasons == nil {
		c.Approvals.DeclineReasons = []string{"wrong_recipient", "wrong_amount", "not_requested", "suspicious", "other"}
	}
	defaultWebhooks(c.Approvals.Webhooks)
	c.Containment.applyDefaults()
	c.Sensors.applyDefaults(c.DataDir)
	c.Audit.evidenceDefaults(c.DataDir)
	c.Telemetry.defaults()
	for i := range c.Tools {
		if c.Tools[i].Retries == nil && c.Tools[i].Idempotent {
			n := DefaultRetries
			c.Tools[i].Retries = &n
		}
	}
}

var (
	upstreamName  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)
	agentID       = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	toolName      = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
	hexSHA256     = regexp.MustCompile(`^[0-9a-f]{64}$`)
	pinHash       = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	declineReason = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)
	domainName    = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$`)
)

// defaultWebhooks gives webhooks their default timeout, 5s.
func defaultWebhooks(ws []Webhook) {
	for i := range ws {
		if ws[i].Timeout == 0 {
			ws[i].Timeout = Duration(5 * time.Second)
		}
	}
}

// checkWebhooks reports what is wrong with each webhook of the list named field.
func checkWebhooks(field string, ws []Webhook) []error {
	var errs []error
	for i, w := range ws {
		f := fmt.Sprintf("%s[%d]", field, i)
		if err := checkWebhookURL(w.URL); err != nil {
			errs = append(errs, fmt.Errorf("%s.url: %v", f, err))
		}
		if t := w.Timeout.D(); t <= 0 || t > time.Minute {
			errs = append(errs, fmt.Errorf("%s.timeout: must be between 1ms and 60s, got %s", f, t))
		}
	}
	return errs
}

// checkWebhookURL accepts https URLs and http on loopback.
func checkWebhookURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("must be an absolute URL, got %q", raw)
	}
	if u.User != nil {
		return errors.New("must not carry credentials: use secret_file")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if IsLoopbackHost(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("http is allowed only on a loopback address, got %q", u.Host)
	}
	return fmt.Errorf("must be https (or http on loopback), got scheme %q", u.Scheme)
}

// Environments are the environments agents and upstreams belong to.
var Environments = []string{"dev", "test", "prod"}

// IsLoopbackHost reports whether host (a name or an IP address, no port) is localhost or a
// loopback address.
func IsLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Classes are the risk classes a tool can have, in increasing order of risk.
var Classes = []string{"read", "write", "external", "destructive"}

// Validate reports every problem at once, each naming the field path and the bad value.
// It does not change c.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	checkAddr := func(field, addr string) {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad(field, "invalid address %q: %v", addr, err)
		}
	}
	checkAddr("server.listen", c.Server.Listen)
	c.Store.validate(bad)
	if !strings.HasPrefix(c.Server.Path, "/") {
		bad("server.path", "must start with /, got %q", c.Server.Path)
	}
	if c.Server.MaxBodyBytes < 1024 || c.Server.MaxBodyBytes > 64<<20 {
		bad("server.max_body_bytes", "must be between 1024 and %d, got %d", 64<<20, c.Server.MaxBodyBytes)
	}
	for _, d := range []struct {
		field string
		v     Duration
	}{
		{"server.read_header_timeout", c.Server.ReadHeaderTimeout},
		{"server.read_timeout", c.Server.ReadTimeout},
		{"server.write_timeout", c.Server.WriteTimeout},
		{"server.idle_timeout", c.Server.IdleTimeout},
		{"server.session_idle", c.Server.SessionIdle},
	} {
		if d.v <= 0 {
			bad(d.field, "must be positive, got %s", d.v.D())
		}
	}
	if c.Server.MaxSessions < 1 || c.Server.MaxSessions > 1_000_000 {
		bad("server.max_sessions", "must be between 1 and 1000000, got %d", c.Server.MaxSessions)
	}
	if c.Admin.Listen != "off" {
		checkAddr("admin.listen", c.Admin.Listen)
	}
	if c.Registry.FirstUse != "pin" && c.Registry.FirstUse != "quarantine" {
		bad("registry.first_use", "must be pin or quarantine, got %q", c.Registry.FirstUse)
	}
	if c.Registry.RefreshInterval < 0 {
		bad("registry.refresh_interval", "must not be negative, got %s", c.Registry.RefreshInterval.D())
	}
	c.Trust.validate(bad)
	if (len(c.Registry.Manifests) > 0 || c.Registry.RequireSigned) && len(c.Trust.ToolPublishers) == 0 {
		bad("registry", "manifests and require_signed need trust.tool_publishers: the keys whose signatures count")
	}
	for i, m := range c.Registry.Manifests {
		if m == "" {
			bad(fmt.Sprintf("registry.manifests[%d]", i), "is empty")
		}
	}
	if c.Policy.Bundle != "" && len(c.Policy.Paths) > 0 {
		bad("policy", "give paths or bundle, not both")
	}
	if c.Policy.RequireSigned && (c.Policy.Bundle == "" || len(c.Trust.PolicySigners) == 0) {
		bad("policy.require_signed", "needs policy.bundle and trust.policy_signers: only a bundle can be signed")
	}

	upstreams := map[string]bool{}
	upstreamEnv := map[string]string{}
	for i, u := range c.Upstreams {
		f := fmt.Sprintf("upstreams[%d]", i)
		upstreamEnv[u.Name] = u.Environment
		if !upstreamName.MatchString(u.Name) {
			bad(f+".name", "must match %s, got %q", upstreamName, u.Name)
		} else if upstreams[u.Name] {
			bad(f+".name", "duplicate upstream %q", u.Name)
		}
		upstreams[u.Name] = true
		n := 0
		for _, s := range []string{u.Command, u.URL, u.Builtin} {
			if s != "" {
				n++
			}
		}
		if n != 1 {
			bad(f, "exactly one of command, url or builtin must be set, got %d", n)
		}
		if u.URL != "" {
			pu, err := url.Parse(u.URL)
			if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
				bad(f+".url", "must be an http or https URL, got %q", u.URL)
			} else if pu.User != nil {
				bad(f+".url", "must not carry credentials; use headers")
			}
		}
		if u.Builtin != "" && u.Builtin != "demo" {
			bad(f+".builtin", "unknown builtin %q (known: demo)", u.Builtin)
		}
		if u.Command == "" && (len(u.Args) > 0 || len(u.Env) > 0 || u.Dir != "") {
			bad(f, "args, env and dir need command")
		}
		if u.URL == "" && len(u.Headers) > 0 {
			bad(f+".headers", "headers need url")
		}
		if u.CallTimeout <= 0 || u.CallTimeout.D() > time.Hour {
			bad(f+".call_timeout", "must be between 0s and 1h, got %s", u.CallTimeout.D())
		}
		if !slices.Contains(Environments, u.Environment) {
			bad(f+".environment", "must be dev, test or prod, got %q", u.Environment)
		}
	}

	seen := map[string]bool{}
	exposed := map[string]bool{}
	for i, t := range c.Tools {
		f := fmt.Sprintf("tools[%d]", i)
		if !upstreams[t.Upstream] {
			bad(f+".upstream", "unknown upstream %q", t.Upstream)
		}
		if env := upstreamEnv[t.Upstream]; t.Environment != "" && upstreams[t.Upstream] && t.Environment != env {
			bad(f+".environment", "is %s, but upstream %q is in %s", t.Environment, t.Upstream, env)
		}
		if !toolName.MatchString(t.Name) {
			bad(f+".name", "must match %s, got %q", toolName, t.Name)
		}
		key := t.Upstream + "\x00" + t.Name
		if seen[key] {
			bad(f, "tool %q of upstream %q declared twice", t.Name, t.Upstream)
		}
		seen[key] = true
		if t.ExposeAs != "" {
			if !toolName.MatchString(t.ExposeAs) {
				bad(f+".expose_as", "must match %s, got %q", toolName, t.ExposeAs)
			} else if exposed[t.ExposeAs] {
				bad(f+".expose_as", "name %q is exposed twice", t.ExposeAs)
			}
			exposed[t.ExposeAs] = true
		}
		if !slices.Contains(Classes, t.Class) {
			bad(f+".class", "must be one of %s, got %q", strings.Join(Classes, ", "), t.Class)
		}
		if t.Pin != "" && !pinHash.MatchString(t.Pin) {
			bad(f+".pin", "must be sha256:<64 hex digits>, got %q", t.Pin)
		}
		if _, err := t.Labels(); err != nil {
			bad(f+".flow", "%v", err)
		}
		if len(t.Undo) > 1000 {
			bad(f+".undo", "must be at most 1000 bytes, got %d", len(t.Undo))
		}
		if !(t.Cost >= 0 && t.Cost <= 1e6) {
			bad(f+".cost", "must be between 0 and 1000000, got %v", t.Cost)
		}
		if t.Timeout < 0 || t.Timeout.D() > time.Hour {
			bad(f+".timeout", "must be between 0s and 1h, got %s", t.Timeout.D())
		}
		errs = append(errs, t.Sensors.validate(f+".sensors")...)
		if t.Retries != nil && (*t.Retries < 0 || *t.Retries > 5) {
			bad(f+".retries", "must be between 0 and 5, got %d", *t.Retries)
		} else if t.Retries != nil && *t.Retries > 0 && !t.Idempotent {
			bad(f+".retries", "only an idempotent tool may be retried: a retried write could run twice (set idempotent: true if it is)")
		}
	}
	var exposedNames []string
	if len(errs) == 0 {
		// Exposed names only make sense once each tool entry is valid.
		var err error
		if exposedNames, err = ExposedNames(c.Tools); err != nil {
			errs = append(errs, err)
		}
	}

	ids := map[string]bool{}
	for i, a := range c.Agents {
		f := fmt.Sprintf("agents[%d]", i)
		if !agentID.MatchString(a.ID) {
			bad(f+".id", "must match %s, got %q", agentID, a.ID)
		} else if ids[a.ID] {
			bad(f+".id", "duplicate agent %q", a.ID)
		}
		ids[a.ID] = true
		if a.Owner == "" {
			bad(f+".owner", "is required: every agent has an accountable owner")
		}
		if !slices.Contains(Environments, a.Environment) {
			bad(f+".environment", "must be dev, test or prod, got %q", a.Environment)
		}
		if len(a.Capabilities) == 0 {
			bad(f+".capabilities", "must not be empty (omit it for any tool)")
		}
		for j, capab := range a.Capabilities {
			if capab != "*" && !toolName.MatchString(capab) {
				bad(fmt.Sprintf("%s.capabilities[%d]", f, j), "must be \"*\" or a tool name, got %q", capab)
				continue
			}
			// An agent is never routed to another environment's upstream: naming such a
			// tool among its capabilities is a mistake to catch here, not at the first call.
			if k := slices.Index(exposedNames, capab); k >= 0 {
				up := c.Tools[k].Upstream
				if env := upstreamEnv[up]; env != "" && env != a.Environment {
					bad(fmt.Sprintf("%s.capabilities[%d]", f, j), "tool %q lives on upstream %q in %s; a %s agent cannot reach it",
						capab, up, env, a.Environment)
				}
			}
		}
		if a.Autonomy < 0 || a.Autonomy > 3 {
			bad(f+".autonomy", "must be between 0 and 3, got %d", a.Autonomy)
		}
		if !hexSHA256.MatchString(a.TokenSHA256) {
			bad(f+".token_sha256", "must be 64 lower-case hex digits (see `chaperone token new`)")
		}
	}
	id := c.Identity
	if u, err := url.Parse(id.Issuer); id.Issuer != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "") {
		bad("identity.issuer", "must be an http(s) URL without query or fragment, got %q", id.Issuer)
	}
	if id.MaxTokenTTL <= 0 || id.MaxTokenTTL.D() > 24*time.Hour {
		bad("identity.max_token_ttl", "must be between 0s and 24h, got %s", id.MaxTokenTTL.D())
	}
	if id.TokenTTL <= 0 || id.TokenTTL > id.MaxTokenTTL {
		bad("identity.token_ttl", "must be positive and at most max_token_ttl (%s), got %s", id.MaxTokenTTL.D(), id.TokenTTL.D())
	}
	if id.Leeway < 0 || id.Leeway.D() > 5*time.Minute {
		bad("identity.leeway", "must be between 0s and 5m, got %s", id.Leeway.D())
	}
	if id.MaxDelegationDepth < 1 || id.MaxDelegationDepth > 8 {
		bad("identity.max_delegation_depth", "must be between 1 and 8, got %d", id.MaxDelegationDepth)
	}
	issuers := map[string]bool{}
	for i, p := range id.OIDC {
		f := fmt.Sprintf("identity.oidc[%d]", i)
		if p.Issuer == "" || issuers[p.Issuer] {
			bad(f+".issuer", "must be set and unique, got %q", p.Issuer)
		}
		issuers[p.Issuer] = true
		if u, err := url.Parse(p.JWKSURL); err != nil || u.Host == "" || !(u.Scheme == "https" || u.Scheme == "http" && IsLoopbackHost(u.Hostname())) {
			bad(f+".jwks_url", "must be an https URL (http only on loopback), got %q", p.JWKSURL)
		}
		if p.Audience == "" {
			bad(f+".audience", "must be set: tokens minted for another service must not be accepted")
		}
	}
	if c.Policy.WatchInterval < 0 {
		bad("policy.watch_interval", "must not be negative, got %s", c.Policy.WatchInterval.D())
	}
	if h := c.Approvals.HoldFor(); h < 0 || h >= c.Server.WriteTimeout.D() {
		bad("approvals.hold", "must be at least 0s and less than server.write_timeout (%s), got %s", c.Server.WriteTimeout.D(), h)
	}
	if t := c.Approvals.Timeout.D(); t < 5*time.Second || t > 168*time.Hour {
		bad("approvals.timeout", "must be between 5s and 168h, got %s", t)
	}
	for i, name := range c.Approvals.TwoPerson {
		if exposedNames != nil && !slices.Contains(exposedNames, name) {
			bad(fmt.Sprintf("approvals.two_person[%d]", i), "unknown tool %q (want an exposed tool name)", name)
		}
	}
	for i, r := range c.Approvals.DeclineReasons {
		if !declineReason.MatchString(r) {
			bad(fmt.Sprintf("approvals.decline_reasons[%d]", i), "must match %s, got %q", declineReason, r)
		}
	}
	if !slices.Contains(c.Approvals.DeclineReasons, "other") {
		bad("approvals.decline_reasons", "must include \"other\" (a reason given as free text)")
	}
	errs = append(errs, checkWebhooks("approvals.webhooks", c.Approvals.Webhooks)...)
	if c.Approvals.URL != "" {
		if u, err := url.Parse(c.Approvals.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("approvals.url", "must be an http(s) URL, got %q", c.Approvals.URL)
		}
	}
	if r := c.Autonomy.RiskThreshold; r < 1 || r > 100 {
		bad("autonomy.risk_threshold", "must be between 1 and 100, got %d", r)
	}
	if pr := c.Autonomy.Promotion; pr.MinDays < 0 || pr.MinCalls < 0 || pr.MaxDenials < 0 || pr.MinApprovalRate < 0 || pr.MinApprovalRate > 1 {
		bad("autonomy.promotion", "days, calls and denials must be at least 0 and min_approval_rate between 0 and 1, got %+v", pr)
	}
	for i, d := range c.Risk.InternalDomains {
		if !domainName.MatchString(d) {
			bad(fmt.Sprintf("risk.internal_domains[%d]", i), "must be a domain name like example.com, got %q", d)
		}
	}
	if c.Audit.After != "durable" && c.Audit.After != "async" {
		bad("audit.after", "must be durable or async, got %q", c.Audit.After)
	}
	if c.Audit.Journal != "on" && c.Audit.Journal != "off" {
		bad("audit.journal", "must be on or off, got %q", c.Audit.Journal)
	}
	if gw := time.Duration(c.Audit.GroupWait); gw < 0 || gw > audit.MaxGroupWait {
		bad("audit.group_wait", "must be between 0s and %s, got %s", audit.MaxGroupWait, gw)
	}
	if !slices.Contains([]string{CaptureNone, CaptureArguments, CaptureArgumentsAndResults}, c.Audit.Capture) {
		bad("audit.capture", "must be none, arguments or arguments_and_results, got %q", c.Audit.Capture)
	}
	if c.Audit.CaptureMaxBytes < 1<<10 || c.Audit.CaptureMaxBytes > 16<<20 {
		bad("audit.capture_max_bytes", "must be between 1024 and %d, got %d", 16<<20, c.Audit.CaptureMaxBytes)
	}
	errs = append(errs, c.Containment.validate(exposedNames)...)
	errs = append(errs, c.Sensors.validate()...)
	errs = append(errs, c.Audit.validateEvidence()...)
	errs = append(errs, c.Telemetry.validate()...)
	errs = append(errs, c.Console.validate()...)
	errs = append(errs, c.validateCredentials()...)
	// A key's record must outlive the call that holds it, or a retry could run it twice.
	longest := c.Server.WriteTimeout.D()
	for _, u := range c.Upstreams {
		longest = max(longest, u.CallTimeout.D())
	}
	if r := c.Containment.Idempotency.Retention.D(); r > 0 && r <= longest {
		bad("containment.idempotency.retention", "must be longer than the longest call (server.write_timeout and every upstream call_timeout: %s), got %s", longest, r)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format", "must be text or json, got %q", c.Log.Format)
	}
	return errors.Join(errs...)
}

// ExposedNames returns the name agents see for each tool, in order: ExposeAs if set, the
// upstream's name if no other declared tool shares it, else "<upstream>__<name>". It fails
// when two tools would still be exposed under one name.
func ExposedNames(tools []Tool) ([]string, error) {
	count := map[string]int{}
	for _, t := range tools {
		if t.ExposeAs == "" {
			count[t.Name]++
		}
	}
	names := make([]string, len(tools))
	owner := map[string]int{}
	var errs []error
	for i, t := range tools {
		n := t.ExposeAs
		if n == "" {
			n = t.Name
			if count[t.Name] > 1 {
				n = t.Upstream + "__" + t.Name
			}
		}
		if j, dup := owner[n]; dup {
			errs = append(errs, fmt.Errorf("tools[%d]: exposed name %q is already used by tools[%d]; set expose_as", i, n, j))
		}
		owner[n] = i
		names[i] = n
	}
	return names, errors.Join(errs...)
}

// IsRequired reports whether readiness waits for the upstream (default true).
func (u *Upstream) IsRequired() bool { return u.Required == nil || *u.Required }

// Redacted returns a copy safe to print: header values and env values are replaced.
func (c *Config) Redacted() *Config {
	cp := *c
	cp.Upstreams = slices.Clone(c.Upstreams)
	for i := range cp.Upstreams {
		u := &cp.Upstreams[i]
		u.Headers = redactMap(u.Headers)
		u.Env = redactMap(u.Env)
	}
	if cl := c.Sensors.Injection.Classifier; cl != nil {
		red := *cl
		red.Headers = redactMap(cl.Headers)
		cp.Sensors.Injection.Classifier = &red
	}
	cp.Telemetry.Traces.Headers = redactMap(c.Telemetry.Traces.Headers)
	if p := c.Store.Postgres; p != nil {
		red := *p
		red.URL = store.RedactDSN(p.URL)
		cp.Store.Postgres = &red
	}
	cp.Audit.Checkpoints.Publish = slices.Clone(c.Audit.Checkpoints.Publish)
	for i := range cp.Audit.Checkpoints.Publish {
		for _, h := range []**AnchorHTTP{&cp.Audit.Checkpoints.Publish[i].Webhook, &cp.Audit.Checkpoints.Publish[i].ObjectStore} {
			if *h != nil {
				red := **h
				red.Headers = redactMap(red.Headers)
				*h = &red
			}
		}
	}
	return &cp
}

func redactMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k := range m {
		out[k] = "[REDACTED]"
	}
	return out
}

// Marshal renders c as YAML.
func (c *Config) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}
