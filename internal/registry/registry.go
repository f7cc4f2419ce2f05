// Package registry is the tool registry: the only tools that exist for agents are the ones an
// operator declared, with a risk class, and whose live definition matches the pinned one.
//
// # What it guarantees
//
//   - Undeclared upstream tools are never listed and never callable.
//   - Each declared tool's definition (name, description, input and output schemas) is pinned by a
//     SHA-256 hash of its canonical JSON ([DefinitionHash]) when it is first approved: on first
//     sight (first_use: pin), by an operator (first_use: quarantine, then `chaperone tools
//     approve`), or up front in the configuration (pin: sha256:...).
//   - When an upstream later offers a different definition for a pinned tool, the tool is
//     quarantined — hidden and refused — and a tool.drift audit event records both hashes,
//     until an operator approves the new definition ([Registry.Approve]).
//   - A tool whose schema cannot be compiled into a validator is quarantined too: a tool that
//     cannot be checked is not callable.
//   - A tool a signed manifest describes ([ReadManifest]) is callable only while its
//     upstream offers exactly the manifest's definition; with [Options.RequireSigned], a tool
//     no signed manifest describes is never callable.
//   - A definition not yet approved passes [Options.Review] (the injection sensor) before it
//     can be pinned automatically; a finding holds it for an operator.
//
// Readers ([Registry.Lookup], [Registry.Tools]) never lock: the state is an immutable
// snapshot swapped atomically; updates are serialised.
package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chaperone-dev/chaperone/internal/argcheck"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/flow"
	"github.com/chaperone-dev/chaperone/internal/inspect"
	"github.com/chaperone-dev/chaperone/internal/upstream"
)

// Status is a tool's state in the registry.
type Status string

// The states of a tool.
const (
	// StatusPending: declared, but its upstream has not listed tools yet.
	StatusPending Status = "pending"
	// StatusActive: pinned, matching and callable.
	StatusActive Status = "active"
	// StatusQuarantined: its definition drifted from the pin, awaits first approval, or
	// cannot be validated; hidden and refused.
	StatusQuarantined Status = "quarantined"
	// StatusMissing: its upstream no longer offers it.
	StatusMissing Status = "missing"
)

// ErrUnknownTool is returned by [Registry.Approve] for a name that is not declared.
var ErrUnknownTool = errors.New("unknown tool")

// ErrNothingToApprove is returned by [Registry.Approve] when the upstream has not offered a
// definition for the tool yet.
var ErrNothingToApprove = errors.New("no live definition to approve")

// Declaration is one tool as the operator declared it.
type Declaration struct {
	Name         string // exposed name
	Upstream     string
	UpstreamName string // name at the upstream
	Class        string
	// Environment is the upstream's environment (dev, test, prod); only agents of the same
	// environment may call the tool. "" means any.
	Environment string
	Pin         string // optional expected hash
	Overlay     argcheck.Overlay
	// Flow labels the tool's results and names its sinks.
	Flow flow.Labels
	// Undo says how to undo a call, for approvers; "" if the tool declares nothing.
	Undo string
	// Cost is charged to the task's spend budget for each call.
	Cost float64
	// Timeout bounds one call; 0 leaves it to the upstream's call timeout.
	Timeout time.Duration
	// Idempotent tools do no more when called twice with the same arguments; only they
	// are retried, Retries times at most.
	Idempotent bool
	Retries    int
	// Sensors are the tool's content-sensor settings.
	Sensors inspect.ToolSettings
	// Manifest is what a signed manifest says of the tool, or nil if none describes it.
	// The upstream must then offer exactly the manifest's definition.
	Manifest *ManifestEntry
}

// Tool is an immutable snapshot of one declared tool.
type Tool struct {
	Declaration
	Status Status
	// Reason says why a tool is not active, in one sentence.
	Reason string
	// Hash is the pinned definition hash ("" before the first pin).
	Hash string
	// LiveHash is the hash of what the upstream offers now ("" if nothing).
	LiveHash string
	// Finding is what the review found in the live definition ("" if nothing): an
	// operator's approval must accept it.
	Finding string
	// Listing is the tool as agents see it in tools/list (JSON, exposed name).
	Listing json.RawMessage
	// Validator checks arguments; set for active tools.
	Validator *argcheck.Validator

	live *upstream.Tool
	// driftLogged is the offered hash whose drift is on record, so each drift is audited
	// once — and again on the next sync if recording it failed.
	driftLogged string
}

// Pin is the stored record of an approved definition.
type Pin struct {
	Tool       string
	Upstream   string
	Hash       string
	Definition []byte
	ApprovedBy string
	ApprovedAt time.Time
}

// PinStore persists pins.
type PinStore interface {
	Pin(ctx context.Context, tool string) (Pin, bool, error)
	SetPin(ctx context.Context, p Pin) error
}

// Auditor records registry events.
type Auditor interface {
	Append(ctx context.Context, e *audit.Event) error
}

// Options configures a [Registry].
type Options struct {
	// Quarantine new tools until approved instead of pinning on first sight.
	QuarantineFirstUse bool
	Pins               PinStore
	Audit              Auditor
	// Review, if set, reads a definition the registry has not seen approved (first
	// sight, or a change) and returns why it must not be pinned automatically — a
	// description or schema that reads as a prompt injection — or "". A flagged tool is
	// quarantined until an operator approves it.
	Review func(t *upstream.Tool) string
	// RequireSigned makes a tool callable only if a manifest signed by a trusted publisher
	// describes it and the upstream offers exactly that definition.
	RequireSigned bool
	Logger        *slog.Logger
	Now           func() time.Time
}

// Registry holds the declared tools and their live state.
type Registry struct {
	opts  Options
	decls []Declaration

	// mu serialises updates (Sync, Approve); readers use snap.
	mu   sync.Mutex
	snap atomic.Pointer[map[string]*Tool]
}

// New builds a registry of the declared tools, all pending.
func New(decls []Declaration, opts Options) *Registry {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Registry{opts: opts, decls: slices.Clone(decls)}
	m := make(map[string]*Tool, len(decls))
	for _, d := range r.decls {
		m[d.Name] = &Tool{Declaration: d, Status: StatusPending, Reason: "its upstream has not been reached yet"}
	}
	r.snap.Store(&m)
	return r
}

// Lookup returns the tool with the exposed name.
func (r *Registry) Lookup(name string) (*Tool, bool) {
	t, ok := (*r.snap.Load())[name]
	return t, ok
}

// Tools returns every declared tool, sorted by name.
func (r *Registry) Tools() []*Tool {
	m := *r.snap.Load()
	out := make([]*Tool, 0, len(m))
	for _, t := range m {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *Tool) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// Sync reconciles the declared tools of one upstream with the definitions it offers now.
// It returns an error when the pin store or the audit log failed, or when a tool's schema
// cannot be enforced; the affected tools are then quarantined (fail closed).
func (r *Registry) Sync(ctx context.Context, upstreamName string, live []upstream.Tool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	offered := make(map[string]*upstream.Tool, len(live))
	for i := range live {
		offered[live[i].Name] = &live[i]
	}
	next := r.clone()
	var errs []error
	for _, d := range r.decls {
		if d.Upstream != upstreamName {
			continue
		}
		prev := next[d.Name]
		lt, ok := offered[d.UpstreamName]
		if !ok {
			next[d.Name] = &Tool{Declaration: d, Status: StatusMissing, Hash: prev.Hash,
				Reason: "its upstream no longer offers it", driftLogged: prev.driftLogged}
			continue
		}
		t, err := r.reconcile(ctx, d, prev, lt)
		if err != nil {
			errs = append(errs, fmt.Errorf("tool %q: %w", d.Name, err))
		}
		next[d.Name] = t
	}
	r.snap.Store(&next)
	return errors.Join(errs...)
}

func (r *Registry) reconcile(ctx context.Context, d Declaration, prev *Tool, lt *upstream.Tool) (*Tool, error) {
	def, hash, err := DefinitionHash(lt)
	t := &Tool{Declaration: d, LiveHash: hash, live: lt, Hash: prev.Hash, driftLogged: prev.driftLogged}
	if err != nil {
		t.Status, t.Reason = StatusQuarantined, "its definition is not valid JSON"
		return t, nil
	}
	if d.Manifest != nil {
		changes, err := Diff(d.Manifest.Definition(), lt)
		if err != nil || len(changes) > 0 {
			t.Status = StatusQuarantined
			t.Reason = fmt.Sprintf("its live definition does not match the manifest signed by %s (%s)", d.Manifest.Signer, summarizeChanges(changes, err))
			return t, r.recordDrift(ctx, t, hash, fmt.Sprintf("manifest %s signed by %s, offered %s: %s",
				d.Manifest.Digest, d.Manifest.Signer, hash, summarizeChanges(changes, err)))
		}
	} else if r.opts.RequireSigned {
		t.Status, t.Reason = StatusQuarantined, "no manifest signed by a trusted publisher describes it, and the registry requires one"
		return t, nil
	}
	pin, pinned, err := r.opts.Pins.Pin(ctx, d.Name)
	if err != nil {
		t.Status, t.Reason = StatusQuarantined, "its pin could not be read"
		return t, err
	}
	switch {
	case pinned:
		t.Hash = pin.Hash
	case d.Pin != "":
		t.Hash = d.Pin
	}
	if t.Hash == hash {
		return activate(t)
	}
	// Not approved yet: first sight, or a change.
	if finding := r.review(lt); finding != "" {
		t.Status, t.Finding = StatusQuarantined, finding
		if t.Hash == "" {
			t.Reason = "its definition " + finding + ", and awaits an operator's review"
		} else {
			t.Reason = "its definition changed since it was approved, and the new one " + finding
		}
		if t.driftLogged != hash {
			r.opts.Logger.WarnContext(ctx, "tool definition flagged", "tool", d.Name, "offered", hash, "finding", finding)
			ev := &audit.Event{Time: r.opts.Now(), Kind: audit.KindToolFlagged, Tool: d.Name, Upstream: d.Upstream,
				Detail: fmt.Sprintf("offered %s: %s", hash, finding)}
			if t.Hash != "" {
				// A change of an approved definition is a drift first.
				ev.Kind, ev.Detail = audit.KindToolDrift, fmt.Sprintf("pinned %s, offered %s; the new definition %s", t.Hash, hash, finding)
			}
			if err := r.opts.Audit.Append(ctx, ev); err != nil {
				return t, fmt.Errorf("audit flagged definition: %w", err)
			}
			t.driftLogged = hash
		}
		return t, nil
	}
	switch {
	case d.Manifest != nil:
		// A trusted publisher signed exactly this definition: that is the approval.
		if err := r.pin(ctx, d, hash, def, "manifest:"+d.Manifest.Signer); err != nil {
			t.Status, t.Reason = StatusQuarantined, "its pin could not be recorded"
			return t, err
		}
	case t.Hash == "" && r.opts.QuarantineFirstUse:
		t.Status, t.Reason = StatusQuarantined, "it awaits an operator's first approval"
		return t, nil
	case t.Hash == "":
		if err := r.pin(ctx, d, hash, def, "first-use"); err != nil {
			t.Status, t.Reason = StatusQuarantined, "its pin could not be recorded"
			return t, err
		}
	default:
		t.Status = StatusQuarantined
		t.Reason = "its definition changed since it was approved"
		return t, r.recordDrift(ctx, t, hash, fmt.Sprintf("pinned %s, offered %s", t.Hash, hash))
	}
	t.Hash = hash
	return activate(t)
}

// recordDrift records, once per offered definition, that a tool's live definition is not
// the approved one.
func (r *Registry) recordDrift(ctx context.Context, t *Tool, hash, detail string) error {
	if t.driftLogged == hash {
		return nil
	}
	r.opts.Logger.WarnContext(ctx, "tool definition drifted", "tool", t.Name, "detail", detail)
	err := r.opts.Audit.Append(ctx, &audit.Event{Time: r.opts.Now(), Kind: audit.KindToolDrift, Tool: t.Name,
		Upstream: t.Upstream, Detail: detail})
	if err != nil {
		return fmt.Errorf("audit drift: %w", err)
	}
	t.driftLogged = hash
	return nil
}

// summarizeChanges names what changed, in a few words: "description changed,
// inputSchema.properties.bcc added".
func summarizeChanges(cs []Change, err error) string {
	if err != nil {
		return "its schema cannot be compared: " + err.Error()
	}
	var parts []string
	for i, c := range cs {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("%d more", len(cs)-i))
			break
		}
		parts = append(parts, c.Field+" "+c.Kind)
	}
	return strings.Join(parts, ", ")
}

// review asks Options.Review about a definition; "" if there is nothing to say.
func (r *Registry) review(lt *upstream.Tool) string {
	if r.opts.Review == nil {
		return ""
	}
	return r.opts.Review(lt)
}

func activate(t *Tool) (*Tool, error) {
	v, err := argcheck.Compile(t.Name, t.live.InputSchema, t.Overlay)
	if err != nil {
		t.Status, t.Reason = StatusQuarantined, "its input schema or argument overlay cannot be enforced"
		return t, fmt.Errorf("compile validator: %w", err)
	}
	t.Validator = v
	t.Listing = listing(t.Name, t.live)
	t.Status, t.Reason = StatusActive, ""
	return t, nil
}

func (r *Registry) pin(ctx context.Context, d Declaration, hash string, def []byte, by string) error {
	now := r.opts.Now().UTC()
	kind := audit.KindToolPinned
	if by != "first-use" {
		kind = audit.KindToolApproved
	}
	// The record comes first: a pin that is stored is trusted from then on, so it must never
	// exist without its audit event. A record whose pin then fails to store is harmless: the
	// next sync pins (and records) again.
	if err := r.opts.Audit.Append(ctx, &audit.Event{Time: now, Kind: kind, Tool: d.Name, Upstream: d.Upstream,
		Detail: fmt.Sprintf("pinned %s by %s", hash, by)}); err != nil {
		return fmt.Errorf("audit pin: %w", err)
	}
	if err := r.opts.Pins.SetPin(ctx, Pin{Tool: d.Name, Upstream: d.Upstream, Hash: hash, Definition: def, ApprovedBy: by, ApprovedAt: now}); err != nil {
		return fmt.Errorf("store pin: %w", err)
	}
	return nil
}

// Redeclare replaces the declared tools, as a configuration reload does. A tool that stays
// (same exposed name, upstream and upstream name) keeps the definition its upstream last
// offered and is reconciled at once under its new declaration (class, overlay, pin); a new
// tool is pending until its upstream's next sync, which the caller triggers; a tool no
// longer declared is gone. Errors are reported like [Registry.Sync]'s.
func (r *Registry) Redeclare(ctx context.Context, decls []Declaration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := *r.snap.Load()
	next := make(map[string]*Tool, len(decls))
	var errs []error
	for _, d := range decls {
		prev, ok := cur[d.Name]
		if !ok || prev.live == nil || prev.Upstream != d.Upstream || prev.UpstreamName != d.UpstreamName {
			next[d.Name] = &Tool{Declaration: d, Status: StatusPending, Reason: "it was just declared and its upstream has not been asked yet"}
			continue
		}
		t, err := r.reconcile(ctx, d, prev, prev.live)
		if err != nil {
			errs = append(errs, fmt.Errorf("tool %q: %w", d.Name, err))
		}
		next[d.Name] = t
	}
	r.decls = slices.Clone(decls)
	r.snap.Store(&next)
	return errors.Join(errs...)
}

// ApproveOptions refine [Registry.Approve].
type ApproveOptions struct {
	// Hash, if set, is the definition hash the operator reviewed (as `tools diff` showed
	// it): the approval fails with [ErrDefinitionChanged] if the upstream offers another
	// definition now.
	Hash string
	// AcceptFindings approves a definition the review flagged; without it such an approval
	// fails with [ErrFindings].
	AcceptFindings bool
}

// Errors of [Registry.Approve].
var (
	ErrDefinitionChanged = errors.New("the upstream offers a different definition from the one reviewed")
	ErrFindings          = errors.New("the definition was flagged by the review")
	ErrManifestMismatch  = errors.New("the live definition does not match the tool's signed manifest; publish a new signed manifest instead")
	ErrUnsigned          = errors.New("the registry requires a signed manifest for the tool, and none describes it")
)

// Approve pins the definition the upstream offers now for the tool and makes it callable.
// by names the operator, for the audit log. A tool a signed manifest describes can only be
// what the manifest says: approving a definition that does not match it fails.
func (r *Registry) Approve(ctx context.Context, name, by string, opts ApproveOptions) (*Tool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := r.clone()
	cur, ok := next[name]
	if !ok {
		return nil, fmt.Errorf("approve %q: %w", name, ErrUnknownTool)
	}
	if cur.live == nil {
		return nil, fmt.Errorf("approve %q: %w", name, ErrNothingToApprove)
	}
	def, hash, err := DefinitionHash(cur.live)
	if err != nil {
		return nil, fmt.Errorf("approve %q: %w", name, err)
	}
	switch {
	case opts.Hash != "" && opts.Hash != hash:
		return nil, fmt.Errorf("approve %q: reviewed %s, offered %s: %w", name, opts.Hash, hash, ErrDefinitionChanged)
	case cur.Manifest != nil:
		if cs, err := Diff(cur.Manifest.Definition(), cur.live); err != nil || len(cs) > 0 {
			return nil, fmt.Errorf("approve %q: %w", name, ErrManifestMismatch)
		}
	case r.opts.RequireSigned:
		return nil, fmt.Errorf("approve %q: %w", name, ErrUnsigned)
	}
	if cur.Finding != "" && !opts.AcceptFindings {
		return nil, fmt.Errorf("approve %q: it %s: %w", name, cur.Finding, ErrFindings)
	}
	if err := r.pin(ctx, cur.Declaration, hash, def, by); err != nil {
		return nil, fmt.Errorf("approve %q: %w", name, err)
	}
	t := &Tool{Declaration: cur.Declaration, Hash: hash, LiveHash: hash, live: cur.live}
	t, err = activate(t)
	next[name] = t
	r.snap.Store(&next)
	if err != nil {
		return t, fmt.Errorf("approve %q: %w", name, err)
	}
	return t, nil
}

func (r *Registry) clone() map[string]*Tool {
	cur := *r.snap.Load()
	next := make(map[string]*Tool, len(cur))
	for k, v := range cur {
		next[k] = v
	}
	return next
}

// DefinitionHash returns the canonical JSON of a tool's pinned definition — an object with
// the keys "description", "inputSchema", "name" (the upstream's name) and, only when the
// tool has one, "outputSchema"; keys sorted at every level, no insignificant white space,
// no HTML escaping — and "sha256:<hex>" of it.
func DefinitionHash(t *upstream.Tool) ([]byte, string, error) {
	def := map[string]any{"name": t.Name, "description": t.Description}
	for _, s := range []struct {
		key string
		raw json.RawMessage
	}{{"inputSchema", t.InputSchema}, {"outputSchema", t.OutputSchema}} {
		var v any
		if len(s.raw) > 0 {
			d := json.NewDecoder(bytes.NewReader(s.raw))
			d.UseNumber()
			if err := d.Decode(&v); err != nil {
				return nil, "", fmt.Errorf("%s: %w", s.key, err)
			}
			if d.More() {
				return nil, "", fmt.Errorf("%s: data after the JSON value", s.key)
			}
		}
		if v != nil || s.key == "inputSchema" {
			def[s.key] = v
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(def); err != nil {
		return nil, "", err
	}
	out := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	sum := sha256.Sum256(out)
	return out, "sha256:" + hex.EncodeToString(sum[:]), nil
}

// listing renders the tool as agents see it: the upstream's definition under the exposed name.
func listing(name string, t *upstream.Tool) json.RawMessage {
	type tool struct {
		Name        string          `json:"name"`
		Title       string          `json:"title,omitempty"`
		Description string          `json:"description,omitempty"`
		InputSchema json.RawMessage `json:"inputSchema"`
		Annotations json.RawMessage `json:"annotations,omitempty"`
	}
	b, err := json.Marshal(tool{Name: name, Title: t.Title, Description: t.Description, InputSchema: t.InputSchema, Annotations: t.Annotations})
	if err != nil {
		// The parts are already valid JSON (DefinitionHash decoded the schema); annotations
		// that are not are dropped rather than breaking the listing.
		b, _ = json.Marshal(tool{Name: name, Title: t.Title, Description: t.Description, InputSchema: t.InputSchema})
	}
	return b
}
