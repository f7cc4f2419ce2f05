package replay_test

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/replay"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite/sqlitetest"
)

// TestExport appends events to a real audit log and checks the trace Export writes, byte
// for byte, and its counts.
func TestExport(t *testing.T) {
	t.Parallel()
	db, log := sqlitetest.Open(t)
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	n := 0
	add := func(e audit.Event) {
		t.Helper()
		n++
		e.Time = t0.Add(time.Duration(n) * time.Second)
		if e.Kind != audit.KindCallOutcome && e.Decision == "" {
			e.Decision = "allow"
		}
		if err := log.Append(t.Context(), &e); err != nil {
			t.Fatalf("Append(%s %s): %v", e.Kind, e.RequestID, err)
		}
	}
	args := func(s string) (json.RawMessage, string) { return json.RawMessage(s), audit.CapturedArguments }
	call := func(kind, req, sess, agent, user, tool, a string) audit.Event {
		e := audit.Event{Kind: kind, RequestID: req, SessionID: sess, Agent: agent, User: user, Tool: tool}
		if a != "" {
			e.Arguments, e.Captured = args(a)
		}
		return e
	}
	result := func(req, r, captured string) audit.Event {
		return audit.Event{Kind: audit.KindCallOutcome, RequestID: req, Result: json.RawMessage(r), Captured: captured}
	}
	ok := `{"content":[{"type":"text","text":"<ok> & done"}]}`

	add(audit.Event{Kind: audit.KindPolicyLoaded})
	// Two calls of session s1 whose outcomes arrive in the other order, and a sessionless
	// refusal in between: the trace keeps the order of the intents.
	add(call(audit.KindCallIntent, "r1", "s1", "a1", "alice", "read", `{"path":"/x"}`))
	add(call(audit.KindCallIntent, "r2", "s1", "a1", "alice", "read", `{"path":"/y"}`))
	add(call(audit.KindCallRefused, "r3", "", "a1", "", "wipe", `{"all":true}`))
	add(result("r2", ok, audit.CapturedResult))
	add(result("r1", ok, audit.CapturedResult))
	// Capture off, too large, not an object: skipped.
	add(call(audit.KindCallRefused, "r4", "s1", "a1", "alice", "read", ""))
	add(audit.Event{Kind: audit.KindCallRefused, RequestID: "r5", SessionID: "s1", Agent: "a1", User: "alice", Tool: "read", Captured: audit.CapturedTooLarge})
	add(call(audit.KindCallRefused, "r6", "s1", "a1", "alice", "read", `[1,2]`))
	// No arguments; a result too large; a result that is not a CallToolResult.
	add(audit.Event{Kind: audit.KindCallIntent, RequestID: "r7", SessionID: "s1", Agent: "a1", User: "alice", Tool: "ping", Captured: audit.CapturedArguments})
	add(result("r7", "", audit.CapturedTooLarge))
	// The user changes within s1: a new trace session.
	add(call(audit.KindCallIntent, "r8", "s1", "a1", "bob", "read", `{"path":"/z"}`))
	add(result("r8", `"just text"`, audit.CapturedResult))
	// An intent whose outcome never came.
	add(call(audit.KindCallIntent, "r9", "s1", "a1", "bob", "read", `{"path":"/w"}`))

	want := `{"type":"session","session":"s1","agent":"a1","user":"alice","time":"2026-03-01T09:00:02Z"}
{"type":"call","session":"s1","id":"r1","tool":"read","arguments":{"path":"/x"},"result":` + ok + `,"time":"2026-03-01T09:00:02Z"}
{"type":"call","session":"s1","id":"r2","tool":"read","arguments":{"path":"/y"},"result":` + ok + `,"time":"2026-03-01T09:00:03Z"}
{"type":"session","session":"agent-a1","agent":"a1","time":"2026-03-01T09:00:04Z"}
{"type":"call","session":"agent-a1","id":"r3","tool":"wipe","arguments":{"all":true},"time":"2026-03-01T09:00:04Z"}
{"type":"call","session":"s1","id":"r7","tool":"ping","arguments":{},"time":"2026-03-01T09:00:10Z"}
{"type":"session","session":"s1#2","agent":"a1","user":"bob","time":"2026-03-01T09:00:12Z"}
{"type":"call","session":"s1#2","id":"r8","tool":"read","arguments":{"path":"/z"},"time":"2026-03-01T09:00:12Z"}
{"type":"call","session":"s1#2","id":"r9","tool":"read","arguments":{"path":"/w"},"time":"2026-03-01T09:00:14Z"}
`
	var out bytes.Buffer
	st, err := replay.Export(t.Context(), db, &out, replay.ExportOptions{})
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("Export trace (-want +got):\n%s", diff)
	}
	wantStats := replay.ExportStats{
		Sessions: 3, Calls: 6, NotCaptured: 1, TooLarge: 1, NotObject: 1,
		ResultsOmitted: 2, Unfinished: 1, Captured: true, LastSeq: int64(n),
	}
	if diff := cmp.Diff(wantStats, st); diff != "" {
		t.Errorf("Export stats (-want +got):\n%s", diff)
	}
	if _, err := replay.ReadTrace(strings.NewReader(out.String())); err != nil {
		t.Errorf("ReadTrace(Export) = %v", err)
	}

	t.Run("progress", func(t *testing.T) {
		// Told of the events read, page by page, and at the end of the calls written; the
		// trace is the same.
		var got [][2]int
		var again bytes.Buffer
		opts := replay.ExportOptions{Progress: func(read, written int) { got = append(got, [2]int{read, written}) }}
		if _, err := replay.Export(t.Context(), db, &again, opts); err != nil {
			t.Fatalf("Export: %v", err)
		}
		if again.String() != out.String() {
			t.Errorf("Export with Progress wrote another trace:\n%s", again.String())
		}
		if len(got) == 0 || got[len(got)-1] != [2]int{n, wantStats.Calls} {
			t.Fatalf("Progress calls = %v, want the last to be (%d events, %d calls)", got, n, wantStats.Calls)
		}
		for i := 1; i < len(got); i++ {
			if got[i][0] < got[i-1][0] || got[i][1] < got[i-1][1] {
				t.Errorf("Progress went back: %v", got)
			}
		}
	})

	t.Run("after", func(t *testing.T) {
		// After r1's intent: r1's outcome is ignored, the calls from r2 on are exported.
		var out bytes.Buffer
		st, err := replay.Export(t.Context(), db, &out, replay.ExportOptions{After: 2})
		if err != nil {
			t.Fatalf("Export: %v", err)
		}
		tr, err := replay.ReadTrace(&out)
		if err != nil {
			t.Fatalf("ReadTrace(Export): %v", err)
		}
		var ids []string
		for _, c := range tr.Calls {
			ids = append(ids, c.ID)
		}
		if diff := cmp.Diff([]string{"r2", "r3", "r7", "r8", "r9"}, ids); diff != "" || tr.Sessions[0].Start != t0.Add(3*time.Second) {
			t.Errorf("Export(After: 2) calls (-want +got):\n%s\nfirst session starts %s", diff, tr.Sessions[0].Start)
		}
		if st.Calls != 5 {
			t.Errorf("Export(After: 2) stats = %+v, want 5 calls", st)
		}
	})
}

// An export of a log in which nothing was captured writes nothing and says so.
func TestExportNothingCaptured(t *testing.T) {
	t.Parallel()
	db, log := sqlitetest.Open(t)
	e := audit.Event{Time: time.Now(), Kind: audit.KindCallRefused, RequestID: "r1", Tool: "x", Decision: "deny",
		ArgsHash: audit.HashArgs([]byte(`{"k":"v"}`)), ArgsSummary: audit.SummarizeArgs([]byte(`{"k":"v"}`))}
	if err := log.Append(t.Context(), &e); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	st, err := replay.Export(t.Context(), db, &out, replay.ExportOptions{})
	if err != nil || out.Len() != 0 || st.Calls != 0 || st.NotCaptured != 1 || st.Captured {
		t.Errorf("Export(nothing captured) = %+v, %v, output %q; want no output, 1 call not captured", st, err, out.String())
	}
}

// Secrets the scanner recognises: an AWS access key id and a GitHub token.
const (
	exportAWSKey      = "AKIAZ3MHQ2L7VXKQ4PJD"
	exportGitHubToken = "ghp_R7b2Kx9Qm4Tz8Lw3Vn6Yp1Hs5Jd0Fc2Ga7Ue"
)

// TestExportMatchAndRedact: Match selects calls by their intent or refusal, their
// outcomes follow, tombstones are counted, and no secret of a prompt, tool name,
// arguments or result reaches the trace.
func TestExportMatchAndRedact(t *testing.T) {
	t.Parallel()
	db, log := sqlitetest.Open(t)
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	n := 0
	add := func(e audit.Event) {
		t.Helper()
		n++
		e.Time = t0.Add(time.Duration(n) * time.Second)
		if err := log.Append(t.Context(), &e); err != nil {
			t.Fatalf("Append(%s %s): %v", e.Kind, e.RequestID, err)
		}
	}
	call := func(kind, req, agent, tool, args string) audit.Event {
		return audit.Event{Kind: kind, RequestID: req, SessionID: "s-" + agent, Agent: agent, Tool: tool, Decision: "allow",
			Captured: audit.CapturedArguments, Arguments: json.RawMessage(args)}
	}
	result := func(req, text string) audit.Event {
		r, _ := json.Marshal(map[string]any{"content": []map[string]string{{"type": "text", "text": text}}})
		return audit.Event{Kind: audit.KindCallOutcome, RequestID: req, Agent: "other", Captured: audit.CapturedResult, Result: r}
	}
	c1 := call(audit.KindCallIntent, "r1", "a1", "read", `{"path":"/x","key":"`+exportAWSKey+`","n":1.50}`)
	c1.Prompt = "use " + exportGitHubToken
	add(c1)
	add(call(audit.KindCallIntent, "r2", "a2", "read", `{"path":"/y"}`))
	add(result("r1", `{"password":"Xk29fj2KdP0qZ7wL"} and `+exportGitHubToken))
	add(result("r2", "fine"))
	add(call(audit.KindCallRefused, "r3", "a1", exportAWSKey, `{"q":"`+exportGitHubToken+`"}`))
	add(call(audit.KindCallIntent, "r4", "a1", "read", `{"path":"/old"}`))
	add(result("r4", "old"))
	if _, err := db.PruneEvents(t.Context(), int64(n), nil, func(e *audit.Event) bool { return e.RequestID == "r4" }); err != nil {
		t.Fatal(err)
	}

	match := func(e *audit.Event) bool { return e.Agent == "a1" }
	var out bytes.Buffer
	st, err := replay.Export(t.Context(), db, &out, replay.ExportOptions{Match: match})
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	for _, s := range []string{exportAWSKey, exportGitHubToken, "Xk29fj2KdP0qZ7wL"} {
		if strings.Contains(out.String(), s) {
			t.Errorf("the trace carries the secret %q:\n%s", s, out.String())
		}
	}
	want := `{"type":"session","session":"s-a1","agent":"a1","time":"2026-03-01T09:00:01Z"}
{"type":"prompt","session":"s-a1","text":"use [REDACTED:github_token]"}
{"type":"call","session":"s-a1","id":"r1","tool":"read","arguments":{"path":"/x","key":"[REDACTED:aws_access_key]","n":1.50},"result":{"content":[{"text":"{\"password\":\"[REDACTED:generic_secret]\"} and [REDACTED:github_token]","type":"text"}]},"time":"2026-03-01T09:00:01Z"}
{"type":"call","session":"s-a1","id":"r3","tool":"[REDACTED:aws_access_key]","arguments":{"q":"[REDACTED:github_token]"},"time":"2026-03-01T09:00:05Z"}
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("Export(Match a1) trace (-want +got):\n%s", diff)
	}
	// The tombstone of r4 no longer names its agent: Match cannot select it.
	wantStats := replay.ExportStats{Sessions: 1, Calls: 2, Filtered: 1, Redacted: 2, Captured: true, LastSeq: int64(n)}
	if diff := cmp.Diff(wantStats, st); diff != "" {
		t.Errorf("Export(Match a1) stats (-want +got):\n%s", diff)
	}
	if _, err := replay.ReadTrace(strings.NewReader(out.String())); err != nil {
		t.Errorf("ReadTrace(Export) = %v", err)
	}
	var again bytes.Buffer
	if _, err := replay.Export(t.Context(), db, &again, replay.ExportOptions{Match: match}); err != nil || again.String() != out.String() {
		t.Errorf("two exports of one log differ (%v)", err)
	}
	// Without Match every call is exported but the pruned one, which is counted.
	st, err = replay.Export(t.Context(), db, io.Discard, replay.ExportOptions{})
	if err != nil || st.Calls != 3 || st.Pruned != 1 || st.Filtered != 0 || st.Redacted != 2 {
		t.Errorf("Export(all) = %+v, %v; want 3 calls, 1 pruned, 2 redacted", st, err)
	}
}
