package identity

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// Sentinel errors of the [Directory]. They are returned wrapped; test with errors.Is.
var (
	// ErrAgentExists is returned when an agent with the same id is already registered
	// (stored or declared in the configuration). Ids are never reused, even after
	// revocation.
	ErrAgentExists = errors.New("agent already exists")
	// ErrUnknownAgent is returned for an id no agent has.
	ErrUnknownAgent = errors.New("unknown agent")
	// ErrAgentRevoked is returned for a status change of a revoked agent: revocation is
	// final.
	ErrAgentRevoked = errors.New("agent is revoked")
	// ErrStatusUnchanged is returned when an agent already has the status asked for
	// (suspending a suspended agent, resuming an active one).
	ErrStatusUnchanged = errors.New("agent already has that status")
	// ErrDeclaredAgent is returned for a status change of an agent declared in the
	// configuration: the directory holds it read-only.
	ErrDeclaredAgent = errors.New("agent is declared in the configuration: edit the configuration")
	// ErrNotAudited is returned, wrapped together with the audit log's error, when a
	// safety action (suspension, revocation, resumption, ending a task) took effect but
	// its audit record could not be written. The action stands: undoing a suspension
	// because the log is unavailable would fail open.
	ErrNotAudited = errors.New("done, but the audit record could not be written")
)

// ValidationError reports why a request to the [Directory] or [Tasks] was refused. Each
// problem names the field and the bound it broke; problems quote operator input, never
// secrets, so they are safe to show.
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	return "invalid: " + strings.Join(e.Problems, "; ")
}

// problems collects validation problems.
type problems []string

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, field+": "+fmt.Sprintf(format, args...))
}

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return &ValidationError{Problems: p}
}

// short quotes s for an error message, cut to a bounded length.
func short(s string) string {
	const limit = 64
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return fmt.Sprintf("%q...", s[:cut])
	}
	return fmt.Sprintf("%q", s)
}

// Bounds on what an agent record may hold.
const (
	MaxLabels       = 32
	MaxLabelValue   = 256
	MaxCapabilities = 1024
	MaxOwner        = 256
	MaxPurpose      = 1024
	MaxBy           = 128  // who acted, as recorded in the audit log
	MaxReason       = 1024 // an operator's reason
)

// auditTimeout bounds the wait for an audit record of a change that has already been
// made, and so must be recorded even if the caller has gone away.
const auditTimeout = 10 * time.Second

// auditContext returns a context for recording a change already made.
func auditContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
}

var (
	agentIDPattern  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	toolNamePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
	labelKeyPattern = regexp.MustCompile(`^[a-z0-9_.-]{1,63}$`)
)

// environments are the environments an agent can belong to.
var environments = []string{"dev", "test", "prod"}

// AgentRecord is an agent as stored.
type AgentRecord struct {
	Agent        Agent  // includes Status
	StatusReason string // the operator's reason for the last suspension or revocation
	SecretSHA256 string // hex SHA-256 of the agent's client secret; "" if it has none
	// PublicKey is the Ed25519 key the agent signs assertions with; nil if none.
	PublicKey ed25519.PublicKey
	CreatedAt time.Time
	UpdatedAt time.Time
	// Declared marks an agent declared in the configuration: it is not stored, has no
	// secret or key here (it authenticates with its static token through [Registry]) and
	// cannot be changed through the directory. Stores ignore it.
	Declared bool
}

// clone returns a deep copy of r, so callers cannot reach the snapshot's maps and slices.
func (r AgentRecord) clone() AgentRecord {
	r.Agent = cloneAgent(r.Agent)
	r.PublicKey = slices.Clone(r.PublicKey)
	return r
}

func cloneAgent(a Agent) Agent {
	a.Capabilities = slices.Clone(a.Capabilities)
	a.Labels = maps.Clone(a.Labels)
	return a
}

// AgentStore persists agents.
type AgentStore interface {
	// PutAgent stores a new agent; it returns an error wrapping [ErrAgentExists] if the
	// id is taken.
	PutAgent(ctx context.Context, rec AgentRecord) error
	// UpdateAgent replaces a stored agent (all but its id and CreatedAt); it returns an
	// error wrapping [ErrUnknownAgent] if there is none.
	UpdateAgent(ctx context.Context, rec AgentRecord) error
	// Agents returns every stored agent.
	Agents(ctx context.Context) ([]AgentRecord, error)
	// Agent returns the stored agent with the id, and false if there is none.
	Agent(ctx context.Context, id string) (AgentRecord, bool, error)
}

// Recorder is the audit log.
type Recorder interface {
	Append(ctx context.Context, e *audit.Event) error
}

// DirectoryOptions configures a [Directory].
type DirectoryOptions struct {
	// Store holds registered agents. Required.
	Store AgentStore
	// Audit records every change. Required.
	Audit Recorder
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Static are the agents declared in the configuration. They are kept in memory only,
	// read-only: [Directory.SetStatus] refuses them with [ErrDeclaredAgent]. An empty
	// Status means active.
	Static []Registration
}

// Directory is the agent registry: agents declared in the configuration plus agents
// registered at run time, each with a status that the gateway checks on every call.
//
// Reads ([Directory.Agent], [Directory.VerifySecret], [Directory.PublicKey],
// [Directory.List]) are lock-free loads of an immutable snapshot. Writers are serialised
// by a mutex and replace the snapshot after the store has accepted the change, so once
// [Directory.SetStatus] returns, every later read sees the new status.
//
// When several processes share the store, each has its own snapshot: a change made by
// another process is seen here after [Directory.Refresh] or [Directory.RefreshAgent]
// (which the caller runs on a change notification, and periodically), and an agent not
// in the snapshot at all is looked up in the store by [Directory.Load].
type Directory struct {
	store AgentStore
	audit Recorder
	now   func() time.Time

	snap atomic.Pointer[dirSnapshot]

	// misses remembers ids the store did not have, and lookups bounds the store
	// lookups of Load running at once: unknown ids must not be able to hammer the
	// database.
	misses  prMisses
	lookups chan struct{}

	// wmu serialises writers, across their store and audit I/O, so the store, the
	// snapshot and the audit log see changes in the same order. Readers never take it.
	wmu sync.Mutex
}

// dirSnapshot is an immutable view of every agent. Nothing in it is modified after it is
// published.
type dirSnapshot struct {
	byID map[string]*dirEntry
}

type dirEntry struct {
	rec       AgentRecord
	secret    [32]byte // SHA-256 of the client secret, when hasSecret
	hasSecret bool
}

// NewDirectory loads the stored agents. A stored agent may not share an id with a
// declared one.
func NewDirectory(ctx context.Context, o DirectoryOptions) (*Directory, error) {
	if o.Store == nil || o.Audit == nil {
		return nil, errors.New("identity: new directory: store and audit are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	d := &Directory{store: o.Store, audit: o.Audit, now: o.Now, lookups: make(chan struct{}, prMaxLookups)}
	s := &dirSnapshot{byID: map[string]*dirEntry{}}
	for _, reg := range o.Static {
		a := cloneAgent(reg.Agent)
		if a.Status == "" {
			a.Status = StatusActive
		}
		if _, dup := s.byID[a.ID]; dup {
			return nil, fmt.Errorf("identity: new directory: agent %q declared twice", a.ID)
		}
		s.byID[a.ID] = &dirEntry{rec: AgentRecord{Agent: a, Declared: true}}
	}
	recs, err := o.Store.Agents(ctx)
	if err != nil {
		return nil, fmt.Errorf("identity: new directory: %w", err)
	}
	for _, rec := range recs {
		if prev, dup := s.byID[rec.Agent.ID]; dup {
			if prev.rec.Declared {
				return nil, fmt.Errorf("identity: new directory: stored agent %q is also declared in the configuration: remove one", rec.Agent.ID)
			}
			return nil, fmt.Errorf("identity: new directory: agent %q stored twice", rec.Agent.ID)
		}
		e, err := newEntry(rec)
		if err != nil {
			return nil, fmt.Errorf("identity: new directory: %w", err)
		}
		s.byID[rec.Agent.ID] = e
	}
	d.snap.Store(s)
	return d, nil
}

func newEntry(rec AgentRecord) (*dirEntry, error) {
	rec = rec.clone()
	rec.Declared = false
	e := &dirEntry{rec: rec}
	if rec.SecretSHA256 != "" {
		raw, err := hex.DecodeString(rec.SecretSHA256)
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("agent %q: secret hash must be 64 hex digits", rec.Agent.ID)
		}
		copy(e.secret[:], raw)
		e.hasSecret = true
	}
	if rec.PublicKey != nil && len(rec.PublicKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("agent %q: public key has %d bytes, want %d", rec.Agent.ID, len(rec.PublicKey), ed25519.PublicKeySize)
	}
	switch rec.Agent.Status {
	case StatusActive, StatusSuspended, StatusRevoked:
	default:
		return nil, fmt.Errorf("agent %q: unknown status %q", rec.Agent.ID, rec.Agent.Status)
	}
	return e, nil
}

// with returns a copy of s with e in place of the entry of the same id.
func (s *dirSnapshot) with(e *dirEntry) *dirSnapshot {
	n := &dirSnapshot{byID: maps.Clone(s.byID)}
	n.byID[e.rec.Agent.ID] = e
	return n
}

// Agent returns the agent with the given id, whatever its status: the caller must refuse
// an agent whose Status is not [StatusActive]. The agent is shared and must not be
// modified.
func (d *Directory) Agent(id string) (*Agent, bool) {
	e, ok := d.snap.Load().byID[id]
	if !ok {
		return nil, false
	}
	return &e.rec.Agent, true
}

// List returns every agent, sorted by id: declared ones with Declared set and no secret
// or key. The records are copies.
func (d *Directory) List() []AgentRecord {
	s := d.snap.Load()
	out := make([]AgentRecord, 0, len(s.byID))
	for _, e := range s.byID {
		out = append(out, e.rec.clone())
	}
	slices.SortFunc(out, func(a, b AgentRecord) int { return cmp.Compare(a.Agent.ID, b.Agent.ID) })
	return out
}

// Record returns a copy of the agent's record.
func (d *Directory) Record(id string) (AgentRecord, bool) {
	e, ok := d.snap.Load().byID[id]
	if !ok {
		return AgentRecord{}, false
	}
	return e.rec.clone(), true
}

// VerifySecret reports whether secret is the client secret of the active agent id. It is
// false for an unknown or inactive agent, one without a secret, and declared agents
// (which use their static token). The comparison is constant-time on SHA-256 digests.
func (d *Directory) VerifySecret(id, secret string) bool {
	if len(secret) > MaxTokenBytes {
		return false
	}
	h := sha256.Sum256([]byte(secret))
	e, ok := d.snap.Load().byID[id]
	if !ok || !e.hasSecret || e.rec.Agent.Status != StatusActive {
		return false
	}
	return subtle.ConstantTimeCompare(h[:], e.secret[:]) == 1
}

// PublicKey returns the Ed25519 key of the active agent id; false for an unknown or
// inactive agent or one without a key.
func (d *Directory) PublicKey(id string) (ed25519.PublicKey, bool) {
	e, ok := d.snap.Load().byID[id]
	if !ok || e.rec.PublicKey == nil || e.rec.Agent.Status != StatusActive {
		return nil, false
	}
	return slices.Clone(e.rec.PublicKey), true
}

// AgentSpec is what [Directory.Register] needs: the agent (its Status is ignored: new
// agents are active) and at least one credential.
type AgentSpec struct {
	Agent     Agent
	PublicKey ed25519.PublicKey // the agent's Ed25519 key, if it signs assertions
	// WithSecret asks for a generated client secret.
	WithSecret bool
}

// check adds every problem with s to p.
func (s *AgentSpec) check(p *problems) {
	a := &s.Agent
	if !agentIDPattern.MatchString(a.ID) {
		p.add("id", "must match %s, got %s", agentIDPattern, short(a.ID))
	}
	checkText(p, "owner", a.Owner, MaxOwner, true)
	checkText(p, "purpose", a.Purpose, MaxPurpose, false)
	if !slices.Contains(environments, a.Environment) {
		p.add("environment", "must be dev, test or prod, got %s", short(a.Environment))
	}
	if a.Autonomy < 0 || a.Autonomy > 3 {
		p.add("autonomy", "must be between 0 and 3, got %d", a.Autonomy)
	}
	checkTools(p, "capabilities", a.Capabilities, true)
	if len(a.Labels) > MaxLabels {
		p.add("labels", "at most %d labels, got %d", MaxLabels, len(a.Labels))
	}
	for _, k := range slices.Sorted(maps.Keys(a.Labels)) {
		if !labelKeyPattern.MatchString(k) {
			p.add("labels", "key must match %s, got %s", labelKeyPattern, short(k))
			continue
		}
		if v := a.Labels[k]; len(v) > MaxLabelValue || !utf8.ValidString(v) {
			p.add("labels."+k, "must be valid UTF-8 of at most %d bytes, got %d bytes", MaxLabelValue, len(v))
		}
	}
	if s.PublicKey != nil && len(s.PublicKey) != ed25519.PublicKeySize {
		p.add("public_key", "must be a %d-byte Ed25519 key, got %d bytes", ed25519.PublicKeySize, len(s.PublicKey))
	}
	if s.PublicKey == nil && !s.WithSecret {
		p.add("credential", "give a public key or ask for a secret: an agent needs a way to authenticate")
	}
}

// checkText checks a free-text field: printable UTF-8 of at most limit bytes.
func checkText(p *problems, field, v string, limit int, required bool) {
	switch {
	case required && strings.TrimSpace(v) == "":
		p.add(field, "is required")
	case len(v) > limit:
		p.add(field, "at most %d bytes, got %d", limit, len(v))
	case !utf8.ValidString(v) || strings.ContainsFunc(v, isControl):
		p.add(field, "must be printable UTF-8")
	}
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// checkTools checks a list of exposed tool names; "*" means any.
func checkTools(p *problems, field string, tools []string, required bool) {
	if required && len(tools) == 0 {
		p.add(field, `must not be empty (use "*" for any tool)`)
	}
	if len(tools) > MaxCapabilities {
		p.add(field, "at most %d entries, got %d", MaxCapabilities, len(tools))
		return
	}
	seen := map[string]bool{}
	for i, c := range tools {
		switch {
		case c != "*" && !toolNamePattern.MatchString(c):
			p.add(fmt.Sprintf("%s[%d]", field, i), `must be "*" or a tool name matching %s, got %s`, toolNamePattern, short(c))
		case seen[c]:
			p.add(fmt.Sprintf("%s[%d]", field, i), "duplicate %s", short(c))
		}
		seen[c] = true
	}
}

// checkBy checks who acted: required, printable, bounded.
func checkBy(p *problems, by string) {
	checkText(p, "by", by, MaxBy, true)
}

// SecretPrefix starts every generated client secret.
const SecretPrefix = "chs_"

// Register adds an active agent. With spec.WithSecret it generates a random 256-bit
// client secret, stores only its SHA-256 and returns the secret: this is the only time
// it is available. It returns a [*ValidationError] for an invalid spec and an error
// wrapping [ErrAgentExists] for a taken id.
//
// The agent becomes visible only once its "agent.registered" audit record is written.
// If that fails, the agent is revoked (fail closed: an agent whose registration is not
// on record can never act, and its id stays taken) and Register returns the error.
func (d *Directory) Register(ctx context.Context, spec AgentSpec, by string) (string, error) {
	var p problems
	spec.check(&p)
	checkBy(&p, by)
	if err := p.err(); err != nil {
		return "", fmt.Errorf("identity: register agent: %w", err)
	}
	a := cloneAgent(spec.Agent)
	// Stored suspended until its registration is on record: another process sharing the
	// store may look the agent up (Load) before then, and must not let it act.
	a.Status = StatusSuspended
	now := d.now().UTC()
	rec := AgentRecord{Agent: a, StatusReason: prPendingReason, PublicKey: slices.Clone(spec.PublicKey), CreatedAt: now, UpdatedAt: now}
	var secret string
	if spec.WithSecret {
		var b [32]byte
		rand.Read(b[:]) // never fails (crypto/rand's documentation)
		secret = SecretPrefix + base64.RawURLEncoding.EncodeToString(b[:])
		rec.SecretSHA256 = HashToken(secret)
	}
	if _, err := newEntry(rec); err != nil {
		return "", fmt.Errorf("identity: register agent %q: %w", a.ID, err)
	}

	d.wmu.Lock()
	defer d.wmu.Unlock()
	if _, dup := d.snap.Load().byID[a.ID]; dup {
		return "", fmt.Errorf("identity: register agent %q: %w", a.ID, ErrAgentExists)
	}
	if err := d.store.PutAgent(ctx, rec); err != nil {
		return "", fmt.Errorf("identity: register agent %q: %w", a.ID, err)
	}
	caps := strings.Join(a.Capabilities, ",")
	actx, cancel := auditContext(ctx)
	defer cancel()
	aerr := d.audit.Append(actx, &audit.Event{
		Time: now, Kind: audit.KindAgentRegistered, Agent: a.ID,
		Message: "agent registered",
		Detail: fmt.Sprintf("owner=%s env=%s capabilities=%s autonomy=%d secret=%t public_key=%t by=%s",
			a.Owner, a.Environment, caps, a.Autonomy, spec.WithSecret, spec.PublicKey != nil, by),
	})
	if aerr == nil {
		rec.Agent.Status, rec.StatusReason = StatusActive, ""
		e, err := newEntry(rec)
		if err == nil {
			err = d.store.UpdateAgent(actx, rec)
		}
		if err != nil {
			// Registered and on record, but still suspended: the operator can resume it.
			pending := rec
			pending.Agent.Status, pending.StatusReason = StatusSuspended, prPendingReason
			if pe, perr := newEntry(pending); perr == nil {
				d.snap.Store(d.snap.Load().with(pe))
			}
			return "", fmt.Errorf("identity: register agent %q: activate (the agent is registered but suspended): %w", a.ID, err)
		}
		d.snap.Store(d.snap.Load().with(e))
		return secret, nil
	}
	// Fail closed: keep the id taken, but never let the unrecorded agent act.
	rec.Agent.Status, rec.StatusReason, rec.UpdatedAt = StatusRevoked, "registration could not be audited", d.now().UTC()
	uerr := d.store.UpdateAgent(actx, rec)
	if re, err := newEntry(rec); err == nil && uerr == nil {
		d.snap.Store(d.snap.Load().with(re))
	}
	return "", fmt.Errorf("identity: register agent %q: audit (the agent was revoked): %w", a.ID, errors.Join(aerr, uerr))
}

// SetStatus changes an agent's status: to [StatusSuspended] from active, to [StatusActive]
// (resume) from suspended, to [StatusRevoked] from either. Revocation is final: any change
// of a revoked agent returns [ErrAgentRevoked]. A reason is required to suspend or revoke;
// by names who acted. Agents declared in the configuration are refused with
// [ErrDeclaredAgent]; unknown ones with [ErrUnknownAgent]; a change to the status the
// agent already has with [ErrStatusUnchanged].
//
// The change is stored, then takes effect (every read after SetStatus returns sees it),
// then is audited. If the audit record cannot be written the change still stands — it is
// a safety action, and undoing it would fail open — and SetStatus returns an error
// wrapping [ErrNotAudited] so the operator knows the record is missing.
func (d *Directory) SetStatus(ctx context.Context, id string, to Status, reason, by string) error {
	var kind string
	switch to {
	case StatusSuspended:
		kind = audit.KindAgentSuspended
	case StatusActive:
		kind = audit.KindAgentResumed
	case StatusRevoked:
		kind = audit.KindAgentRevoked
	}
	var p problems
	if kind == "" {
		p.add("status", "must be active, suspended or revoked, got %s", short(string(to)))
	}
	checkBy(&p, by)
	checkText(&p, "reason", reason, MaxReason, to != StatusActive)
	if err := p.err(); err != nil {
		return fmt.Errorf("identity: set agent %q %s: %w", id, to, err)
	}

	d.wmu.Lock()
	defer d.wmu.Unlock()
	if e, ok := d.snap.Load().byID[id]; ok && e.rec.Declared {
		return fmt.Errorf("identity: set agent %q %s: %w", id, to, ErrDeclaredAgent)
	}
	// The change starts from the store's record, not the snapshot's: another process
	// may have changed the agent (revoked it, say) since this one last heard, and
	// UpdateAgent replaces the whole record.
	cur, ok, err := d.store.Agent(ctx, id)
	switch {
	case err != nil:
		return fmt.Errorf("identity: set agent %q %s: %w", id, to, err)
	case !ok:
		return fmt.Errorf("identity: set agent %q %s: %w", id, to, ErrUnknownAgent)
	case cur.Agent.Status == StatusRevoked:
		_ = d.prPublishLocked(id, cur) // this process now knows, whatever the outcome
		return fmt.Errorf("identity: set agent %q %s: %w", id, to, ErrAgentRevoked)
	case cur.Agent.Status == to:
		_ = d.prPublishLocked(id, cur) // this process now knows, whatever the outcome
		return fmt.Errorf("identity: set agent %q %s: %w", id, to, ErrStatusUnchanged)
	}
	rec := cur.clone()
	from := rec.Agent.Status
	now := d.now().UTC()
	rec.Agent.Status, rec.StatusReason, rec.UpdatedAt = to, reason, now
	ne, err := newEntry(rec)
	if err != nil {
		return fmt.Errorf("identity: set agent %q %s: %w", id, to, err)
	}
	if err := d.store.UpdateAgent(ctx, rec); err != nil {
		return fmt.Errorf("identity: set agent %q %s: %w", id, to, err)
	}
	d.snap.Store(d.snap.Load().with(ne))
	// The change has taken effect: record it even if the caller has gone away.
	actx, cancel := auditContext(ctx)
	defer cancel()
	if err := d.audit.Append(actx, &audit.Event{
		Time: now, Kind: kind, Agent: id, Reason: reason,
		Message: fmt.Sprintf("agent %s", to),
		Detail:  fmt.Sprintf("from=%s to=%s by=%s", from, to, by),
	}); err != nil {
		return fmt.Errorf("identity: set agent %q %s: %w: %w", id, to, ErrNotAudited, err)
	}
	return nil
}

// prPendingReason is the status reason of an agent whose registration is not on record
// yet.
const prPendingReason = "registration not yet audited"

// Bounds on the store lookups of [Directory.Load] and [Tasks.Load].
const (
	// prMissTTL is how long an id the store did not have is answered "unknown" without
	// asking again.
	prMissTTL = time.Second
	// prMaxMisses bounds the ids remembered.
	prMaxMisses = 4096
	// prMaxLookups bounds the store lookups running at once, per Directory or Tasks.
	prMaxLookups = 4
)

// prMisses remembers, briefly, the ids a store lookup did not find, so that a flood of
// unknown ids costs one query per id per prMissTTL at most, and bounded memory.
type prMisses struct {
	// mu guards at.
	mu sync.Mutex
	at map[string]time.Time // when each id was found missing
}

// recent reports whether id was found missing less than prMissTTL before now.
func (m *prMisses) recent(id string, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	at, ok := m.at[id]
	return ok && now.Sub(at) < prMissTTL && !now.Before(at)
}

// add records that id was found missing at now. When full, it forgets the expired
// entries and, if that is not enough, a quarter of the others (whichever the map yields
// first): the bound on memory matters more than a few repeated queries, which
// prMaxLookups bounds anyway.
func (m *prMisses) add(id string, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.at == nil {
		m.at = map[string]time.Time{}
	}
	if len(m.at) >= prMaxMisses {
		for k, at := range m.at {
			if now.Sub(at) >= prMissTTL || now.Before(at) {
				delete(m.at, k)
			}
		}
		for k := range m.at {
			if len(m.at) < prMaxMisses*3/4 {
				break
			}
			delete(m.at, k)
		}
	}
	m.at[id] = now
}

// reset forgets every miss: after a refresh, the snapshot answers for every stored id.
func (m *prMisses) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.at)
}

// prAcquire takes one of the lookup slots of sem, or fails when ctx is done first.
func prAcquire(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Load returns the agent with the given id as [Directory.Agent] does and, if this
// process has not heard of it, looks it up in the store: an agent registered by
// another process sharing the store can authenticate here before the change
// notification arrives. An agent found is added to the snapshot. An id the store does
// not have is remembered for a second, during which Load answers false without asking
// again; at most a few lookups run at once, the others wait for ctx. It returns an
// error when the store cannot answer (the caller must refuse: fail closed).
func (d *Directory) Load(ctx context.Context, id string) (*Agent, bool, error) {
	if a, ok := d.Agent(id); ok {
		return a, true, nil
	}
	// Only registered agents are stored, and registration checks the id.
	if !agentIDPattern.MatchString(id) || d.misses.recent(id, d.now()) {
		return nil, false, nil
	}
	if err := prAcquire(ctx, d.lookups); err != nil {
		return nil, false, fmt.Errorf("identity: load agent %q: %w", id, err)
	}
	now := d.now()
	rec, ok, err := d.store.Agent(ctx, id)
	<-d.lookups
	if err != nil {
		return nil, false, fmt.Errorf("identity: load agent %q: %w", id, err)
	}
	if !ok {
		d.misses.add(id, now)
		return nil, false, nil
	}
	e, err := newEntry(rec)
	if err != nil {
		return nil, false, fmt.Errorf("identity: load agent %q: %w", id, err)
	}
	// Publish unless the agent appeared meanwhile: that entry (from a writer or a
	// refresh) is at least as new as the record read here.
	for {
		old := d.snap.Load()
		if cur, ok := old.byID[id]; ok {
			return &cur.rec.Agent, true, nil
		}
		if d.snap.CompareAndSwap(old, old.with(e)) {
			return &e.rec.Agent, true, nil
		}
	}
}

// Refresh reloads every stored agent, for changes made by another process sharing the
// store (registrations, suspensions, revocations): every read after it returns sees
// the store as it was read. Declared agents are kept as they are; a stored agent that
// collides with one, or whose record is not valid, is left out (so it cannot act) and
// reported in the error. On a store error nothing changes.
func (d *Directory) Refresh(ctx context.Context) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	recs, err := d.store.Agents(ctx)
	if err != nil {
		return fmt.Errorf("identity: refresh agents: %w", err)
	}
	old := d.snap.Load()
	s := &dirSnapshot{byID: make(map[string]*dirEntry, len(recs)+len(old.byID))}
	for id, e := range old.byID {
		if e.rec.Declared {
			s.byID[id] = e
		}
	}
	var errs []error
	dropped := map[string]bool{}
	for _, rec := range recs {
		id := rec.Agent.ID
		if prev, dup := s.byID[id]; dup || dropped[id] {
			switch {
			case dropped[id]:
			case prev.rec.Declared:
				errs = append(errs, fmt.Errorf("stored agent %q is also declared in the configuration: the declared one stands", id))
				continue
			default:
				errs = append(errs, fmt.Errorf("agent %q stored twice: left out", id))
				delete(s.byID, id)
				dropped[id] = true
			}
			continue
		}
		e, err := newEntry(rec)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: left out", err))
			continue
		}
		s.byID[id] = e
	}
	d.snap.Store(s)
	d.misses.reset()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("identity: refresh agents: %w", err)
	}
	return nil
}

// RefreshAgent reloads one stored agent, for a change another process made to it (the
// notification names it): cheaper than [Directory.Refresh]. An agent no longer stored
// is dropped; a declared agent is left as it is.
func (d *Directory) RefreshAgent(ctx context.Context, id string) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if e, ok := d.snap.Load().byID[id]; ok && e.rec.Declared {
		return nil
	}
	rec, ok, err := d.store.Agent(ctx, id)
	if err != nil {
		return fmt.Errorf("identity: refresh agent %q: %w", id, err)
	}
	if !ok {
		d.prDropLocked(id)
		return nil
	}
	if err := d.prPublishLocked(id, rec); err != nil {
		return fmt.Errorf("identity: refresh agent %q: %w", id, err)
	}
	return nil
}

// prPublishLocked puts the stored record rec of agent id in the snapshot; a record that
// is not valid drops the agent instead (fail closed). d.wmu must be held.
func (d *Directory) prPublishLocked(id string, rec AgentRecord) error {
	if rec.Agent.ID != id {
		d.prDropLocked(id)
		return fmt.Errorf("the store returned agent %s", short(rec.Agent.ID))
	}
	e, err := newEntry(rec)
	if err != nil {
		d.prDropLocked(id)
		return err
	}
	d.snap.Store(d.snap.Load().with(e))
	return nil
}

// prDropLocked removes agent id from the snapshot. d.wmu must be held.
func (d *Directory) prDropLocked(id string) {
	old := d.snap.Load()
	if _, ok := old.byID[id]; !ok {
		return
	}
	n := &dirSnapshot{byID: maps.Clone(old.byID)}
	delete(n.byID, id)
	d.snap.Store(n)
}
