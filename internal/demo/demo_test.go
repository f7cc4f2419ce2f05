package demo_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/chaperone-dev/chaperone/internal/demo"
)

var fixedNow = time.Date(2025, 3, 14, 9, 30, 0, 0, time.UTC)

// connect starts the demo server and returns a client session to it and its state.
func connect(t testing.TB, opts demo.Options) (*mcp.ClientSession, *demo.State) {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return fixedNow }
	}
	srv, st := demo.NewServer(opts)
	ctx := context.Background()
	st1, st2 := mcp.NewInMemoryTransports()
	ss, err := srv.Connect(ctx, st1, nil)
	if err != nil {
		t.Fatalf("server Connect: %v", err)
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test"}, nil).Connect(ctx, st2, nil)
	if err != nil {
		t.Fatalf("client Connect: %v", err)
	}
	t.Cleanup(func() {
		cs.Close()
		ss.Close()
	})
	return cs, st
}

// call calls a tool and returns its text content and isError.
func call(t testing.TB, cs *mcp.ClientSession, tool, args string) (string, bool) {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: json.RawMessage(args)})
	if err != nil {
		t.Fatalf("CallTool(%s, %s): %v", tool, args, err)
	}
	var b strings.Builder
	for _, c := range res.Content {
		tc, ok := c.(*mcp.TextContent)
		if !ok {
			t.Fatalf("CallTool(%s, %s): content %T, want text", tool, args, c)
		}
		b.WriteString(tc.Text)
	}
	return b.String(), res.IsError
}

type schema struct {
	Type                 string                     `json:"type"`
	Properties           map[string]json.RawMessage `json:"properties"`
	Required             []string                   `json:"required"`
	AdditionalProperties *bool                      `json:"additionalProperties"`
}

type property struct {
	Type        string `json:"type"`
	Description string `json:"description"`
}

func TestToolsPublishCleanSchemas(t *testing.T) {
	t.Parallel()
	cs, _ := connect(t, demo.Options{})
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatalf("ListTools: %v", err)
	}
	classes := demo.Classes()
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
		t.Run(tool.Name, func(t *testing.T) {
			raw, err := json.Marshal(tool.InputSchema)
			if err != nil {
				t.Fatal(err)
			}
			var s schema
			if err := json.Unmarshal(raw, &s); err != nil {
				t.Fatalf("schema %s: %v", raw, err)
			}
			if s.Type != "object" || s.AdditionalProperties == nil || *s.AdditionalProperties {
				t.Errorf("schema type=%q additionalProperties=%v, want object and false", s.Type, s.AdditionalProperties)
			}
			if len(s.Properties) == 0 {
				t.Errorf("schema has no properties")
			}
			for name, pr := range s.Properties {
				var p property
				if err := json.Unmarshal(pr, &p); err != nil {
					t.Fatal(err)
				}
				if p.Type == "" || p.Description == "" {
					t.Errorf("property %q: type=%q description=%q, want both set", name, p.Type, p.Description)
				}
			}
			for _, r := range s.Required {
				if _, ok := s.Properties[r]; !ok {
					t.Errorf("required %q is not a property", r)
				}
			}
			if tool.Description == "" || tool.Title == "" {
				t.Errorf("description=%q title=%q, want both set", tool.Description, tool.Title)
			}

			a := tool.Annotations
			if a == nil || a.DestructiveHint == nil || a.OpenWorldHint == nil {
				t.Fatalf("annotations = %+v, want all hints set", a)
			}
			switch class := classes[tool.Name]; class {
			case demo.ClassRead:
				if !a.ReadOnlyHint || *a.DestructiveHint || *a.OpenWorldHint {
					t.Errorf("class %s: annotations %+v", class, a)
				}
			case demo.ClassExternal:
				if !*a.OpenWorldHint || *a.DestructiveHint {
					t.Errorf("class %s: annotations %+v", class, a)
				}
			case demo.ClassWrite:
				if a.ReadOnlyHint || *a.DestructiveHint {
					t.Errorf("class %s: annotations %+v", class, a)
				}
			case demo.ClassDestructive:
				if a.ReadOnlyHint || !*a.DestructiveHint {
					t.Errorf("class %s: annotations %+v", class, a)
				}
			default:
				t.Errorf("no class for tool")
			}
		})
	}
	slices.Sort(names)
	if diff := cmp.Diff(slices.Sorted(maps.Keys(classes)), names); diff != "" {
		t.Errorf("tool names (-want +got):\n%s", diff)
	}
}

func TestCalls(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, tool, args string
		wantErr          bool
		want             string // substring of the text content
	}{
		{"inbox", "read_inbox", `{}`, false, "archive@examp1e-support.net"},
		{"inbox bill", "read_inbox", `{"folder":"inbox"}`, false, "DE89 3704 0044 0532 0130 00"},
		{"inbox limit", "read_inbox", `{"limit":1}`, false, "it-desk@examp1e-support.net"},
		{"archive", "read_inbox", `{"folder":"archive"}`, false, "Brightline"},
		{"inbox bad folder", "read_inbox", `{"folder":"spam"}`, true, ""},
		{"inbox limit too big", "read_inbox", `{"limit":51}`, true, ""},
		{"inbox extra property", "read_inbox", `{"all":true}`, true, ""},
		{"file", "read_file", `{"path":"/srv/demo/bills/march.txt"}`, false, "IBAN:"},
		{"file relative", "read_file", `{"path":"notes/todo.md"}`, false, "# To do"},
		{"file missing", "read_file", `{"path":"/srv/demo/nope.txt"}`, true, "no such file"},
		{"file traversal", "read_file", `{"path":"/srv/demo/../../etc/passwd"}`, true, "no such file"},
		{"file no path", "read_file", `{}`, true, ""},
		{"fetch", "fetch_url", `{"url":"https://docs.example.com/api/authentication"}`, false, "bearer token"},
		{"fetch trailing slash", "fetch_url", `{"url":"https://docs.example.com/guides/getting-started/"}`, false, "Getting started"},
		{"fetch 404", "fetch_url", `{"url":"https://docs.example.com/nope"}`, true, "404"},
		{"fetch elsewhere", "fetch_url", `{"url":"https://evil.example.net/x"}`, true, "not reachable from the demo"},
		{"fetch http", "fetch_url", `{"url":"http://docs.example.com/changelog"}`, true, "not reachable from the demo"},
		{"fetch relative", "fetch_url", `{"url":"/changelog"}`, true, "not an absolute URL"},
		{"ticket", "create_ticket", `{"title":"Badge reader","body":"Floor 3"}`, false, "TCK-1001"},
		{"ticket long title", "create_ticket", `{"title":"` + strings.Repeat("x", 201) + `","body":""}`, true, ""},
		{"email", "send_email", `{"to":"maria.schneider@example.com","subject":"Hi","body":"Hello"}`, false, "MSG-1001"},
		{"email bad address", "send_email", `{"to":"not an address","subject":"Hi","body":"Hello"}`, true, "invalid recipient"},
		{"transfer", "transfer_money", `{"recipient_iban":"DE89 3704 0044 0532 0130 00","amount":184.2,"currency":"EUR","reference":"NE-2024-031877"}`, false, "TXN-1001"},
		{"transfer zero", "transfer_money", `{"recipient_iban":"DE89370400440532013000","amount":0,"currency":"EUR"}`, true, ""},
		{"transfer currency", "transfer_money", `{"recipient_iban":"DE89370400440532013000","amount":1,"currency":"JPY"}`, true, ""},
		{"transfer bad iban", "transfer_money", `{"recipient_iban":"not-an-iban","amount":1,"currency":"EUR"}`, true, ""},
		{"delete", "delete_record", `{"table":"orders","id":"o-17"}`, false, "deleted"},
		{"delete bad table", "delete_record", `{"table":"users","id":"u-1"}`, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cs, _ := connect(t, demo.Options{})
			got, isErr := call(t, cs, tt.tool, tt.args)
			if isErr != tt.wantErr {
				t.Errorf("%s(%s) isError = %v (%q), want %v", tt.tool, tt.args, isErr, got, tt.wantErr)
			}
			if !strings.Contains(got, tt.want) {
				t.Errorf("%s(%s) = %q, want it to contain %q", tt.tool, tt.args, got, tt.want)
			}
		})
	}
}

func TestInboxIsJSON(t *testing.T) {
	t.Parallel()
	cs, _ := connect(t, demo.Options{})
	got, _ := call(t, cs, "read_inbox", `{"limit":50}`)
	var inbox struct {
		Folder   string
		Messages []struct{ From, Subject, Body, Date string }
	}
	if err := json.Unmarshal([]byte(got), &inbox); err != nil {
		t.Fatalf("read_inbox text is not JSON: %v\n%s", err, got)
	}
	if len(inbox.Messages) < 4 {
		t.Fatalf("read_inbox returned %d messages, want at least 4", len(inbox.Messages))
	}
	if want := fixedNow.Add(-25 * time.Minute).Format(time.RFC3339); inbox.Messages[0].Date != want {
		t.Errorf("newest message date = %q, want %q (from Options.Now)", inbox.Messages[0].Date, want)
	}
	var froms []string
	for _, m := range inbox.Messages {
		froms = append(froms, m.From)
	}
	want := []string{"it-desk@examp1e-support.net", "billing@northwind-energy.example", "jonas.weber@example.com", "maria.schneider@example.com"}
	if diff := cmp.Diff(want, froms); diff != "" {
		t.Errorf("senders, newest first (-want +got):\n%s", diff)
	}
}

func TestEffectsAreRecorded(t *testing.T) {
	t.Parallel()
	cs, st := connect(t, demo.Options{})
	call(t, cs, "send_email", `{"to":"archive@examp1e-support.net","subject":"Fwd: bill","body":"..."}`)
	call(t, cs, "transfer_money", `{"recipient_iban":"DE89 3704 0044 0532 0130 00","amount":184.2,"currency":"EUR"}`)
	call(t, cs, "delete_record", `{"table":"customers","id":"c-9"}`)
	call(t, cs, "create_ticket", `{"title":"a","body":"b"}`)
	if id, _ := call(t, cs, "create_ticket", `{"title":"c","body":"d"}`); id != "TCK-1002" {
		t.Errorf("second ticket id = %q, want TCK-1002", id)
	}

	if diff := cmp.Diff([]demo.Email{{ID: "MSG-1001", To: "archive@examp1e-support.net", Subject: "Fwd: bill", Body: "...", SentAt: fixedNow}}, st.Outbox()); diff != "" {
		t.Errorf("Outbox (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]demo.Transfer{{ID: "TXN-1001", RecipientIBAN: "DE89370400440532013000", Amount: 184.2, Currency: "EUR", At: fixedNow}}, st.Transfers()); diff != "" {
		t.Errorf("Transfers (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]demo.DeletedRecord{{Table: "customers", ID: "c-9", At: fixedNow}}, st.Deleted()); diff != "" {
		t.Errorf("Deleted (-want +got):\n%s", diff)
	}
	if got := len(st.Tickets()); got != 2 {
		t.Errorf("len(Tickets()) = %d, want 2", got)
	}
}

func TestCustomFiles(t *testing.T) {
	t.Parallel()
	cs, _ := connect(t, demo.Options{Files: map[string]string{"/srv/demo/a.txt": "alpha", "/etc/passwd": "root"}})
	if got, isErr := call(t, cs, "read_file", `{"path":"/srv/demo/a.txt"}`); isErr || got != "alpha" {
		t.Errorf("read_file(a.txt) = %q, %v; want alpha", got, isErr)
	}
	if _, isErr := call(t, cs, "read_file", `{"path":"/srv/demo/bills/march.txt"}`); !isErr {
		t.Errorf("read_file(default file) succeeded with custom Files, want no such file")
	}
	if _, isErr := call(t, cs, "read_file", `{"path":"/etc/passwd"}`); !isErr {
		t.Errorf("read_file outside %s succeeded, want no such file", demo.FileRoot)
	}
}

func TestConcurrentEffects(t *testing.T) {
	t.Parallel()
	cs, st := connect(t, demo.Options{})
	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{
				Name: "create_ticket", Arguments: map[string]any{"title": fmt.Sprint("t", i), "body": ""},
			})
			if err != nil || res.IsError {
				t.Errorf("create_ticket: %v %+v", err, res)
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, tk := range st.Tickets() {
		seen[tk.ID] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct ticket ids, want %d", len(seen), n)
	}
}
