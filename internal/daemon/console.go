package daemon

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net/http"
	"time"

	"github.com/chaperone-dev/chaperone/internal/api"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/console"
	"github.com/chaperone-dev/chaperone/internal/console/oidc"
)

// buildConsole makes the operator console on the admin listener, or nil when it is off.
// With no console user stored yet it makes a one-time setup token and prints it.
func (d *Daemon) buildConsole(ctx context.Context, apiOpts api.Options) (*console.Console, error) {
	cc := d.cfg.Console
	public := cc.PublicURL
	if public == "" {
		public = d.AdminURL()
	}
	opts := console.Options{
		API: apiOpts, Store: d.store.Console(), Events: d.store, PublicURL: public,
		SessionTTL: cc.SessionTTL.D(), IdleTimeout: cc.IdleTimeout.D(),
		Done: d.stopping, Logger: d.log.With("component", "console"),
		Verify: d.verifyChain,
	}
	if o := cc.OIDC; o != nil {
		secret, err := o.ClientSecret()
		if err != nil {
			return nil, err
		}
		client, err := oidc.New(oidc.Config{Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: secret,
			RedirectURL: public + console.Prefix + "/oidc/callback", Scopes: o.Scopes, GroupsClaim: o.GroupsClaim})
		if err != nil {
			return nil, fmt.Errorf("console.oidc: %w", err)
		}
		opts.OIDC = &console.OIDC{Client: client, Roles: map[console.Role][]string{
			console.RoleViewer: o.Roles.Viewer, console.RoleApprover: o.Roles.Approver,
			console.RoleOperator: o.Roles.Operator, console.RoleAdmin: o.Roles.Admin,
		}}
	}
	users, err := d.store.Console().ConsoleUsers(ctx)
	if err != nil {
		return nil, fmt.Errorf("console users: %w", err)
	}
	if len(users) == 0 {
		opts.SetupToken = console.NewToken()
		d.consoleSetup = opts.SetupToken
		// Printed once, on purpose: whoever reads the gateway's log at first start creates
		// the first admin with it. It works once and dies with the process.
		d.log.Warn("console: no console user yet; create the first admin at "+public+console.Prefix+"/setup",
			"setup_token", opts.SetupToken)
	}
	c, err := console.New(opts)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ConsoleSetupToken is the one-time token that creates the first console admin, "" when
// a console user existed at start (or the console is off).
func (d *Daemon) ConsoleSetupToken() string { return d.consoleSetup }

// ConsoleURL is the console's base URL, or "" when it is off.
func (d *Daemon) ConsoleURL() string {
	if d.adminLn == nil || !d.cfg.ConsoleEnabled() {
		return ""
	}
	return d.AdminURL() + console.Prefix + "/"
}

// adminHandler serves the admin API, the metrics (when on the admin listener) and the
// console.
func (d *Daemon) adminHandler(apiHandler http.Handler, c *console.Console) http.Handler {
	h := d.withMetrics(apiHandler)
	if c == nil {
		return h
	}
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.Handle(console.Prefix+"/", c)
	mux.Handle(console.Prefix, c)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, console.Prefix+"/", http.StatusSeeOther)
	})
	return mux
}

// verifyChain checks the whole audit chain against the stored checkpoints, with this
// gateway's checkpoint key when checkpoints are on.
func (d *Daemon) verifyChain(ctx context.Context) (audit.Report, error) {
	var opts audit.VerifyOptions
	if d.checkpointer != nil {
		opts.Keys = []ed25519.PublicKey{d.checkpointer.PublicKey()}
	}
	if len(opts.Keys) > 0 {
		for after := int64(0); ; {
			cps, err := d.store.Checkpoints(ctx, after, 1000)
			if err != nil {
				return audit.Report{}, err
			}
			if len(cps) == 0 {
				break
			}
			opts.Checkpoints = append(opts.Checkpoints, cps...)
			after = cps[len(cps)-1].Seq
		}
	}
	start := time.Now()
	rep, err := audit.VerifyChain(ctx, d.store, opts)
	d.log.InfoContext(ctx, "console: audit chain verified", "events", rep.Events, "broken", rep.Broken != nil, "took", time.Since(start))
	return rep, err
}
