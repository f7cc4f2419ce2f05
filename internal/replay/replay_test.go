package replay

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/daemon"
	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
	"github.com/chaperone-dev/chaperone/internal/upstream"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// ignoreRisk leaves risk scores out of comparisons of decisions: the golden file and the
// exact lines check them (the risk package tests the scoring).
var ignoreRisk = cmpopts.IgnoreFields(Decision{}, "Risk")

// fixture is the configuration, trace and policies in testdata.
type fixture struct {
	cfg    *config.Config
	trace  *Trace
	policy []policy.Source
}

func loadFixture(tb testing.TB, dir, policyDir string) fixture {
	tb.Helper()
	cfg, err := config.Load(filepath.Join(dir, "config.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	srcs, err := daemon.ReadPolicySources([]string{filepath.Join(dir, policyDir)})
	if err != nil {
		tb.Fatal(err)
	}
	return fixture{cfg: cfg, trace: readTraceFile(tb, filepath.Join(dir, "trace.jsonl")), policy: srcs}
}

func readTraceFile(tb testing.TB, path string) *Trace {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	tr, err := ReadTrace(f)
	if err != nil {
		tb.Fatalf("ReadTrace(%s): %v", path, err)
	}
	return tr
}

// mainOptions are the options of the main testdata replay: policy A, the schemas directory,
// ops-bot as the default agent.
func mainOptions(tb testing.TB, policyDir string) Options {
	tb.Helper()
	fx := loadFixture(tb, "testdata", policyDir)
	defs, err := LoadDefinitions(tb.Context(), fx.cfg, "", filepath.Join("testdata", "schemas"))
	if err != nil {
		tb.Fatal(err)
	}
	return Options{Config: fx.cfg, Trace: fx.trace, Policy: fx.policy, Definitions: defs, DefaultAgent: "ops-bot"}
}

func run(tb testing.TB, opts Options) Report {
	tb.Helper()
	rep, err := Run(tb.Context(), opts)
	if err != nil {
		tb.Fatalf("Run: %v", err)
	}
	return rep
}

func jsonl(tb testing.TB, rep Report) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := rep.WriteJSONL(&b); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// checkGolden compares got with testdata/name line by line, or rewrites it under -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < max(len(gl), len(wl)); i++ {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Errorf("%s line %d:\n got %s\nwant %s", name, i+1, g, w)
		}
	}
}

// d builds an expected decision.
func d(session, id, tool, effect, reason string, rules ...string) Decision {
	return Decision{Session: session, ID: id, Tool: tool, Effect: effect, Reason: reason, Rules: rules}
}

// wantMain is what policy A decides for testdata/trace.jsonl, written by hand: the golden
// file must agree with it, so a regression cannot hide in an -update.
var wantMain = []Decision{
	d("mail-1", "c1", "list_unread", "allow", "", "read-anything"),
	d("pay-1", "c1", "send_money", "approve", "approval_required", "payments-need-a-person"),
	d("mail-1", "c2", "read_file", "allow", "", "read-anything"),
	d("mail-1", "c3", "read_file", "deny", "invalid_arguments"),   // path escape
	d("ops-1", "c1", "list_unread", "allow", "", "read-anything"), // no session record: --agent; no result
	d("pay-1", "c2", "send_money", "deny", "denied_by_policy", "no-large-payments"),
	d("mail-1", "c4", "send_email", "allow", "", "mail-internal-office-hours"), // own time 09:00:30
	d("ghost", "g1", "list_unread", "deny", "unauthenticated"),                 // agent not in the config
	d("ops-1", "c2", "send_email", "deny", "denied_by_policy"),                 // 00:00:02: default deny
	d("pay-1", "c3", "send_money", "deny", "invalid_arguments"),                // overlay pattern
	d("mail-1", "c5", "send_email", "deny", "denied_by_policy"),                // outside address: default deny
	d("ops-1", "c3", "list_unread", "allow", "", "read-anything"),              // session.calls 2: the refused c2 does not count
	d("pay-1", "c4", "read_file", "deny", "environment_mismatch"),              // prod agent, dev tool
	d("mail-1", "c6", "send_money", "deny", "out_of_scope"),                    // beyond its capabilities
	d("ghost", "g2", "read_file", "deny", "unauthenticated"),
	d("ops-1", "c4", "list_unread", "deny", "denied_by_policy", "ops-session-limit"), // session.calls 3
	d("pay-1", "c5", "send_money", "deny", "invalid_arguments"),                      // "memo" is not in the schema
	d("mail-1", "c7", "wipe_disk", "deny", "unknown_tool"),
	d("ops-1", "c5", "delete_file", "deny", "denied_by_policy", "no-deletes"), // no definition: any argument name
	d("pay-1", "c6", "send_money", "deny", "denied_by_policy", "one-payment-per-session"),
}

func TestRunMainTrace(t *testing.T) {
	t.Parallel()
	rep := run(t, mainOptions(t, "policy-a"))
	if diff := cmp.Diff(wantMain, rep.Decisions, ignoreRisk); diff != "" {
		t.Errorf("Run decisions (-want +got):\n%s", diff)
	}
	if rep.Sessions != 4 {
		t.Errorf("Run sessions = %d, want 4", rep.Sessions)
	}
	wantWarnings := []string{
		`schema orphan.json: no declared tool "orphan"`,
		`tool "delete_file": no pinned definition: arguments checked against the overlay only`,
	}
	if diff := cmp.Diff(wantWarnings, rep.Warnings); diff != "" {
		t.Errorf("Run warnings (-want +got):\n%s", diff)
	}

	out := jsonl(t, rep)
	checkGolden(t, "decisions-a.golden.jsonl", out)
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(wantMain) {
		t.Fatalf("WriteJSONL wrote %d lines, want %d", len(lines), len(wantMain))
	}
	// The exact bytes of a few lines: key order, omitted empty fields.
	for i, want := range map[int]string{
		0:  `{"session":"mail-1","id":"c1","tool":"list_unread","decision":"allow","rules":["read-anything"],"risk":5}`,
		1:  `{"session":"pay-1","id":"c1","tool":"send_money","decision":"approve","reason":"approval_required","rules":["payments-need-a-person"],"risk":40}`,
		3:  `{"session":"mail-1","id":"c3","tool":"read_file","decision":"deny","reason":"invalid_arguments"}`,
		7:  `{"session":"ghost","id":"g1","tool":"list_unread","decision":"deny","reason":"unauthenticated"}`,
		8:  `{"session":"ops-1","id":"c2","tool":"send_email","decision":"deny","reason":"denied_by_policy","risk":55}`,
		19: `{"session":"pay-1","id":"c6","tool":"send_money","decision":"deny","reason":"denied_by_policy","rules":["one-payment-per-session"],"risk":60}`,
	} {
		if lines[i] != want {
			t.Errorf("line %d = %s, want %s", i+1, lines[i], want)
		}
	}
}

// Progress is told of every call replayed, in order, and the report is the same as
// without it.
func TestRunProgress(t *testing.T) {
	t.Parallel()
	opts := mainOptions(t, "policy-a")
	var got [][2]int
	opts.Progress = func(done, total int) { got = append(got, [2]int{done, total}) }
	rep := run(t, opts)
	if len(got) != len(wantMain) {
		t.Fatalf("Progress called %d times, want once per call (%d)", len(got), len(wantMain))
	}
	for i, g := range got {
		if g != [2]int{i + 1, len(wantMain)} {
			t.Errorf("Progress call %d = (%d, %d), want (%d, %d)", i+1, g[0], g[1], i+1, len(wantMain))
		}
	}
	if diff := cmp.Diff(jsonl(t, run(t, mainOptions(t, "policy-a"))), jsonl(t, rep)); diff != "" {
		t.Errorf("decisions with Progress differ from those without (-without +with):\n%s", diff)
	}
}

func TestRunDeterministic(t *testing.T) {
	t.Parallel()
	var outs [2][]byte
	var sums [2]string
	for i := range outs {
		rep := run(t, mainOptions(t, "policy-a"))
		outs[i] = jsonl(t, rep)
		var b strings.Builder
		if err := rep.WriteSummary(&b); err != nil {
			t.Fatal(err)
		}
		sums[i] = b.String()
	}
	if !bytes.Equal(outs[0], outs[1]) {
		t.Errorf("two replays differ:\n%s\n---\n%s", outs[0], outs[1])
	}
	if sums[0] != sums[1] {
		t.Errorf("two summaries differ:\n%s\n---\n%s", sums[0], sums[1])
	}
}

func TestRunSummary(t *testing.T) {
	t.Parallel()
	rep := run(t, mainOptions(t, "policy-a"))
	var b bytes.Buffer
	if err := rep.WriteSummary(&b); err != nil {
		t.Fatal(err)
	}
	// The policy version is a hash of the file names, which depend on the checkout.
	got := strings.Replace(b.String(), rep.PolicyVersion, "VERSION", 1)
	checkGolden(t, "summary-a.golden.txt", []byte(got))
	lines := map[string]bool{}
	for _, l := range strings.Split(got, "\n") {
		lines[strings.Join(strings.Fields(l), " ")] = true
	}
	for _, want := range []string{"allow 5", "approve 1", "deny 14", "unauthenticated 2", "invalid_arguments 3", "read-anything 4",
		`tool "delete_file": no pinned definition: arguments checked against the overlay only`} {
		if !lines[want] {
			t.Errorf("WriteSummary lacks a line %q:\n%s", want, got)
		}
	}
}

func TestRunApprovalsDenied(t *testing.T) {
	t.Parallel()
	opts := mainOptions(t, "policy-a")
	opts.Approvals = ApprovalsDenied
	rep := run(t, opts)
	want := slicesClone(wantMain)
	// pay-1 c1 is still reported as needing approval, but it was refused: it does not count,
	// so c6 is the session's first payment and needs approval in turn.
	want[19] = d("pay-1", "c6", "send_money", "approve", "approval_required", "payments-need-a-person")
	if diff := cmp.Diff(want, rep.Decisions, ignoreRisk); diff != "" {
		t.Errorf("Run with approvals denied (-want +got):\n%s", diff)
	}
}

func slicesClone(s []Decision) []Decision { return append([]Decision(nil), s...) }

func TestDiffPolicies(t *testing.T) {
	t.Parallel()
	a := run(t, mainOptions(t, "policy-a"))
	b := run(t, mainOptions(t, "policy-b"))
	changes, err := Diff(&a, &b)
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{
		// B denies payments over 50...
		{A: wantMain[1], B: d("pay-1", "c1", "send_money", "deny", "denied_by_policy", "no-large-payments")},
		// ...so c1 does not run and c6 is the session's first payment.
		{A: wantMain[19], B: d("pay-1", "c6", "send_money", "approve", "approval_required", "payments-need-a-person")},
		// B asks a person about deletes.
		{A: wantMain[18], B: d("ops-1", "c5", "delete_file", "approve", "approval_required", "deletes-need-a-person")},
	}
	// In trace order: pay-1 c1 (line 5), ops-1 c5 (line 25), pay-1 c6 (line 26).
	want[1], want[2] = want[2], want[1]
	if diff := cmp.Diff(want, changes, ignoreRisk); diff != "" {
		t.Errorf("Diff (-want +got):\n%s", diff)
	}

	var out bytes.Buffer
	if err := WriteDiff(&out, changes, len(a.Decisions)); err != nil {
		t.Fatal(err)
	}
	wantOut := `pay-1 c1 send_money: approve (approval_required) [payments-need-a-person] → deny (denied_by_policy) [no-large-payments]
ops-1 c5 delete_file: deny (denied_by_policy) [no-deletes] → approve (approval_required) [deletes-need-a-person]
pay-1 c6 send_money: deny (denied_by_policy) [one-payment-per-session] → approve (approval_required) [payments-need-a-person]

3 of 20 calls changed decision
  approve → deny: 1
  deny → approve: 2
`
	if diff := cmp.Diff(wantOut, out.String()); diff != "" {
		t.Errorf("WriteDiff (-want +got):\n%s", diff)
	}

	if _, err := Diff(&a, &Report{}); err == nil {
		t.Error("Diff of reports of different traces: no error")
	}
}

func TestRunExampleTrace(t *testing.T) {
	t.Parallel()
	fx := loadFixture(t, filepath.Join("testdata", "example"), "policy")
	rep := run(t, Options{Config: fx.cfg, Trace: fx.trace, Policy: fx.policy})
	want := []Decision{
		d("pay-bill", "c1", "read_file", "allow", "", "reads"),
		d("pay-bill", "c2", "send_money", "approve", "approval_required", "payments-need-a-person"),
		d("inbox-summary", "c1", "list_unread", "allow", "", "reads"),
		d("inbox-summary", "c2", "forward_email", "deny", "denied_by_policy", "no-forwarding-outside"),
	}
	if diff := cmp.Diff(want, rep.Decisions, ignoreRisk); diff != "" {
		t.Errorf("Run example trace (-want +got):\n%s", diff)
	}
	wantWarnings := []string{
		`tool "read_file": no pinned definition: arguments checked against the overlay only`,
		`tool "send_money": no pinned definition: arguments checked against the overlay only`,
		`tool "list_unread": no pinned definition: arguments checked against the overlay only`,
		`tool "forward_email": no pinned definition: arguments checked against the overlay only`,
	}
	if diff := cmp.Diff(wantWarnings, rep.Warnings); diff != "" {
		t.Errorf("Run example warnings (-want +got):\n%s", diff)
	}
}

// TestRunOverlayOnly checks that a tool without a definition accepts any argument name but
// still enforces its overlay.
func TestRunOverlayOnly(t *testing.T) {
	t.Parallel()
	fx := loadFixture(t, filepath.Join("testdata", "example"), "policy")
	tr := mustReadTrace(t, `{"type":"session","session":"s","agent":"finance-assistant"}
{"type":"call","session":"s","id":"ok","tool":"send_money","arguments":{"recipient":"DE02120300000000202051","amount":1,"anything":[1,2]}}
{"type":"call","session":"s","id":"bad","tool":"send_money","arguments":{"recipient":"nope","amount":1}}
{"type":"call","session":"s","id":"dup","tool":"send_money","arguments":{"recipient":"DE02120300000000202051","recipient":"nope"}}
`)
	rep := run(t, Options{Config: fx.cfg, Trace: tr, Policy: fx.policy})
	want := []Decision{
		d("s", "ok", "send_money", "approve", "approval_required", "payments-need-a-person"),
		d("s", "bad", "send_money", "deny", "invalid_arguments"),
		d("s", "dup", "send_money", "deny", "invalid_arguments"),
	}
	if diff := cmp.Diff(want, rep.Decisions, ignoreRisk); diff != "" {
		t.Errorf("Run (-want +got):\n%s", diff)
	}
}

func TestRunDefinitionsFromStore(t *testing.T) {
	t.Parallel()
	fx := loadFixture(t, "testdata", "policy-a")
	path := filepath.Join(t.TempDir(), "chaperone.db")
	db, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	pin := func(tool, up string, ut upstream.Tool, hash string) {
		t.Helper()
		def, h, err := registry.DefinitionHash(&ut)
		if err != nil {
			t.Fatal(err)
		}
		if hash == "" {
			hash = h
		}
		if err := db.SetPin(t.Context(), registry.Pin{Tool: tool, Upstream: up, Hash: hash, Definition: def, ApprovedBy: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	// The pinned send_money knows "memo", unlike schemas/send_money.json: the pin wins.
	pin("send_money", "bank", upstream.Tool{Name: "send_money", Description: "Pay.",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"recipient":{"type":"string"},"amount":{"type":"number"},"memo":{"type":"string"},"subject":{"type":"string"}}}`)}, "")
	// A pin that does not match its hash is not used: the schema file is.
	pin("list_unread", "mail", upstream.Tool{Name: "list_unread", InputSchema: json.RawMessage(`{"type":"object"}`)},
		"sha256:0000000000000000000000000000000000000000000000000000000000000000")
	// delete_file's pin makes it fully checked: "force" is unknown.
	pin("delete_file", "files", upstream.Tool{Name: "delete_file", InputSchema: json.RawMessage(`{"type":"object","properties":{"path":{"type":"string"}}}`)}, "")
	db.Close()

	defs, err := LoadDefinitions(t.Context(), fx.cfg, path, filepath.Join("testdata", "schemas"))
	if err != nil {
		t.Fatal(err)
	}
	rep := run(t, Options{Config: fx.cfg, Trace: fx.trace, Policy: fx.policy, Definitions: defs, DefaultAgent: "ops-bot"})
	want := slicesClone(wantMain)
	want[16] = d("pay-1", "c5", "send_money", "deny", "denied_by_policy", "one-payment-per-session")
	want[18] = d("ops-1", "c5", "delete_file", "deny", "invalid_arguments")
	if diff := cmp.Diff(want, rep.Decisions, ignoreRisk); diff != "" {
		t.Errorf("Run with pinned definitions (-want +got):\n%s", diff)
	}
	wantWarnings := []string{
		`tool "list_unread": pinned definition not used: it does not match its hash`,
		`schema orphan.json: no declared tool "orphan"`,
	}
	if diff := cmp.Diff(wantWarnings, rep.Warnings); diff != "" {
		t.Errorf("Run warnings (-want +got):\n%s", diff)
	}
}

func TestRunErrors(t *testing.T) {
	t.Parallel()
	opts := mainOptions(t, "policy-a")
	for name, mod := range map[string]func(*Options){
		"unknown default agent": func(o *Options) { o.DefaultAgent = "nobody" },
		"bad approvals":         func(o *Options) { o.Approvals = "maybe" },
		"no config":             func(o *Options) { o.Config = nil },
		"policy does not compile": func(o *Options) {
			o.Policy = []policy.Source{{Name: "p.yaml", Data: []byte("rules:\n  - id: x\n    match:\n      tools: [nope]\n    effect: allow\n")}}
		},
	} {
		t.Run(name, func(t *testing.T) {
			o := opts
			mod(&o)
			if _, err := Run(t.Context(), o); err == nil {
				t.Errorf("Run with %s: no error", name)
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := Run(ctx, opts); err == nil {
			t.Error("Run with a cancelled context: no error")
		}
	})
}

func TestRunQuarantinedTool(t *testing.T) {
	t.Parallel()
	fx := loadFixture(t, "testdata", "policy-a")
	dir := t.TempDir()
	// A schema that declares no "path" cannot carry read_file's path overlay.
	if err := os.WriteFile(filepath.Join(dir, "read_file.json"), []byte(`{"type":"object","properties":{"file":{"type":"string"}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	defs, err := LoadDefinitions(t.Context(), fx.cfg, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	rep := run(t, Options{Config: fx.cfg, Trace: fx.trace, Policy: fx.policy, Definitions: defs, DefaultAgent: "ops-bot"})
	if got := rep.Decisions[2]; got.Effect != "deny" || got.Reason != "quarantined" {
		t.Errorf("mail-1 c2 read_file = %+v, want deny quarantined", got)
	}
	found := false
	for _, w := range rep.Warnings {
		if strings.Contains(w, `tool "read_file" is quarantined`) {
			found = true
		}
	}
	if !found {
		t.Errorf("warnings %q do not say read_file is quarantined", rep.Warnings)
	}
}
