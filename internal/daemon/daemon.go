// Package daemon builds every subsystem from a validated configuration, starts them in order
// and shuts them down in reverse: store, audit log, policy, registry, upstreams, pipeline,
// MCP ingress and admin API.
package daemon

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/chaperone-dev/chaperone/internal/api"
	"github.com/chaperone-dev/chaperone/internal/approval"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/audit/journal"
	"github.com/chaperone-dev/chaperone/internal/boundedfile"
	"github.com/chaperone-dev/chaperone/internal/buildinfo"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/console"
	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/credential"
	"github.com/chaperone-dev/chaperone/internal/demo"
	"github.com/chaperone-dev/chaperone/internal/egress"
	"github.com/chaperone-dev/chaperone/internal/flow"
	"github.com/chaperone-dev/chaperone/internal/gateway"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/inspect"
	"github.com/chaperone-dev/chaperone/internal/oauth"
	"github.com/chaperone-dev/chaperone/internal/pipeline"
	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/policy/bundle"
	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/secrets"
	"github.com/chaperone-dev/chaperone/internal/sign"
	"github.com/chaperone-dev/chaperone/internal/store"
	"github.com/chaperone-dev/chaperone/internal/store/backend"
	"github.com/chaperone-dev/chaperone/internal/store/postgres"
	"github.com/chaperone-dev/chaperone/internal/telemetry"
	"github.com/chaperone-dev/chaperone/internal/upstream"
)

// Version is the gateway's version, reported as serverInfo: the release version stamped
// into [buildinfo.Version], or what the Go toolchain recorded ([buildinfo.Get]).
var Version = buildinfo.Get().Version

// Options are what the command line adds to the configuration.
type Options struct {
	Logger *slog.Logger
	// PolicySources, if set, are used instead of reading cfg.Policy.Paths (the demo's
	// embedded policy).
	PolicySources []policy.Source
	// DemoState receives the demo upstream's state when a builtin demo upstream is configured.
	DemoState **demo.State
	// ConfigPath is the configuration file cfg was loaded from; when set, reloads re-read it
	// for changes to the tool registry and the policy paths.
	ConfigPath string
	// EgressResolver looks up the egress proxy's destinations; nil uses the system's.
	// Tests map names to addresses with it.
	EgressResolver inspect.Resolver
}

// Daemon is a built gateway, ready to Run.
type Daemon struct {
	cfg   *config.Config
	log   *slog.Logger
	opts  Options
	store store.Store
	// shared is the store when it is PostgreSQL, shared with other replicas; nil on SQLite.
	shared *postgres.DB
	audit  *audit.Log
	reg    *registry.Registry
	// sensors are the content sensors, shared by the pipeline and the registry review.
	sensors *pipeline.Sensors
	gw      *gateway.Gateway
	ups     map[string]*upstream.Client
	policy  atomic.Pointer[policy.Policy]
	// decl is what a reload may change: the declared tools and the policy paths.
	decl atomic.Pointer[declared]
	// signers names the signer of each recent policy version, for the audit log.
	signers signers

	reloadMu sync.Mutex // serialises policy reloads
	// rejected names the last policy or configuration that failed to load, so a watched
	// file left broken is reported once, not at every check. Guarded by reloadMu.
	rejected string
	// configSum is the SHA-256 of the configuration file in force and of the files it
	// names that a reload reads (see [configInputs]). Guarded by reloadMu.
	configSum [32]byte

	agents   *identity.Directory
	tasks    *identity.Tasks
	keys     atomic.Pointer[identity.KeySet]
	keysMu   sync.Mutex // serialises key rotation
	issuer   *identity.Issuer
	oauth    *oauth.Server
	budgets  *contain.Budgets
	pipeline *pipeline.Pipeline
	// approvals is nil when approvals are off.
	approvals *approval.Manager

	// The brakes; nil when not configured (kills and idem always are).
	kills        *contain.Switches
	breakers     *contain.Breakers
	ledger       *contain.Ledger
	baselines    *contain.Baselines
	idem         *contain.Idempotency
	containHooks []*approval.Webhook

	// Evidence and telemetry: metrics (nil when off), the tracer (nil when no traces are
	// exported) and the signer of audit checkpoints (nil when off).
	metrics       *telemetry.Metrics
	tracer        trace.Tracer
	traceShutdown func(context.Context) error
	checkpointer  *audit.Checkpointer

	mcpLn, adminLn, metricsLn net.Listener
	adminToken                string
	// console is the operator console (nil when off); consoleSetup its one-time setup
	// token, "" when a console user existed at start.
	console      atomic.Pointer[console.Console]
	consoleSetup string
	// stopping closes when Run begins to shut down: it ends the console's live streams,
	// which would otherwise hold the HTTP shutdown.
	stopping chan struct{}
	stopOnce sync.Once
	syncCh   map[string]chan struct{}
	// synced has one channel per upstream, closed after its first successful reconciliation.
	synced map[string]chan struct{}

	// auth authenticates agents, on the MCP endpoint, the REST entry and the egress proxy.
	auth *identity.Authenticator
	// issuerURL is the token issuer's URL, also the issuer of decision receipts.
	issuerURL string
	// The credential broker: the secret store (nil when no key source is configured), its
	// keyring, and the broker that attaches upstream credentials (credentialsOn when any
	// upstream or egress rule has one).
	keyring       atomic.Pointer[secrets.Keyring]
	vault         *secrets.Vault
	broker        *credential.Broker
	credentialsOn bool
	// The egress proxy (nil when egress.listen is off) and the tool its requests are.
	egress     *egress.Proxy
	egressLn   net.Listener
	egressTool *registry.Tool
}

// New builds the daemon and binds its listeners. On error everything opened is closed.
func New(ctx context.Context, cfg *config.Config, opts Options) (_ *Daemon, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	// d, not the result: an error return sets the result to nil before the deferred close.
	d := &Daemon{cfg: cfg, log: opts.Logger, opts: opts, ups: map[string]*upstream.Client{}, syncCh: map[string]chan struct{}{}, synced: map[string]chan struct{}{},
		stopping: make(chan struct{})}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if d.store, err = backend.Open(ctx, cfg.Store, d.log.With("component", "store")); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	d.shared, _ = d.store.(*postgres.DB)
	if d.shared == nil && cfg.Audit.Journal == "on" {
		j, err := openJournal(ctx, cfg.Store.SQLite, d.store, journal.Options{Logger: d.log.With("component", "audit")})
		if err != nil {
			return nil, fmt.Errorf("open audit journal: %w", err)
		}
		d.store = j
	}
	if err := d.buildTelemetry(ctx); err != nil {
		return nil, err
	}
	if d.audit, err = audit.NewLog(ctx, d.store, audit.LogOptions{OnCommit: d.onCommit, Stamp: d.signers.stamp, GroupWait: time.Duration(cfg.Audit.GroupWait)}); err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	if err := d.buildCheckpointer(); err != nil {
		return nil, err
	}
	if err := d.buildSecrets(); err != nil {
		return nil, err
	}

	decl, err := declare(cfg)
	if err != nil {
		return nil, err
	}
	if d.sensors, err = buildSensors(cfg); err != nil {
		return nil, err
	}
	d.decl.Store(decl)
	if opts.ConfigPath != "" {
		b, err := os.ReadFile(opts.ConfigPath)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		d.configSum = configInputs(b, decl.files)
	}
	if _, err := d.loadPolicy(ctx, decl, true); err != nil {
		return nil, err
	}
	d.reg = registry.New(decl.decls, registry.Options{
		QuarantineFirstUse: cfg.Registry.FirstUse == "quarantine",
		RequireSigned:      cfg.Registry.RequireSigned,
		Pins:               d.store,
		Audit:              d.audit,
		Review:             reviewer(d.sensors.Injection),
		Logger:             d.log.With("component", "registry"),
	})

	var regs []identity.Registration
	for _, a := range cfg.Agents {
		regs = append(regs, identity.Registration{
			Agent: identity.Agent{ID: a.ID, Owner: a.Owner, Purpose: a.Purpose, Environment: a.Environment, Labels: a.Labels,
				Capabilities: a.Capabilities, Autonomy: a.Autonomy, Status: identity.StatusActive},
			TokenSHA256: a.TokenSHA256,
		})
	}
	static, err := identity.NewRegistry(regs)
	if err != nil {
		return nil, fmt.Errorf("agents: %w", err)
	}
	if d.agents, err = identity.NewDirectory(ctx, identity.DirectoryOptions{Store: d.store, Audit: d.audit, Static: regs}); err != nil {
		return nil, fmt.Errorf("agents: %w", err)
	}
	if d.tasks, err = identity.NewTasks(ctx, identity.TasksOptions{Store: d.store, Audit: d.audit, Usage: d.taskUsage}); err != nil {
		return nil, fmt.Errorf("tasks: %w", err)
	}

	for _, u := range cfg.Upstreams {
		uc := upstream.Config{
			Name: u.Name, Command: u.Command, Args: u.Args, Dir: u.Dir, URL: u.URL, Headers: u.Headers,
			CallTimeout: u.CallTimeout.D(), Logger: d.log.With("component", "upstream", "upstream", u.Name),
		}
		for k, v := range u.Env {
			uc.Env = append(uc.Env, k+"="+v)
		}
		if len(u.SecretEnv) > 0 {
			uc.SecretEnv = d.secretEnv(u.Name, u.SecretEnv)
		}
		if u.Credential != nil {
			uc.Credentials = func(base http.RoundTripper) http.RoundTripper {
				return &lateCredentials{d: d, upstream: u.Name, base: base}
			}
		}
		if u.Builtin == "demo" {
			srv, st := demo.NewServer(demo.Options{})
			uc.Server = srv
			if opts.DemoState != nil {
				*opts.DemoState = st
			}
		}
		ch := make(chan struct{}, 1)
		d.syncCh[u.Name] = ch
		d.synced[u.Name] = make(chan struct{})
		uc.OnToolsChanged = func() {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
		c, err := upstream.New(uc)
		if err != nil {
			return nil, fmt.Errorf("upstream %q: %w", u.Name, err)
		}
		d.ups[u.Name] = c
	}

	if d.mcpLn, err = net.Listen("tcp", cfg.Server.Listen); err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Server.Listen, err)
	}
	d.budgets = contain.NewBudgets(nil)
	cs, err := d.buildContainment(ctx)
	if err != nil {
		return nil, err
	}
	if err := d.buildIdentity(ctx); err != nil {
		return nil, err
	}
	if err := d.buildBroker(); err != nil {
		return nil, err
	}
	popts := pipeline.Options{
		Tools: d.reg, Policy: d.policy.Load, Upstreams: callRouter{d: d, ups: upstreamSet(d.ups)}, Audit: d.audit, Budgets: d.budgets,
		Logger:          d.log.With("component", "pipeline"),
		Capture:         pipeline.Capture{Arguments: cfg.Audit.CapturesArguments(), Results: cfg.Audit.CapturesResults(), MaxBytes: cfg.Audit.CaptureMaxBytes},
		AsyncAfter:      cfg.Audit.After == "async",
		InternalDomains: cfg.Risk.InternalDomains,
		EnforceAutonomy: cfg.Autonomy.Enforce,
		RiskThreshold:   cfg.Autonomy.RiskThreshold,
		Contain:         cs,
		Sensors:         d.sensors,
		Tracer:          d.tracer,
		TraceCapture:    cfg.Telemetry.Traces.Capture,
		OnDemote: func(ctx context.Context, agent string, from, to int, reason string) {
			err := d.audit.Append(ctx, &audit.Event{Time: time.Now(), Kind: audit.KindAgentDemoted, Agent: agent,
				Decision: strconv.Itoa(to), Detail: fmt.Sprintf("autonomy %d → %d: %s", from, to, reason)})
			if err != nil {
				d.log.ErrorContext(ctx, "demotion not recorded", "agent", agent, "err", err)
			}
		},
	}
	if d.credentialsOn {
		// Results are searched for the credentials the gateway holds only when it holds
		// some: the search costs about 2 µs per KiB of result.
		popts.Redact = d.redactResult
	}
	if cfg.Approvals.On() {
		if d.approvals, err = newApprovals(cfg, d.store, d.audit, d.log.With("component", "approvals")); err != nil {
			return nil, err
		}
		popts.Approve = (&approver{m: d.approvals, hold: cfg.Approvals.HoldFor(), voided: d.approvalVoided}).approve
	}
	if d.metrics != nil {
		popts.OnCall = d.metrics.ObserveCall
	}
	var sessions gateway.SessionStore
	if d.shared != nil {
		// An MCP session, and what it has read, continue on whichever replica serves
		// its next request.
		popts.Flow = flow.NewStore(flow.StoreOptions{Journal: d.shared})
		sessions = d.shared
	}
	d.pipeline = pipeline.New(popts)
	d.auth = &identity.Authenticator{Static: static, Tokens: d.issuer, Agents: d.agents, Tasks: d.tasks, Revoked: d.tokenRevoked}
	d.gw = gateway.New(gateway.Options{
		Auth:  d.auth,
		Calls: d.pipeline, Catalog: d.reg, Policy: d.policy.Load, Audit: d.audit,
		Logger: d.log.With("component", "gateway"), MaxBody: cfg.Server.MaxBodyBytes,
		MaxSessions: cfg.Server.MaxSessions, SessionIdle: cfg.Server.SessionIdle.D(),
		Name: "chaperone", Version: Version, ResourceMetadata: d.oauth.ResourceMetadataURL(),
		Tracer: d.tracer, Sessions: sessions,
	})
	if err := d.metricsListener(); err != nil {
		return nil, err
	}
	if err := d.buildEgress(); err != nil {
		return nil, err
	}
	if cfg.Admin.Listen != "off" {
		if d.adminToken, err = adminToken(cfg.Admin.TokenFile); err != nil {
			return nil, err
		}
		if d.adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
			return nil, fmt.Errorf("listen %s: %w", cfg.Admin.Listen, err)
		}
		if cfg.ConsoleEnabled() {
			c, err := d.buildConsole(ctx, d.apiOptions())
			if err != nil {
				return nil, fmt.Errorf("console: %w", err)
			}
			d.console.Store(c)
		}
	}
	return d, nil
}

// apiOptions wires the admin API, and the console, which acts through the same parts.
func (d *Daemon) apiOptions() api.Options {
	return api.Options{
		Token: d.adminToken, Registry: d.reg, Reload: d.ReloadPolicy, Policy: d.policy.Load,
		Status: d.status, Logger: d.log.With("component", "api"),
		Agents: d.agents, Tasks: d.tasks, RotateKeys: d.RotateKeys, Keys: d.keyInfo, Shadow: d.pipeline.ShadowStats,
		Approvals: d.approvalsAPI(), Autonomy: d.autonomyReport, SetAutonomy: d.setAutonomy,
		Containment: containAPI{d},
		Secrets:     d.secretsAPI(),
	}
}

// MCPURL is the agent endpoint's URL.
func (d *Daemon) MCPURL() string {
	return "http://" + d.mcpLn.Addr().String() + d.cfg.Server.Path
}

// AdminURL is the admin API's base URL, or "" when it is off.
func (d *Daemon) AdminURL() string {
	if d.adminLn == nil {
		return ""
	}
	return "http://" + d.adminLn.Addr().String()
}

// Registry returns the tool registry.
func (d *Daemon) Registry() *registry.Registry { return d.reg }

// Policy returns the policy in force.
func (d *Daemon) Policy() *policy.Policy { return d.policy.Load() }

// Run serves until ctx is done, then shuts down: listeners first, then upstreams, then the
// audit log (flushed) and the store.
func (d *Daemon) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	for name, c := range d.ups {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := c.Run(ctx); err != nil {
				d.log.ErrorContext(ctx, "upstream stopped", "upstream", name, "err", err)
			}
		}()
		go func() {
			defer wg.Done()
			d.syncLoop(ctx, name, c)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.gw.Run(ctx)
	}()
	if d.approvals != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.approvals.Run(ctx, time.Second)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		every(ctx, time.Minute, func(now time.Time) {
			d.pipeline.ExpireFlow(now)
			d.expireContainment(ctx, now)
		})
	}()
	spawn := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	d.evidenceLoops(ctx, spawn)
	d.shareLoop(ctx, spawn)
	if iv := d.cfg.Policy.WatchInterval.D(); iv > 0 && (d.opts.PolicySources == nil || d.opts.ConfigPath != "") {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.watchPolicy(ctx, iv)
		}()
	}

	mux := http.NewServeMux()
	mux.Handle(d.cfg.Server.Path, d.gw)
	// The REST entry for agents that do not speak MCP: POST /v1/tools/{name}:call.
	mux.Handle("/v1/", d.gw.REST())
	d.oauth.Register(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", d.ready)
	servers := []*http.Server{d.httpServer(mux)}
	lns := []net.Listener{d.mcpLn}
	if d.adminLn != nil {
		servers = append(servers, d.httpServer(d.adminHandler(api.New(d.apiOptions()), d.console.Load())))
		lns = append(lns, d.adminLn)
	}
	if d.metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", d.metrics.Handler())
		servers = append(servers, d.httpServer(mux))
		lns = append(lns, d.metricsLn)
	}
	if d.egressLn != nil {
		servers = append(servers, d.egressServer())
		lns = append(lns, d.egressLn)
	}
	for i, s := range servers {
		go func() {
			if err := s.Serve(lns[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve %s: %w", lns[i].Addr(), err)
			}
		}()
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	d.stopOnce.Do(func() { close(d.stopping) })
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer scancel()
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			d.log.Warn("http shutdown", "err", err)
		}
	}
	cancel()
	wg.Wait()
	d.saveBaselines(context.WithoutCancel(sctx))
	return errors.Join(runErr, d.close())
}

func (d *Daemon) httpServer(h http.Handler) *http.Server {
	s := d.cfg.Server
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.ReadHeaderTimeout.D(),
		ReadTimeout:       s.ReadTimeout.D(),
		WriteTimeout:      s.WriteTimeout.D(),
		IdleTimeout:       s.IdleTimeout.D(),
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}
}

func (d *Daemon) close() error {
	var errs []error
	if d.mcpLn != nil {
		d.mcpLn.Close()
	}
	if d.adminLn != nil {
		d.adminLn.Close()
	}
	if d.metricsLn != nil {
		d.metricsLn.Close()
	}
	if d.audit != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, d.audit.Close(ctx))
		// The last events are anchored too: a checkpoint at shutdown.
		d.checkpoint(ctx)
		cancel()
		d.audit = nil
	}
	if d.traceShutdown != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := d.traceShutdown(ctx); err != nil {
			d.log.Warn("trace export at shutdown", "err", err)
		}
		cancel()
		d.traceShutdown = nil
	}
	if d.store != nil {
		errs = append(errs, d.store.Close())
		d.store = nil
	}
	return errors.Join(errs...)
}

// syncLoop reconciles the registry with an upstream's tool list after every (re)connect and
// change notification, and every refresh interval.
func (d *Daemon) syncLoop(ctx context.Context, name string, c *upstream.Client) {
	first := d.synced[name]
	var tick <-chan time.Time
	if iv := d.cfg.Registry.RefreshInterval.D(); iv > 0 {
		t := time.NewTicker(iv)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.syncCh[name]:
		case <-tick:
		}
		if err := d.SyncUpstream(ctx, name); err != nil {
			if ctx.Err() == nil {
				d.log.WarnContext(ctx, "tool sync failed", "upstream", name, "err", err)
			}
			continue
		}
		if first != nil {
			close(first)
			first = nil
		}
	}
}

// WaitSynced waits until every upstream's tools have been reconciled once, or ctx is done.
// It needs Run to be running.
func (d *Daemon) WaitSynced(ctx context.Context) error {
	for name, ch := range d.synced {
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("upstream %q not reached yet: %w", name, ctx.Err())
		}
	}
	return nil
}

// SyncUpstream lists an upstream's tools now and reconciles the registry with them.
func (d *Daemon) SyncUpstream(ctx context.Context, name string) error {
	c, ok := d.ups[name]
	if !ok {
		return fmt.Errorf("unknown upstream %q", name)
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tools, err := c.Tools(lctx)
	if err != nil {
		return fmt.Errorf("list tools: %w", err)
	}
	return d.reg.Sync(ctx, name, tools)
}

// ReloadPolicy reloads like SIGHUP: the configuration file's tool registry and policy
// paths, if the gateway runs from one and it changed, then the policy files. Everything is
// validated completely before anything is swapped in; on any error what is in force stays.
func (d *Daemon) ReloadPolicy(ctx context.Context) (string, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	if d.opts.ConfigPath != "" {
		if err := d.reloadConfig(ctx); err != nil {
			return "", err
		}
	}
	if d.vault != nil {
		// A reload also picks up a key file with a new key, so every replica can read what
		// one re-encrypts under it.
		if err := d.ReloadSecretKeys(); err != nil {
			return "", fmt.Errorf("reload secret keys: %w", err)
		}
	}
	return d.loadPolicy(ctx, d.decl.Load(), false)
}

// declared is the part of the configuration a reload may change.
type declared struct {
	decls       []registry.Declaration
	tools       map[string]policy.ToolInfo
	policyPaths []string
	// bundle is the policy bundle to load instead of policyPaths; policySigners the keys
	// that may sign it, and requireSigned whether one must.
	bundle        string
	policySigners *sign.Keyring
	requireSigned bool
	// files are the other files the configuration names that a reload reads: the signed
	// manifests, their signatures and the trusted keys.
	files []string
}

// declare derives the registry's declarations and the policy's tool set from cfg.
func declare(cfg *config.Config) (*declared, error) {
	names, err := config.ExposedNames(cfg.Tools)
	if err != nil {
		return nil, err
	}
	envOf := map[string]string{}
	for _, u := range cfg.Upstreams {
		envOf[u.Name] = u.Environment
	}
	d := &declared{decls: make([]registry.Declaration, len(cfg.Tools)), tools: map[string]policy.ToolInfo{}, policyPaths: cfg.Policy.Paths}
	for i, t := range cfg.Tools {
		d.decls[i] = registry.Declaration{Name: names[i], Upstream: t.Upstream, UpstreamName: t.Name, Class: t.Class,
			Environment: envOf[t.Upstream], Pin: t.Pin, Overlay: t.Arguments}
		// Validate checked the labels.
		d.decls[i].Flow, _ = t.Labels()
		d.decls[i].Undo = t.Undo
		d.decls[i].Cost, d.decls[i].Timeout, d.decls[i].Idempotent = t.Cost, t.Timeout.D(), t.Idempotent
		if t.Retries != nil {
			d.decls[i].Retries = *t.Retries
		}
		if d.decls[i].Sensors, err = toolSettings(cfg, t); err != nil {
			return nil, fmt.Errorf("tools[%d].sensors: %w", i, err)
		}
		d.tools[names[i]] = policy.ToolInfo{Class: t.Class}
	}
	if err := applyManifests(cfg, d.decls); err != nil {
		return nil, err
	}
	if cfg.Egress.Listen != "" {
		// The egress proxy's requests are calls of the egress tool: policy rules name it.
		// (Validation refused a declared tool of that name.)
		d.tools[egressTool] = policy.ToolInfo{Class: policy.ClassExternal}
	}
	d.bundle, d.requireSigned = cfg.Policy.Bundle, cfg.Policy.RequireSigned
	for _, m := range cfg.Registry.Manifests {
		d.files = append(d.files, m, registry.SignatureFile(m))
	}
	for _, k := range slices.Concat(cfg.Trust.ToolPublishers, cfg.Trust.PolicySigners) {
		d.files = append(d.files, k.KeyFile)
	}
	if d.policySigners, err = config.Keyring(cfg.Trust.PolicySigners); err != nil {
		return nil, fmt.Errorf("trust.policy_signers: %w", err)
	}
	return d, nil
}

// reloadConfig re-reads the configuration file and, if it changed, swaps in its tool
// registry and policy — both compiled first — and asks every upstream for its tools again.
// Upstreams and every other section take effect at restart: a change to the upstreams is
// refused, others are logged. d.reloadMu must be held.
func (d *Daemon) reloadConfig(ctx context.Context) error {
	path := d.opts.ConfigPath
	raw, err := os.ReadFile(path)
	if err != nil {
		return d.rejectOnce(ctx, "config read "+err.Error(), fmt.Errorf("reload config: %w", err))
	}
	// A newly signed manifest or a replaced key is a change even if the file is not.
	sum := configInputs(raw, d.decl.Load().files)
	if sum == d.configSum {
		return nil
	}
	key := "config " + hex.EncodeToString(sum[:])
	cfg, err := config.Load(path)
	if err != nil {
		return d.rejectOnce(ctx, key, fmt.Errorf("reload config: %w", err))
	}
	if !sameUpstreams(cfg.Upstreams, d.cfg.Upstreams) {
		return d.rejectOnce(ctx, key, errors.New("reload config: upstreams changed: restart the gateway to apply that"))
	}
	decl, err := declare(cfg)
	if err != nil {
		return d.rejectOnce(ctx, key, fmt.Errorf("reload config: %w", err))
	}
	lp, err := d.policySources(ctx, decl, false)
	if err != nil {
		return d.rejectOnce(ctx, key, fmt.Errorf("reload config: policy: %w", err))
	}
	p, err := policy.Compile(lp.srcs, decl.tools)
	if err != nil {
		return d.rejectOnce(ctx, key, fmt.Errorf("reload config: policy: %w", err))
	}
	if err := d.reg.Redeclare(ctx, decl.decls); err != nil {
		d.log.WarnContext(ctx, "registry reload: some tools are quarantined", "err", err)
	}
	d.decl.Store(decl)
	d.swapPolicy(ctx, p, lp)
	d.configSum = configInputs(raw, decl.files)
	e := &audit.Event{Time: time.Now(), Kind: audit.KindConfigReloaded, PolicyVersion: p.Version(),
		Detail: fmt.Sprintf("%d tools declared; upstreams and other sections apply at restart", len(decl.decls))}
	if err := d.audit.Append(ctx, e); err != nil {
		d.log.ErrorContext(ctx, "audit append failed", "kind", e.Kind, "err", err)
	}
	d.log.InfoContext(ctx, "configuration reloaded", "tools", len(decl.decls), "policy", p.Version())
	for _, ch := range d.syncCh {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	return nil
}

// sameUpstreams reports whether two configurations' upstreams are the same, absent and
// empty lists and maps being the same. It compares whole values, so a field added to
// config.Upstream later is compared too: an unnoticed upstream change must not slip
// through a reload.
func sameUpstreams(a, b []config.Upstream) bool {
	norm := func(us []config.Upstream) []config.Upstream {
		out := slices.Clone(us)
		for i := range out {
			if len(out[i].Args) == 0 {
				out[i].Args = nil
			}
			if len(out[i].Env) == 0 {
				out[i].Env = nil
			}
			if len(out[i].Headers) == 0 {
				out[i].Headers = nil
			}
			if len(out[i].SecretEnv) == 0 {
				out[i].SecretEnv = nil
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// rejectOnce records a failed reload in the audit log the first time it is seen (key names
// the failure) and returns err. d.reloadMu must be held.
func (d *Daemon) rejectOnce(ctx context.Context, key string, err error) error {
	if key != d.rejected {
		d.auditPolicy(ctx, audit.KindPolicyRejected, "", err)
		d.rejected = key
	}
	return err
}

// loadPolicy compiles the policy files (or bundle) for the declared tools and swaps the
// policy in if its version changed. first is true at start, when a bad bundle may fall
// back to the last good one. d.reloadMu must be held, or the daemon not yet running.
func (d *Daemon) loadPolicy(ctx context.Context, decl *declared, first bool) (string, error) {
	lp, err := d.policySources(ctx, decl, first)
	if err != nil {
		return "", d.rejectOnce(ctx, "policy read "+err.Error(), fmt.Errorf("load policy: %w", err))
	}
	v := policy.VersionOf(lp.srcs)
	if old := d.policy.Load(); old != nil && old.Version() == v {
		return v, nil // unchanged: nothing to compile
	}
	p, err := policy.Compile(lp.srcs, decl.tools)
	if err != nil {
		return "", d.rejectOnce(ctx, "policy "+v, fmt.Errorf("load policy: %w", err))
	}
	d.swapPolicy(ctx, p, lp)
	return p.Version(), nil
}

// policySources reads the policy: the daemon's own sources, the bundle, or the files.
func (d *Daemon) policySources(ctx context.Context, decl *declared, first bool) (loadedPolicy, error) {
	switch {
	case d.opts.PolicySources != nil:
		return loadedPolicy{srcs: d.opts.PolicySources}, nil
	case decl.bundle != "":
		return d.loadBundle(ctx, decl, first)
	}
	srcs, err := ReadPolicySources(decl.policyPaths)
	return loadedPolicy{srcs: srcs}, err
}

// swapPolicy puts p, compiled from lp, in force and records it with its bundle's signer;
// a policy from a bundle file keeps that bundle as the last good one.
func (d *Daemon) swapPolicy(ctx context.Context, p *policy.Policy, lp loadedPolicy) {
	if old := d.policy.Load(); old != nil && old.Version() == p.Version() {
		return
	}
	d.signers.set(p.Version(), lp.signer)
	d.auditPolicy(ctx, audit.KindPolicyLoaded, p.Version(), nil)
	d.policy.Store(p)
	d.log.InfoContext(ctx, "policy loaded", "version", p.Version(), "rules", p.Rules(), "signer", lp.signer)
	if lp.keep != nil {
		d.keepBundle(ctx, lp.keep)
	}
}

func (d *Daemon) auditPolicy(ctx context.Context, kind, version string, err error) {
	e := &audit.Event{Time: time.Now(), Kind: kind, PolicyVersion: version}
	if err != nil {
		e.Detail = truncate(err.Error(), 2000)
	}
	if aerr := d.audit.Append(ctx, e); aerr != nil {
		d.log.ErrorContext(ctx, "audit append failed", "kind", kind, "err", aerr)
	}
}

// watchPolicy reloads the configuration's tools and the policy whenever the files a reload
// reads change, until ctx is done. A change is taken once the files have held still for
// one interval, so a file caught half-written (an editor truncates, then writes) is never
// compiled; it is then swapped in like a SIGHUP reload. Unchanged files cost a read and a
// hash each interval.
func (d *Daemon) watchPolicy(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	seen := d.fingerprint()
	taken := seen
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fp := d.fingerprint()
		if fp != seen {
			seen = fp // changing: wait until it holds still
			continue
		}
		if fp == taken {
			continue
		}
		taken = fp
		if _, err := d.ReloadPolicy(ctx); err != nil && ctx.Err() == nil {
			d.log.WarnContext(ctx, "policy reload rejected; the old policy stays", "err", err)
		}
	}
}

// fingerprint hashes what a reload reads — the configuration file, the files it names,
// the secrets key file, and the policy files or bundle — and what reading them failed with.
func (d *Daemon) fingerprint() [32]byte {
	decl := d.decl.Load()
	files := slices.Concat([]string{d.opts.ConfigPath, d.cfg.Secrets.KeyFile, decl.bundle}, decl.files)
	h := sha256.New()
	h.Write(sumFiles(files))
	if decl.bundle == "" {
		if srcs, err := ReadPolicySources(decl.policyPaths); err != nil {
			h.Write([]byte(err.Error()))
		} else {
			h.Write([]byte(policy.VersionOf(srcs)))
		}
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// configInputs hashes a configuration file's content and the files it names.
func configInputs(raw []byte, files []string) [32]byte {
	h := sha256.New()
	h.Write(raw)
	h.Write(sumFiles(files))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// sumFiles hashes the paths and contents of files ("" skipped), or what reading one failed
// with.
func sumFiles(files []string) []byte {
	h := sha256.New()
	for _, f := range files {
		if f == "" {
			continue
		}
		b, _, err := boundedfile.Read(f, bundle.MaxBytes)
		if err != nil {
			b = []byte(err.Error())
		}
		sum := sha256.Sum256(b)
		h.Write([]byte(f))
		h.Write([]byte{0})
		h.Write(sum[:])
	}
	return h.Sum(nil)
}

// ReadPolicySources reads policy files: each path is a file, or a directory whose *.yaml and
// *.yml files (but not the test suites, *_test.yaml) are read in name order. A path that
// matches no file is an error.
func ReadPolicySources(paths []string) ([]policy.Source, error) {
	var srcs []policy.Source
	if len(paths) == 0 {
		return nil, errors.New("policy.paths is empty: with no policy every call is denied; give at least one file")
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		files := []string{p}
		if fi.IsDir() {
			files = nil
			for _, pat := range []string{"*.yaml", "*.yml"} {
				m, _ := filepath.Glob(filepath.Join(p, pat))
				for _, f := range m {
					// Policy test suites live beside the policies; they are not policy.
					if !strings.HasSuffix(f, "_test.yaml") && !strings.HasSuffix(f, "_test.yml") {
						files = append(files, f)
					}
				}
			}
			if len(files) == 0 {
				return nil, fmt.Errorf("%s: no *.yaml or *.yml policy files", p)
			}
		}
		for _, f := range files {
			data, _, err := boundedfile.Read(f, config.MaxFileBytes)
			if err != nil {
				return nil, err
			}
			srcs = append(srcs, policy.Source{Name: f, Data: data})
		}
	}
	return srcs, nil
}

// ready answers GET /readyz: 200 when the store answers, a policy is loaded and every
// required upstream is reachable; else 503 with one line per problem. A load balancer
// stops sending calls to a replica that is not ready — which would refuse them anyway.
func (d *Daemon) ready(w http.ResponseWriter, r *http.Request) {
	var problems []string
	if err := d.storeReady(r.Context()); err != nil {
		problems = append(problems, err.Error())
	}
	if d.policy.Load() == nil {
		problems = append(problems, "no policy is loaded")
	}
	var down []string
	for _, u := range d.cfg.Upstreams {
		if c := d.ups[u.Name]; c != nil && u.IsRequired() && !c.Ready() {
			down = append(down, u.Name)
		}
	}
	slices.Sort(down)
	if len(down) > 0 {
		problems = append(problems, "upstreams down: "+strings.Join(down, ", "))
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(problems) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: %s\n", strings.Join(problems, "; "))
		return
	}
	w.Write([]byte("ready\n"))
}

func (d *Daemon) status() api.Status {
	st := api.Status{Version: Version, PolicyVersion: d.policy.Load().Version(), Sessions: d.gw.Sessions(), Upstreams: map[string]bool{}}
	for name, c := range d.ups {
		st.Upstreams[name] = c.Ready()
	}
	return st
}

// adminToken reads the admin token file, creating it with a fresh random token (0600) if it
// does not exist.
func adminToken(path string) (string, error) {
	t, err := secretFile(path, func() string {
		var raw [32]byte
		rand.Read(raw[:])
		return "chpadm_" + base64.RawURLEncoding.EncodeToString(raw[:])
	})
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	if len(t) < 32 {
		return "", fmt.Errorf("admin token file %s: token shorter than 32 characters", path)
	}
	return t, nil
}

// secretFile returns the trimmed content of a secret file, creating it first — only
// readable by its owner, and never over a file that appeared meanwhile — with the
// value fresh makes, if it does not exist.
func secretFile(path string, fresh func() string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	v := fresh()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(v + "\n"); err != nil {
		f.Close()
		return "", err
	}
	return v, f.Close()
}

// upstreamSet routes calls to the upstream that owns a tool.
type upstreamSet map[string]*upstream.Client

func (s upstreamSet) Call(ctx context.Context, up, tool string, args json.RawMessage) (json.RawMessage, error) {
	c, ok := s[up]
	if !ok {
		return nil, fmt.Errorf("unknown upstream %q: %w", up, upstream.ErrUnavailable)
	}
	return c.Call(ctx, tool, args)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
