package approval

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/chaperone-dev/chaperone/internal/argcheck"
	"github.com/chaperone-dev/chaperone/internal/audit"
)

// Status is where a [Request] stands.
type Status string

// The statuses of a request. Pending is the only one that changes by a decision;
// approved changes only to used.
const (
	StatusPending  Status = "pending"
	StatusApproved Status = "approved"
	StatusDenied   Status = "denied"
	StatusExpired  Status = "expired" // nobody decided in time: counts as denied
	StatusUsed     Status = "used"    // approved and executed once
)

// IDPrefix starts every request id.
const IDPrefix = "apr_"

// Bounds and defaults.
const (
	// DefaultTimeout is how long a request stays pending unless [Options.Timeout] says
	// otherwise.
	DefaultTimeout = 15 * time.Minute
	// DefaultPollInterval is how often [Manager.Wait] re-reads the store unless
	// [Options.PollInterval] says otherwise.
	DefaultPollInterval = 250 * time.Millisecond
	// DefaultExpireInterval is how often [Manager.Run] expires requests when given no
	// interval.
	DefaultExpireInterval = 30 * time.Second
	// DefaultListLimit and MaxListLimit bound [Filter.Limit].
	DefaultListLimit = 100
	MaxListLimit     = 1000

	// MaxArguments bounds the arguments of a request, in bytes.
	MaxArguments = 1 << 20
	// MaxName bounds tool, upstream, agent, user, task, session and approver names, in
	// bytes.
	MaxName = 256
	// MaxText bounds a deny text, in bytes. The free-text fields of a request (Reason,
	// Explanation, Undo) are cut to this length rather than refused.
	MaxText = 4096
	// MaxList bounds the entries of Rules and RiskFactors.
	MaxList = 64

	// notifyTimeout bounds each notifier call.
	notifyTimeout = 10 * time.Second
)

// DefaultDeclineReasons returns the deny codes allowed unless [Options.DeclineReasons]
// names others: wrong_recipient, wrong_amount, not_requested, suspicious and other.
func DefaultDeclineReasons() []string {
	return []string{"wrong_recipient", "wrong_amount", "not_requested", "suspicious", DeclineOther}
}

// DeclineOther is the decline reason that requires a free-text explanation.
const DeclineOther = "other"

// Sentinel errors. They are returned wrapped; test with errors.Is.
var (
	// ErrNotFound is returned for an id no request has.
	ErrNotFound = errors.New("approval request not found")
	// ErrNotPending is returned for approving or denying a request that has already been
	// decided: the second decision does nothing.
	ErrNotPending = errors.New("approval request already decided")
	// ErrExpired is returned for deciding a request nobody decided in time, and for
	// consuming an approval after its request's expiry.
	ErrExpired = errors.New("approval request expired")
	// ErrSelfApproval is returned when the approver is the user the call acts for (unless
	// [Options.AllowSelfApproval]) or the agent that made the call (always).
	ErrSelfApproval = errors.New("approver may not approve their own call")
	// ErrSameApprover is returned under the two-person rule when a person who has
	// already approved a request approves it again.
	ErrSameApprover = errors.New("approver has already approved this request")
	// ErrMismatch is returned for consuming an approval with the hash of another call.
	ErrMismatch = errors.New("approval is for a different call")
	// ErrNotApproved is returned for consuming a request that is pending, denied or
	// expired.
	ErrNotApproved = errors.New("approval request not approved")
	// ErrUsed is returned for consuming an approval that has already been used.
	ErrUsed = errors.New("approval already used")
	// ErrUnknownDeclineReason is returned for a deny code that is not one of the
	// configured decline reasons.
	ErrUnknownDeclineReason = errors.New("unknown decline reason")
	// ErrPendingExists is returned by [Store.CreateApproval] when a pending, unexpired
	// request for the same call hash is stored; [Manager.Request] then returns that one.
	ErrPendingExists = errors.New("a pending approval request for this call exists")
	// ErrInvalid is returned for malformed input: arguments that are not a JSON object,
	// an empty or over-long approver name, a deny of reason "other" without text, and
	// the like. The message after it says what is wrong and is safe to show.
	ErrInvalid = errors.New("invalid approval input")
)

// Request is one held call awaiting (or past) a decision.
type Request struct {
	ID        string          // IDPrefix + 22 characters of URL-safe base64 of 16 random bytes
	CallHash  string          // see [Hash]
	Tool      string          // exposed tool name
	Upstream  string          // the upstream serving the tool
	Arguments json.RawMessage // the call's arguments as the agent sent them (compacted)
	Agent     string
	User      string // the user the call acts for; "" if none
	Task      string
	SessionID string
	Reason    string   // the agent's stated reason, if it gave one
	Rules     []string // the policy rules that held the call
	// PolicyVersion is the version of the policy that held the call.
	PolicyVersion string
	Risk          int      // 0–100
	RiskFactors   []string // what made the call risky
	Explanation   string   // information-flow explanation, if any
	Undo          string   // how to undo the call, if the tool declares it
	Status        Status
	// Required is how many distinct approvers must approve (1, or 2 for the two-person
	// rule).
	Required  int
	Approvals []Verdict // the approvals given so far, in order
	DeniedBy  string
	DenyCode  string // one of the configured decline reasons, or "other"
	DenyText  string // free text
	// CreatedAt is when the request was made; ExpiresAt when it stops being decidable,
	// and an approval stops being consumable.
	CreatedAt, ExpiresAt time.Time
	// DecidedAt is when the request was approved, denied or marked expired; UsedAt when
	// its approval was consumed. Both are zero until then.
	DecidedAt, UsedAt time.Time
}

// Verdict is one approval: who gave it, and when.
type Verdict struct {
	By string
	At time.Time
}

// Clone returns a deep copy of r.
func (r *Request) Clone() *Request {
	c := *r
	c.Arguments = bytes.Clone(r.Arguments)
	c.Rules = slices.Clone(r.Rules)
	c.RiskFactors = slices.Clone(r.RiskFactors)
	c.Approvals = slices.Clone(r.Approvals)
	return &c
}

// Filter selects requests for [Store.Approvals]. Zero fields select everything.
type Filter struct {
	Status Status
	Tool   string
	// Limit is the most requests returned: 0 means DefaultListLimit, and more than
	// MaxListLimit means MaxListLimit.
	Limit int
}

// EffectiveLimit returns the number of requests f asks for, within the bounds.
func (f Filter) EffectiveLimit() int {
	switch {
	case f.Limit <= 0:
		return DefaultListLimit
	case f.Limit > MaxListLimit:
		return MaxListLimit
	}
	return f.Limit
}

// Store persists requests. Every decision is atomic in the store, so that several
// Managers, in one process or several sharing the store, agree on the outcome. All
// times passed in are the caller's clock.
type Store interface {
	// CreateApproval stores a new request. If r is pending and a pending request for
	// the same call hash, unexpired at r.CreatedAt, is stored, it stores nothing and
	// returns an error wrapping [ErrPendingExists]; the check and the insert are atomic.
	CreateApproval(ctx context.Context, r *Request) error
	// Approval returns the request with the id, or an error wrapping [ErrNotFound].
	Approval(ctx context.Context, id string) (*Request, error)
	// PendingApproval returns the newest pending request for the exact call hash that
	// is unexpired at now, and false if there is none.
	PendingApproval(ctx context.Context, callHash string, now time.Time) (*Request, bool, error)
	// Approvals returns the requests f selects, newest first.
	Approvals(ctx context.Context, f Filter) ([]Request, error)
	// AddApproval records approver by at now. Atomically it fails with [ErrNotPending]
	// if the request is no longer pending, [ErrExpired] if it has expired (and marks it
	// expired), and [ErrSameApprover] if by (compared case-insensitively) already
	// approved it. When the approvals reach Required the status becomes approved and
	// DecidedAt is set. It returns the updated request.
	AddApproval(ctx context.Context, id, by string, now time.Time) (*Request, error)
	// Deny records the denial by by, under the same conditions as AddApproval (without
	// ErrSameApprover). It returns the updated request.
	Deny(ctx context.Context, id, by, code, text string, now time.Time) (*Request, error)
	// Consume marks an approved request used, atomically: of any number of callers,
	// in any number of processes, exactly one wins. It fails with [ErrNotFound],
	// [ErrMismatch] (callHash is not the request's), [ErrUsed], [ErrNotApproved]
	// (pending, denied or expired) or [ErrExpired] (approved but past ExpiresAt).
	Consume(ctx context.Context, id, callHash string, now time.Time) (*Request, error)
	// ExpireApprovals marks every pending request whose ExpiresAt <= now expired, and
	// returns those it marked: each request is returned by one call only.
	ExpireApprovals(ctx context.Context, now time.Time) ([]Request, error)
	// DeclineCounts counts the requests denied since a time, by DenyCode.
	DeclineCounts(ctx context.Context, since time.Time) (map[string]int, error)
}

// hashDomain separates call hashes from every other use of SHA-256.
const hashDomain = "chaperone/approval/call/v1"

// Hash binds an approval to one exact call: it returns "sha256:" and the lower-case hex
// SHA-256 of a canonical encoding of tool, arguments, agent, user and task, each
// preceded by its length (8 bytes, big-endian), so that no two different calls
// collide.
//
// Arguments are canonical JSON: objects with their keys sorted, no insignificant
// whitespace, strings re-encoded, numbers exactly as in the input text (1.0 and 1 are
// different calls). Key order, whitespace and string escapes ("\u0041" for "A") do
// not change the hash. Empty arguments hash as {}. It returns an error wrapping
// [ErrInvalid] for arguments that are not a JSON object, repeat a key in an object
// (the upstream might read either value), are not valid UTF-8 or hold an unpaired
// UTF-16 surrogate escape: each of these could make two different calls look the
// same.
func Hash(tool string, args json.RawMessage, agent, user, task string) (string, error) {
	h, err := hashCall(tool, args, agent, user, task)
	if err != nil {
		return "", fmt.Errorf("approval: hash call: %w", err)
	}
	return h, nil
}

// hashCall is Hash without the package prefix on errors.
func hashCall(tool string, args json.RawMessage, agent, user, task string) (string, error) {
	canon, err := canonicalArgs(args)
	if err != nil {
		return "", fmt.Errorf("%w: arguments %s", ErrInvalid, err)
	}
	h := sha256.New()
	for _, field := range [][]byte{[]byte(hashDomain), []byte(tool), canon, []byte(agent), []byte(user), []byte(task)} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(field)))
		h.Write(n[:])
		h.Write(field)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// canonicalArgs returns the canonical encoding of a JSON object, described at [Hash]:
// decoded with numbers kept as their text and encoded again, which sorts object keys.
// The gateway's own argument decoder refuses repeated keys.
func canonicalArgs(raw []byte) ([]byte, error) {
	t := bytes.TrimSpace(raw)
	switch {
	case len(t) == 0:
		return []byte("{}"), nil
	case string(t) == "null":
		return nil, errors.New("are not a JSON object")
	case !utf8.Valid(t):
		return nil, errors.New("are not valid UTF-8")
	case !json.Valid(t):
		return nil, errors.New("are not valid JSON")
	}
	if err := checkSurrogates(t); err != nil {
		return nil, err
	}
	if _, err := argcheck.DecodeArguments(t); err != nil {
		if errors.Is(err, argcheck.ErrDuplicateKey) {
			return nil, errors.New("repeat a key in an object (keys that differ only in case count as the same)")
		}
		return nil, errors.New("are not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(t))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		return nil, errors.New("are not valid JSON")
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, errors.New("are not valid JSON")
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// writeString writes s as a JSON string, escaping only what JSON requires (and
// U+2028, U+2029, as encoding/json always does).
func writeString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)           // a string always encodes
	b.Truncate(b.Len() - 1) // the newline Encode adds
}

// checkSurrogates reports an error for a \u escape of a UTF-16 surrogate that is not
// half of a pair: encoding/json decodes every such escape to U+FFFD, so two different
// arguments would look the same. raw is valid JSON.
func checkSurrogates(raw []byte) error {
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if !inString {
			inString = c == '"'
			continue
		}
		switch c {
		case '"':
			inString = false
		case '\\':
			i++
			if raw[i] != 'u' {
				continue
			}
			r := hex4(raw[i+1 : i+5])
			i += 4
			switch {
			case r >= 0xD800 && r <= 0xDBFF:
				if i+6 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' {
					if r2 := hex4(raw[i+3 : i+7]); r2 >= 0xDC00 && r2 <= 0xDFFF {
						i += 6
						continue
					}
				}
				return errors.New("hold an unpaired UTF-16 surrogate escape")
			case r >= 0xDC00 && r <= 0xDFFF:
				return errors.New("hold an unpaired UTF-16 surrogate escape")
			}
		}
	}
	return nil
}

// hex4 decodes four hex digits; it returns -1 if they are not.
func hex4(b []byte) int {
	v, err := strconv.ParseUint(string(b), 16, 16)
	if err != nil {
		return -1
	}
	return int(v)
}

// shortQuote quotes s for an error message, cut to 64 bytes.
func shortQuote(s string) string {
	const limit = 64
	if len(s) <= limit {
		return strconv.Quote(s)
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "..."
}

// Event kinds, for [Notifier]s.
const (
	EventRequested = audit.KindApprovalRequested
	EventApproved  = audit.KindApprovalApproved
	EventDenied    = audit.KindApprovalDenied
	EventExpired   = audit.KindApprovalExpired
)

// Notifier tells people about requests and decisions. Notify gets the request with
// its arguments as the agent sent them: a notifier that sends them anywhere must
// redact them first ([Preview]).
type Notifier interface {
	Notify(ctx context.Context, ev Event) error
}

// Event is what a [Notifier] is told.
type Event struct {
	Kind    string // EventRequested, EventApproved, EventDenied or EventExpired
	Request Request
	URL     string // where a person can look at the request: [Options.ApproveURL], if set
}

// Options configures a [Manager].
type Options struct {
	// Store holds the requests. Required.
	Store Store
	// Notifiers are called after a request is created and after it is decided, each in
	// its own goroutine with its own timeout. They are best effort: an error is logged
	// and never undoes or blocks the decision, which is stored (and waiters woken)
	// first.
	Notifiers []Notifier
	// ApproveURL returns where a person can look at the request with the id, for
	// notifications; nil leaves [Event.URL] empty.
	ApproveURL func(id string) string
	// Timeout is how long a request stays pending; default DefaultTimeout.
	Timeout time.Duration
	// DeclineReasons are the allowed deny codes; default [DefaultDeclineReasons].
	DeclineReasons []string
	// TwoPerson reports the tools whose calls need two distinct approvers; nil: none.
	TwoPerson func(tool string) bool
	// AllowSelfApproval lets the user a call acts for approve it. By default they may
	// not: a person must not be able to wave through their own agent's call.
	AllowSelfApproval bool
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives notification failures and expiry errors; default discards.
	Logger *slog.Logger
	// PollInterval is how often Wait re-reads the store, to see decisions made by
	// another process; default DefaultPollInterval.
	PollInterval time.Duration
}

// Manager creates requests, records decisions and hands out approvals, once each. It
// is safe for concurrent use, and several Managers (in several processes) may share
// one Store.
type Manager struct {
	store      Store
	notifiers  []Notifier
	approveURL func(string) string
	timeout    time.Duration
	reasons    []string
	twoPerson  func(string) bool
	allowSelf  bool
	now        func() time.Time
	log        *slog.Logger
	poll       time.Duration

	// mu guards changed.
	mu sync.Mutex
	// changed is closed, and replaced, whenever this Manager changes a request's
	// status, or Changed reports another process did: it wakes every Wait in the
	// process at once.
	changed chan struct{}
}

// NewManager returns a Manager. It panics if o.Store is nil.
func NewManager(o Options) *Manager {
	if o.Store == nil {
		panic("approval: NewManager: Options.Store is nil")
	}
	m := &Manager{
		store:      o.Store,
		notifiers:  slices.Clone(o.Notifiers),
		approveURL: o.ApproveURL,
		timeout:    o.Timeout,
		reasons:    slices.Clone(o.DeclineReasons),
		twoPerson:  o.TwoPerson,
		allowSelf:  o.AllowSelfApproval,
		now:        o.Now,
		log:        o.Logger,
		poll:       o.PollInterval,
		changed:    make(chan struct{}),
	}
	if m.timeout <= 0 {
		m.timeout = DefaultTimeout
	}
	if len(m.reasons) == 0 {
		m.reasons = DefaultDeclineReasons()
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.poll <= 0 {
		m.poll = DefaultPollInterval
	}
	return m
}

// DeclineReasons returns the allowed deny codes.
func (m *Manager) DeclineReasons() []string { return slices.Clone(m.reasons) }

// Request creates a pending request for the call described by r, or returns the
// pending one for the same call (same [Hash]): an agent retrying a call must not
// create duplicates. created reports which. The caller sets the fields that describe
// the call (Tool, Upstream, Arguments, Agent, User, Task, SessionID, Reason, Rules,
// PolicyVersion, Risk, RiskFactors, Explanation, Undo); Request fills ID, CallHash,
// Status, Required, CreatedAt and ExpiresAt, clears the decision fields, and does not
// modify r. Reason, Explanation and Undo longer than MaxText are cut. It returns an
// error wrapping [ErrInvalid] for an invalid call.
func (m *Manager) Request(ctx context.Context, r *Request) (req *Request, created bool, err error) {
	if r == nil {
		return nil, false, fmt.Errorf("approval: request: %w: no request", ErrInvalid)
	}
	in := r.Clone()
	if err := in.prepare(); err != nil {
		return nil, false, fmt.Errorf("approval: request for %s: %w", shortQuote(r.Tool), err)
	}
	hash, err := hashCall(in.Tool, in.Arguments, in.Agent, in.User, in.Task)
	if err != nil {
		return nil, false, fmt.Errorf("approval: request for %q: %w", in.Tool, err)
	}
	required := 1
	if m.twoPerson != nil && m.twoPerson(in.Tool) {
		required = 2
	}
	// A concurrent Request for the same call, here or in another process, may create
	// its request between our look-up and our insert; the store then refuses ours
	// (ErrPendingExists) and the next look-up finds theirs.
	for range 3 {
		now := m.now().UTC()
		p, ok, err := m.store.PendingApproval(ctx, hash, now)
		if err != nil {
			return nil, false, fmt.Errorf("approval: request for %q: %w", in.Tool, err)
		}
		if ok {
			return p, false, nil
		}
		n := in.Clone()
		n.ID = newID()
		n.CallHash = hash
		n.Status = StatusPending
		n.Required = required
		n.CreatedAt, n.ExpiresAt = now, now.Add(m.timeout)
		err = m.store.CreateApproval(ctx, n)
		if errors.Is(err, ErrPendingExists) {
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("approval: request for %q: %w", in.Tool, err)
		}
		m.notify(ctx, EventRequested, n)
		return n.Clone(), true, nil
	}
	return nil, false, fmt.Errorf("approval: request for %q: pending request kept changing", in.Tool)
}

// prepare validates the caller's fields of r and clears the rest.
func (r *Request) prepare() error {
	for _, f := range []struct{ name, v string }{
		{"tool", r.Tool}, {"upstream", r.Upstream}, {"agent", r.Agent}, {"user", r.User},
		{"task", r.Task}, {"session id", r.SessionID}, {"policy version", r.PolicyVersion},
	} {
		if err := checkName(f.name, f.v, f.name == "tool"); err != nil {
			return err
		}
	}
	if r.Risk < 0 || r.Risk > 100 {
		return fmt.Errorf("%w: risk %d is not between 0 and 100", ErrInvalid, r.Risk)
	}
	if len(r.Rules) > MaxList || len(r.RiskFactors) > MaxList {
		return fmt.Errorf("%w: at most %d rules and risk factors each", ErrInvalid, MaxList)
	}
	for _, s := range slices.Concat(r.Rules, r.RiskFactors) {
		if err := checkName("rule or risk factor", s, true); err != nil {
			return err
		}
	}
	if len(r.Arguments) > MaxArguments {
		return fmt.Errorf("%w: arguments exceed %d bytes", ErrInvalid, MaxArguments)
	}
	if len(bytes.TrimSpace(r.Arguments)) == 0 {
		r.Arguments = json.RawMessage("{}")
	} else {
		var b bytes.Buffer
		if err := json.Compact(&b, r.Arguments); err != nil {
			return fmt.Errorf("%w: arguments are not valid JSON", ErrInvalid)
		}
		r.Arguments = b.Bytes()
	}
	r.Reason, r.Explanation, r.Undo = cut(r.Reason, MaxText), cut(r.Explanation, MaxText), cut(r.Undo, MaxText)
	r.ID, r.CallHash, r.Status, r.Required = "", "", "", 0
	r.Approvals, r.DeniedBy, r.DenyCode, r.DenyText = nil, "", "", ""
	r.CreatedAt, r.ExpiresAt, r.DecidedAt, r.UsedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return nil
}

// checkName checks a name-like field: at most MaxName bytes of printable UTF-8
// without surrounding space.
func checkName(field, v string, required bool) error {
	switch {
	case v == "":
		if required {
			return fmt.Errorf("%w: %s is required", ErrInvalid, field)
		}
	case len(v) > MaxName:
		return fmt.Errorf("%w: %s exceeds %d bytes", ErrInvalid, field, MaxName)
	case !utf8.ValidString(v) || strings.ContainsFunc(v, isControl):
		return fmt.Errorf("%w: %s must be printable UTF-8", ErrInvalid, field)
	case strings.TrimSpace(v) != v:
		return fmt.Errorf("%w: %s has surrounding space", ErrInvalid, field)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// cut returns s cut to at most limit bytes, on a rune boundary.
func cut(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	n := limit
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// newID returns a fresh request id.
func newID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand's documentation)
	return IDPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// Approve records by's approval of the request. It returns the updated request:
// approved once it has Required distinct approvals, still pending before. It fails
// with [ErrSelfApproval] if by is the user the call acts for (unless
// AllowSelfApproval) or the agent that made it; [ErrNotFound], [ErrNotPending],
// [ErrExpired] or [ErrSameApprover] from the store; [ErrInvalid] for an empty or
// malformed by. Names are compared case-insensitively. An approval wakes every Wait
// for the request.
func (m *Manager) Approve(ctx context.Context, id, by string) (*Request, error) {
	if err := checkName("approver", by, true); err != nil {
		return nil, fmt.Errorf("approval: approve %q: %w", id, err)
	}
	cur, err := m.store.Approval(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("approval: approve %q: %w", id, err)
	}
	if strings.EqualFold(by, cur.Agent) || (!m.allowSelf && cur.User != "" && strings.EqualFold(by, cur.User)) {
		return nil, fmt.Errorf("approval: approve %q: %w", id, ErrSelfApproval)
	}
	r, err := m.store.AddApproval(ctx, id, by, m.now().UTC())
	if err != nil {
		m.afterFailedDecision(ctx, cur, err)
		return nil, fmt.Errorf("approval: approve %q: %w", id, err)
	}
	if r.Status == StatusApproved {
		m.broadcast()
		m.notify(ctx, EventApproved, r)
	}
	return r, nil
}

// Deny records by's denial of the request, with a decline reason (code, one of
// Options.DeclineReasons) and free text, which "other" requires. One denial decides a
// request, whatever Required says. It fails with [ErrUnknownDeclineReason],
// [ErrInvalid] (by or text malformed, "other" without text), and [ErrNotFound],
// [ErrNotPending] or [ErrExpired] from the store. A denial wakes every Wait for the
// request.
func (m *Manager) Deny(ctx context.Context, id, by, code, text string) (*Request, error) {
	if err := checkName("denier", by, true); err != nil {
		return nil, fmt.Errorf("approval: deny %q: %w", id, err)
	}
	if !slices.Contains(m.reasons, code) {
		return nil, fmt.Errorf("approval: deny %q: %w %s", id, ErrUnknownDeclineReason, shortQuote(code))
	}
	switch {
	case code == DeclineOther && strings.TrimSpace(text) == "":
		return nil, fmt.Errorf("approval: deny %q: %w: reason %q requires text", id, ErrInvalid, DeclineOther)
	case len(text) > MaxText:
		return nil, fmt.Errorf("approval: deny %q: %w: text exceeds %d bytes", id, ErrInvalid, MaxText)
	case !utf8.ValidString(text):
		return nil, fmt.Errorf("approval: deny %q: %w: text must be UTF-8", id, ErrInvalid)
	}
	cur, err := m.store.Approval(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("approval: deny %q: %w", id, err)
	}
	r, err := m.store.Deny(ctx, id, by, code, text, m.now().UTC())
	if err != nil {
		m.afterFailedDecision(ctx, cur, err)
		return nil, fmt.Errorf("approval: deny %q: %w", id, err)
	}
	m.broadcast()
	m.notify(ctx, EventDenied, r)
	return r, nil
}

// DenyKilled is the deny code of a request voided by a kill switch.
const DenyKilled = "killed"

// Void denies every pending request that match selects, as decided by by, with deny code
// [DenyKilled] and text: a kill switch pulled over them. It is not an approver's
// decision, so the configured decline reasons do not apply. It returns the requests it
// voided; a request decided meanwhile is skipped.
func (m *Manager) Void(ctx context.Context, match func(*Request) bool, by, text string) ([]Request, error) {
	pending, err := m.store.Approvals(ctx, Filter{Status: StatusPending, Limit: MaxListLimit})
	if err != nil {
		return nil, fmt.Errorf("approval: void: %w", err)
	}
	var voided []Request
	var errs []error
	for i := range pending {
		if !match(&pending[i]) {
			continue
		}
		r, err := m.store.Deny(ctx, pending[i].ID, cut(by, MaxName), DenyKilled, cut(text, MaxText), m.now().UTC())
		switch {
		case errors.Is(err, ErrNotPending) || errors.Is(err, ErrExpired):
			continue
		case err != nil:
			errs = append(errs, err)
			continue
		}
		voided = append(voided, *r)
		m.notify(ctx, EventDenied, r)
	}
	if len(voided) > 0 {
		m.broadcast()
	}
	if err := errors.Join(errs...); err != nil {
		return voided, fmt.Errorf("approval: void: %w", err)
	}
	return voided, nil
}

// afterFailedDecision handles a decision the store refused because the request had
// expired: if it was pending when read, the store has just marked it expired, so
// waiters are woken and notifiers told.
func (m *Manager) afterFailedDecision(ctx context.Context, before *Request, err error) {
	if !errors.Is(err, ErrExpired) || before.Status != StatusPending {
		return
	}
	m.broadcast()
	r, gerr := m.store.Approval(ctx, before.ID)
	if gerr != nil || r.Status != StatusExpired {
		return
	}
	m.notify(ctx, EventExpired, r)
}

// Consume uses the approval of the request for the call with callHash: it marks the
// request used and returns it. Of any number of callers, in any number of processes,
// exactly one succeeds. It fails with [ErrNotFound], [ErrMismatch], [ErrUsed],
// [ErrNotApproved] or [ErrExpired]; a mismatch leaves the approval consumable by the
// right call.
func (m *Manager) Consume(ctx context.Context, id, callHash string) (*Request, error) {
	r, err := m.store.Consume(ctx, id, callHash, m.now().UTC())
	if err != nil {
		return nil, fmt.Errorf("approval: consume %q: %w", id, err)
	}
	return r, nil
}

// Get returns the request with the id, or an error wrapping [ErrNotFound].
func (m *Manager) Get(ctx context.Context, id string) (*Request, error) {
	r, err := m.store.Approval(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("approval: get %q: %w", id, err)
	}
	return r, nil
}

// List returns the requests f selects, newest first.
func (m *Manager) List(ctx context.Context, f Filter) ([]Request, error) {
	f.Limit = f.EffectiveLimit()
	rs, err := m.store.Approvals(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("approval: list: %w", err)
	}
	return rs, nil
}

// DeclineCounts counts the requests denied since a time, by decline reason.
func (m *Manager) DeclineCounts(ctx context.Context, since time.Time) (map[string]int, error) {
	c, err := m.store.DeclineCounts(ctx, since)
	if err != nil {
		return nil, fmt.Errorf("approval: decline counts: %w", err)
	}
	return c, nil
}

// Wait blocks until the request is decided (approved, denied, expired; or used), ctx
// is done, or d passes, and returns the request as last read; on ctx done it returns
// ctx's error with it. Decisions made through this Manager wake it at once; decisions
// made by another process are seen within PollInterval. When the request's expiry
// passes, Wait marks due requests expired (notifying for them) and returns it expired.
// Wait never consumes. With d <= 0 it reads the request once.
func (m *Manager) Wait(ctx context.Context, id string, d time.Duration) (*Request, error) {
	timer := time.NewTimer(max(d, 0))
	defer timer.Stop()
	poll := time.NewTicker(m.poll)
	defer poll.Stop()
	for {
		changed := m.changes() // before the read, so no decision after it is missed
		r, err := m.store.Approval(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("approval: wait for %q: %w", id, err)
		}
		if r.Status != StatusPending {
			return r, nil
		}
		if !m.now().Before(r.ExpiresAt) {
			return m.expired(ctx, r), nil
		}
		if d <= 0 {
			return r, nil
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-timer.C:
			if last, err := m.store.Approval(ctx, id); err == nil {
				r = last
			}
			return r, nil
		case <-changed:
		case <-poll.C:
		}
	}
}

// expired sweeps due requests and returns r as stored afterwards. Should the store
// still show it pending (it could not be updated), the copy returned says expired all
// the same: its deadline has passed, and nobody can approve it any more.
func (m *Manager) expired(ctx context.Context, r *Request) *Request {
	m.expireDue(ctx)
	if last, err := m.store.Approval(ctx, r.ID); err == nil {
		r = last
	}
	if r.Status == StatusPending {
		r.Status = StatusExpired
	}
	return r
}

// Run marks requests expired every interval (DefaultExpireInterval if interval <= 0),
// notifying for each, until ctx is done.
func (m *Manager) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultExpireInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		m.expireDue(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// expireDue marks every due request expired and notifies for each.
func (m *Manager) expireDue(ctx context.Context) {
	expired, err := m.store.ExpireApprovals(ctx, m.now().UTC())
	if err != nil {
		if ctx.Err() == nil {
			m.log.WarnContext(ctx, "approval expiry failed", "err", err)
		}
		return
	}
	if len(expired) > 0 {
		m.broadcast()
	}
	for i := range expired {
		m.notify(ctx, EventExpired, &expired[i])
	}
}

// Changed wakes every Wait in the process at once, to re-read its request: call it when
// another process sharing the store has decided a request (told by a change
// notification), so that the Wait for it returns without waiting for its next poll. A
// call for no change costs each Wait one store read.
func (m *Manager) Changed() { m.broadcast() }

// changes returns the channel the next status change closes.
func (m *Manager) changes() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

// broadcast wakes every Wait.
func (m *Manager) broadcast() {
	m.mu.Lock()
	defer m.mu.Unlock()
	close(m.changed)
	m.changed = make(chan struct{})
}

// notify calls every notifier concurrently, each with its own copy of the event and a
// deadline independent of ctx's cancellation, and returns when all have returned.
func (m *Manager) notify(ctx context.Context, kind string, r *Request) {
	if len(m.notifiers) == 0 {
		return
	}
	var url string
	if m.approveURL != nil {
		url = m.approveURL(r.ID)
	}
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for i, n := range m.notifiers {
		ev := Event{Kind: kind, Request: *r.Clone(), URL: url}
		wg.Go(func() {
			if err := n.Notify(nctx, ev); err != nil {
				m.log.WarnContext(ctx, "approval notification failed",
					"approval_id", r.ID, "kind", kind, "notifier", i, "err", err)
			}
		})
	}
	wg.Wait()
}
