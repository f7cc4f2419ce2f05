package replay

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"
)

// Bounds on a trace. A trace beyond them is refused with an error naming the bound.
const (
	// MaxLineBytes bounds one line, without its line ending.
	MaxLineBytes = 1 << 20
	// MaxLines bounds the lines of a trace, blank ones included.
	MaxLines = 1_000_000
	// MaxSessions bounds the sessions of a trace.
	MaxSessions = 100_000
)

// defaultStart is when a session without a time starts: a fixed instant, so that replaying
// the same trace always gives the same times.
var defaultStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// The record types of a trace.
const (
	typeSession = "session"
	typePrompt  = "prompt"
	typeCall    = "call"
	typeModel   = "model"
)

// Trace is a parsed trace: its sessions in the order of their first record, and its calls
// in file order.
type Trace struct {
	Sessions []*Session
	// Calls are every call of every session in the order their lines appear in the file;
	// Calls[i].Seq == i.
	Calls []*Call
}

// Session is one agent context of a trace.
type Session struct {
	ID string
	// Agent, User and Task come from the session record; "" when absent (or when the
	// session has no record).
	Agent, User, Task string
	// Start is the session record's time, or 2026-01-01T00:00:00Z.
	Start time.Time
	// Line is the line of the session's first record.
	Line int
	// Events are the session's prompts, calls and model messages, in order.
	Events []Event
	// Calls are the session's calls, in order.
	Calls []*Call

	hasRecord bool
	ids       map[string]int // call id → line
}

// EventKind is what an [Event] is.
type EventKind string

// The kinds of events.
const (
	// EventPrompt is what the user asked: trusted input.
	EventPrompt EventKind = typePrompt
	// EventCall is a tool call.
	EventCall EventKind = typeCall
	// EventModel is the agent's own text: never trusted.
	EventModel EventKind = typeModel
)

// Event is one prompt, call or model message of a session.
type Event struct {
	Kind EventKind
	Line int
	// Text is a prompt's or model message's text.
	Text string
	// Call is set for calls.
	Call *Call
}

// Call is one recorded tool call.
type Call struct {
	Session string
	ID      string
	// Tool is the tool's name as the agent saw it.
	Tool string
	// Arguments is the JSON object the agent sent.
	Arguments json.RawMessage
	// Result is the recorded CallToolResult object; nil when none was recorded.
	Result json.RawMessage
	// Time is the call's own time, or its session's start plus N seconds for the session's
	// N-th call (counting from 1).
	Time time.Time
	// Line is the call's line in the trace; Seq its position among all calls of the trace.
	Line int
	Seq  int
}

// LineError is a problem with one line of a trace.
type LineError struct {
	Line int
	Msg  string
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// ReadTrace reads a trace in the JSON Lines format of docs trace.md: one JSON object per
// line, each with a "type" and a "session". Records of type session, prompt, call and model
// are understood; unknown record types and unknown fields are ignored; blank lines are
// skipped. It is strict about what the format requires — a string type and a non-empty
// session on every record, at most one session record per session and before the
// session's other records, and on calls a non-empty id unique within the session, a
// non-empty tool and an arguments object — and refuses duplicate keys in a record and
// lines that are not valid UTF-8. Problems with a line are reported as a *[LineError].
//
// Times are RFC 3339. A session without a time starts at 2026-01-01T00:00:00Z; a call without a
// time is taken to happen N seconds after its session's start, N being its position among
// the session's calls (1 for the first).
func ReadTrace(r io.Reader) (*Trace, error) {
	sc := bufio.NewScanner(r)
	// Room for a maximal line and its CR LF: longer lines fail the scan, and the explicit
	// check below catches the ones in between.
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineBytes+2)
	t := &Trace{}
	sessions := map[string]*Session{}
	line := 0
	for sc.Scan() {
		line++
		if line > MaxLines {
			return nil, &LineError{line, fmt.Sprintf("trace has more than %d lines", MaxLines)}
		}
		b := bytes.TrimSuffix(sc.Bytes(), []byte("\r"))
		if len(b) > MaxLineBytes {
			return nil, &LineError{line, fmt.Sprintf("line is longer than %d bytes", MaxLineBytes)}
		}
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		if err := t.add(sessions, line, b); err != nil {
			return nil, &LineError{line, err.Error()}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &LineError{line + 1, fmt.Sprintf("line is longer than %d bytes", MaxLineBytes)}
		}
		return nil, fmt.Errorf("after line %d: %w", line, err)
	}
	for _, s := range t.Sessions {
		s.ids = nil
	}
	return t, nil
}

// add parses one non-blank line and adds its record.
func (t *Trace) add(sessions map[string]*Session, line int, b []byte) error {
	if !utf8.Valid(b) {
		return errors.New("not valid UTF-8")
	}
	f, err := objectFields(b)
	if err != nil {
		return err
	}
	typ, ok, err := stringField(f, "type")
	if err != nil {
		return err
	}
	if !ok || typ == "" {
		return errors.New(`missing "type"`)
	}
	sid, ok, err := stringField(f, "session")
	if err != nil {
		return err
	}
	if !ok || sid == "" {
		return fmt.Errorf(`%s record: missing "session"`, typ)
	}
	switch typ {
	case typeSession, typePrompt, typeCall, typeModel:
	default:
		return nil // unknown record types are annotations
	}
	s := sessions[sid]
	if s == nil {
		if len(t.Sessions) >= MaxSessions {
			return fmt.Errorf("trace has more than %d sessions", MaxSessions)
		}
		s = &Session{ID: sid, Start: defaultStart, Line: line, ids: map[string]int{}}
		sessions[sid] = s
		t.Sessions = append(t.Sessions, s)
	}
	switch typ {
	case typeSession:
		return s.setRecord(f, line)
	case typePrompt, typeModel:
		text, _, err := stringField(f, "text")
		if err != nil {
			return fmt.Errorf("%s record: %v", typ, err)
		}
		s.Events = append(s.Events, Event{Kind: EventKind(typ), Line: line, Text: text})
		return nil
	}
	c, err := s.parseCall(f, line)
	if err != nil {
		return fmt.Errorf("call record: %v", err)
	}
	c.Seq = len(t.Calls)
	t.Calls = append(t.Calls, c)
	s.Calls = append(s.Calls, c)
	s.Events = append(s.Events, Event{Kind: EventCall, Line: line, Call: c})
	return nil
}

func (s *Session) setRecord(f map[string]json.RawMessage, line int) error {
	if s.hasRecord {
		return fmt.Errorf("second session record for session %q (the first is on line %d)", s.ID, s.Line)
	}
	if len(s.Events) > 0 {
		return fmt.Errorf("session record for session %q after its first record on line %d", s.ID, s.Line)
	}
	s.hasRecord = true
	var err error
	for _, fv := range []struct {
		key string
		dst *string
	}{{"agent", &s.Agent}, {"user", &s.User}, {"task", &s.Task}} {
		if *fv.dst, _, err = stringField(f, fv.key); err != nil {
			return fmt.Errorf("session record: %v", err)
		}
	}
	start, ok, err := timeField(f)
	if err != nil {
		return fmt.Errorf("session record: %v", err)
	}
	if ok {
		s.Start = start
	}
	return nil
}

func (s *Session) parseCall(f map[string]json.RawMessage, line int) (*Call, error) {
	c := &Call{Session: s.ID, Line: line}
	id, ok, err := stringField(f, "id")
	if err != nil {
		return nil, err
	}
	if !ok || id == "" {
		return nil, errors.New(`missing "id"`)
	}
	if first, dup := s.ids[id]; dup {
		return nil, fmt.Errorf("duplicate id %q in session %q (first on line %d)", id, s.ID, first)
	}
	c.ID = id
	tool, ok, err := stringField(f, "tool")
	if err != nil {
		return nil, err
	}
	if !ok || tool == "" {
		return nil, fmt.Errorf(`call %q: missing "tool"`, id)
	}
	c.Tool = tool
	args, ok := f["arguments"]
	if !ok {
		return nil, fmt.Errorf(`call %q: missing "arguments"`, id)
	}
	if kind(args) != '{' {
		return nil, fmt.Errorf(`call %q: "arguments" must be a JSON object`, id)
	}
	c.Arguments = args
	if res, ok := f["result"]; ok && kind(res) != 'n' {
		if err := checkResult(res); err != nil {
			return nil, fmt.Errorf(`call %q: "result": %v`, id, err)
		}
		c.Result = res
	}
	t, ok, err := timeField(f)
	if err != nil {
		return nil, fmt.Errorf("call %q: %v", id, err)
	}
	if !ok {
		t = s.Start.Add(time.Duration(len(s.Calls)+1) * time.Second)
	}
	c.Time = t
	s.ids[id] = line
	return c, nil
}

// checkResult checks the parts of a CallToolResult that replay relies on: an object whose
// content, if present, is an array and whose isError, if present, is a boolean.
func checkResult(raw json.RawMessage) error {
	if kind(raw) != '{' {
		return errors.New("must be a JSON object")
	}
	var r struct {
		Content json.RawMessage `json:"content"`
		IsError json.RawMessage `json:"isError"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return err
	}
	if r.Content != nil && kind(r.Content) != '[' && kind(r.Content) != 'n' {
		return errors.New(`"content" must be an array`)
	}
	if r.IsError != nil && kind(r.IsError) != 't' && kind(r.IsError) != 'f' && kind(r.IsError) != 'n' {
		return errors.New(`"isError" must be a boolean`)
	}
	return nil
}

// objectFields splits a line holding exactly one JSON object into its fields. Duplicate keys
// are refused: a record must not say two things at once.
func objectFields(b []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	f := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("invalid JSON: %v", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("invalid JSON: object key is not a string")
		}
		if _, dup := f[key]; dup {
			return nil, fmt.Errorf("duplicate key %q", truncate(key, 64))
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("invalid JSON: %v", err)
		}
		f[key] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("invalid JSON: data after the object")
	}
	return f, nil
}

// kind returns the first byte of a JSON value: '{', '[', '"', 't', 'f', 'n' or a digit or
// '-'; 0 for an empty value.
func kind(v json.RawMessage) byte {
	v = bytes.TrimLeft(v, " \t\r\n")
	if len(v) == 0 {
		return 0
	}
	return v[0]
}

// stringField returns the string field key; ok is false when it is absent. A present field
// that is not a string (null included) is an error.
func stringField(f map[string]json.RawMessage, key string) (s string, ok bool, err error) {
	raw, ok := f[key]
	if !ok {
		return "", false, nil
	}
	if kind(raw) != '"' {
		return "", true, fmt.Errorf("%q must be a string", key)
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", true, fmt.Errorf("%q: %v", key, err)
	}
	return s, true, nil
}

// timeField returns the RFC 3339 "time" field in UTC; ok is false when it is absent.
func timeField(f map[string]json.RawMessage) (time.Time, bool, error) {
	s, ok, err := stringField(f, "time")
	if err != nil || !ok {
		return time.Time{}, false, err
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, false, fmt.Errorf(`"time" is not an RFC 3339 time: %q`, truncate(s, 64))
	}
	return t.UTC(), true, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
