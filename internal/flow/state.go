package flow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"hash/maphash"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Limits bound what one session remembers.
type Limits struct {
	// MaxBytes bounds the values a session remembers, counted as described in the package
	// documentation. Default 256 KiB.
	MaxBytes int
	// HistoryEntries is how many recent calls the history keeps for windowed questions.
	// Default 256.
	HistoryEntries int
}

// Defaults.
const (
	DefaultMaxBytes       = 256 << 10
	DefaultHistoryEntries = 256
	// valueOverhead is what one remembered value costs beyond its key and text: the map
	// entry and the memo.
	valueOverhead = 80
	// maxRawBytes bounds the text kept with a value for explanations.
	maxRawBytes = 64
	// maxOrigins bounds the calls a session can name as where values came from; later
	// values are attributed to the last one kept.
	maxOrigins = 1024
	// maxSummaryBytes bounds an origin's description.
	maxSummaryBytes = 96
)

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.HistoryEntries <= 0 {
		l.HistoryEntries = DefaultHistoryEntries
	}
	return l
}

// Origin is a call whose result brought values or content into a session.
type Origin struct {
	// RequestID is the call's request id.
	RequestID string
	// Call describes the call the way a person reads it: read_file(bills/december.txt).
	Call string
}

// Where each remembered value was seen.
const (
	seenPrompt  uint8 = 1 << iota // in the user's prompt
	seenTrusted                   // in a trusted tool's result
)

// memo is what a session knows of one value.
type memo struct {
	raw  string
	kind Kind
	// seen says in which trusted sources the value appeared.
	seen uint8
	// origin indexes the call whose untrusted result the value first appeared in; -1 if
	// it never appeared in one.
	origin int32
}

// Session is the flow state of one agent context. Its methods are safe for concurrent
// use, except that a [View] must be used under [Session.RLock].
type Session struct {
	mu     sync.RWMutex
	limits Limits

	untrusted, private         bool
	untrustedFrom, privateFrom int32

	origins  []Origin
	values   map[string]memo
	bytes    int
	overflow bool
	hist     history
	// injection is the strongest injection finding among the results the session took
	// in, and the signals behind it.
	injection        float64
	injectionSignals []string

	lastUsed atomic.Int64 // unix nanos

	// st and key name the session in its store, for a store with a journal (see
	// journal.go); st is nil for a session made by NewSession.
	st  *Store
	key string
	// applied is the seq of the last journal entry the session applied; guarded by mu.
	applied int64
	// touched is when the session last kept its journal from expiring (unix nanos).
	touched atomic.Int64
}

// NewSession returns an empty session.
func NewSession(limits Limits) *Session {
	limits = limits.withDefaults()
	return &Session{
		limits:        limits,
		untrustedFrom: -1,
		privateFrom:   -1,
		values:        map[string]memo{},
		hist:          newHistory(limits.HistoryEntries),
	}
}

// RLock locks the session for reading, for the life of a [View].
func (s *Session) RLock() { s.mu.RLock() }

// RUnlock undoes RLock.
func (s *Session) RUnlock() { s.mu.RUnlock() }

// Untrusted reports whether the session has seen untrusted content, and the call it
// first came from.
func (s *Session) Untrusted() (bool, Origin) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.untrusted, s.origin(s.untrustedFrom)
}

// Private reports whether the session has seen private data, and the call it first came
// from.
func (s *Session) Private() (bool, Origin) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.private, s.origin(s.privateFrom)
}

// Injection returns the score of the strongest injection found in a result the session
// took in (0 if none) and the signals behind it. The caller owns the slice.
func (s *Session) Injection() (float64, []string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.injection, slices.Clone(s.injectionSignals)
}

// Overflowed reports whether the session has seen more untrusted values than it can
// remember.
func (s *Session) Overflowed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.overflow
}

// Values returns the number of values the session remembers.
func (s *Session) Values() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.values)
}

func (s *Session) origin(i int32) Origin {
	if i < 0 || int(i) >= len(s.origins) {
		return Origin{}
	}
	return s.origins[i]
}

// AddPrompt remembers the values of the user's prompt as trusted. It does not write to
// the store's journal: a caller that shares sessions between replicas uses
// [Session.RecordPrompt].
func (s *Session) AddPrompt(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sjAddPrompt(text)
}

func (s *Session) sjAddPrompt(text string) {
	ExtractText(text, func(v Value) { s.remember(v, seenPrompt, -1) })
}

// Run is a call that ran, as [Session.Ran] records it.
type Run struct {
	RequestID string
	// Tool is the exposed tool name.
	Tool string
	// Args are the decoded arguments.
	Args map[string]any
	// Labels are the tool's labels.
	Labels *Labels
	// Result is the upstream's CallToolResult; nil if the call returned none.
	Result json.RawMessage
	Time   time.Time
	// Injection is the score of an injection the content sensors found in the result
	// (0: none found), and InjectionSignals the signals behind it. The session keeps the
	// strongest for as long as it lives.
	Injection        float64
	InjectionSignals []string
}

// Ran records a call that ran: it counts in the history, and its result's content and
// values now belong to the session, labelled as the tool declares. It does not write to
// the store's journal: a caller that shares sessions between replicas uses
// [Session.Record].
func (s *Session) Ran(r Run) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sjRan(r, false)
}

// sjRan is Ran with s.mu held. With omitted, the result was too large for the journal
// and is taken as content the session could not remember (see [Entry]).
func (s *Session) sjRan(r Run, omitted bool) {
	s.hist.add(r.Tool, r.Args, r.Time)
	if r.Injection > s.injection {
		s.injection, s.injectionSignals = r.Injection, slices.Clone(r.InjectionSignals)
	}
	res, ok := toolResult{}, omitted
	if !omitted {
		res, ok = parseResult(r.Result)
	}
	if !ok {
		return
	}
	l := r.Labels
	if l == nil {
		l = &Labels{}
	}
	origin := int32(-1)
	if !l.Trusted || !l.Public {
		origin = s.addOrigin(r)
	}
	if !l.Public && !s.private {
		s.private, s.privateFrom = true, origin
	}
	if l.Trusted {
		res.values(func(v Value) { s.remember(v, seenTrusted, -1) })
		return
	}
	if !s.untrusted {
		s.untrusted, s.untrustedFrom = true, origin
	}
	if omitted {
		s.overflow = true
		return
	}
	res.values(func(v Value) { s.remember(v, 0, origin) })
}

func (s *Session) addOrigin(r Run) int32 {
	if len(s.origins) >= maxOrigins {
		return int32(len(s.origins) - 1)
	}
	s.origins = append(s.origins, Origin{RequestID: r.RequestID, Call: describeCall(r.Tool, r.Args, r.Labels)})
	return int32(len(s.origins) - 1)
}

// remember records value v as seen in the trusted sources seen, or, with origin >= 0, in
// the untrusted result of that call.
func (s *Session) remember(v Value, seen uint8, origin int32) {
	if m, ok := s.values[v.Key]; ok {
		m.seen |= seen
		if m.origin < 0 {
			m.origin = origin
		}
		s.values[v.Key] = m
		return
	}
	raw := cutUTF8(v.Raw, maxRawBytes)
	cost := len(v.Key) + len(raw) + valueOverhead
	if s.bytes+cost > s.limits.MaxBytes {
		if origin >= 0 {
			s.overflow = true
		}
		return
	}
	s.bytes += cost
	s.values[v.Key] = memo{raw: raw, kind: v.Kind, seen: seen, origin: origin}
}

// describeCall names a call for explanations: the tool and its first sink argument's
// value, or else the first string argument in name order, shortened.
func describeCall(tool string, args map[string]any, l *Labels) string {
	arg := ""
	if l != nil {
		for _, name := range l.Sinks {
			if v, ok := args[name].(string); ok {
				arg = v
				break
			}
		}
	}
	if arg == "" && len(args) > 0 {
		names := make([]string, 0, len(args))
		for k := range args {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			if v, ok := args[k].(string); ok && v != "" {
				arg = v
				break
			}
		}
	}
	arg = strings.Join(strings.Fields(arg), " ")
	if len(arg) > 48 {
		arg = cutUTF8(arg, 47) + "…"
	}
	return cutUTF8(tool, maxSummaryBytes-len(arg)-2) + "(" + arg + ")"
}

// toolResult is the part of an MCP CallToolResult whose content reaches the model.
type toolResult struct {
	content []contentItem
	// structured is the decoded structuredContent, nil if there is none.
	structured any
	// raw is a result that is not read as a CallToolResult: scanned as text, since
	// whatever the model may see counts.
	raw string
}

type contentItem struct {
	text     string
	resource *resourceContent
}

type resourceContent struct{ uri, text string }

// parseResult decodes a result once; ok is false when it brings no content: none at
// all, or a CallToolResult without content items and structured content.
//
// Members are matched by their exact names, as JSON and MCP clients in JavaScript or
// Python read them. Clients that match names regardless of case (Go's encoding/json)
// exist too, so a result whose objects hold a member named like one of these in another
// case ("TEXT", "Content") is scanned whole: decoded either way, it could otherwise show
// the model a value this session never learnt. So is a result whose members have the
// wrong types (a text that is not a string), as decoding it into Go strings would refuse.
func parseResult(raw json.RawMessage) (toolResult, bool) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || string(t) == "null" {
		return toolResult{}, false
	}
	var doc any
	if json.Unmarshal(t, &doc) != nil {
		return toolResult{raw: string(raw)}, true
	}
	r, ok := readResult(doc)
	if !ok {
		return toolResult{raw: string(raw)}, true
	}
	return r, len(r.content) > 0 || r.structured != nil
}

// The members of a CallToolResult, of its content items and of their embedded resources
// that carry what reaches the model.
var (
	resultMembers   = []string{"content", "structuredContent"}
	itemMembers     = []string{"type", "text", "resource"}
	resourceMembers = []string{"uri", "text"}
)

// ExactResult reports whether a decoded CallToolResult, its content items and their
// embedded resources name every member that carries what reaches the model exactly: no
// member is named like one of them in another case, as encoding/json would match it. A
// reader of results that matches names exactly, as JSON does, sees what every client
// sees only when this holds; otherwise it must read every value of the result.
func ExactResult(root map[string]any) bool {
	if !exactMembers(root, resultMembers) {
		return false
	}
	items, _ := root["content"].([]any)
	for _, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			continue
		}
		if !exactMembers(m, itemMembers) {
			return false
		}
		if r, ok := m["resource"].(map[string]any); ok && !exactMembers(r, resourceMembers) {
			return false
		}
	}
	return true
}

// readResult reads a decoded CallToolResult; ok is false when it must be scanned whole.
func readResult(doc any) (r toolResult, ok bool) {
	m, isObject := doc.(map[string]any)
	if !isObject || !ExactResult(m) {
		return r, false
	}
	switch c := m["content"].(type) {
	case nil:
	case []any:
		r.content = make([]contentItem, 0, len(c))
		for _, e := range c {
			it, ok := readItem(e)
			if !ok {
				return toolResult{}, false
			}
			r.content = append(r.content, it)
		}
	default:
		return toolResult{}, false
	}
	r.structured = m["structuredContent"] // nil when absent or null
	return r, true
}

func readItem(v any) (it contentItem, ok bool) {
	if v == nil {
		return it, true
	}
	m, isObject := v.(map[string]any)
	if !isObject {
		return it, false
	}
	if _, ok := optionalString(m, "type"); !ok {
		return it, false
	}
	if it.text, ok = optionalString(m, "text"); !ok {
		return it, false
	}
	switch res := m["resource"].(type) {
	case nil:
	case map[string]any:
		it.resource = &resourceContent{}
		if it.resource.uri, ok = optionalString(res, "uri"); !ok {
			return it, false
		}
		if it.resource.text, ok = optionalString(res, "text"); !ok {
			return it, false
		}
	default:
		return it, false
	}
	return it, true
}

// optionalString returns m's member name if it is a string, "" if it is absent or null;
// ok is false for any other value.
func optionalString(m map[string]any, name string) (string, bool) {
	switch v := m[name].(type) {
	case nil:
		return "", true
	case string:
		return v, true
	}
	return "", false
}

// exactMembers reports whether every member of m that some client could read as one of
// names — equal to it regardless of case, as encoding/json matches names — is spelled
// exactly as it.
func exactMembers(m map[string]any, names []string) bool {
	for k := range m {
		for _, n := range names {
			if k != n && strings.EqualFold(k, n) {
				return false
			}
		}
	}
	return true
}

// values yields the values of the result: of each text item (as JSON when it is JSON,
// so that short fields are matched whole) and of the structured content.
func (r *toolResult) values(yield func(Value)) {
	if r.raw != "" {
		ExtractText(r.raw, yield)
		return
	}
	for _, c := range r.content {
		textValues(c.text, yield)
		if c.resource != nil {
			ExtractText(c.resource.uri, yield)
			textValues(c.resource.text, yield)
		}
	}
	if r.structured != nil {
		jsonValues(r.structured, yield, 0)
	}
}

// textValues yields the values of one text: a JSON document walked field by field, or
// free text.
func textValues(text string, yield func(Value)) {
	if text == "" {
		return
	}
	if t := strings.TrimSpace(text); len(t) > 1 && (t[0] == '{' || t[0] == '[') {
		var v any
		if json.Unmarshal([]byte(t), &v) == nil {
			jsonValues(v, yield, 0)
			return
		}
	}
	ExtractText(text, yield)
}

// maxDepth bounds the nesting walked in results and arguments.
const maxDepth = 32

func jsonValues(v any, yield func(Value), depth int) {
	if depth > maxDepth {
		return
	}
	switch x := v.(type) {
	case string:
		Leaf(x, yield)
		ExtractText(x, yield)
	case float64:
		ArgumentValues(x, yield)
	case []any:
		for _, e := range x {
			jsonValues(e, yield, depth+1)
		}
	case map[string]any:
		for _, e := range x {
			jsonValues(e, yield, depth+1)
		}
	}
}

func cutUTF8(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ErrFull is returned by [Store.Session] when the store holds as many sessions as it may
// and none is idle.
var ErrFull = errors.New("flow: too many sessions")

// StoreOptions configure a [Store].
type StoreOptions struct {
	Limits Limits
	// MaxSessions bounds the sessions held at once. Default 100,000.
	MaxSessions int
	// Idle is how long a session is kept after its last use. Default 24h.
	Idle time.Duration
	// Journal, if set, shares sessions between gateway replicas: a session is brought up
	// to date from it before each use, and what it learns through [Session.Record] and
	// [Session.RecordPrompt] is appended to it. Nil keeps sessions in this process only.
	Journal Journal
	// JournalTimeout bounds each use of the journal. Default [DefaultJournalTimeout].
	JournalTimeout time.Duration
}

const storeShards = 32

// Store holds the sessions of a gateway by key. It is safe for concurrent use.
type Store struct {
	opts   StoreOptions
	seed   maphash.Seed
	count  atomic.Int64
	shards [storeShards]struct {
		mu sync.Mutex
		m  map[string]*Session
	}
}

// NewStore returns an empty store.
func NewStore(opts StoreOptions) *Store {
	opts.Limits = opts.Limits.withDefaults()
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = 100_000
	}
	if opts.Idle <= 0 {
		opts.Idle = 24 * time.Hour
	}
	if opts.JournalTimeout <= 0 {
		opts.JournalTimeout = DefaultJournalTimeout
	}
	st := &Store{opts: opts, seed: maphash.MakeSeed()}
	for i := range st.shards {
		st.shards[i].m = map[string]*Session{}
	}
	return st
}

func (st *Store) shard(key string) int {
	return int(maphash.String(st.seed, key) % storeShards)
}

// Session returns the session for key, creating it empty if there is none. It fails
// with [ErrFull] when the store is full even after dropping idle sessions. With a
// journal it is [Store.SessionContext] without a context of the caller's.
func (st *Store) Session(key string, now time.Time) (*Session, error) {
	return st.SessionContext(context.Background(), key, now)
}

// SessionContext is [Store.Session]. With a journal, it also brings the session up to
// date with the entries other replicas appended, and fails if it cannot read them: a
// session that may have missed what it saw elsewhere must not be used (fail closed).
func (st *Store) SessionContext(ctx context.Context, key string, now time.Time) (*Session, error) {
	s, err := st.sjLocal(key, now)
	if err != nil || st.opts.Journal == nil {
		return s, err
	}
	if err := st.sjSyncShared(ctx, s, now); err != nil {
		return nil, err
	}
	return s, nil
}

func (st *Store) sjLocal(key string, now time.Time) (*Session, error) {
	sh := &st.shards[st.shard(key)]
	sh.mu.Lock()
	s := sh.m[key]
	if s == nil {
		if st.count.Load() >= int64(st.opts.MaxSessions) {
			sh.mu.Unlock()
			st.Expire(now)
			sh.mu.Lock()
			if s = sh.m[key]; s == nil && st.count.Load() >= int64(st.opts.MaxSessions) {
				sh.mu.Unlock()
				return nil, ErrFull
			}
		}
		if s == nil {
			s = NewSession(st.opts.Limits)
			if st.opts.Journal != nil {
				s.st, s.key = st, key
			}
			sh.m[key] = s
			st.count.Add(1)
		}
	}
	sh.mu.Unlock()
	s.lastUsed.Store(now.UnixNano())
	return s, nil
}

// End forgets the session for key: its context is gone.
func (st *Store) End(key string) {
	sh := &st.shards[st.shard(key)]
	sh.mu.Lock()
	if _, ok := sh.m[key]; ok {
		delete(sh.m, key)
		st.count.Add(-1)
	}
	sh.mu.Unlock()
}

// Expire forgets the sessions idle for longer than the store's idle time and returns how
// many it forgot.
func (st *Store) Expire(now time.Time) int {
	cutoff := now.Add(-st.opts.Idle).UnixNano()
	n := 0
	for i := range st.shards {
		sh := &st.shards[i]
		sh.mu.Lock()
		for k, s := range sh.m {
			if s.lastUsed.Load() < cutoff {
				delete(sh.m, k)
				n++
			}
		}
		sh.mu.Unlock()
	}
	st.count.Add(int64(-n))
	return n
}

// Len returns the number of sessions held.
func (st *Store) Len() int { return int(st.count.Load()) }
