package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// SessionStore keeps MCP sessions where every gateway replica finds them, so that a
// client whose requests a load balancer spreads over replicas keeps its session. A
// session belongs to the agent that created it: to any other agent it does not exist,
// and the methods that take an agent treat a session of another agent as absent.
//
// With a store, a replica checks every request's session with the store (one round
// trip: a look-up, or a touch when one is due), so that a session deleted or expired on
// one replica is gone on all of them at once. It touches a session's last-seen time at
// most every quarter of the idle time ([Options].SessionIdle), not on every call.
type SessionStore interface {
	// CreateSession records a new session of agent speaking protocol, last seen at at.
	CreateSession(ctx context.Context, id, agent, protocol string, at time.Time) error
	// LookupSession returns the protocol of session id; found is false if there is no
	// such session of agent.
	LookupSession(ctx context.Context, id, agent string) (protocol string, found bool, err error)
	// TouchSession is LookupSession that also moves the session's last-seen time
	// forward to at.
	TouchSession(ctx context.Context, id, agent string, at time.Time) (protocol string, found bool, err error)
	// DeleteSession deletes session id of agent; found is false if there was none.
	DeleteSession(ctx context.Context, id, agent string) (found bool, err error)
	// ExpireSessions deletes at most limit sessions last seen before before and returns
	// their ids.
	ExpireSessions(ctx context.Context, before time.Time, limit int) (ids []string, err error)
}

const (
	// DefaultSessionStoreTimeout bounds one use of the session store.
	DefaultSessionStoreTimeout = 5 * time.Second
	// sjCodeStoreUnavailable: the session store did not answer. Not "session not
	// found": the session may well exist, and the client should retry, not initialize.
	sjCodeStoreUnavailable = -32003
	// sjExpireBatch bounds the sessions one expiry statement deletes.
	sjExpireBatch = 1000
)

// sjStoreError is a failure of the session store, which the client should retry.
type sjStoreError struct{ err error }

func (e *sjStoreError) Error() string { return "session store: " + e.err.Error() }
func (e *sjStoreError) Unwrap() error { return e.err }

// sjWriteStoreError refuses a request because the session store did not answer.
func (g *Gateway) sjWriteStoreError(ctx context.Context, w http.ResponseWriter, id json.RawMessage, err error) {
	g.opts.Logger.ErrorContext(ctx, "session store unavailable", "err", err)
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, id, sjCodeStoreUnavailable, "session store unavailable: retry the request with the same session")
}

// sjStoreCtx bounds one use of the session store.
func (g *Gateway) sjStoreCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, g.opts.SessionStoreTimeout)
}

// sjShared checks session id of agent with the store: s is this replica's copy, nil if
// it has none. It returns the session to use, nil if there is none, and adopts a session
// another replica created. Each call is one round trip: a touch when this replica last
// touched the session a quarter of the idle time ago or more (or never), else a look-up.
func (g *Gateway) sjShared(ctx context.Context, s *session, id, agent string) (*session, error) {
	now := g.opts.Now()
	ctx, cancel := g.sjStoreCtx(ctx)
	defer cancel()
	var (
		proto string
		found bool
		err   error
	)
	due := s == nil || now.UnixNano()-s.touched.Load() >= int64(g.opts.SessionIdle/4)
	if due {
		proto, found, err = g.opts.Sessions.TouchSession(ctx, id, agent, now)
	} else {
		proto, found, err = g.opts.Sessions.LookupSession(ctx, id, agent)
	}
	switch {
	case err != nil:
		return nil, &sjStoreError{err}
	case !found:
		// Deleted or expired elsewhere: this replica's copy goes too.
		if s != nil {
			g.mu.Lock()
			if g.sessions[id] == s {
				delete(g.sessions, id)
			}
			g.mu.Unlock()
		}
		return nil, nil
	}
	if s == nil {
		s = g.sjAdopt(id, agent, proto, now)
	}
	if due {
		s.touched.Store(now.UnixNano())
	}
	return s, nil
}

// sjAdopt makes session id, created on another replica, this replica's too. When the
// local table is full even after expiry, the session is served without a local copy:
// the store, not the table, says whether it exists.
func (g *Gateway) sjAdopt(id, agent, proto string, now time.Time) *session {
	s := &session{id: id, agentID: agent, protocol: proto}
	s.lastSeen.Store(now.UnixNano())
	g.mu.Lock()
	if len(g.sessions) >= g.opts.MaxSessions {
		g.mu.Unlock()
		g.sjMakeRoom(now)
		g.mu.Lock()
	}
	if cur := g.sessions[id]; cur != nil {
		s = cur // adopted by a concurrent request
	} else if len(g.sessions) < g.opts.MaxSessions {
		g.sessions[id] = s
	}
	g.mu.Unlock()
	return s
}

// sjMakeRoom makes room in a full session table. Without a store it expires idle
// sessions. With one it only drops this replica's copies of sessions idle here: whether
// a session is over is for the store to say, and the store's expiry runs in [Gateway.Run],
// not in a request.
func (g *Gateway) sjMakeRoom(now time.Time) {
	if g.opts.Sessions == nil {
		g.expire()
		return
	}
	cutoff := now.Add(-g.opts.SessionIdle).UnixNano()
	g.mu.Lock()
	for id, s := range g.sessions {
		if s.lastSeen.Load() < cutoff {
			delete(g.sessions, id)
		}
	}
	g.mu.Unlock()
}

// sjCreate records a new session in the store; it is called with the session already
// in this replica's table, and removes it again if the store fails.
func (g *Gateway) sjCreate(ctx context.Context, s *session, now time.Time) error {
	ctx, cancel := g.sjStoreCtx(ctx)
	defer cancel()
	if err := g.opts.Sessions.CreateSession(ctx, s.id, s.agentID, s.protocol, now); err != nil {
		g.mu.Lock()
		delete(g.sessions, s.id)
		g.mu.Unlock()
		return &sjStoreError{err}
	}
	s.touched.Store(now.UnixNano())
	return nil
}

// sjDelete deletes session id of agent everywhere and reports whether there was one.
func (g *Gateway) sjDelete(ctx context.Context, id, agent string) (bool, error) {
	ctx, cancel := g.sjStoreCtx(ctx)
	defer cancel()
	found, err := g.opts.Sessions.DeleteSession(ctx, id, agent)
	if err != nil {
		return false, &sjStoreError{err}
	}
	g.mu.Lock()
	if s := g.sessions[id]; s != nil && s.agentID == agent {
		delete(g.sessions, id)
	}
	g.mu.Unlock()
	return found, nil
}

// sjExpireShared deletes the sessions no replica saw for the idle time and a quarter
// (the slack of touching at most every quarter), and returns their ids: their flow state
// is to be ended, once, by the replica that deleted them. Sessions only this replica's
// table holds were dropped from it already.
func (g *Gateway) sjExpireShared(now time.Time) []string {
	before := now.Add(-g.opts.SessionIdle - g.opts.SessionIdle/4)
	var ended []string
	for {
		ctx, cancel := g.sjStoreCtx(context.Background())
		ids, err := g.opts.Sessions.ExpireSessions(ctx, before, sjExpireBatch)
		cancel()
		if err != nil {
			// The next tick tries again; until then the sessions only live longer.
			g.opts.Logger.Warn("sessions not expired", "err", err)
			break
		}
		ended = append(ended, ids...)
		if len(ids) < sjExpireBatch {
			break
		}
	}
	if len(ended) > 0 {
		g.mu.Lock()
		for _, id := range ended {
			delete(g.sessions, id)
		}
		g.mu.Unlock()
	}
	return ended
}

// sjStoreDefaults fills in the defaults of the session store's options.
func sjStoreDefaults(o *Options) {
	if o.SessionStoreTimeout <= 0 {
		o.SessionStoreTimeout = DefaultSessionStoreTimeout
	}
}
