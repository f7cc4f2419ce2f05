package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// MaxNotifyID bounds the id of a notification, in bytes: [DB.Listen] drops a
// notification with a longer one, and [DB.Notify] refuses to send it.
const MaxNotifyID = 256

// Reconnection and health-check timing of [DB.Listen].
const (
	prBackoffMin = 100 * time.Millisecond
	prBackoffMax = 5 * time.Second
	// prStable is how long a connection must have listened for the backoff to start
	// again from prBackoffMin: a server that accepts connections only to drop them at
	// once must not make every replica reconnect, and resync, ten times a second.
	prStable = 30 * time.Second
	// prIdleCheck is how long the listener waits in silence before it checks that its
	// connection still works: a connection that died without a word (a dropped
	// network path, a failover) would otherwise go unnoticed until TCP gives up,
	// minutes later, with every kill sent meanwhile lost.
	prIdleCheck = 30 * time.Second
	// prCheckTimeout bounds LISTEN and the health check, which a healthy server answers
	// at once.
	prCheckTimeout = 10 * time.Second
	// prListenApp is the application_name of the listener's connection, so that an
	// operator can tell it from the pool's in pg_stat_activity.
	prListenApp = "chaperone-listen"
)

// Listen receives the change notifications of the store's schema (see the package
// documentation) and calls h with each topic and id (id is "" for a notification
// without one) until ctx is done; it then returns nil. It returns an error only for
// missing arguments.
//
// Listen holds a connection of its own, outside the pool. When the connection fails it
// reconnects, with a backoff from 100ms doubling to 5s with jitter. Notifications sent
// while it was not listening are lost, so every time it starts listening, the first
// time included, it calls resync: the caller reloads everything it caches. resync is
// called after LISTEN has taken effect, so a change is either in what resync reads or
// notified after it (or both) — never missed.
//
// h and resync are called from Listen's goroutine, one at a time: while they run,
// notifications wait (in the server and the connection). A notification whose topic is
// not one of the Topic constants, whose id is empty after a colon, longer than
// [MaxNotifyID] bytes, not UTF-8 or holds control characters is dropped: the payload is
// data from the database, and h gets only well-formed input.
func (db *DB) Listen(ctx context.Context, h func(topic, id string), resync func()) error {
	if h == nil || resync == nil {
		return errors.New("postgres: listen: a handler and a resync function are required")
	}
	backoff := prBackoffMin
	for {
		if conn, err := db.prListenConn(ctx); err == nil {
			start := time.Now()
			resync()
			// The error is dropped: Listen has nobody to report it to, and its caller
			// learns of the gap through resync once the connection is back.
			_ = db.prReceive(ctx, conn, h)
			prClose(conn)
			if time.Since(start) >= prStable {
				backoff = prBackoffMin
			}
		}
		t := time.NewTimer(prJitter(backoff))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, prBackoffMax)
	}
}

// prListenConn opens the listener's connection and runs LISTEN on it.
func (db *DB) prListenConn(ctx context.Context) (*pgx.Conn, error) {
	cfg := db.cfg.ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = prListenApp
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: listen on %s: %w", db.where, err)
	}
	if err := db.prListen(ctx, conn); err != nil {
		prClose(conn)
		return nil, err
	}
	return conn, nil
}

// prListen runs LISTEN on conn. Running it again on a connection that already listens
// changes nothing, which makes it the health check too.
func (db *DB) prListen(ctx context.Context, conn *pgx.Conn) error {
	lctx, cancel := context.WithTimeout(ctx, prCheckTimeout)
	defer cancel()
	if _, err := conn.Exec(lctx, "LISTEN "+pgx.Identifier{db.channel}.Sanitize()); err != nil {
		return fmt.Errorf("postgres: listen on %s: %w", db.where, err)
	}
	return nil
}

// prReceive hands notifications to h until ctx is done (it returns nil) or the
// connection fails (it returns why).
func (db *DB) prReceive(ctx context.Context, conn *pgx.Conn, h func(topic, id string)) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, prIdleCheck)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			if n == nil || n.Channel != db.channel {
				continue
			}
			if topic, id, ok := prParsePayload(n.Payload); ok {
				h(topic, id)
			}
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			// Silence for prIdleCheck: make sure the connection still listens.
			if err := db.prListen(ctx, conn); err != nil {
				return err
			}
		default:
			return fmt.Errorf("postgres: wait for notifications on %s: %w", db.where, err)
		}
	}
}

// prClose closes conn with a context of its own: the caller's may be done.
func prClose(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx) // a connection that fails to close cleanly is closed all the same
}

// prJitter returns a duration between d/2 and d, so that replicas that lost the
// database together do not all come back in the same instant.
func prJitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// prParsePayload splits a notification payload, "<topic>" or "<topic>:<id>", and
// reports whether it is well formed: a known topic and, after a colon, an id of 1 to
// MaxNotifyID bytes of UTF-8 without control characters. The id is everything after the
// first colon, so it may hold colons itself.
func prParsePayload(p string) (topic, id string, ok bool) {
	topic, id, hasID := strings.Cut(p, ":")
	switch topic {
	case TopicKill, TopicAgent, TopicTask, TopicApproval, TopicKey:
	default:
		return "", "", false
	}
	if hasID && !prValidID(id) {
		return "", "", false
	}
	return topic, id, true
}

// prValidID reports whether id can travel in a notification.
func prValidID(id string) bool {
	return id != "" && len(id) <= MaxNotifyID && utf8.ValidString(id) &&
		!strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) })
}

// Notify sends a change notification on the store's channel, as the store's writes do
// in their transactions, for tests and maintenance tools (e.g. to make every replica
// reload agents after a repair). topic must be one of the Topic constants; id, if not
// empty, is 1 to [MaxNotifyID] bytes of UTF-8 without control characters.
func (db *DB) Notify(ctx context.Context, topic, id string) error {
	payload := topic
	if id != "" {
		payload += ":" + id
	}
	if t, i, ok := prParsePayload(payload); !ok || t != topic || i != id {
		return fmt.Errorf("postgres: notify: topic %q with an id of %d bytes: want a known topic and an id of at most %d bytes of printable UTF-8",
			prCut(topic, 32), len(id), MaxNotifyID)
	}
	if err := db.writable(); err != nil {
		return fmt.Errorf("postgres: notify %s: %w", topic, err)
	}
	if _, err := db.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, db.channel, payload); err != nil {
		return fmt.Errorf("postgres: notify %s: %w", topic, err)
	}
	return nil
}

// prCut shortens s to at most n bytes, on a rune boundary, for an error message.
func prCut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
