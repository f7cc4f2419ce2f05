package replay

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func mustReadTrace(tb testing.TB, s string) *Trace {
	tb.Helper()
	tr, err := ReadTrace(strings.NewReader(s))
	if err != nil {
		tb.Fatalf("ReadTrace: %v", err)
	}
	return tr
}

func TestReadTraceExample(t *testing.T) {
	t.Parallel()
	tr := readTraceFile(t, filepath.Join("testdata", "example", "trace.jsonl"))
	type call struct {
		Session, ID, Tool string
		Time              time.Time
		Line, Seq         int
		HasResult         bool
	}
	var got []call
	for _, c := range tr.Calls {
		got = append(got, call{c.Session, c.ID, c.Tool, c.Time, c.Line, c.Seq, c.Result != nil})
	}
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	want := []call{
		{"pay-bill", "c1", "read_file", at("2026-03-02T08:30:01Z"), 3, 0, true},
		{"pay-bill", "c2", "send_money", at("2026-03-02T08:30:02Z"), 5, 1, true},
		{"inbox-summary", "c1", "list_unread", at("2026-03-02T09:00:01Z"), 8, 2, true},
		{"inbox-summary", "c2", "forward_email", at("2026-03-02T09:00:02Z"), 9, 3, false},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ReadTrace calls (-want +got):\n%s", diff)
	}
	if len(tr.Sessions) != 2 {
		t.Fatalf("ReadTrace sessions = %d, want 2", len(tr.Sessions))
	}
	s := tr.Sessions[0]
	if s.ID != "pay-bill" || s.Agent != "finance-assistant" || s.User != "dana@example.com" || s.Task != "t-1001" || !s.Start.Equal(at("2026-03-02T08:30:00Z")) {
		t.Errorf("session 0 = %+v", s)
	}
	var kinds []EventKind
	for _, e := range s.Events {
		kinds = append(kinds, e.Kind)
	}
	if diff := cmp.Diff([]EventKind{EventPrompt, EventCall, EventModel, EventCall}, kinds); diff != "" {
		t.Errorf("session 0 events (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(s.Events[0].Text, "Please pay the electricity bill") {
		t.Errorf("prompt text = %q", s.Events[0].Text)
	}
}

func TestReadTraceTimes(t *testing.T) {
	t.Parallel()
	tr := mustReadTrace(t, `{"type":"call","session":"a","id":"1","tool":"x","arguments":{}}
{"type":"call","session":"a","id":"2","tool":"x","arguments":{},"time":"2026-05-05T12:00:00+02:00"}

{"type":"call","session":"a","id":"3","tool":"x","arguments":{}}
{"type":"session","session":"b","agent":"z"}
{"type":"call","session":"b","id":"1","tool":"x","arguments":{}}
`)
	got := map[string]string{}
	for _, c := range tr.Calls {
		got[c.Session+"/"+c.ID] = c.Time.Format(time.RFC3339)
	}
	want := map[string]string{
		"a/1": "2026-01-01T00:00:01Z", // no session record: defaultStart + 1s
		"a/2": "2026-05-05T10:00:00Z", // its own time, in UTC
		"a/3": "2026-01-01T00:00:03Z", // the third call of the session
		"b/1": "2026-01-01T00:00:01Z", // a session record without time
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("call times (-want +got):\n%s", diff)
	}
	if tr.Sessions[1].Agent != "z" {
		t.Errorf("session b agent = %q, want z", tr.Sessions[1].Agent)
	}
}

func TestReadTraceIgnores(t *testing.T) {
	t.Parallel()
	tr := mustReadTrace(t, "{\"type\":\"checkpoint\",\"session\":\"s\",\"x\":[1,2,{}]}\r\n"+
		"{\"type\":\"call\",\"session\":\"s\",\"id\":\"c\",\"tool\":\"t\",\"arguments\":{\"a\":1},\"result\":null,\"extra\":{\"deep\":true}}\r\n"+
		"   \n"+
		"{\"type\":\"prompt\",\"session\":\"s\",\"text\":\"hi\",\"lang\":\"en\"}")
	if len(tr.Calls) != 1 || tr.Calls[0].Result != nil || string(tr.Calls[0].Arguments) != `{"a":1}` {
		t.Errorf("calls = %+v", tr.Calls)
	}
	if len(tr.Sessions) != 1 || len(tr.Sessions[0].Events) != 2 {
		t.Errorf("sessions = %+v", tr.Sessions)
	}
}

func TestReadTraceErrors(t *testing.T) {
	t.Parallel()
	const ok = `{"type":"call","session":"s","id":"c1","tool":"t","arguments":{}}` + "\n"
	tests := []struct {
		name  string
		trace string
		line  int
		msg   string
	}{
		{"malformed JSON", ok + `{"type":"call",` + "\n", 2, "invalid JSON"},
		{"not an object", `["type","call"]`, 1, "not a JSON object"},
		{"two objects", `{"type":"prompt","session":"s"} {}`, 1, "data after the object"},
		{"duplicate key", `{"type":"call","session":"s","id":"c1","tool":"t","tool":"u","arguments":{}}`, 1, `duplicate key "tool"`},
		{"not UTF-8", "{\"type\":\"prompt\",\"session\":\"s\",\"text\":\"\xff\"}", 1, "not valid UTF-8"},
		{"missing type", `{"session":"s"}`, 1, `missing "type"`},
		{"type not a string", `{"type":1,"session":"s"}`, 1, `"type" must be a string`},
		{"missing session", ok + `{"type":"prompt","text":"x"}`, 2, `prompt record: missing "session"`},
		{"empty session", `{"type":"annotation","session":""}`, 1, `missing "session"`},
		{"session null", `{"type":"call","session":null}`, 1, `"session" must be a string`},
		{"duplicate call id", ok + ok, 2, `duplicate id "c1" in session "s" (first on line 1)`},
		{"missing id", `{"type":"call","session":"s","tool":"t","arguments":{}}`, 1, `missing "id"`},
		{"missing tool", `{"type":"call","session":"s","id":"c1","arguments":{}}`, 1, `call "c1": missing "tool"`},
		{"empty tool", `{"type":"call","session":"s","id":"c1","tool":"","arguments":{}}`, 1, `missing "tool"`},
		{"missing arguments", `{"type":"call","session":"s","id":"c1","tool":"t"}`, 1, `missing "arguments"`},
		{"arguments an array", `{"type":"call","session":"s","id":"c1","tool":"t","arguments":[]}`, 1, `"arguments" must be a JSON object`},
		{"arguments null", `{"type":"call","session":"s","id":"c1","tool":"t","arguments":null}`, 1, `"arguments" must be a JSON object`},
		{"result not an object", `{"type":"call","session":"s","id":"c1","tool":"t","arguments":{},"result":"ok"}`, 1, `"result": must be a JSON object`},
		{"result content not an array", `{"type":"call","session":"s","id":"c1","tool":"t","arguments":{},"result":{"content":"x"}}`, 1, `"content" must be an array`},
		{"bad call time", `{"type":"call","session":"s","id":"c1","tool":"t","arguments":{},"time":"yesterday"}`, 1, `"time" is not an RFC 3339 time`},
		{"bad session time", `{"type":"session","session":"s","time":"2026-03-01 09:00"}`, 1, "RFC 3339"},
		{"agent not a string", `{"type":"session","session":"s","agent":7}`, 1, `"agent" must be a string`},
		{"second session record", `{"type":"session","session":"s"}` + "\n" + `{"type":"session","session":"s"}`, 2, "second session record"},
		{"session record after a call", ok + `{"type":"session","session":"s"}`, 2, "after its first record on line 1"},
		{"prompt text not a string", `{"type":"prompt","session":"s","text":{}}`, 1, `"text" must be a string`},
		{"oversized line", ok + `{"type":"prompt","session":"s","text":"` + strings.Repeat("a", MaxLineBytes) + `"}` + "\n" + ok, 2, "longer than 1048576 bytes"},
		{"oversized last line", ok + strings.Repeat(" ", MaxLineBytes+1), 2, "longer than 1048576 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ReadTrace(strings.NewReader(tt.trace))
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("ReadTrace = %v, want a *LineError", err)
			}
			if le.Line != tt.line || !strings.Contains(le.Msg, tt.msg) {
				t.Errorf("ReadTrace = %q, want line %d and %q", err, tt.line, tt.msg)
			}
			if !strings.HasPrefix(err.Error(), fmt.Sprintf("line %d: ", tt.line)) {
				t.Errorf("error %q does not start with the line", err)
			}
		})
	}
}

func TestReadTraceBounds(t *testing.T) {
	t.Parallel()
	t.Run("line of exactly MaxLineBytes", func(t *testing.T) {
		t.Parallel()
		head := `{"type":"prompt","session":"s","text":"`
		line := head + strings.Repeat("a", MaxLineBytes-len(head)-2) + `"}`
		if _, err := ReadTrace(strings.NewReader(line + "\r\n")); err != nil {
			t.Errorf("ReadTrace(line of %d bytes): %v", len(line), err)
		}
	})
	t.Run("too many lines", func(t *testing.T) {
		t.Parallel()
		_, err := ReadTrace(strings.NewReader(strings.Repeat("\n", MaxLines) + "\n"))
		if err == nil || !strings.Contains(err.Error(), "more than 1000000 lines") {
			t.Errorf("ReadTrace(%d lines) = %v, want the line bound", MaxLines+1, err)
		}
		if _, err := ReadTrace(strings.NewReader(strings.Repeat("\n", MaxLines))); err != nil {
			t.Errorf("ReadTrace(%d lines) = %v", MaxLines, err)
		}
	})
	t.Run("too many sessions", func(t *testing.T) {
		t.Parallel()
		if testing.Short() {
			t.Skip("builds a trace of 100,001 sessions")
		}
		var b bytes.Buffer
		for i := range MaxSessions + 1 {
			fmt.Fprintf(&b, "{\"type\":\"prompt\",\"session\":\"s%d\"}\n", i)
		}
		_, err := ReadTrace(&b)
		var le *LineError
		if !errors.As(err, &le) || le.Line != MaxSessions+1 || !strings.Contains(le.Msg, "more than 100000 sessions") {
			t.Errorf("ReadTrace(%d sessions) = %v, want the session bound on line %d", MaxSessions+1, err, MaxSessions+1)
		}
	})
}

func FuzzReadTrace(f *testing.F) {
	for _, name := range []string{"trace.jsonl", "example/trace.jsonl"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		`{"type":"call","session":"s","id":"c1","tool":"t","arguments":{}}`,
		`{"type":"session","session":"s","time":"2026-03-01T09:00:00.5+01:00"}` + "\n" + `{"type":"call","session":"s","id":"c","tool":"t","arguments":{"a":[{}]},"result":{"content":[],"isError":true}}`,
		`{"type":"call","session":"s","id":"c1","tool":"t","tool":"u","arguments":{}}`,
		`{"type":"prompt","session":"s","text":"\u00e9"}` + "\r\n\r\n",
		`{"type":"x","session":"s"} {}`,
		"{\"type\":\"prompt\",\"session\":\"s\",\"text\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := ReadTrace(bytes.NewReader(data))
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) || le.Line < 1 {
				t.Fatalf("ReadTrace error %v is not a *LineError with a line", err)
			}
			return
		}
		sessions := map[string]*Session{}
		for _, s := range tr.Sessions {
			if s.ID == "" || sessions[s.ID] != nil {
				t.Fatalf("session id %q empty or repeated", s.ID)
			}
			sessions[s.ID] = s
			ids := map[string]bool{}
			for _, c := range s.Calls {
				if ids[c.ID] {
					t.Fatalf("session %q: call id %q repeated", s.ID, c.ID)
				}
				ids[c.ID] = true
			}
		}
		for i, c := range tr.Calls {
			if c.Seq != i || sessions[c.Session] == nil || c.ID == "" || c.Tool == "" {
				t.Fatalf("call %d = %+v", i, c)
			}
			if kind(c.Arguments) != '{' || (c.Result != nil && kind(c.Result) != '{') {
				t.Fatalf("call %d: arguments %q, result %q", i, c.Arguments, c.Result)
			}
			if c.Time.IsZero() {
				t.Fatalf("call %d has no time", i)
			}
		}
	})
}
