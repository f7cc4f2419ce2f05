package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/audit/journal"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

// refusingIndex is a store that takes no events: the journal keeps them.
type refusingIndex struct{ *sqlite.DB }

func (refusingIndex) AppendSealed(context.Context, []audit.Event, func(int64, string) ([]string, error)) error {
	return errors.New("database refuses writes (test)")
}

// TestAuditVerifyBehindJournal: a gateway stopped before copying its journal into the
// database. The offline readers refuse the database, saying why, instead of verifying a
// log that lacks its last events; once a journal is opened on it again (as a gateway's
// start does), the events are copied and verify passes.
func TestAuditVerifyBehindJournal(t *testing.T) {
	ctx := context.Background()
	dbPath := filepath.Join(t.TempDir(), "chaperone.db")
	db, err := sqlite.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	j, err := journal.Open(ctx, journal.DirFor(dbPath), refusingIndex{db}, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.NewLog(ctx, j, audit.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		e := audit.Event{Time: time.Now(), Kind: audit.KindCallRefused, RequestID: fmt.Sprint("r", i), Agent: "a", Tool: "t"}
		if err := l.Append(ctx, &e); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := j.Close(short); err == nil {
		t.Fatal("the journal closed cleanly although the database took nothing")
	}

	code, out, errOut := runCLI(t, "", "audit", "verify", "--db", dbPath)
	if code == 0 || !strings.Contains(errOut, "holds events 1 to 3") || !strings.Contains(errOut, "copies them when it next starts") {
		t.Fatalf("audit verify behind the journal = %d\n%s%s", code, out, errOut)
	}

	j, err = journal.Open(ctx, journal.DirFor(dbPath), db, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Close(ctx); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, "", "audit", "verify", "--db", dbPath)
	if code != 0 || !strings.Contains(out, "3 events, chain intact") {
		t.Fatalf("audit verify after recovery = %d\n%s%s", code, out, errOut)
	}
}
