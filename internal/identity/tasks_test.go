package identity_test

import (
	"errors"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/identity"
)

func (e *env) tasks(tb testing.TB) *identity.Tasks {
	tb.Helper()
	ts, err := identity.NewTasks(tb.Context(), identity.TasksOptions{Store: e.db, Audit: e.audit, Now: e.clock.Now})
	if err != nil {
		tb.Fatalf("NewTasks: %v", err)
	}
	return ts
}

func TestStartInvalid(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ts := e.tasks(t)
	tests := []struct {
		name string
		rec  identity.TaskRecord
		want string
	}{
		{"no agent", identity.TaskRecord{ExpiresAt: t0.Add(time.Hour)}, `agent: must be an agent id matching ^[a-z0-9][a-z0-9._-]{0,63}$, got ""`},
		{"no expiry", identity.TaskRecord{Agent: "mail"}, "expires_at: is required"},
		{"expired", identity.TaskRecord{Agent: "mail", ExpiresAt: t0}, "expires_at: must be in the future, got 2026-03-01T09:00:00Z"},
		{"bad id", identity.TaskRecord{ID: "a b", Agent: "mail", ExpiresAt: t0.Add(time.Hour)}, `id: must match ^[A-Za-z0-9_.-]{1,128}$, got "a b"`},
		{"bad tool", identity.TaskRecord{Agent: "mail", Tools: []string{"read_file", "x y"}, ExpiresAt: t0.Add(time.Hour)}, `tools[1]: must be "*" or a tool name`},
		{"too many tools", identity.TaskRecord{Agent: "mail", Tools: make([]string, 257), ExpiresAt: t0.Add(time.Hour)}, "tools: at most 256 entries, got 257"},
		{"already ended", identity.TaskRecord{Agent: "mail", ExpiresAt: t0.Add(time.Hour), EndedAt: t0}, "ended_at: must be empty"},
		{"control in user", identity.TaskRecord{Agent: "mail", User: "a\x00", ExpiresAt: t0.Add(time.Hour)}, "user: must be printable UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ts.Start(t.Context(), tt.rec)
			var ve *identity.ValidationError
			if !errors.As(err, &ve) || !strings.Contains(err.Error(), tt.want) || got.ID != "" {
				t.Errorf("Start(%s) = %+v, %v; want a ValidationError containing %q", tt.name, got, err, tt.want)
			}
		})
	}
	if got := ts.List(true); len(got) != 0 {
		t.Errorf("List(true) after invalid starts = %v, want none", got)
	}
}

func TestTaskLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ts := e.tasks(t)
	ctx := t.Context()

	rec, err := ts.Start(ctx, identity.TaskRecord{Agent: "mail", User: "carol@example.com", Tools: []string{"read_file"}, ExpiresAt: t0.Add(time.Hour), CreatedAt: t0.Add(-time.Hour)})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if !regexp.MustCompile(`^tsk_[A-Za-z0-9_-]{22}$`).MatchString(rec.ID) {
		t.Errorf("Start: id = %q, want tsk_ and 22 base64url characters", rec.ID)
	}
	want := identity.TaskRecord{ID: rec.ID, Agent: "mail", User: "carol@example.com", Tools: []string{"read_file"}, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if diff := cmp.Diff(want, rec); diff != "" {
		t.Errorf("Start (-want +got):\n%s", diff)
	}
	if _, err := ts.Start(ctx, identity.TaskRecord{ID: rec.ID, Agent: "mail", ExpiresAt: t0.Add(time.Hour)}); !errors.Is(err, identity.ErrTaskExists) {
		t.Errorf("Start(%q) again = %v, want ErrTaskExists", rec.ID, err)
	}
	other, err := ts.Start(ctx, identity.TaskRecord{ID: "job-7", Agent: "ops", ExpiresAt: t0.Add(2 * time.Minute)})
	if err != nil {
		t.Fatalf("Start(job-7): %v", err)
	}

	for _, tt := range []struct {
		id   string
		want bool
	}{{"", false}, {"tsk_nope", false}, {rec.ID, true}, {other.ID, true}} {
		if got := ts.Active(tt.id); got != tt.want {
			t.Errorf("Active(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}

	// Expiry closes a task without anyone ending it.
	e.clock.Advance(2 * time.Minute)
	if ts.Active(other.ID) {
		t.Errorf("Active(%q) = true at its expiry", other.ID)
	}
	if got := ids(ts.List(false)); !cmp.Equal(got, []string{rec.ID}) {
		t.Errorf("List(false) = %v, want [%s]", got, rec.ID)
	}

	// Negative cases of End first.
	for _, tt := range []struct {
		name, id, by, reason string
		wantErr              error
		wantMsg              string
	}{
		{name: "unknown", id: "tsk_nope", by: "op", wantErr: identity.ErrUnknownTask},
		{name: "no by", id: rec.ID, wantMsg: "by: is required"},
		{name: "long reason", id: rec.ID, by: "op", reason: strings.Repeat("r", 1025), wantMsg: "reason: at most 1024 bytes"},
	} {
		err := ts.End(ctx, tt.id, tt.by, tt.reason)
		var ve *identity.ValidationError
		if (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) || (tt.wantMsg != "" && (!errors.As(err, &ve) || !strings.Contains(err.Error(), tt.wantMsg))) {
			t.Errorf("End(%s) = %v, want %v %q", tt.name, err, tt.wantErr, tt.wantMsg)
		}
	}
	if !ts.Active(rec.ID) {
		t.Fatalf("Active(%q) = false after refused ends", rec.ID)
	}

	e.clock.Advance(time.Minute)
	if err := ts.End(ctx, rec.ID, "op", "done"); err != nil {
		t.Fatalf("End(%q): %v", rec.ID, err)
	}
	if ts.Active(rec.ID) {
		t.Errorf("Active(%q) = true after End", rec.ID)
	}
	if err := ts.End(ctx, rec.ID, "op", "again"); !errors.Is(err, identity.ErrTaskEnded) {
		t.Errorf("End(%q) again = %v, want ErrTaskEnded", rec.ID, err)
	}
	// An expired task can still be ended, for the record.
	if err := ts.End(ctx, other.ID, "op", ""); err != nil {
		t.Errorf("End(expired %q) = %v, want nil", other.ID, err)
	}
	ended := want
	ended.EndedAt, ended.EndedBy, ended.EndReason = t0.Add(3*time.Minute), "op", "done"
	if got, ok := ts.Get(rec.ID); !ok || !cmp.Equal(got, ended) {
		t.Errorf("Get(%q) = %+v, %v; want %+v", rec.ID, got, ok, ended)
	}
	if got := ts.List(false); len(got) != 0 {
		t.Errorf("List(false) = %v, want none", got)
	}
	if got := ids(ts.List(true)); !cmp.Equal(got, []string{other.ID, rec.ID}) && !cmp.Equal(got, []string{rec.ID, other.ID}) {
		t.Errorf("List(true) = %v, want both tasks", got)
	}

	// A new Tasks reads the store: ended tasks stay ended.
	ts2 := e.tasks(t)
	if ts2.Active(rec.ID) {
		t.Errorf("reloaded Active(%q) = true, want false", rec.ID)
	}
	if got, ok := ts2.Get(rec.ID); !ok || !cmp.Equal(got, ended) {
		t.Errorf("reloaded Get(%q) = %+v, %v; want %+v", rec.ID, got, ok, ended)
	}
	if err := ts2.End(ctx, rec.ID, "op", ""); !errors.Is(err, identity.ErrTaskEnded) {
		t.Errorf("reloaded End(%q) = %v, want ErrTaskEnded", rec.ID, err)
	}

	var kinds []string
	for _, ev := range e.events(t) {
		kinds = append(kinds, ev.Kind+" "+ev.Agent+" "+ev.User+" "+ev.Task+" "+ev.Detail+" "+ev.Reason)
	}
	wantKinds := []string{
		"task.started mail carol@example.com " + rec.ID + " tools=read_file expires=2026-03-01T10:00:00Z ",
		"task.started ops  job-7 tools= expires=2026-03-01T09:02:00Z ",
		"task.ended mail carol@example.com " + rec.ID + " by=op done",
		"task.ended ops  job-7 by=op ",
	}
	if diff := cmp.Diff(wantKinds, kinds); diff != "" {
		t.Errorf("audit events (-want +got):\n%s", diff)
	}
}

func ids(recs []identity.TaskRecord) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return out
}

func TestTasksForgetOldClosedTasks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ts := e.tasks(t)
	old, err := ts.Start(t.Context(), identity.TaskRecord{Agent: "mail", ExpiresAt: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	long, err := ts.Start(t.Context(), identity.TaskRecord{Agent: "mail", ExpiresAt: t0.Add(48 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(26 * time.Hour)
	// A reload keeps open tasks and those closed within a day.
	if got := ids(e.tasks(t).List(true)); !cmp.Equal(got, []string{long.ID}) {
		t.Errorf("reloaded List(true) = %v, want [%s]", got, long.ID)
	}
	// A running Tasks prunes on a later Start.
	if _, err := ts.Start(t.Context(), identity.TaskRecord{ID: "new", Agent: "mail", ExpiresAt: t0.Add(27 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, ok := ts.Get(old.ID); ok {
		t.Errorf("Get(%q) found a task closed more than a day ago", old.ID)
	}
	// The store still knows it.
	if err := ts.End(t.Context(), old.ID, "op", ""); err != nil {
		t.Errorf("End(forgotten open task %q) = %v, want nil", old.ID, err)
	}
}

func TestEndAuditFailureStillEnds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ts := e.tasks(t)
	rec, err := ts.Start(t.Context(), identity.TaskRecord{Agent: "mail", ExpiresAt: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	e.audit.fail.Store(true)
	if err := ts.End(t.Context(), rec.ID, "op", "incident"); !errors.Is(err, identity.ErrNotAudited) || !errors.Is(err, errAuditDown) {
		t.Errorf("End with audit down = %v, want ErrNotAudited wrapping the audit error", err)
	}
	if ts.Active(rec.ID) || e.tasks(t).Active(rec.ID) {
		t.Errorf("Active(%q) = true after an unaudited End", rec.ID)
	}
}

func TestStartAuditFailureEndsTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ts := e.tasks(t)
	e.audit.fail.Store(true)
	rec, err := ts.Start(t.Context(), identity.TaskRecord{ID: "job", Agent: "mail", ExpiresAt: t0.Add(time.Hour)})
	if !errors.Is(err, errAuditDown) || rec.ID != "" {
		t.Errorf("Start with audit down = %+v, %v; want the audit error", rec, err)
	}
	if ts.Active("job") || e.tasks(t).Active("job") {
		t.Error(`Active("job") = true after an unaudited Start`)
	}
	if got, _ := ts.Get("job"); got.EndReason != "task start could not be audited" {
		t.Errorf(`Get("job").EndReason = %q, want the audit failure`, got.EndReason)
	}
}

// TestEndVisibleAtOnce checks that every Active call that starts after End returns sees the
// end, while readers run concurrently (run with -race).
func TestEndVisibleAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ts := e.tasks(t)
	rec, err := ts.Start(t.Context(), identity.TaskRecord{Agent: "mail", ExpiresAt: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	var (
		ended, stop  atomic.Bool
		stale, reads atomic.Int64
		wg           sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for !stop.Load() {
				after := ended.Load()
				if ts.Active(rec.ID) && after {
					stale.Add(1)
				}
				reads.Add(1)
			}
		})
	}
	// Concurrent writers too: starting other tasks must not disturb the readers.
	wg.Go(func() {
		for i := 0; !stop.Load() && i < 50; i++ {
			if _, err := ts.Start(t.Context(), identity.TaskRecord{Agent: "other", ExpiresAt: t0.Add(time.Hour)}); err != nil {
				t.Errorf("Start: %v", err)
				return
			}
		}
	})
	for reads.Load() < 1000 {
		runtime.Gosched()
	}
	if err := ts.End(t.Context(), rec.ID, "op", "incident"); err != nil {
		stop.Store(true)
		wg.Wait()
		t.Fatalf("End: %v", err)
	}
	ended.Store(true)
	for n := reads.Load(); reads.Load() < n+10000; {
		runtime.Gosched()
	}
	stop.Store(true)
	wg.Wait()
	if n := stale.Load(); n != 0 {
		t.Errorf("%d Active calls after End returned saw the task active", n)
	}
	if n := len(e.events(t)); n < 2 {
		t.Errorf("%d audit events, want at least task.started and task.ended", n)
	}
}

// TestTaskEndCarriesItsCost: the task.ended event says what the task cost, as the usage
// function reports it, so that cost per completed task can be derived from the log.
func TestTaskEndCarriesItsCost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var asked []string
	ts, err := identity.NewTasks(t.Context(), identity.TasksOptions{Store: e.db, Audit: e.audit, Now: e.clock.Now,
		Usage: func(agent, task string) (int64, float64, int64) {
			asked = append(asked, agent+"/"+task)
			return 7, 1.25, 900
		}})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := ts.Start(t.Context(), identity.TaskRecord{Agent: "mail", ExpiresAt: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.End(t.Context(), rec.ID, "ops@example.com", "done"); err != nil {
		t.Fatal(err)
	}
	evs := e.events(t)
	last := evs[len(evs)-1]
	if last.Kind != "task.ended" || last.Steps != 7 || last.Spend != 1.25 || last.Tokens != 900 {
		t.Fatalf("task.ended = %+v, want steps 7, spend 1.25, tokens 900", last)
	}
	if len(asked) != 1 || asked[0] != "mail/"+rec.ID {
		t.Fatalf("usage asked for %v", asked)
	}
}
