package contain_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

// idemOpen opens a SQLite store in a temporary directory.
func idemOpen(tb testing.TB) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(tb.Context(), filepath.Join(tb.TempDir(), "chaperone.db"))
	if err != nil {
		tb.Fatalf("sqlite.Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return db
}

// idemNew returns an Idempotency over store (a new SQLite store if nil) with a fake clock.
func idemNew(tb testing.TB, store contain.IdemStore, o contain.IdempotencyOptions) (*contain.Idempotency, *lgClock) {
	tb.Helper()
	if store == nil {
		store = idemOpen(tb)
	}
	clk := newLgClock()
	o.Store = store
	if o.Now == nil {
		o.Now = clk.Now
	}
	i, err := contain.NewIdempotency(o)
	if err != nil {
		tb.Fatalf("NewIdempotency: %v", err)
	}
	return i, clk
}

var idemResult = json.RawMessage(`{"content":[{"type":"text","text":"sent 80 EUR to ACME"}],"isError":false}`)

// idemRun claims key and finishes the call with result, as the gateway would.
func idemRun(tb testing.TB, i *contain.Idempotency, agent, key, tool, args, reqID string, result json.RawMessage) {
	tb.Helper()
	rec, err := i.Begin(tb.Context(), agent, key, tool, args, reqID)
	if err != nil || rec != nil {
		tb.Fatalf("Begin(%q) = %+v, %v; want nil, nil (run)", key, rec, err)
	}
	if err := i.Finish(tb.Context(), agent, key, result); err != nil {
		tb.Fatalf("Finish(%q): %v", key, err)
	}
}

func TestIdempotencyReplay(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	i, _ := idemNew(t, nil, contain.IdempotencyOptions{})
	idemRun(t, i, "finance", "pay-1", "send_money", "sha256:aa", "req-1", idemResult)

	rec, err := i.Begin(ctx, "finance", "pay-1", "send_money", "sha256:aa", "req-2")
	if err != nil || rec == nil {
		t.Fatalf("Begin(retry) = %+v, %v; want the record", rec, err)
	}
	if !bytes.Equal(rec.Result, idemResult) || rec.State != contain.IdemDone || rec.RequestID != "req-1" {
		t.Errorf("Begin(retry) = %s from %q (%s), want %s from req-1 (done)", rec.Result, rec.RequestID, rec.State, idemResult)
	}
	if !strings.HasPrefix(rec.ResultHash, "sha256:") || len(rec.ResultHash) != len("sha256:")+64 {
		t.Errorf("Begin(retry) result hash %q, want sha256:<64 hex>", rec.ResultHash)
	}
	// Another agent's key of the same name is its own.
	if rec, err := i.Begin(ctx, "mail", "pay-1", "send_email", "sha256:cc", "req-3"); err != nil || rec != nil {
		t.Errorf("Begin(other agent, same key) = %+v, %v; want nil, nil (run)", rec, err)
	}
}

func TestIdempotencyConflict(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	i, _ := idemNew(t, nil, contain.IdempotencyOptions{})
	idemRun(t, i, "finance", "pay-1", "send_money", "sha256:aa", "req-1", idemResult)
	if _, err := i.Begin(ctx, "finance", "pay-2", "send_money", "sha256:aa", "req-2"); err != nil {
		t.Fatalf("Begin(pay-2): %v", err)
	}
	for _, tt := range []struct{ key, tool, args, state string }{
		{"pay-1", "send_money", "sha256:bb", "done"},
		{"pay-1", "refund", "sha256:aa", "done"},
		{"pay-2", "send_money", "sha256:bb", "running here"},
		{"pay-2", "refund", "sha256:aa", "running here"},
	} {
		if rec, err := i.Begin(ctx, "finance", tt.key, tt.tool, tt.args, "req-x"); !errors.Is(err, contain.ErrIdemConflict) {
			t.Errorf("Begin(%s, %s, %s) of a key %s = %+v, %v; want ErrIdemConflict", tt.key, tt.tool, tt.args, tt.state, rec, err)
		}
	}
}

func TestIdempotencyConcurrentBegin(t *testing.T) {
	t.Parallel()
	i, _ := idemNew(t, nil, contain.IdempotencyOptions{})
	const goroutines = 20
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		ran   atomic.Int64
	)
	for g := range goroutines {
		wg.Go(func() {
			<-start
			rec, err := i.Begin(t.Context(), "finance", "pay-1", "send_money", "sha256:aa", fmt.Sprint("req-", g))
			switch {
			case err != nil:
				t.Errorf("Begin #%d: %v", g, err)
			case rec == nil:
				ran.Add(1)
				if err := i.Finish(t.Context(), "finance", "pay-1", idemResult); err != nil {
					t.Errorf("Finish #%d: %v", g, err)
				}
			case !bytes.Equal(rec.Result, idemResult):
				t.Errorf("Begin #%d = %s, want %s", g, rec.Result, idemResult)
			}
		})
	}
	close(start)
	wg.Wait()
	if n := ran.Load(); n != 1 {
		t.Errorf("%d concurrent Begins of one key ran %d calls, want 1", goroutines, n)
	}
}

// TestIdempotencyWaits checks that a retry arriving while the call runs in this process
// waits for its outcome.
func TestIdempotencyWaits(t *testing.T) {
	t.Parallel()
	db := idemOpen(t)
	synctest.Test(t, func(t *testing.T) {
		i, _ := idemNew(t, db, contain.IdempotencyOptions{})
		ctx := t.Context()
		if rec, err := i.Begin(ctx, "finance", "pay-1", "send_money", "sha256:aa", "req-1"); err != nil || rec != nil {
			t.Fatalf("Begin = %+v, %v; want nil, nil", rec, err)
		}
		type answer struct {
			rec *contain.IdemRecord
			err error
		}
		retry := make(chan answer, 1)
		go func() {
			rec, err := i.Begin(ctx, "finance", "pay-1", "send_money", "sha256:aa", "req-2")
			retry <- answer{rec, err}
		}()
		cancelled, cancel := context.WithCancel(ctx)
		gaveUp := make(chan error, 1)
		go func() {
			_, err := i.Begin(cancelled, "finance", "pay-1", "send_money", "sha256:aa", "req-3")
			gaveUp <- err
		}()
		synctest.Wait() // both retries are blocked
		select {
		case a := <-retry:
			t.Fatalf("retry returned %+v, %v while the call was running", a.rec, a.err)
		default:
		}
		cancel()
		if err := <-gaveUp; !errors.Is(err, context.Canceled) {
			t.Errorf("Begin with a cancelled context while waiting = %v, want context.Canceled", err)
		}
		if err := i.Finish(ctx, "finance", "pay-1", idemResult); err != nil {
			t.Fatalf("Finish: %v", err)
		}
		if a := <-retry; a.err != nil || a.rec == nil || !bytes.Equal(a.rec.Result, idemResult) {
			t.Errorf("retry after Finish = %+v, %v; want the result", a.rec, a.err)
		}
	})
}

func TestIdempotencyAbandon(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := idemOpen(t)
	i, _ := idemNew(t, db, contain.IdempotencyOptions{})

	// Never reached its tool: a retry runs.
	if _, err := i.Begin(ctx, "finance", "pay-1", "send_money", "sha256:aa", "req-1"); err != nil {
		t.Fatalf("Begin: %v", err)
	}
	if err := i.Abandon(ctx, "finance", "pay-1", false); err != nil {
		t.Fatalf("Abandon(false): %v", err)
	}
	idemRun(t, i, "finance", "pay-1", "send_money", "sha256:aa", "req-2", idemResult)

	// Sent, outcome lost: a retry is refused.
	if _, err := i.Begin(ctx, "finance", "pay-2", "send_money", "sha256:aa", "req-3"); err != nil {
		t.Fatalf("Begin: %v", err)
	}
	if err := i.Abandon(ctx, "finance", "pay-2", true); err != nil {
		t.Fatalf("Abandon(true): %v", err)
	}
	if rec, err := i.Begin(ctx, "finance", "pay-2", "send_money", "sha256:aa", "req-4"); !errors.Is(err, contain.ErrIdemUnknown) {
		t.Errorf("Begin after Abandon(true) = %+v, %v; want ErrIdemUnknown", rec, err)
	}

	// Left running by a previous process: a new one does not know its outcome.
	if _, err := i.Begin(ctx, "finance", "pay-3", "send_money", "sha256:aa", "req-5"); err != nil {
		t.Fatalf("Begin: %v", err)
	}
	restarted, _ := idemNew(t, db, contain.IdempotencyOptions{})
	if rec, err := restarted.Begin(ctx, "finance", "pay-3", "send_money", "sha256:aa", "req-6"); !errors.Is(err, contain.ErrIdemUnknown) {
		t.Errorf("Begin of a key left running = %+v, %v; want ErrIdemUnknown", rec, err)
	}
	// Even then, other arguments are a conflict first.
	if _, err := restarted.Begin(ctx, "finance", "pay-3", "send_money", "sha256:bb", "req-7"); !errors.Is(err, contain.ErrIdemConflict) {
		t.Errorf("Begin of a key left running, other args = %v; want ErrIdemConflict", err)
	}

	// Ending a call that is not running here is an error, and changes nothing.
	for _, end := range []func() error{
		func() error { return restarted.Finish(ctx, "finance", "pay-3", idemResult) },
		func() error { return restarted.Abandon(ctx, "finance", "pay-3", false) },
		func() error { return i.Finish(ctx, "finance", "nope", idemResult) },
	} {
		if err := end(); err == nil {
			t.Errorf("ending a call not running here succeeded, want an error")
		}
	}
	if err := i.Finish(ctx, "finance", "pay-3", idemResult); err != nil {
		t.Errorf("Finish(pay-3) by its owner: %v", err)
	}
}

func TestIdempotencyFinishOutlivesContext(t *testing.T) {
	t.Parallel()
	i, _ := idemNew(t, nil, contain.IdempotencyOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	if _, err := i.Begin(ctx, "finance", "pay-1", "send_money", "sha256:aa", "req-1"); err != nil {
		t.Fatalf("Begin: %v", err)
	}
	cancel() // the agent went away during the call
	if err := i.Finish(ctx, "finance", "pay-1", idemResult); err != nil {
		t.Fatalf("Finish with a cancelled context: %v", err)
	}
	if rec, err := i.Begin(t.Context(), "finance", "pay-1", "send_money", "sha256:aa", "req-2"); err != nil || rec == nil {
		t.Errorf("Begin(retry) = %+v, %v; want the record", rec, err)
	}
}

func TestIdempotencyResultNotKept(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	i, _ := idemNew(t, nil, contain.IdempotencyOptions{MaxResultBytes: 16})
	fits := json.RawMessage(`{"ok":"1234567"}`) // 16 bytes
	idemRun(t, i, "a", "k-fits", "t", "h", "req-1", fits)
	if rec, err := i.Begin(ctx, "a", "k-fits", "t", "h", "req-2"); err != nil || !bytes.Equal(rec.Result, fits) {
		t.Errorf("Begin(retry of a %d-byte result) = %+v, %v; want it replayed", len(fits), rec, err)
	}
	idemRun(t, i, "a", "k-big", "t", "h", "req-3", json.RawMessage(`{"ok":"12345678"}`))
	if rec, err := i.Begin(ctx, "a", "k-big", "t", "h", "req-4"); !errors.Is(err, contain.ErrIdemResultNotKept) {
		t.Errorf("Begin(retry of a 17-byte result) = %+v, %v; want ErrIdemResultNotKept", rec, err)
	}
}

func TestIdempotencyKeys(t *testing.T) {
	t.Parallel()
	i, _ := idemNew(t, nil, contain.IdempotencyOptions{})
	for _, tt := range []struct {
		name, key string
		valid     bool
	}{
		{"one byte", "k", true},
		{"255 bytes", strings.Repeat("k", 255), true},
		{"printable edges", "!~", true},
		{"uuid", "4f1c2a8e-7b3d-4c9a-9e21-0d5b6f7a8c90", true},
		{"empty", "", false},
		{"256 bytes", strings.Repeat("k", 256), false},
		{"space", "pay 1", false},
		{"tab", "pay\t1", false},
		{"newline", "pay-1\n", false},
		{"DEL", "pay\x7f", false},
		{"NUL", "pay\x00", false},
		{"non-ASCII", "paiement-é", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := i.Begin(t.Context(), "a", tt.key, "t", "h", "req")
			if tt.valid && err != nil {
				t.Errorf("Begin(%q): %v", tt.key, err)
			}
			if !tt.valid && !errors.Is(err, contain.ErrIdemInvalidKey) {
				t.Errorf("Begin(%q) = %v, want ErrIdemInvalidKey", tt.key, err)
			}
		})
	}
	if _, err := i.Begin(t.Context(), "", "k2", "t", "h", "req"); err == nil {
		t.Errorf("Begin(no agent) succeeded, want an error")
	}
}

func TestIdempotencyExpire(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	i, clk := idemNew(t, nil, contain.IdempotencyOptions{Retention: time.Hour})
	idemRun(t, i, "a", "k1", "t", "h", "req-1", idemResult)
	clk.Advance(30 * time.Minute)
	idemRun(t, i, "a", "k2", "t", "h", "req-2", idemResult)
	clk.Advance(30 * time.Minute)
	if n, err := i.Expire(ctx); err != nil || n != 0 {
		t.Errorf("Expire at exactly the retention = %d, %v; want 0", n, err)
	}
	clk.Advance(time.Nanosecond)
	if n, err := i.Expire(ctx); err != nil || n != 1 {
		t.Errorf("Expire past the retention of k1 = %d, %v; want 1", n, err)
	}
	if rec, err := i.Begin(ctx, "a", "k1", "t", "h", "req-3"); err != nil || rec != nil {
		t.Errorf("Begin(k1) after expiry = %+v, %v; want nil, nil (run)", rec, err)
	}
	if rec, err := i.Begin(ctx, "a", "k2", "t", "h", "req-4"); err != nil || rec == nil {
		t.Errorf("Begin(k2) before its expiry = %+v, %v; want the record", rec, err)
	}
}

func TestNewIdempotencyOptions(t *testing.T) {
	t.Parallel()
	db := idemOpen(t)
	for _, tt := range []struct {
		name    string
		o       contain.IdempotencyOptions
		wantErr string
	}{
		{name: "defaults", o: contain.IdempotencyOptions{Store: db}},
		{name: "bounds", o: contain.IdempotencyOptions{Store: db, Retention: time.Minute, MaxResultBytes: 64 << 20}},
		{name: "no store", o: contain.IdempotencyOptions{}, wantErr: "store is required"},
		{name: "short retention", o: contain.IdempotencyOptions{Store: db, Retention: 59 * time.Second}, wantErr: "retention must be between 1m0s and 720h0m0s (0 for the default), got 59s"},
		{name: "long retention", o: contain.IdempotencyOptions{Store: db, Retention: 721 * time.Hour}, wantErr: "retention must be between"},
		{name: "negative max result", o: contain.IdempotencyOptions{Store: db, MaxResultBytes: -1}, wantErr: "max result bytes must be between 1 and 67108864 (0 for the default), got -1"},
		{name: "huge max result", o: contain.IdempotencyOptions{Store: db, MaxResultBytes: 64<<20 + 1}, wantErr: "max result bytes must be between"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := contain.NewIdempotency(tt.o)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("NewIdempotency: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("NewIdempotency = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
