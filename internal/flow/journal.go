package flow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// Sharing sessions between gateway replicas.
//
// A session's flow state is a pure function of its inputs, in order: the prompts it was
// given and the calls that ran. A [Journal] keeps those inputs, as encoded [Entry] values,
// where every replica reads them; a [Store] with a journal brings its copy of a session up
// to date from the journal before each use ([Store.SessionContext]) and appends what the
// session learns ([Session.Record], [Session.RecordPrompt]). So a session that moves to
// another replica continues with everything it saw: untrusted content read on one
// replica still taints a call made on another.
//
// Entries are chained: each has a seq, greater than every seq the journal handed out
// before (for any key), and names the seq of the key's entry before it (prev, 0 for the
// first). A replica applies an entry only on top of the one it names, so that replicas
// apply the same entries in the same order and converge to the same state. An entry whose
// prev is 0 where the replica's copy has applied others starts the key's journal afresh
// (it was ended, or expired, and begun again): the copy starts over with it.

// EntryVersion is the version of the entry encoding [MarshalEntry] writes, the only one
// [UnmarshalEntry] reads.
const EntryVersion = 1

// Bounds of a journal entry.
const (
	// MaxEntryBytes bounds an encoded entry.
	MaxEntryBytes = 4 << 20
	// MaxJournalResultBytes bounds the result an entry carries. A larger result is left
	// out (ResultOmitted): the session then counts it as content it could not remember,
	// which fails closed (see [Entry]).
	MaxJournalResultBytes = 1 << 20
	// MaxJournalPromptBytes bounds the prompt an entry carries.
	MaxJournalPromptBytes = 1 << 20
	// MaxEntrySignals bounds the injection signals of an entry, and MaxEntrySignalBytes
	// each of them; [MarshalEntry] keeps the first ones and shortens longer ones.
	MaxEntrySignals     = 64
	MaxEntrySignalBytes = 256
	// MaxEntryNameBytes bounds an entry's tool name, request id and each sink name.
	MaxEntryNameBytes = 1024
	// MaxEntrySinks bounds the sinks of an entry's labels.
	MaxEntrySinks = 256
)

// Entry is one input to a session as a [Journal] keeps it: the user's prompt, or, when
// Run is set, a call that ran.
type Entry struct {
	// Prompt is the text of the user's prompt; unused when Run is set.
	Prompt string
	// Run is a call that ran.
	Run *Run
	// ResultOmitted says the run's result was too large to keep (see
	// [MaxJournalResultBytes]). The session takes the run as if its result had brought
	// more values than it can remember: seen untrusted content marks the session
	// overflowed, so that every argument value not known to be trusted counts as
	// untrusted; trusted values are not remembered, which can only make more arguments
	// untrusted.
	ResultOmitted bool
}

// sjWireEntry is the JSON form of an entry, version 1.
type sjWireEntry struct {
	V      int        `json:"v"`
	Prompt *string    `json:"prompt,omitempty"`
	Run    *sjWireRun `json:"run,omitempty"`
}

type sjWireRun struct {
	RequestID string          `json:"request_id,omitempty"`
	Tool      string          `json:"tool"`
	Args      map[string]any  `json:"args,omitempty"`
	Labels    *sjWireLabels   `json:"labels,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	// ResultBytes carries a result that is not JSON, exactly (base64 in the encoding).
	ResultBytes   []byte    `json:"result_bytes,omitempty"`
	ResultOmitted bool      `json:"result_omitted,omitempty"`
	Time          time.Time `json:"time"`
	Injection     float64   `json:"injection,omitempty"`
	Signals       []string  `json:"signals,omitempty"`
}

type sjWireLabels struct {
	Trusted  bool     `json:"trusted,omitempty"`
	Public   bool     `json:"public,omitempty"`
	Sinks    []string `json:"sinks,omitempty"`
	AllSinks bool     `json:"all_sinks,omitempty"`
}

// MarshalEntry encodes e for a journal. It keeps a result of up to
// [MaxJournalResultBytes] and otherwise leaves it out (ResultOmitted), keeps the first
// [MaxEntrySignals] signals shortened to [MaxEntrySignalBytes] and clamps the injection
// score to [0, 1] (NaN counts as 1). It fails for an entry it cannot encode within the
// bounds: a prompt over [MaxJournalPromptBytes], a name over [MaxEntryNameBytes], more
// than [MaxEntrySinks] sinks or an empty one, arguments that are not JSON, or an
// encoding over [MaxEntryBytes].
func MarshalEntry(e Entry) ([]byte, error) {
	w := sjWireEntry{V: EntryVersion}
	if e.Run == nil {
		if len(e.Prompt) > MaxJournalPromptBytes {
			return nil, fmt.Errorf("flow: encode entry: prompt of %d bytes, more than %d", len(e.Prompt), MaxJournalPromptBytes)
		}
		w.Prompt = &e.Prompt
	} else {
		r, err := sjWireRunOf(e.Run, e.ResultOmitted)
		if err != nil {
			return nil, fmt.Errorf("flow: encode entry: %w", err)
		}
		w.Run = r
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Results are kept as they came (compacted): escaping HTML would grow them past the
	// bound the decoder checks.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&w); err != nil {
		return nil, fmt.Errorf("flow: encode entry: %w", err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(b) > MaxEntryBytes {
		return nil, fmt.Errorf("flow: encode entry: %d bytes, more than %d", len(b), MaxEntryBytes)
	}
	return b, nil
}

func sjWireRunOf(r *Run, omitted bool) (*sjWireRun, error) {
	if len(r.Tool) > MaxEntryNameBytes || len(r.RequestID) > MaxEntryNameBytes {
		return nil, fmt.Errorf("tool name or request id longer than %d bytes", MaxEntryNameBytes)
	}
	w := &sjWireRun{RequestID: r.RequestID, Tool: r.Tool, Args: r.Args, Time: r.Time, ResultOmitted: omitted}
	if l := r.Labels; l != nil {
		if len(l.Sinks) > MaxEntrySinks {
			return nil, fmt.Errorf("%d sinks, more than %d", len(l.Sinks), MaxEntrySinks)
		}
		for i, s := range l.Sinks {
			if s == "" || len(s) > MaxEntryNameBytes {
				return nil, fmt.Errorf("sinks[%d]: empty or longer than %d bytes", i, MaxEntryNameBytes)
			}
		}
		w.Labels = &sjWireLabels{Trusted: l.Trusted, Public: l.Public, Sinks: l.Sinks, AllSinks: l.AllSinks}
	}
	switch x := r.Injection; {
	case math.IsNaN(x) || x > 1:
		w.Injection = 1
	case x > 0:
		w.Injection = x
	}
	for i, s := range r.InjectionSignals {
		if i == MaxEntrySignals {
			break
		}
		w.Signals = append(w.Signals, cutUTF8(s, MaxEntrySignalBytes))
	}
	if res := bytes.TrimSpace(r.Result); !omitted && len(res) > 0 {
		switch {
		case len(r.Result) > MaxJournalResultBytes:
			w.ResultOmitted = true
		case json.Valid(res):
			w.Result = res
		default:
			w.ResultBytes = r.Result
		}
	}
	return w, nil
}

// UnmarshalEntry decodes an entry [MarshalEntry] encoded. It refuses anything else: an
// encoding over [MaxEntryBytes], another version, unknown fields, trailing data, neither
// or both of a prompt and a run, and fields beyond the bounds MarshalEntry keeps.
func UnmarshalEntry(b []byte) (Entry, error) {
	if len(b) > MaxEntryBytes {
		return Entry{}, fmt.Errorf("flow: decode entry: %d bytes, more than %d", len(b), MaxEntryBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var w sjWireEntry
	if err := dec.Decode(&w); err != nil {
		return Entry{}, fmt.Errorf("flow: decode entry: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Entry{}, errors.New("flow: decode entry: data after the entry")
	}
	if w.V != EntryVersion {
		return Entry{}, fmt.Errorf("flow: decode entry: version %d, this binary reads version %d", w.V, EntryVersion)
	}
	switch {
	case (w.Prompt == nil) == (w.Run == nil):
		return Entry{}, errors.New("flow: decode entry: want exactly one of prompt and run")
	case w.Prompt != nil:
		if len(*w.Prompt) > MaxJournalPromptBytes {
			return Entry{}, fmt.Errorf("flow: decode entry: prompt of %d bytes, more than %d", len(*w.Prompt), MaxJournalPromptBytes)
		}
		return Entry{Prompt: *w.Prompt}, nil
	}
	r, err := sjCheckWireRun(w.Run)
	if err != nil {
		return Entry{}, fmt.Errorf("flow: decode entry: run: %w", err)
	}
	return Entry{Run: r, ResultOmitted: w.Run.ResultOmitted}, nil
}

func sjCheckWireRun(w *sjWireRun) (*Run, error) {
	if len(w.Tool) > MaxEntryNameBytes || len(w.RequestID) > MaxEntryNameBytes {
		return nil, fmt.Errorf("tool name or request id longer than %d bytes", MaxEntryNameBytes)
	}
	if !(w.Injection >= 0 && w.Injection <= 1) {
		return nil, fmt.Errorf("injection score %v, want 0 to 1", w.Injection)
	}
	if len(w.Signals) > MaxEntrySignals {
		return nil, fmt.Errorf("%d signals, more than %d", len(w.Signals), MaxEntrySignals)
	}
	for i, s := range w.Signals {
		if len(s) > MaxEntrySignalBytes {
			return nil, fmt.Errorf("signals[%d]: longer than %d bytes", i, MaxEntrySignalBytes)
		}
	}
	n := 0
	for _, set := range []bool{len(w.Result) > 0, len(w.ResultBytes) > 0, w.ResultOmitted} {
		if set {
			n++
		}
	}
	if n > 1 {
		return nil, errors.New("more than one of result, result_bytes and result_omitted")
	}
	if len(w.Result) > MaxJournalResultBytes || len(w.ResultBytes) > MaxJournalResultBytes {
		return nil, fmt.Errorf("result longer than %d bytes", MaxJournalResultBytes)
	}
	r := &Run{RequestID: w.RequestID, Tool: w.Tool, Args: w.Args, Time: w.Time, Injection: w.Injection, InjectionSignals: w.Signals}
	switch {
	case len(w.Result) > 0:
		r.Result = w.Result
	case len(w.ResultBytes) > 0:
		r.Result = w.ResultBytes
	}
	if l := w.Labels; l != nil {
		if len(l.Sinks) > MaxEntrySinks {
			return nil, fmt.Errorf("%d sinks, more than %d", len(l.Sinks), MaxEntrySinks)
		}
		for i, s := range l.Sinks {
			if s == "" || len(s) > MaxEntryNameBytes {
				return nil, fmt.Errorf("sinks[%d]: empty or longer than %d bytes", i, MaxEntryNameBytes)
			}
		}
		r.Labels = &Labels{Trusted: l.Trusted, Public: l.Public, Sinks: l.Sinks, AllSinks: l.AllSinks}
	}
	return r, nil
}

// Journal keeps the entries of sessions, by key, where every gateway replica reads them.
// It is safe for concurrent use by many replicas.
type Journal interface {
	// AppendFlow appends entry to key's journal at time at and returns its seq, greater
	// than every seq handed out before for any key, and prev, the seq of the key's entry
	// before it (0 when it is the first: the key had no journal, or it was ended or
	// expired). Appends to one key are serialised: an entry is visible to FlowSince only
	// once every entry before it is.
	AppendFlow(ctx context.Context, key string, entry []byte, at time.Time) (seq, prev int64, err error)
	// FlowSince returns at most limit entries of key's journal with seq greater than
	// afterSeq, in ascending seq order.
	FlowSince(ctx context.Context, key string, afterSeq int64, limit int) ([]JournalEntry, error)
	// TouchFlow marks key's journal as used at time at, so that it does not expire while
	// a session still uses it without appending. A key without a journal is no error.
	TouchFlow(ctx context.Context, key string, at time.Time) error
	// EndFlow deletes key's journal.
	EndFlow(ctx context.Context, key string) error
	// ExpireFlow deletes the journals last appended to or touched before before, and
	// returns how many it deleted.
	ExpireFlow(ctx context.Context, before time.Time) (int, error)
}

// JournalEntry is an entry as a [Journal] returns it.
type JournalEntry struct {
	// Seq is the entry's position, Prev the Seq of the key's entry before it (0: none).
	Seq, Prev int64
	// Entry is the entry as [MarshalEntry] encoded it.
	Entry []byte
}

// Journal defaults.
const (
	// DefaultJournalTimeout bounds one journal operation.
	DefaultJournalTimeout = 5 * time.Second
	// sjJournalBatch is how many entries one read of the journal asks for.
	sjJournalBatch = 32
)

// sjJournal returns the store's journal, or nil for an in-memory store or a session
// made without one.
func (s *Session) sjJournal() Journal {
	if s.st == nil {
		return nil
	}
	return s.st.opts.Journal
}

// Record records a call that ran, as [Session.Ran] does, and, for a session of a store
// with a [Journal], appends it to the journal so that every replica learns it.
//
// If the journal cannot take it, the session still learns it here (this replica stays
// conservative) and Record returns the error: the caller must then withhold the call's
// result, since other replicas may not know the session saw it. An error after the entry
// was appended (reading what other replicas appended meanwhile) is returned too; the
// session then learns the entry with the next successful read of the journal.
//
// The journal is written even when ctx is cancelled (the call ran: what it brought must
// be recorded though its caller has gone), within the store's JournalTimeout.
func (s *Session) Record(ctx context.Context, r Run) error {
	if s.sjJournal() == nil {
		s.Ran(r)
		return nil
	}
	return s.sjRecordRun(context.WithoutCancel(ctx), r)
}

// sjRecordRun is Record with a journal; r is its own copy, so that only this path makes
// it escape.
func (s *Session) sjRecordRun(ctx context.Context, r Run) error {
	return s.sjRecord(ctx, Entry{Run: &r})
}

// RecordPrompt remembers the values of the user's prompt as trusted, as
// [Session.AddPrompt] does, and, for a session of a store with a [Journal], appends it
// to the journal. If the journal cannot take it, the session does not learn it either
// (values not known to be the user's are the conservative choice) and RecordPrompt
// returns the error.
func (s *Session) RecordPrompt(ctx context.Context, text string) error {
	if s.sjJournal() == nil {
		s.AddPrompt(text)
		return nil
	}
	return s.sjRecord(ctx, Entry{Prompt: text})
}

func (s *Session) sjRecord(ctx context.Context, e Entry) error {
	j := s.sjJournal()
	// Apply what every other replica will decode, not e itself, so that all converge.
	b, err := MarshalEntry(e)
	var d Entry
	if err == nil {
		d, err = UnmarshalEntry(b)
	}
	if err != nil {
		s.sjApplyLocal(&e)
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.st.opts.JournalTimeout)
	defer cancel()
	at := time.Unix(0, s.lastUsed.Load())
	seq, prev, err := j.AppendFlow(ctx, s.key, b, at)
	if err != nil {
		// Should the append have committed after all (a timeout after the commit), the
		// next read applies the entry again: the run then counts twice in this replica's
		// history, while what the session saw stays the same.
		s.sjApplyLocal(&d)
		return fmt.Errorf("flow: append to the journal: %w", err)
	}
	s.touched.Store(at.UnixNano())
	s.mu.Lock()
	if prev == s.applied {
		s.sjApplyLocked(&d)
		s.applied = seq
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	// Another replica appended in between (or the journal began again): catch up from
	// the journal, which holds this entry too, in the journal's order.
	if err := s.sjSync(ctx); err != nil {
		return fmt.Errorf("flow: read the journal after appending: %w", err)
	}
	return nil
}

// sjApplyLocal applies an entry the journal does not have: a run, so that this replica
// knows what the session saw; never a prompt, which could only make values trusted.
func (s *Session) sjApplyLocal(e *Entry) {
	if e.Run == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sjApplyLocked(e)
}

// sjApplyLocked applies e; s.mu is held.
func (s *Session) sjApplyLocked(e *Entry) {
	if e.Run == nil {
		s.sjAddPrompt(e.Prompt)
		return
	}
	s.sjRan(*e.Run, e.ResultOmitted)
}

// sjSync applies the journal's entries after the last one the session applied.
func (s *Session) sjSync(ctx context.Context) error {
	j := s.sjJournal()
	for {
		s.mu.RLock()
		after := s.applied
		s.mu.RUnlock()
		es, err := j.FlowSince(ctx, s.key, after, sjJournalBatch)
		if err != nil {
			return err
		}
		s.mu.Lock()
		err = s.sjApplyEntriesLocked(es)
		s.mu.Unlock()
		if err != nil || len(es) < sjJournalBatch {
			return err
		}
	}
}

// sjApplyEntriesLocked applies es, which a read of the journal returned, on top of what
// the session has applied; s.mu is held. Entries a concurrent read already applied are
// skipped.
func (s *Session) sjApplyEntriesLocked(es []JournalEntry) error {
	for _, je := range es {
		if je.Seq <= s.applied {
			continue
		}
		if je.Prev != s.applied {
			if je.Prev != 0 {
				// Entries of a journal are deleted only all together: one missing in the
				// middle means the journal is not what this package wrote. Refuse rather
				// than guess (fail closed).
				return fmt.Errorf("flow: journal entry %d follows entry %d, but the session is at %d", je.Seq, je.Prev, s.applied)
			}
			// The key's journal was ended or expired and begun again: what the session
			// knew ended with it, as it did on the replica that ended it.
			s.sjReset()
		}
		e, err := UnmarshalEntry(je.Entry)
		if err != nil {
			return fmt.Errorf("flow: journal entry %d: %w", je.Seq, err)
		}
		s.sjApplyLocked(&e)
		s.applied = je.Seq
	}
	return nil
}

// sjReset empties the session; s.mu is held.
func (s *Session) sjReset() {
	fresh := NewSession(s.limits)
	s.untrusted, s.private = false, false
	s.untrustedFrom, s.privateFrom = fresh.untrustedFrom, fresh.privateFrom
	s.origins, s.values, s.bytes, s.overflow = nil, fresh.values, 0, false
	s.hist = fresh.hist
	s.injection, s.injectionSignals = 0, nil
	s.applied = 0
}

// sjSyncShared brings s, of this store, up to date from the journal and keeps the key's
// journal from expiring while it is used.
func (st *Store) sjSyncShared(ctx context.Context, s *Session, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, st.opts.JournalTimeout)
	defer cancel()
	if err := s.sjSync(ctx); err != nil {
		return fmt.Errorf("flow: read the journal: %w", err)
	}
	s.mu.RLock()
	applied := s.applied
	s.mu.RUnlock()
	// A key with entries is touched at most every quarter of the idle time; one without
	// has nothing to keep.
	if applied > 0 && now.UnixNano()-s.touched.Load() >= int64(st.opts.Idle/4) {
		if err := st.opts.Journal.TouchFlow(ctx, s.key, now); err != nil {
			return fmt.Errorf("flow: touch the journal: %w", err)
		}
		s.touched.Store(now.UnixNano())
	}
	return nil
}

// EndContext forgets the session for key, here and, with a [Journal], on every replica:
// its context is gone. It returns the journal's error; the session is forgotten here
// regardless.
func (st *Store) EndContext(ctx context.Context, key string) error {
	st.End(key)
	if st.opts.Journal == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, st.opts.JournalTimeout)
	defer cancel()
	if err := st.opts.Journal.EndFlow(ctx, key); err != nil {
		return fmt.Errorf("flow: end the journal: %w", err)
	}
	return nil
}

// ExpireJournal deletes the journals of sessions no replica used for longer than the
// store's idle time and a quarter (the slack of [Journal.TouchFlow]'s throttling, so that
// no replica's copy outlives its journal), and returns how many it deleted. Without a
// journal it does nothing.
func (st *Store) ExpireJournal(ctx context.Context, now time.Time) (int, error) {
	if st.opts.Journal == nil {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, st.opts.JournalTimeout)
	defer cancel()
	n, err := st.opts.Journal.ExpireFlow(ctx, now.Add(-st.opts.Idle-st.opts.Idle/4))
	if err != nil {
		return n, fmt.Errorf("flow: expire journals: %w", err)
	}
	return n, nil
}
