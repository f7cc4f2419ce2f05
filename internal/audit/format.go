package audit

import (
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Format writes e to w as one line for a person, as `chaperone audit tail`
// shows it:
//
//	2026-03-01T09:00:07.123Z  #42  call.refused  agent=mail-assistant tool=send_email decision=deny reason=denied_by_policy rules=no-external  "denied by rule no-external"
//
// Columns are the time (UTC, milliseconds), the seq, the kind, then the
// fields that are set, as key=value in a fixed order, then the message.
// Captured call content is shown as its kind and size only, never its value.
// Values that are not plain printable text are quoted, so that nothing an
// agent or upstream chose can forge a line or drive the terminal. Write errors
// are w's to report (a bufio.Writer keeps the first one).
func Format(w io.Writer, e Event) {
	var b strings.Builder
	b.WriteString(e.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	b.WriteString("  #")
	b.WriteString(strconv.FormatInt(e.Seq, 10))
	b.WriteString("  ")
	b.WriteString(quoteIfNeeded(e.Kind))

	n := 0
	field := func(key, value string) {
		if value == "" {
			return
		}
		if n == 0 {
			b.WriteString("  ")
		} else {
			b.WriteByte(' ')
		}
		n++
		b.WriteString(key)
		b.WriteByte('=')
		b.WriteString(quoteIfNeeded(value))
	}
	field("agent", e.Agent)
	field("user", e.User)
	field("chain", strings.Join(e.Chain, ">"))
	field("task", e.Task)
	field("tool", e.Tool)
	field("upstream", e.Upstream)
	field("args", e.ArgsSummary)
	field("decision", e.Decision)
	field("reason", e.Reason)
	field("rules", strings.Join(e.Rules, ","))
	field("policy", e.PolicyVersion)
	if e.ShadowDecision != "" {
		field("shadow", e.ShadowDecision+"("+strings.Join(e.ShadowRules, ",")+")")
	}
	if e.LatencyMicros != 0 {
		field("latency", (time.Duration(e.LatencyMicros) * time.Microsecond).String())
	}
	if e.ResultBytes != 0 {
		field("result_bytes", strconv.FormatInt(e.ResultBytes, 10))
	}
	if e.ResultError {
		field("result_error", "true")
	}
	field("captured", capturedSummary(e))
	field("request", e.RequestID)
	field("session", e.SessionID)
	field("detail", e.Detail)
	if e.Message != "" {
		b.WriteString("  ")
		b.WriteString(strconv.Quote(e.Message))
	}
	b.WriteByte('\n')
	_, _ = io.WriteString(w, b.String()) // see the doc comment
}

// capturedSummary describes e's captured content by kind and size, never by value:
// "arguments(57B)", "result(1204B)", "too_large".
func capturedSummary(e Event) string {
	switch {
	case e.Captured == "":
		return ""
	case len(e.Arguments) > 0 || len(e.Result) > 0:
		return e.Captured + "(" + strconv.Itoa(len(e.Arguments)+len(e.Result)) + "B)"
	}
	return e.Captured
}

// quoteIfNeeded returns s as it is if it is printable text without spaces or
// quotes, and Go-quoted otherwise.
func quoteIfNeeded(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if r == '"' || r == '\\' || !unicode.IsGraphic(r) || unicode.IsSpace(r) || r == unicode.ReplacementChar {
			return strconv.Quote(s)
		}
	}
	return s
}
