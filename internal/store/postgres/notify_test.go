package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chaperone-dev/chaperone/internal/store"
	"github.com/chaperone-dev/chaperone/internal/store/pgtest"
)

func TestParsePayload(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", MaxNotifyID)
	for _, tc := range []struct {
		in        string
		topic, id string
		ok        bool
	}{
		{in: "kill", topic: TopicKill, ok: true},
		{in: "key", topic: TopicKey, ok: true},
		{in: "agent:billing-bot", topic: TopicAgent, id: "billing-bot", ok: true},
		{in: "task:tsk_1", topic: TopicTask, id: "tsk_1", ok: true},
		{in: "approval:apr_x", topic: TopicApproval, id: "apr_x", ok: true},
		{in: "agent", topic: TopicAgent, ok: true}, // a topic without an id: reload them all
		{in: "task:a:b:c", topic: TopicTask, id: "a:b:c", ok: true},
		{in: "agent:" + long, topic: TopicAgent, id: long, ok: true},
		{in: "agent:é", topic: TopicAgent, id: "é", ok: true},
		{in: ""},
		{in: ":x"},
		{in: "bogus"},
		{in: "bogus:x"},
		{in: "KILL"},
		{in: " kill"},
		{in: "agent:"},
		{in: "agent:" + long + "a"},
		{in: "agent:a\nb"},
		{in: "agent:a\x00"},
		{in: "agent:\u0085"},
		{in: "agent:\xff"},
	} {
		topic, id, ok := prParsePayload(tc.in)
		if topic != tc.topic || id != tc.id || ok != tc.ok {
			t.Errorf("prParsePayload(%q) = %q, %q, %v; want %q, %q, %v", prCut(tc.in, 40), topic, prCut(id, 20), ok, tc.topic, prCut(tc.id, 20), tc.ok)
		}
	}
}

func FuzzParsePayload(f *testing.F) {
	for _, s := range []string{"kill", "agent:a", "task:a:b", "approval:", "bogus:x", "agent:\xff", "", ":", "key:\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		topic, id, ok := prParsePayload(p)
		if !ok {
			if topic != "" || id != "" {
				t.Fatalf("prParsePayload(%q) refused it but returned %q, %q", p, topic, id)
			}
			return
		}
		if id != "" && !prValidID(id) {
			t.Fatalf("prParsePayload(%q) accepted id %q", p, id)
		}
		again := topic
		if id != "" {
			again += ":" + id
		}
		if again != p {
			t.Fatalf("prParsePayload(%q) = %q, %q, which make %q", p, topic, id, again)
		}
	})
}

// received is what a listener's handler was called with.
type received struct{ topic, id string }

// listener runs db.Listen until the test ends, reporting each notification and each
// resync on a channel.
type listener struct {
	got    chan received
	resync chan struct{}
	done   chan error
	cancel context.CancelFunc
}

func listen(t *testing.T, db *DB) *listener {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &listener{got: make(chan received, 1000), resync: make(chan struct{}, 100), done: make(chan error, 1), cancel: cancel}
	go func() {
		l.done <- db.Listen(ctx,
			func(topic, id string) { l.got <- received{topic, id} },
			func() { l.resync <- struct{}{} })
	}()
	t.Cleanup(func() {
		cancel()
		<-l.done
	})
	return l
}

const waitFor = 10 * time.Second

func (l *listener) waitResync(t *testing.T) {
	t.Helper()
	select {
	case <-l.resync:
	case <-time.After(waitFor):
		t.Fatalf("no resync within %v", waitFor)
	}
}

func (l *listener) next(t *testing.T) received {
	t.Helper()
	select {
	case r := <-l.got:
		return r
	case <-time.After(waitFor):
		t.Fatalf("no notification within %v", waitFor)
	}
	return received{}
}

func open(t *testing.T, dsn string) *DB {
	t.Helper()
	db, err := Open(t.Context(), dsn, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestListenReceives: a notification sent through one handle reaches a listener on
// another; malformed payloads and other schemas' notifications are dropped.
func TestListenReceives(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	a, b := open(t, dsn), open(t, dsn)
	other := open(t, pgtest.DSN(t))
	ctx := t.Context()
	l := listen(t, a)
	l.waitResync(t)

	send := func(topic, id string) {
		t.Helper()
		if err := b.Notify(ctx, topic, id); err != nil {
			t.Fatalf("Notify(%q, %q): %v", topic, id, err)
		}
	}
	raw := func(db *DB, payload string) {
		t.Helper()
		if _, err := db.Pool().Exec(ctx, `SELECT pg_notify($1, $2)`, db.Channel(), payload); err != nil {
			t.Fatalf("pg_notify(%q): %v", payload, err)
		}
	}
	// Notifications from one session arrive in the order sent: each malformed one
	// would show up before the valid one after it.
	raw(b, "bogus:x")
	raw(b, "agent:"+strings.Repeat("a", MaxNotifyID+1))
	raw(b, "agent:")
	raw(b, "agent:bad\nid")
	raw(other, "agent:other-schema")
	send(TopicAgent, "billing")
	if got, want := l.next(t), (received{TopicAgent, "billing"}); got != want {
		t.Fatalf("first notification = %+v, want %+v (malformed ones must be dropped)", got, want)
	}
	send(TopicKill, "")
	send(TopicApproval, "apr:with:colons")
	raw(b, "task:tsk_1") // as the store's writes send them, in a transaction
	for _, want := range []received{{TopicKill, ""}, {TopicApproval, "apr:with:colons"}, {TopicTask, "tsk_1"}} {
		if got := l.next(t); got != want {
			t.Errorf("notification = %+v, want %+v", got, want)
		}
	}
	select {
	case r := <-l.got:
		t.Errorf("unexpected notification %+v", r)
	default:
	}
}

// TestListenConcurrent: every listener hears every notification of many concurrent
// senders.
func TestListenConcurrent(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	sender := open(t, dsn)
	var ls []*listener
	for range 3 {
		l := listen(t, open(t, dsn))
		l.waitResync(t)
		ls = append(ls, l)
	}
	const senders, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, senders*each)
	for s := range senders {
		wg.Go(func() {
			for i := range each {
				if err := sender.Notify(t.Context(), TopicTask, fmt.Sprintf("tsk_%d_%d", s, i)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Notify: %v", err)
	}
	for i, l := range ls {
		seen := map[string]bool{}
		for range senders * each {
			r := l.next(t)
			if r.topic != TopicTask || seen[r.id] {
				t.Fatalf("listener %d: notification %+v: want a task id not seen before", i, r)
			}
			seen[r.id] = true
		}
	}
}

// TestListenReconnects: when the listener's backend is terminated, Listen connects
// again, calls resync, and hears later notifications.
func TestListenReconnects(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	a, b := open(t, dsn), open(t, dsn)
	ctx := t.Context()
	l := listen(t, a)
	l.waitResync(t)
	if err := b.Notify(ctx, TopicKey, ""); err != nil {
		t.Fatal(err)
	}
	if got := l.next(t); got != (received{TopicKey, ""}) {
		t.Fatalf("notification = %+v, want key", got)
	}

	// The listener's backend is the one of this schema whose last statement was LISTEN.
	listenSQL := "LISTEN " + pgx.Identifier{a.Channel()}.Sanitize()
	var killed int
	if err := b.Pool().QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
FROM pg_stat_activity WHERE application_name = $1 AND query = $2`, prListenApp, listenSQL).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Fatalf("terminated %d listener backends, want 1", killed)
	}
	l.waitResync(t)
	if err := b.Notify(ctx, TopicAgent, "after"); err != nil {
		t.Fatal(err)
	}
	if got := l.next(t); got != (received{TopicAgent, "after"}) {
		t.Fatalf("notification after reconnecting = %+v, want agent:after", got)
	}
}

// TestListenStops: Listen returns nil promptly when ctx is cancelled, listening or
// waiting to reconnect to a server that does not answer (and never resyncs then).
func TestListenStops(t *testing.T) {
	t.Parallel()
	stop := func(t *testing.T, l *listener) {
		t.Helper()
		l.cancel()
		select {
		case err := <-l.done:
			if err != nil {
				t.Errorf("Listen after cancel = %v, want nil", err)
			}
			l.done <- err // for the cleanup
		case <-time.After(2 * time.Second):
			t.Fatal("Listen did not return within 2s of cancel")
		}
	}
	t.Run("listening", func(t *testing.T) {
		t.Parallel()
		l := listen(t, open(t, pgtest.DSN(t)))
		l.waitResync(t)
		stop(t, l)
	})
	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		// Port 1 on localhost refuses connections at once.
		cfg, err := pgxpool.ParseConfig("postgres://chaperone@127.0.0.1:1/none?sslmode=disable&connect_timeout=1")
		if err != nil {
			t.Fatal(err)
		}
		db := &DB{cfg: cfg, channel: Channel, where: "127.0.0.1:1"}
		l := listen(t, db)
		// Let it fail and back off a few times.
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-l.resync:
				t.Fatal("resync called without a connection")
			case <-time.After(50 * time.Millisecond):
			}
		}
		stop(t, l)
	})
}

func TestListenArguments(t *testing.T) {
	t.Parallel()
	db := &DB{channel: Channel}
	if err := db.Listen(t.Context(), nil, func() {}); err == nil {
		t.Error("Listen with no handler = nil, want an error")
	}
	if err := db.Listen(t.Context(), func(string, string) {}, nil); err == nil {
		t.Error("Listen with no resync = nil, want an error")
	}
}

func TestNotifyRefuses(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	db := open(t, dsn)
	ctx := t.Context()
	for _, tc := range []struct{ topic, id string }{
		{"bogus", ""},
		{"", "x"},
		{"agent:x", ""},
		{TopicAgent, strings.Repeat("a", MaxNotifyID+1)},
		{TopicAgent, "a\x00"},
		{TopicAgent, "\xff"},
	} {
		if err := db.Notify(ctx, tc.topic, tc.id); err == nil {
			t.Errorf("Notify(%q, %q) = nil, want an error", prCut(tc.topic, 20), prCut(tc.id, 20))
		}
	}
	ro, err := OpenReadOnly(ctx, dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if err := ro.Notify(ctx, TopicKill, ""); !errors.Is(err, store.ErrReadOnly) {
		t.Errorf("Notify on a read-only store = %v, want ErrReadOnly", err)
	}
}
