package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

func auditTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit tail", stderr)
	dbPath := dataDirFlags(fs)
	n := fs.Int("n", 20, "how many events (1 to 10000)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *n < 1 || *n > 10000 {
		return usageError{fmt.Sprintf("-n must be between 1 and 10000, got %d", *n)}
	}
	db, err := openReadOnly(ctx, dbPath())
	if err != nil {
		return err
	}
	defer db.Close()
	evs, err := db.TailEvents(ctx, *n)
	if err != nil {
		return err
	}
	for _, e := range evs {
		audit.Format(stdout, e)
	}
	return nil
}
