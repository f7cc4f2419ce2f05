package console_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/chaperone-dev/chaperone/internal/chaperonetest"
	"github.com/chaperone-dev/chaperone/internal/cli"
	"github.com/chaperone-dev/chaperone/internal/config"
)

// The browser tests drive the real console in headless Chromium (Debian's chromium
// package). Without it they skip, unless CHAPERONE_REQUIRE_BROWSER is set (as CI sets it),
// in which case they fail. Screenshots of every step are kept under
// $CHAPERONE_TEST_OUTPUT/browser (default: test-output/browser at the repository root).

func chromiumPath() string {
	if p := os.Getenv("CHAPERONE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// startBrowser starts headless Chromium for the test and returns its tab.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath()
	if path == "" {
		if os.Getenv("CHAPERONE_REQUIRE_BROWSER") != "" {
			t.Fatal("CHAPERONE_REQUIRE_BROWSER is set but no Chromium was found: install Debian's chromium package (.ci/run does)")
		}
		t.Skip("skipping browser test: no Chromium found (apt-get install chromium, or set CHAPERONE_CHROMIUM)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox cannot start
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
		// This machine has no internet: keep Chromium from trying.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-proxy-server", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser; no timeout on this first run
		t.Fatalf("start Chromium %s: %v", path, err)
	}
	return ctx
}

// step runs browser actions with a deadline, failing the test with what was being done.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		shot(t, ctx, "failed-"+strings.ReplaceAll(what, " ", "-"))
		t.Fatalf("browser: %s: %v", what, err)
	}
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	s, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("browser: text of %s: %v", sel, err)
	}
	return s
}

func outputDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CHAPERONE_TEST_OUTPUT")
	if dir == "" {
		dir = filepath.Join("..", "..", "test-output")
	}
	dir, err := filepath.Abs(filepath.Join(dir, "browser"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// shot keeps a screenshot of the page as a test artifact.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(outputDir(t), t.Name()+"-"+name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Errorf("screenshot %s: %v", name, err)
	}
}

// a11yProblems lists the controls of the page that a keyboard cannot reach or that have no
// accessible name.
const a11yProblems = `(() => {
  const bad = [];
  const name = (el) => {
    if (el.getAttribute('aria-label')) return el.getAttribute('aria-label');
    const by = el.getAttribute('aria-labelledby');
    if (by) return by.split(/\s+/).map(id => (document.getElementById(id) || {}).textContent || '').join(' ');
    if (el.labels && el.labels.length) return Array.from(el.labels).map(l => l.textContent).join(' ');
    if (el.tagName === 'INPUT' || el.tagName === 'SELECT' || el.tagName === 'TEXTAREA') return '';
    return el.textContent || el.getAttribute('title') || '';
  };
  document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea, summary').forEach(el => {
    if (el.tabIndex < 0 || el.disabled) bad.push('not focusable: ' + el.outerHTML.slice(0, 120));
    else if (!name(el).trim()) bad.push('no accessible name: ' + el.outerHTML.slice(0, 120));
  });
  if (!document.documentElement.lang) bad.push('html has no lang');
  if (!document.querySelector('main h1')) bad.push('no h1 in main');
  return bad;
})()`

func checkA11y(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	bad, err := chromedp.Run(sctx, chromedp.Evaluate[[]string](a11yProblems))
	if err != nil {
		t.Fatalf("accessibility check of %s: %v", page, err)
	}
	for _, b := range bad {
		t.Errorf("%s: %s", page, b)
	}
}

// tabTo presses Tab until the focused element matches the CSS selector: the control is
// reachable from the keyboard.
func tabTo(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	for range 80 {
		step(t, ctx, "press Tab", chromedp.KeyEvent(kb.Tab))
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := chromedp.Run(sctx, chromedp.Evaluate[bool](`document.activeElement && document.activeElement.matches(`+jsString(sel)+`)`))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return
		}
	}
	t.Fatalf("%s cannot be reached with the Tab key", sel)
}

func jsString(s string) string { return "'" + strings.ReplaceAll(s, "'", `\'`) + "'" }

const browserPolicy = `rules:
  - {id: reads, match: {classes: [read]}, effect: allow}
  - {id: payments-need-a-person, match: {tools: [transfer_money]}, effect: approve}
`

func TestConsoleInBrowser(t *testing.T) {
	ctx := startBrowser(t)
	g := chaperonetest.Start(t, chaperonetest.Options{
		Upstreams: []config.Upstream{{Name: "demo", Builtin: "demo"}},
		Tools: []config.Tool{
			{Upstream: "demo", Name: "read_inbox", Class: "read"},
			{Upstream: "demo", Name: "transfer_money", Class: "destructive", Undo: "ask the bank to recall the transfer within 24 hours"},
		},
		Policy: browserPolicy,
		Agents: []string{"finance"},
		Configure: func(c *config.Config) {
			c.Approvals.Enabled = nil
			hold := config.Duration(60 * time.Second)
			c.Approvals.Hold = &hold
		},
	})
	token := g.Daemon.ConsoleSetupToken()
	if token == "" {
		t.Fatal("a fresh gateway printed no console setup token")
	}
	base := g.AdminURL + "/console"
	agent := g.Connect(t, g.Agents["finance"].Token, "2025-11-25")
	payment := func(amount float64) map[string]any {
		return map[string]any{"recipient_iban": "DE02120300000000202051", "amount": amount, "currency": "EUR", "reference": "invoice 7"}
	}
	// call runs an agent's call in the background: a held call waits for the console.
	call := func(tool string, args map[string]any) <-chan *mcp.CallToolResult {
		ch := make(chan *mcp.CallToolResult, 1)
		go func() {
			res, err := agent.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: args})
			if err != nil {
				t.Errorf("agent call %s: %v", tool, err)
			}
			ch <- res
		}()
		return ch
	}
	await := func(ch <-chan *mcp.CallToolResult, what string) *mcp.CallToolResult {
		select {
		case res := <-ch:
			if res == nil {
				t.Fatalf("%s: no result", what)
			}
			return res
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the agent's call did not finish", what)
		}
		return nil
	}

	// Sign in: the console sends a new browser to sign in; the first admin is made with the
	// setup token the gateway printed.
	step(t, ctx, "open the console",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#sign-in")))
	checkA11y(t, ctx, "login")
	step(t, ctx, "create the first admin",
		chromedp.Navigate(base+"/setup"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.SendKeys(chromedp.CSS("#name"), "dana"),
		chromedp.SendKeys(chromedp.CSS("#password"), "a long console password"),
		chromedp.SendKeys(chromedp.CSS("#confirm"), "a long console password"),
		chromedp.Click(chromedp.CSS("#create-admin")),
		chromedp.WaitVisible(chromedp.CSS("#queue-empty")))
	shot(t, ctx, "01-signed-in")
	checkA11y(t, ctx, "approvals (empty)")

	// A held call appears in the open queue by itself (live update, no reload).
	held := call("transfer_money", payment(120))
	step(t, ctx, "see the held call appear", chromedp.WaitVisible(chromedp.CSS("article.approval")))
	preview := text(t, ctx, "article.approval")
	for _, want := range []string{"transfer_money", "finance", "payments-need-a-person", "amount", "ask the bank to recall"} {
		if !strings.Contains(preview, want) {
			t.Errorf("the held call's card lacks %q:\n%s", want, preview)
		}
	}
	shot(t, ctx, "02-held-call")
	checkA11y(t, ctx, "approvals (one held)")

	// Approve it from the keyboard alone; the agent's call then completes.
	tabTo(t, ctx, "button.approve")
	step(t, ctx, "approve with Enter", chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(chromedp.CSS("#flash")))
	if f := text(t, ctx, "#flash"); !strings.Contains(f, "Approved") {
		t.Fatalf("flash after approving: %q", f)
	}
	res := await(held, "approved payment")
	if r := chaperonetest.Refusal(t, res); r != "" || res.IsError {
		t.Fatalf("the approved call was refused (%q) or failed", r)
	}
	if n := len(g.Demo.Transfers()); n != 1 {
		t.Fatalf("%d transfers made after one approval, want 1", n)
	}
	shot(t, ctx, "03-approved")

	// Decline another with a reason.
	held = call("transfer_money", payment(9999))
	step(t, ctx, "see the second held call", chromedp.WaitVisible(chromedp.CSS("article.approval")))
	step(t, ctx, "decline with a reason",
		chromedp.SetValue(chromedp.CSS("article.approval select"), "wrong_amount"),
		chromedp.SendKeys(chromedp.CSS("article.approval input[name=text]"), "invoice says 99.99"),
		chromedp.Click(chromedp.CSS("article.approval button.danger")),
		chromedp.WaitVisible(chromedp.CSS("#queue-empty")))
	res = await(held, "declined payment")
	if r := chaperonetest.Refusal(t, res); r != "approval_denied" {
		t.Fatalf("declined call: refusal %q, want approval_denied", r)
	}
	if h := text(t, ctx, "#history"); !strings.Contains(h, "wrong_amount: invoice says 99.99") || !strings.Contains(h, "dana") {
		t.Errorf("history lacks the decline and its reason:\n%s", h)
	}
	shot(t, ctx, "04-declined")

	// Pull the kill switch for everything: the agent's calls are refused.
	step(t, ctx, "pull the kill switch",
		chromedp.Navigate(base+"/kill"),
		chromedp.WaitVisible(chromedp.CSS("#kill-all")))
	checkA11y(t, ctx, "kill switch")
	step(t, ctx, "confirm and stop all agents",
		chromedp.SendKeys(chromedp.CSS("#all-reason"), "suspicious payments"),
		chromedp.Click(chromedp.CSS("#all-confirm")),
		chromedp.Click(chromedp.CSS("#kill-all")),
		chromedp.WaitVisible(chromedp.CSS("#engaged .engaged")))
	if f := text(t, ctx, "#flash"); !strings.Contains(f, "Kill switch engaged on all") {
		t.Errorf("flash after the kill: %q", f)
	}
	shot(t, ctx, "05-killed")
	res = await(call("read_inbox", map[string]any{}), "call after the kill")
	if r := chaperonetest.Refusal(t, res); r != "killed" {
		t.Fatalf("call after the kill: refusal %q, want killed", r)
	}

	// Open the session in the explorer: the story of its calls.
	step(t, ctx, "open the audit explorer",
		chromedp.Navigate(base+"/audit?agent=finance"),
		chromedp.WaitVisible(chromedp.CSS("#events table")))
	checkA11y(t, ctx, "audit explorer")
	shot(t, ctx, "06-explorer")
	step(t, ctx, "open the session",
		chromedp.Click(chromedp.CSS(`#events a[href^="/console/sessions/"]`)),
		chromedp.WaitVisible(chromedp.CSS("#story li.step")))
	story := text(t, ctx, "#story")
	for _, want := range []string{"transfer_money", "approve", "approval_denied", "killed", "read_inbox"} {
		if !strings.Contains(story, want) {
			t.Errorf("the session story lacks %q:\n%s", want, story)
		}
	}
	checkA11y(t, ctx, "session")
	shot(t, ctx, "07-session")

	// The other pages render and pass the same accessibility checks.
	for _, p := range []struct{ path, ready string }{
		{"/agents", "#agents table"},
		{"/agents/finance", "#agent-status"},
		{"/dashboard", "#fig-calls"},
		{"/policies", "#policy-version"},
		{"/users", "#add-user"},
	} {
		step(t, ctx, "open "+p.path, chromedp.Navigate(base+p.path), chromedp.WaitVisible(chromedp.CSS(p.ready)))
		checkA11y(t, ctx, p.path)
		shot(t, ctx, "08"+strings.ReplaceAll(p.path, "/", "-"))
		if p.path == "/dashboard" {
			if n := text(t, ctx, "#fig-calls"); n == "0" || n == "" {
				t.Errorf("the dashboard counts %q calls after four", n)
			}
		}
	}
	// The evidence report over the same log, read while the gateway runs, renders in the
	// browser too: a decision letter for the approval, the kill with its time to contain.
	out := filepath.Join(outputDir(t), "report")
	var stdout, stderr strings.Builder
	if code := cli.Run(context.Background(), []string{"report", "--db", g.Config.Store.SQLite, "--from", "1h", "--out", out}, &stdout, &stderr); code != 0 {
		t.Fatalf("chaperone report: exit %d: %s%s", code, stdout.String(), stderr.String())
	}
	step(t, ctx, "open the report", chromedp.Navigate("file://"+filepath.Join(out, "report.html")), chromedp.WaitVisible(chromedp.CSS("h1")))
	body := text(t, ctx, "body")
	for _, want := range []string{"dana approved", "transfer_money", "wrong_amount", "suspicious payments", "ask the bank to recall"} {
		if !strings.Contains(body, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	shot(t, ctx, "09-report")
}
