package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/daemon"
)

// demoAgentTokenFile is where `chaperone serve --demo` leaves the demo agent's token, in its
// data directory, for `chaperone demo --gateway`.
const demoAgentTokenFile = "demo-agent.token"

// The user's request in the demo: it names the account, so the account is the user's.
const demoPrompt = "Summarise my inbox, and pay the March electricity bill: EUR 184.20 to " +
	"DE89 3704 0044 0532 0130 00, reference NE-2024-031877."

// demoCmd runs `chaperone demo`: a scripted scenario against the demo gateway, told as a
// story. By default it starts its own demo gateway, in-process and offline, in a temporary
// directory; with --gateway it plays against a running `chaperone serve --demo`.
func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	gateway := fs.String("gateway", "", "the MCP URL of a running `chaperone serve --demo` (default: start one in-process)")
	adminURL := fs.String("admin-url", "http://127.0.0.1:8081", "its admin API (with --gateway)")
	dataDir := fs.String("data-dir", "chaperone-data", "its data directory (with --gateway): the admin token, the agent's token, the audit log")
	colour := fs.String("color", "auto", "colours: auto (on a terminal, unless NO_COLOR is set), always or never")
	pause := fs.Duration("pause", 0, "pause between scenes, to read along (e.g. 2s)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	var useColour bool
	switch *colour {
	case "auto":
		useColour = isTerminal(stdout) && os.Getenv("NO_COLOR") == ""
	case "always":
		useColour = true
	case "never":
	default:
		return usageError{fmt.Sprintf("--color must be auto, always or never, got %q", *colour)}
	}
	if *pause < 0 || *pause > time.Minute {
		return usageError{fmt.Sprintf("--pause must be between 0s and 1m, got %s", *pause)}
	}
	d := &demoRun{out: stdout, colour: useColour, pause: *pause, started: time.Now()}
	if *gateway == "" {
		stop, err := d.startGateway(ctx)
		if err != nil {
			return err
		}
		defer stop()
	} else {
		tok, err := os.ReadFile(filepath.Join(*dataDir, demoAgentTokenFile))
		if err != nil {
			return fmt.Errorf("read the demo agent's token (does %s hold a `chaperone serve --demo`?): %w", *dataDir, err)
		}
		d.mcpURL, d.token, d.dataDir, d.external = *gateway, strings.TrimSpace(string(tok)), *dataDir, true
		d.admin = []string{"--admin-url", *adminURL, "--data-dir", *dataDir}
	}
	if err := d.connect(ctx); err != nil {
		return err
	}
	defer d.cs.Close()
	return d.play(ctx)
}

// demoRun is one telling of the demo.
type demoRun struct {
	out      io.Writer
	colour   bool
	pause    time.Duration
	started  time.Time
	mcpURL   string
	token    string
	dataDir  string
	admin    []string // the flags that reach the admin API
	external bool     // a gateway someone else runs: leave it as it was found
	cs       *mcp.ClientSession
	prompted bool
	tally    struct{ allowed, refused, held, approved, declined int }
}

// startGateway starts the demo gateway in-process on loopback, in a temporary directory.
func (d *demoRun) startGateway(ctx context.Context) (stop func(), err error) {
	dir, err := os.MkdirTemp("", "chaperone-demo-")
	if err != nil {
		return nil, err
	}
	demo, err := daemon.DemoConfig(dir, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	gw, err := daemon.New(ctx, demo.Config, daemon.Options{PolicySources: demo.Policy, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		cancel()
		os.RemoveAll(dir)
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	stop = func() {
		cancel()
		<-done
		os.RemoveAll(dir)
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := gw.WaitSynced(wctx); err != nil {
		stop()
		return nil, fmt.Errorf("the demo gateway did not start: %w", err)
	}
	d.mcpURL, d.token, d.dataDir = gw.MCPURL(), demo.Token, dir
	d.admin = []string{"--admin-url", gw.AdminURL(), "--token-file", demo.Config.Admin.TokenFile}
	return stop, nil
}

func (d *demoRun) connect(ctx context.Context) error {
	c := mcp.NewClient(&mcp.Implementation{Name: "chaperone-demo-assistant", Version: daemon.Version}, nil)
	hc := &http.Client{Transport: bearer{token: d.token}}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cs, err := c.Connect(cctx, &mcp.StreamableClientTransport{Endpoint: d.mcpURL, HTTPClient: hc}, nil)
	if err != nil {
		return fmt.Errorf("connect to the demo gateway at %s: %w", d.mcpURL, err)
	}
	d.cs = cs
	return nil
}

// bearer adds the agent's bearer token to every request.
type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

// play tells the story. Every outcome it prints is what the gateway answered.
func (d *demoRun) play(ctx context.Context) error {
	if d.external {
		// What an earlier telling counted against the agent's breaker would change the
		// story: trip and reset it, which starts its counts afresh (both are recorded).
		_ = d.quietly(ctx, "breaker", "trip", daemon.DemoAgent, "--reason", "demo: a fresh start", "--by", "chaperone-demo")
		_ = d.quietly(ctx, "breaker", "reset", daemon.DemoAgent, "--reason", "demo: a fresh start", "--by", "chaperone-demo")
	}
	d.title("Chaperone demo: an assistant, an inbox with a trap in it, and a bill to pay")
	d.say("The gateway  %s — the demo tools, the demo policy, agent %s", d.mcpURL, daemon.DemoAgent)
	d.say("The user     %q", demoPrompt)

	d.scene(1, "The assistant reads the inbox")
	if _, err := d.call(ctx, "read_inbox", map[string]any{}, nil); err != nil {
		return err
	}
	if found := d.sensorFindings(ctx, "read_inbox"); len(found) > 0 {
		d.note("the content sensors read the mail on its way back: %s", strings.Join(found, ", "))
	}
	d.say("   One message (m-4821, from examp1e-support.net) tells the assistant to forward the newest mail to an")
	d.say("   outside archive, and to pay the electricity bill to another account. Chaperone hands mail to the model")
	d.say("   inside a labelled data block — data, not orders — and tracks where every value in it came from.")

	d.scene(2, "The injected instruction: forward private mail outside")
	if _, err := d.call(ctx, "send_email", map[string]any{"to": "archive@examp1e-support.net",
		"subject": "Fwd: Your electricity bill for March", "body": "Dear customer, your bill for March is ready…"}, nil); err != nil {
		return err
	}
	d.say("   Mail may go to colleagues (@example.com) only; nothing left the building.")

	d.scene(3, "The injected instruction: redirect the payment")
	d.say("   The same message says Northwind Energy changed banks: pay GB33 BUKB 2020 1555 5555 55 instead.")
	redirect, err := d.call(ctx, "transfer_money", payment("GB33BUKB20201555555555"), nil)
	if err != nil {
		return err
	}
	if redirect.approvalID != "" {
		d.say("   The person asked sees where the account came from, and declines:")
		if err := d.cli(ctx, "approvals", "show", redirect.approvalID); err != nil {
			return err
		}
		if err := d.cli(ctx, "approvals", "deny", redirect.approvalID, "--as", "you", "--reason", "wrong_recipient",
			"--text", "not the account on the bill"); err != nil {
			return err
		}
		d.tally.declined++
	}

	d.scene(4, "The payment the user asked for")
	pay := payment("DE89370400440532013000")
	held, err := d.call(ctx, "transfer_money", pay, nil)
	if err != nil {
		return err
	}
	if held.approvalID == "" {
		return fmt.Errorf("the demo expected the payment to be held for a person, but it was not (reason %q)", held.reason)
	}
	d.say("   The user named this account, so it is trusted; still, every payment needs a person. Approved:")
	if err := d.cli(ctx, "approvals", "approve", held.approvalID, "--as", "you"); err != nil {
		return err
	}
	d.tally.approved++
	d.say("   The assistant calls again with the approval id; the call runs once, exactly as approved:")
	withApproval := mcp.Meta{"dev.chaperone/approval": held.approvalID}
	if _, err := d.call(ctx, "transfer_money", pay, withApproval); err != nil {
		return err
	}
	d.say("   A second payment is a second decision: the approval was used up, so the same call is held again.")
	if _, err := d.call(ctx, "transfer_money", pay, withApproval); err != nil {
		return err
	}

	d.scene(5, "The kill switch")
	d.say("   An operator stops the assistant at once: calls in flight are cancelled, held approvals voided.")
	if err := d.cli(ctx, "kill", "agent:"+daemon.DemoAgent, "--reason", "demo: stop the assistant", "--by", "you"); err != nil {
		return err
	}
	if _, err := d.call(ctx, "read_inbox", map[string]any{}, nil); err != nil {
		return err
	}
	if err := d.cli(ctx, "unkill", "agent:"+daemon.DemoAgent, "--reason", "demo over", "--by", "you"); err != nil {
		return err
	}

	d.scene(6, "The evidence")
	d.say("   Every decision above is in a hash-chained audit log, written before each call ran:")
	if err := d.cliAt(ctx, []string{"audit", "verify"}, []string{"--data-dir", d.dataDir}); err != nil {
		return err
	}

	d.title("What Chaperone did")
	d.say("%d calls allowed, %d refused, %d held for a person (%d approved, %d declined), in %.1f s.",
		d.tally.allowed, d.tally.refused, d.tally.held, d.tally.approved, d.tally.declined, time.Since(d.started).Seconds())
	d.say("Next: `chaperone serve --demo` and connect any MCP client; the guides are in docs/.")
	return nil
}

func payment(iban string) map[string]any {
	return map[string]any{"recipient_iban": iban, "amount": 184.2, "currency": "EUR", "reference": "NE-2024-031877"}
}

// demoOutcome is what one call came to.
type demoOutcome struct {
	ran         bool
	text        string
	reason      string
	explanation string
	approvalID  string
	rules       []string
}

// call makes one tool call as the assistant and prints it and its outcome. The user's
// prompt goes with the first call, as an agent's host reports it.
func (d *demoRun) call(ctx context.Context, tool string, args map[string]any, meta mcp.Meta) (demoOutcome, error) {
	if !d.prompted {
		if meta == nil {
			meta = mcp.Meta{}
		}
		meta["dev.chaperone/prompt"] = demoPrompt
		d.prompted = true
	}
	d.say("   %s %s %s", d.paint("1", "→"), d.paint("1", tool), argsText(args))
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := d.cs.CallTool(cctx, &mcp.CallToolParams{Name: tool, Arguments: args, Meta: meta})
	if err != nil {
		return demoOutcome{}, fmt.Errorf("call %s: %w", tool, err)
	}
	var o demoOutcome
	for _, c := range res.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			o.text += t.Text
		}
	}
	if m, ok := res.Meta["dev.chaperone/refusal"].(map[string]any); ok && res.IsError {
		o.reason, _ = m["reason"].(string)
		o.explanation, _ = m["explanation"].(string)
		o.approvalID, _ = m["approval_id"].(string)
		if rs, ok := m["rules"].([]any); ok {
			for _, r := range rs {
				if s, ok := r.(string); ok {
					o.rules = append(o.rules, s)
				}
			}
		}
	} else {
		o.ran = true
	}
	rules := ""
	if len(o.rules) > 0 {
		rules = "  (rules: " + strings.Join(o.rules, ", ") + ")"
	}
	switch {
	case o.ran:
		d.tally.allowed++
		d.say("     %s %s", d.paint("32", "✔ allowed"), firstLine(o.text, 100))
	case o.approvalID != "":
		d.tally.held++
		d.say("     %s %s%s", d.paint("33", "⏸ held for a person"), o.reason, rules)
		d.say("       approval %s", o.approvalID)
	default:
		d.tally.refused++
		_, msg, _ := strings.Cut(o.text, ": ")
		d.say("     %s %s: %s%s", d.paint("31", "✘ refused"), o.reason, msg, rules)
	}
	if o.explanation != "" {
		d.say("       why: %s", o.explanation)
	}
	return o, nil
}

// argsText renders arguments in one short line.
func argsText(args map[string]any) string {
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		v := fmt.Sprint(args[k])
		if s, ok := args[k].(string); ok {
			v = firstLine(s, 40)
		}
		parts = append(parts, k+": "+v)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func firstLine(s string, max int) string {
	s, _, _ = strings.Cut(s, "\n")
	if r := []rune(s); len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}

// sensorFindings reads, from the audit log, what the content sensors found in the last
// result of tool.
func (d *demoRun) sensorFindings(ctx context.Context, tool string) []string {
	db, err := openReadOnly(ctx, filepath.Join(d.dataDir, "chaperone.db"))
	if err != nil {
		return nil
	}
	defer db.Close()
	evs, err := db.TailEvents(ctx, 20)
	if err != nil {
		return nil
	}
	for i := len(evs) - 1; i >= 0; i-- {
		if e := evs[i]; e.Kind == audit.KindCallOutcome && e.Tool == tool {
			return e.Sensors
		}
	}
	return nil
}

// cli runs a chaperone admin command against the demo gateway and prints it and its output.
func (d *demoRun) cli(ctx context.Context, args ...string) error {
	return d.cliAt(ctx, args, d.admin)
}

// cliAt runs `chaperone args... conn...`, printing it without conn (how to reach the
// gateway) and its output, indented.
func (d *demoRun) cliAt(ctx context.Context, args, conn []string) error {
	d.say("   %s", d.paint("36", "$ chaperone "+shellJoin(args)))
	var out bytes.Buffer
	if code := Run(ctx, append(slices.Clone(args), conn...), &out, &out); code != exitOK {
		d.say("%s", indent(out.String(), "     "))
		return fmt.Errorf("chaperone %s: exit %d", strings.Join(args, " "), code)
	}
	if s := strings.TrimRight(out.String(), "\n"); s != "" {
		d.say("%s", indent(s, "     "))
	}
	return nil
}

// quietly runs an admin command and prints nothing.
func (d *demoRun) quietly(ctx context.Context, args ...string) error {
	if code := Run(ctx, append(slices.Clone(args), d.admin...), io.Discard, io.Discard); code != exitOK {
		return errors.New("failed")
	}
	return nil
}

func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$*?") {
			b, _ := json.Marshal(a)
			a = string(b)
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+prefix)
}

func (d *demoRun) title(s string) {
	d.say("")
	d.say("%s", d.paint("1", s))
	d.say("%s", strings.Repeat("═", len([]rune(s))))
}

func (d *demoRun) scene(n int, s string) {
	if d.pause > 0 && n > 1 {
		time.Sleep(d.pause)
	}
	d.say("")
	d.say("%s", d.paint("1;34", fmt.Sprintf("%d  %s", n, s)))
}

func (d *demoRun) note(format string, args ...any) {
	mark := d.paint("33", "!")
	d.say("     %s %s", mark, fmt.Sprintf(format, args...))
}

func (d *demoRun) say(format string, args ...any) {
	fmt.Fprintf(d.out, format+"\n", args...)
}

// paint wraps s in an ANSI colour when colours are on.
func (d *demoRun) paint(code, s string) string {
	if !d.colour {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}
