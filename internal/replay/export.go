package replay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/auditexport"
)

// Bounds on an export.
const (
	// exportPage is how many events Export reads at a time. Small, because an event may
	// carry up to two captured values of audit.capture_max_bytes each.
	exportPage = 100
	// maxWaiting and maxWaitingBytes bound the calls Export holds back behind a call whose
	// outcome (and result) has not been read yet. Beyond them the oldest is written without
	// its result, as if its outcome were missing.
	maxWaiting      = 10_000
	maxWaitingBytes = 64 << 20
)

// ExportOptions are the options of [Export].
type ExportOptions struct {
	// After exports only the calls recorded after the event with this seq (0: all). An
	// outcome whose intent is at or before After is ignored.
	After int64
	// Match selects the calls to export (nil: all): a call is exported when Match
	// reports true for its call.intent or call.refused event. Its call.outcome follows
	// it whether or not Match would select the outcome itself.
	Match func(*audit.Event) bool
	// Progress, if set, is called after each page of events read, and once at the end,
	// with the number of events read so far (selected or not) and the number of call
	// records written, from Export's goroutine. nil: none.
	Progress func(read, written int)
}

// ExportStats says what [Export] wrote and what it left out.
type ExportStats struct {
	// Sessions and Calls count the session and call records written.
	Sessions, Calls int
	// Calls not written, by why: their arguments were not captured (capture was off),
	// were too large or not valid JSON when captured, are not a JSON object (the agent sent
	// something else, which a trace cannot hold), or the call record would be longer than
	// [MaxLineBytes], which [ReadTrace] refuses.
	NotCaptured, TooLarge, InvalidJSON, NotObject, LineTooLong int
	// ResultsOmitted counts calls written without the result their outcome recorded: too
	// large, not valid JSON, or not a CallToolResult object.
	ResultsOmitted int
	// Unfinished counts calls written without a result because their outcome is not in the
	// log (the gateway stopped mid-call) or came too late (see maxWaiting).
	Unfinished int
	// Filtered counts the calls Match did not select.
	Filtered int
	// Pruned counts the calls (selected by Match, if set) whose intent or refusal is a
	// tombstone: retention removed their content.
	Pruned int
	// Redacted counts the calls written with a secret redacted from their prompt, tool
	// name, arguments or result.
	Redacted int
	// Captured reports whether any call event read had content capture on.
	Captured bool
	// LastSeq is the seq of the last event read; pass it as After to continue later.
	LastSeq int64
}

// Skipped is the number of calls not written.
func (s ExportStats) Skipped() int {
	return s.NotCaptured + s.TooLarge + s.InvalidJSON + s.NotObject + s.LineTooLong
}

// Export writes the calls of an audit log as a trace ([ReadTrace] reads it): the calls'
// call.intent and call.refused events in log order, each with the arguments captured on it
// and, for a call that ran, the result captured on its call.outcome. A refused call is
// exported too: it was attempted, and replay decides it again.
//
// Sessions are the gateway's MCP sessions: one session record (agent, user, task, the time
// of its first call) before a session's first call record. A call without a session id
// belongs to the context the gateway tracks its information flow in: its task's, named
// "task-<agent>-<task>", or else its agent's, "agent-<agent>". A call that carried the
// user's prompt (captured with its arguments) is preceded by a prompt record. Should the agent, user or task
// change within a session (a new token), the calls from there on go to a new session
// named "<id>#2" (then #3, ...), since a trace session has one principal. A call's id is
// its request id and its time the time of its intent or refusal, to the microsecond.
//
// Calls whose arguments were not captured cannot be exported (a trace call needs its
// arguments) and are counted in the [ExportStats], as are results that were not. The output
// depends only on the events: the same log gives the same bytes.
//
// A trace never carries a detected secret: the prompt, tool name, arguments and result
// of every call written pass through an [auditexport.Redactor], which replaces each
// secret in their text (inside JSON string values, keeping the JSON valid) with
// "[REDACTED:<kind>]". Calls with something redacted are counted in Redacted; replaying
// them sees the redacted values.
func Export(ctx context.Context, src audit.Source, w io.Writer, opts ExportOptions) (ExportStats, error) {
	x := &exporter{w: bufio.NewWriter(w), byReq: map[string]*exportCall{}, sessions: map[string]*exportSession{},
		match: opts.Match, redact: auditexport.NewRedactor()}
	x.stats.LastSeq = opts.After
	read := 0
	for {
		evs, err := src.ScanEvents(ctx, x.stats.LastSeq, exportPage)
		if err != nil {
			return x.stats, fmt.Errorf("export: read audit log after event %d: %w", x.stats.LastSeq, err)
		}
		if len(evs) == 0 {
			break
		}
		for i := range evs {
			if err := x.add(&evs[i]); err != nil {
				return x.stats, err
			}
			x.stats.LastSeq = evs[i].Seq
		}
		if read += len(evs); opts.Progress != nil {
			opts.Progress(read, x.stats.Calls)
		}
	}
	for len(x.queue) > 0 {
		if err := x.flush(); err != nil {
			return x.stats, err
		}
	}
	if opts.Progress != nil {
		opts.Progress(read, x.stats.Calls)
	}
	if err := x.w.Flush(); err != nil {
		return x.stats, fmt.Errorf("export: write trace: %w", err)
	}
	return x.stats, nil
}

// exportCall is a call on its way to the trace.
type exportCall struct {
	ev      *audit.Event // the intent or refusal
	result  json.RawMessage
	waiting bool // an intent whose outcome has not been read
	size    int
}

// exportSession is a gateway session as written so far.
type exportSession struct {
	name      string // the trace session's name
	principal string // agent, user and task, of the trace session
	parts     int    // trace sessions the gateway session has been split into
	written   bool   // its session record is written
	start     time.Time
}

type exporter struct {
	w     *bufio.Writer
	stats ExportStats
	// queue holds calls in log order until they can be written: the first one is an intent
	// waiting for its outcome, or the queue is empty.
	queue      []*exportCall
	queueBytes int
	byReq      map[string]*exportCall // the waiting calls, by request id
	sessions   map[string]*exportSession
	line       bytes.Buffer // the record being written
	match      func(*audit.Event) bool
	redact     *auditexport.Redactor
}

func (x *exporter) add(e *audit.Event) error {
	switch e.Kind {
	case audit.KindCallIntent, audit.KindCallRefused:
	case audit.KindCallOutcome:
		if e.Captured != "" {
			x.stats.Captured = true
		}
		c := x.byReq[e.RequestID]
		if c == nil {
			return nil // its intent is before After, or was written already
		}
		delete(x.byReq, e.RequestID)
		c.waiting = false
		switch e.Captured {
		case audit.CapturedResult:
			if len(e.Result) > 0 {
				if checkResult(e.Result) == nil {
					c.result = e.Result
					c.size += len(e.Result)
					x.queueBytes += len(e.Result)
				} else {
					x.stats.ResultsOmitted++
				}
			}
		case audit.CapturedTooLarge, audit.CapturedInvalid:
			x.stats.ResultsOmitted++
		}
	default:
		return nil
	}
	if e.Kind != audit.KindCallOutcome {
		if x.match != nil && !x.match(e) {
			if !e.Pruned {
				x.stats.Filtered++
			}
			return nil
		}
		if e.Pruned {
			x.stats.Pruned++
			return nil
		}
		if e.Captured != "" {
			x.stats.Captured = true
		}
		c := &exportCall{ev: e, waiting: e.Kind == audit.KindCallIntent, size: len(e.Arguments) + 256}
		if c.waiting {
			if old := x.byReq[e.RequestID]; old != nil {
				old.waiting = false // a request id used twice: the first call's outcome is lost
				x.stats.Unfinished++
			}
			x.byReq[e.RequestID] = c
		}
		x.queue = append(x.queue, c)
		x.queueBytes += c.size
	}
	for len(x.queue) > 0 && (!x.queue[0].waiting || len(x.queue) > maxWaiting || x.queueBytes > maxWaitingBytes) {
		if err := x.flush(); err != nil {
			return err
		}
	}
	return nil
}

// flush writes the first call of the queue, or counts why it cannot be written.
func (x *exporter) flush() error {
	c := x.queue[0]
	x.queue[0] = nil
	x.queue = x.queue[1:]
	x.queueBytes -= c.size
	if c.waiting {
		delete(x.byReq, c.ev.RequestID)
		x.stats.Unfinished++
	}
	e := c.ev
	s := x.session(e)

	var args json.RawMessage
	switch e.Captured {
	case audit.CapturedArguments:
		args = e.Arguments
		if len(args) == 0 {
			args = json.RawMessage(`{}`) // the agent sent none, which the gateway takes as {}
		}
	case audit.CapturedTooLarge:
		x.stats.TooLarge++
		return nil
	case audit.CapturedInvalid:
		x.stats.InvalidJSON++
		return nil
	default:
		x.stats.NotCaptured++
		return nil
	}
	if kind(args) != '{' {
		x.stats.NotObject++
		return nil
	}
	args, redactedArgs, err := x.redact.JSON(args)
	if err != nil {
		x.stats.InvalidJSON++
		return nil
	}
	result, redactedResult, err := x.redact.JSON(c.result)
	if err != nil {
		result = nil
		x.stats.ResultsOmitted++
	}
	tool, redactedTool := x.redact.String(e.Tool)
	prompt, redactedPrompt := x.redact.String(e.Prompt)
	x.line.Reset()
	if err := writeRecord(&x.line, traceCall{
		Type: typeCall, Session: s.name, ID: e.RequestID, Tool: tool,
		Arguments: args, Result: result, Time: formatTime(e.Time),
	}); err != nil {
		return fmt.Errorf("export: call %s: %w", e.RequestID, err)
	}
	if x.line.Len()-1 > MaxLineBytes {
		x.stats.LineTooLong++
		return nil
	}
	if !s.written {
		var rec bytes.Buffer
		if err := writeRecord(&rec, traceSession{Type: typeSession, Session: s.name, Agent: e.Agent, User: e.User, Task: e.Task, Time: formatTime(s.start)}); err != nil {
			return fmt.Errorf("export: session %s: %w", s.name, err)
		}
		if _, err := x.w.Write(rec.Bytes()); err != nil {
			return fmt.Errorf("export: write trace: %w", err)
		}
		s.written = true
		x.stats.Sessions++
	}
	if prompt != "" {
		var rec bytes.Buffer
		if err := writeRecord(&rec, tracePrompt{Type: typePrompt, Session: s.name, Text: prompt}); err != nil {
			return fmt.Errorf("export: prompt of call %s: %w", e.RequestID, err)
		}
		if _, err := x.w.Write(rec.Bytes()); err != nil {
			return fmt.Errorf("export: write trace: %w", err)
		}
	}
	if _, err := x.w.Write(x.line.Bytes()); err != nil {
		return fmt.Errorf("export: write trace: %w", err)
	}
	x.stats.Calls++
	if redactedArgs+redactedResult+redactedTool+redactedPrompt > 0 {
		x.stats.Redacted++
	}
	return nil
}

// session returns the trace session of the call e, in log order: a new one for a call
// without a session id, and for a session whose principal changed.
func (x *exporter) session(e *audit.Event) *exportSession {
	principal := e.Agent + "\x00" + e.User + "\x00" + e.Task
	// A call without an MCP session belongs to its task's context, or else its agent's, as
	// the gateway's flow state does.
	id := e.SessionID
	switch {
	case id != "":
	case e.Task != "":
		id = "task-" + e.Agent + "-" + e.Task
	default:
		id = "agent-" + e.Agent
	}
	s := x.sessions[id]
	switch {
	case s == nil:
		s = &exportSession{name: id, principal: principal, parts: 1, start: e.Time}
		x.sessions[id] = s
	case s.principal != principal:
		s.parts++
		s.name = id + "#" + strconv.Itoa(s.parts)
		s.principal, s.written, s.start = principal, false, e.Time
	}
	return s
}

// traceSession and traceCall are the records Export writes, their fields in the order of
// the trace format's examples.
type traceSession struct {
	Type    string `json:"type"`
	Session string `json:"session"`
	Agent   string `json:"agent,omitempty"`
	User    string `json:"user,omitempty"`
	Task    string `json:"task,omitempty"`
	Time    string `json:"time"`
}

type tracePrompt struct {
	Type    string `json:"type"`
	Session string `json:"session"`
	Text    string `json:"text"`
}

type traceCall struct {
	Type      string          `json:"type"`
	Session   string          `json:"session"`
	ID        string          `json:"id"`
	Tool      string          `json:"tool"`
	Arguments json.RawMessage `json:"arguments"`
	Result    json.RawMessage `json:"result,omitempty"`
	Time      string          `json:"time"`
}

// writeRecord writes v as one JSON line, without HTML escaping (as the audit log stores
// content).
func writeRecord(b *bytes.Buffer, v any) error {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// formatTime is RFC 3339 in UTC to the microsecond, as the audit log keeps time.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
