// Package cli implements the subcommands of `chaperone`. [Run] is the whole command line:
// main only calls it and exits with its status.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/chaperone-dev/chaperone/internal/buildinfo"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/daemon"
	"github.com/chaperone-dev/chaperone/internal/identity"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1 // the command ran and found a problem (a broken chain, a failed check)
	exitUsage = 2
)

const usage = `chaperone — a zero-trust gateway for AI agents' tool calls

Usage:
  chaperone serve --demo [--data-dir DIR]     run the demo gateway (built-in tools, agent, policy)
  chaperone serve --config chaperone.yaml     run a configured gateway
  chaperone demo [--gateway URL --data-dir DIR] [--color auto|always|never] [--pause 2s]
                                              the guided attack demo: an injected inbox, a redirected payment,
                                              an approval, the kill switch and the audit chain, as a story
  chaperone config check --config FILE        validate a configuration and print it, redacted
  chaperone config schema [--out FILE]        print the configuration's JSON Schema, for editors and CI
  chaperone init --preset NAME [--dir DIR] [--force]
                                              write a starter chaperone.yaml, its schema, a policy and its tests
                                              (presets: minimal, mail-and-payments, http-upstream)
  chaperone token new                         make an agent bearer token and its hash for the config
  chaperone tools list                        show the tool registry and each tool's state
  chaperone tools diff NAME [--json]          what a tool's upstream offers now against what was approved
  chaperone tools approve NAME --by WHO [--hash H] [--accept-findings]
                                              pin the definition you reviewed (refused if it changed since)
  chaperone tools manifest (--upstream U | TOOL...) [--publisher P] [--out F]
                                              write a manifest of tools as offered now, to review and sign
  chaperone tools sign MANIFEST --key KEY     sign a tool manifest (writes MANIFEST.sig)
  chaperone tools verify MANIFEST (--config F | --trusted KEY.pub)
                                              check a manifest's signature as the gateway will
  chaperone policy reload                     recompile the policy files in a running gateway
  chaperone policy shadow                     what the rules in shadow mode would have changed
  chaperone policy lint [--config F] [PATH]   rules that never match, shadowed rules, unknown tools and arguments
  chaperone policy test [DIR] [--junit F]     run the policy test suites (*_test.yaml) next to the policies
  chaperone policy bundle PATH... --out F [--key KEY]
                                              package policy files as a content-addressed bundle, signed
  chaperone policy sign BUNDLE --key KEY      add a signature (promotion): the content and hash stay
  chaperone policy verify BUNDLE (--config F | --trusted KEY.pub)
                                              check a bundle's hash and signature as the gateway will
  chaperone agent register --id ID --owner EMAIL --env dev|test|prod --capabilities a,b
      [--purpose TEXT] [--autonomy 0-3] [--label k=v ...] (--public-key FILE | --secret)
                                              register an agent (a secret is shown only once)
  chaperone agent list                        show every agent and its status
  chaperone agent show ID                     show one agent
  chaperone agent suspend|revoke ID --reason TEXT --by WHO
                                              stop an agent at once (revocation is final)
  chaperone agent resume ID --by WHO          make a suspended agent active again
  chaperone agent autonomy ID [--level N --by WHO [--force]]
                                              an agent's autonomy level and promotion eligibility; set it
  chaperone task list [--all]                 show open tasks (--all: also recently closed)
  chaperone task end ID --by WHO [--reason TEXT]
                                              end a task: every token bound to it stops working
  chaperone approvals list [--status S] [--tool T]
                                              held calls waiting for a person (or decided ones)
  chaperone approvals show ID                 the preview of one held call: arguments, risk, flow
  chaperone approvals approve ID --as NAME    approve a held call (it runs once, unchanged)
  chaperone approvals deny ID --as NAME --reason CODE [--text TEXT]
                                              decline a held call
  chaperone approvals stats [--since 24h]     approval rate and latency per tool, decline reasons
  chaperone task budget ID                    a task's steps, spend and tokens against their bounds
  chaperone kill SCOPE --reason TEXT [--by WHO]
                                              stop everything in SCOPE at once: all, agent:ID, user:ID,
                                              task:ID, tool:NAME or upstream:NAME (calls in flight are
                                              cancelled, held approvals and tokens voided)
  chaperone unkill SCOPE --reason TEXT [--by WHO]
                                              lift a kill switch (what it voided stays void)
  chaperone kills [--all]                     the kill switches engaged (--all: ever pulled)
  chaperone breaker list                      agents whose circuit breaker has tripped
  chaperone breaker show AGENT                an agent's breaker and its triggers' totals
  chaperone breaker reset|trip AGENT --reason TEXT [--by WHO]
                                              close a tripped breaker, or trip one by hand
  chaperone keys list                         show the token signing keys
  chaperone keys rotate                       start signing tokens with a new key
  chaperone keys generate --out PREFIX        make an Ed25519 key pair for signing manifests and bundles
  chaperone secrets set NAME [--from-file F | --from-env VAR] [--description S]
                                              store an upstream credential, sealed; the value comes from
                                              standard input (or F, or VAR), never from an argument
  chaperone secrets list                      the stored secrets: names, versions, keys (never a value)
  chaperone secrets delete NAME               delete a stored secret
  chaperone secrets rotate                    re-encrypt every secret under the key file's first key
  chaperone secrets keygen --id ID            print a new key line for the secrets key file (no API call)
  chaperone replay --config F --trace T.jsonl  re-run recorded sessions through the pipeline (--diff DIR)
  chaperone audit verify [--data-dir DIR] [--key PUB] [--checkpoints FILE] [--from CP]
                                              check the audit log's chain and signed checkpoints, offline
  chaperone audit tail [-n N] [--data-dir DIR] show the latest audit events
  chaperone audit export --format jsonl|trace|ocsf [--from T] [--to T] [--agent A] [--task T]
                         [--decision D] [--kind K] [--since SEQ] [--out F] [--data-dir DIR]
                                              export events (JSON Lines, a replay trace, OCSF), secrets removed
  chaperone report --from T [--to T] --out DIR [--config F | --db FILE|URL] [--key PUB ...] [--title S]
                                              write the evidence report of a window (report.json, report.html)
  chaperone sensors eval --corpus FILE        measure a content sensor on a labelled JSONL corpus
  chaperone sensors train --corpus FILE --out MODEL
                                              train the injection model (reproducibly) from labelled rows
  chaperone sensors scan [--file F] [--json]  run every content sensor on a text and show what they find
  chaperone migrate [--config F | --db FILE|URL] [--status]
                                              apply the store's schema migrations (--status: show them)
  chaperone bench [--sessions 8,32] [--rate 500] [--duration 5s] [--rounds 3] [--target URL --token-file F]
                                              load through Chaperone (and --target) and straight to the same
                                              upstream, in one run: throughput, p50..p99.9, CPU per call
  chaperone bench memory [--sessions 10000] [--soak 1m]
                                              heap per idle and active session, RSS, memory over a soak
  chaperone bench upstream [--listen ADDR]    the harness's upstream alone, for another gateway to front
  chaperone mcp stdio --url URL [--token-file F] [--insecure-http]
                                              serve MCP on stdio for clients that only launch local servers,
                                              relaying to the gateway at URL (token: F or $CHAPERONE_TOKEN)
  chaperone completion bash|zsh|fish          print a shell completion script (docs/packaging.md)
  chaperone version [--json]                  this build's version, commit, date, Go version and platform

Run 'chaperone COMMAND -h' for a command's flags.
`

// Run runs the command line args and returns the exit status.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, rest, stdout, stderr)
	case "demo":
		err = demoCmd(ctx, rest, stdout, stderr)
	case "config":
		err = sub(rest, map[string]func([]string) error{
			"check":  func(a []string) error { return configCheck(a, stdout, stderr) },
			"schema": func(a []string) error { return configSchema(a, stdout, stderr) },
		})
	case "init":
		err = initCmd(rest, stdout, stderr)
	case "token":
		err = sub(rest, map[string]func([]string) error{
			"new": func(a []string) error { return tokenNew(a, stdout, stderr) },
		})
	case "tools":
		err = sub(rest, map[string]func([]string) error{
			"list":     func(a []string) error { return toolsList(ctx, a, stdout, stderr) },
			"approve":  func(a []string) error { return toolsApprove(ctx, a, stdout, stderr) },
			"diff":     func(a []string) error { return toolsDiff(ctx, a, stdout, stderr) },
			"manifest": func(a []string) error { return toolsManifest(ctx, a, stdout, stderr) },
			"sign":     func(a []string) error { return toolsSign(a, stdout, stderr) },
			"verify":   func(a []string) error { return toolsVerify(a, stdout, stderr) },
		})
	case "policy":
		err = sub(rest, map[string]func([]string) error{
			"reload": func(a []string) error { return policyReload(ctx, a, stdout, stderr) },
			"shadow": func(a []string) error { return policyShadow(ctx, a, stdout, stderr) },
			"lint":   func(a []string) error { return policyLint(ctx, a, stdout, stderr) },
			"test":   func(a []string) error { return policyTest(ctx, a, stdout, stderr) },
			"bundle": func(a []string) error { return policyBundle(a, stdout, stderr) },
			"sign":   func(a []string) error { return policySign(a, stdout, stderr) },
			"verify": func(a []string) error { return policyVerify(a, stdout, stderr) },
		})
	case "agent":
		err = sub(rest, map[string]func([]string) error{
			"register": func(a []string) error { return agentRegister(ctx, a, stdout, stderr) },
			"list":     func(a []string) error { return agentList(ctx, a, stdout, stderr) },
			"show":     func(a []string) error { return agentShow(ctx, a, stdout, stderr) },
			"suspend":  func(a []string) error { return agentStatus("suspend")(ctx, a, stdout, stderr) },
			"resume":   func(a []string) error { return agentStatus("resume")(ctx, a, stdout, stderr) },
			"revoke":   func(a []string) error { return agentStatus("revoke")(ctx, a, stdout, stderr) },
			"autonomy": func(a []string) error { return agentAutonomy(ctx, a, stdout, stderr) },
		})
	case "approvals":
		err = sub(rest, map[string]func([]string) error{
			"list":    func(a []string) error { return approvalsList(ctx, a, stdout, stderr) },
			"show":    func(a []string) error { return approvalsShow(ctx, a, stdout, stderr) },
			"approve": func(a []string) error { return approvalsDecide(true)(ctx, a, stdout, stderr) },
			"deny":    func(a []string) error { return approvalsDecide(false)(ctx, a, stdout, stderr) },
			"stats":   func(a []string) error { return approvalsStats(ctx, a, stdout, stderr) },
		})
	case "task":
		err = sub(rest, map[string]func([]string) error{
			"list":   func(a []string) error { return taskList(ctx, a, stdout, stderr) },
			"end":    func(a []string) error { return taskEnd(ctx, a, stdout, stderr) },
			"budget": func(a []string) error { return taskBudget(ctx, a, stdout, stderr) },
		})
	case "kill":
		err = killCmd(false)(ctx, rest, stdout, stderr)
	case "unkill":
		err = killCmd(true)(ctx, rest, stdout, stderr)
	case "kills":
		err = killsList(ctx, rest, stdout, stderr)
	case "breaker":
		err = sub(rest, map[string]func([]string) error{
			"list":  func(a []string) error { return breakerList(ctx, a, stdout, stderr) },
			"show":  func(a []string) error { return breakerShow(ctx, a, stdout, stderr) },
			"reset": func(a []string) error { return breakerSet(false)(ctx, a, stdout, stderr) },
			"trip":  func(a []string) error { return breakerSet(true)(ctx, a, stdout, stderr) },
		})
	case "keys":
		err = sub(rest, map[string]func([]string) error{
			"list":     func(a []string) error { return keysList(ctx, a, stdout, stderr) },
			"rotate":   func(a []string) error { return keysRotate(ctx, a, stdout, stderr) },
			"generate": func(a []string) error { return keysGenerate(a, stdout, stderr) },
		})
	case "secrets":
		err = sub(rest, map[string]func([]string) error{
			"set":    func(a []string) error { return secretsSet(ctx, a, os.Stdin, stdout, stderr) },
			"list":   func(a []string) error { return secretsList(ctx, a, stdout, stderr) },
			"delete": func(a []string) error { return secretsDelete(ctx, a, stdout, stderr) },
			"rotate": func(a []string) error { return secretsRotate(ctx, a, stdout, stderr) },
			"keygen": func(a []string) error { return secretsKeygen(a, stdout, stderr) },
		})
	case "audit":
		err = sub(rest, map[string]func([]string) error{
			"verify": func(a []string) error { return auditVerify(ctx, a, stdout, stderr) },
			"tail":   func(a []string) error { return auditTail(ctx, a, stdout, stderr) },
			"export": func(a []string) error { return auditExport(ctx, a, stdout, stderr) },
		})
	case "report":
		err = repCommand(ctx, rest, stdout, stderr)
	case "replay":
		err = replayCmd(ctx, rest, stdout, stderr)
	case "sensors":
		err = sub(rest, map[string]func([]string) error{
			"eval":  func(a []string) error { return sensorsEval(a, stdout, stderr) },
			"train": func(a []string) error { return sensorsTrain(a, stdout, stderr) },
			"scan":  func(a []string) error { return sensorsScan(a, os.Stdin, stdout, stderr) },
		})
	case "migrate":
		err = migrate(ctx, rest, stdout, stderr)
	case "bench":
		err = benchCmd(ctx, rest, stdout, stderr)
	case "mcp":
		err = sub(rest, map[string]func([]string) error{
			"stdio": func(a []string) error { return mcpStdio(ctx, a, os.Stdin, stdout, stderr) },
		})
	case "completion":
		err = completionCmd(rest, stdout, stderr)
	case "version":
		err = versionCmd(rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "chaperone: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
	var ue usageError
	var fe failError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errParseOnly):
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "chaperone %s: %v\n", cmd, err)
		return exitUsage
	case errors.As(err, &fe):
		return exitFail
	default:
		fmt.Fprintf(stderr, "chaperone %s: %v\n", cmd, err)
		return exitFail
	}
}

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// failError reports a failure already explained on the output.
type failError struct{}

func (failError) Error() string { return "failed" }

func sub(args []string, cmds map[string]func([]string) error) error {
	if len(args) == 0 {
		return usageError{"missing subcommand"}
	}
	f, ok := cmds[args[0]]
	if !ok {
		return usageError{fmt.Sprintf("unknown subcommand %q", args[0])}
	}
	return f(args[1:])
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string, maxArgs int) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > maxArgs {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(maxArgs))}
	}
	if parseOnly.Load() {
		return errParseOnly
	}
	return nil
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	cfgPath := fs.String("config", "", "configuration file")
	demoMode := fs.Bool("demo", false, "run the built-in demo: demo tools, a demo agent and the demo policy")
	dataDir := fs.String("data-dir", "chaperone-data", "data directory (with --demo)")
	listen := fs.String("listen", "127.0.0.1:8080", "MCP listen address (with --demo)")
	adminListen := fs.String("admin-listen", "127.0.0.1:8081", `admin API listen address, or "off" (with --demo)`)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if (*cfgPath == "") == !*demoMode {
		return usageError{"give exactly one of --config FILE or --demo"}
	}
	var (
		cfg   *config.Config
		opts  daemon.Options
		token string
		err   error
	)
	if *demoMode {
		d, err := daemon.DemoConfig(*dataDir, *listen, *adminListen)
		if err != nil {
			return err
		}
		cfg, token, opts.PolicySources = d.Config, d.Token, d.Policy
	} else if cfg, err = config.Load(*cfgPath); err != nil {
		return err
	} else {
		opts.ConfigPath = *cfgPath
	}
	opts.Logger = newLogger(cfg.Log, stderr)
	slog.SetDefault(opts.Logger)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d, err := daemon.New(ctx, cfg, opts)
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if _, err := d.ReloadPolicy(ctx); err != nil {
					opts.Logger.Error("policy reload rejected; the old policy stays", "err", err)
				}
			}
		}
	}()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	// Announce once the upstreams' tools are known, so the first calls find them; an upstream
	// that is slow to start is reported, not waited for forever.
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	if err := d.WaitSynced(wctx); err != nil && ctx.Err() == nil {
		opts.Logger.Warn("serving before every upstream was reached", "err", err)
	}
	wcancel()
	if *demoMode {
		// `chaperone demo --gateway` plays as the demo agent: it finds the token here.
		if err := os.WriteFile(filepath.Join(cfg.DataDir, demoAgentTokenFile), []byte(token+"\n"), 0o600); err != nil {
			return fmt.Errorf("write the demo agent's token: %w", err)
		}
		printDemo(stdout, d, cfg, token)
	} else {
		fmt.Fprintf(stdout, "chaperone %s serving MCP at %s\n", daemon.Version, d.MCPURL())
	}
	return <-done
}

func printDemo(w io.Writer, d *daemon.Daemon, cfg *config.Config, token string) {
	fmt.Fprintf(w, `Chaperone demo gateway is running.

  MCP endpoint   %s
  Agent          %s
  Bearer token   %s
  Admin API      %s (token in %s)
  Data           %s

Try it:
  # list the tools the demo agent may see
  curl -s %s -H 'Authorization: Bearer %s' \
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -d '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
  # a call the policy allows, and one it denies
  ... -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/srv/demo/bills/march.txt"}}}'
  ... -d '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"send_email","arguments":{"to":"someone@elsewhere.net","subject":"hi","body":"x"}}}'
  # what was decided, and proof the record is intact
  chaperone audit tail --data-dir %s
  chaperone audit verify --data-dir %s

Any MCP client works: point it at the endpoint with the header "Authorization: Bearer <token>".
The demo agent's token is a static one from the configuration; agents you register get
short-lived task tokens instead (chaperone agent register --help, and docs/identity.md).
Press Ctrl-C to stop.
`, d.MCPURL(), daemon.DemoAgent, token, d.AdminURL(), cfg.Admin.TokenFile, cfg.DataDir,
		d.MCPURL(), token, cfg.DataDir, cfg.DataDir)
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	o := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

func configCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("config check", stderr)
	cfgPath := fs.String("config", "chaperone.yaml", "configuration file")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	version, signer, err := daemon.CheckConfig(cfg)
	if err != nil {
		return err
	}
	b, err := cfg.Redacted().Marshal()
	if err != nil {
		return err
	}
	if signer != "" {
		signer = ", signed by " + signer
	}
	fmt.Fprintf(stdout, "# %s is valid; policy %s%s; effective configuration (secrets redacted):\n%s", *cfgPath, version, signer, b)
	return nil
}

func tokenNew(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("token new", stderr)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	tok, sha := identity.NewToken()
	fmt.Fprintf(stdout, "token:        %s\ntoken_sha256: %s\n\nGive the token to the agent (it is shown only now); put token_sha256 in the agent's entry in the configuration.\n", tok, sha)
	return nil
}

// dataDirFlags adds --data-dir and --db and returns the database path they select.
func dataDirFlags(fs *flag.FlagSet) func() string {
	_, db := dataDirAndDB(fs)
	return db
}

// dataDirAndDB is dataDirFlags for commands that read other files of the data directory
// too: it also returns the directory flag.
func dataDirAndDB(fs *flag.FlagSet) (*string, func() string) {
	dataDir := fs.String("data-dir", "chaperone-data", "data directory")
	db := fs.String("db", "", "SQLite database file (default <data-dir>/chaperone.db), or the postgres:// URL of a replicated gateway's database")
	return dataDir, func() string {
		if *db != "" {
			return *db
		}
		return filepath.Join(*dataDir, "chaperone.db")
	}
}

// versionCmd is `chaperone version [--json]`: the build information of this binary.
func versionCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", stderr)
	asJSON := fs.Bool("json", false, "print the build information as JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	info := buildinfo.Get()
	if *asJSON {
		fmt.Fprintf(stdout, "%s\n", info.JSON())
		return nil
	}
	fmt.Fprintln(stdout, info.String())
	return nil
}
