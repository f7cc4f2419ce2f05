package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/store"
	"github.com/chaperone-dev/chaperone/internal/store/backend"
)

// migrate applies the pending schema migrations of the configured store, or with --status
// shows them without changing anything. Gateways apply them when they start too; running
// this first lets an operator upgrade the schema before rolling out the new binary.
func migrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("migrate", stderr)
	cfgPath := fs.String("config", "", "configuration file whose store to migrate")
	_, dbPath := dataDirAndDB(fs)
	status := fs.Bool("status", false, "show the migrations and which are applied; change nothing")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	sc := storeConfig(dbPath())
	if *cfgPath != "" {
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			return err
		}
		sc = cfg.Store
	}
	where := sc.SQLite
	if sc.Postgres != nil {
		where = store.RedactDSN(sc.Postgres.URL)
	}
	var ms []store.Migration
	var err error
	if *status {
		ms, err = backend.Status(ctx, sc)
	} else {
		var db store.Store
		if db, err = backend.Open(ctx, sc, nil); err != nil {
			return err
		}
		defer db.Close()
		ms, err = db.Migrations(ctx)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "store: %s\n", where)
	pending := 0
	for _, m := range ms {
		state := "applied " + m.Applied.UTC().Format(time.RFC3339)
		if m.Applied.IsZero() {
			state, pending = "pending", pending+1
		}
		fmt.Fprintf(stdout, "  %04d  %-28s %s\n", m.Version, m.Name, state)
	}
	switch {
	case pending == 0:
		fmt.Fprintf(stdout, "schema up to date (version %d)\n", len(ms))
	case *status:
		fmt.Fprintf(stdout, "%d migration(s) pending: run `chaperone migrate` to apply them\n", pending)
	}
	return nil
}
