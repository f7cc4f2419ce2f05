package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/pipeline"
	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/store/pgtest"
	"github.com/chaperone-dev/chaperone/internal/store/postgres"
)

// sjCalls answers tool calls with the session they came in, and records ended sessions.
type sjCalls struct {
	mu    sync.Mutex
	ended []string
}

func (c *sjCalls) Handle(_ context.Context, call *pipeline.Call) pipeline.Outcome {
	res, _ := json.Marshal(map[string]any{"content": []map[string]string{{"type": "text", "text": "session " + call.SessionID}}})
	return pipeline.Outcome{Result: res}
}

func (c *sjCalls) EndSession(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended = append(c.ended, id)
}

func (c *sjCalls) endedSessions() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.ended...)
}

// sjCountingStore counts the session store's touches and look-ups: the real store,
// observed.
type sjCountingStore struct {
	SessionStore
	touches, lookups atomic.Int64
}

func (s *sjCountingStore) TouchSession(ctx context.Context, id, agent string, at time.Time) (string, bool, error) {
	s.touches.Add(1)
	return s.SessionStore.TouchSession(ctx, id, agent, at)
}

func (s *sjCountingStore) LookupSession(ctx context.Context, id, agent string) (string, bool, error) {
	s.lookups.Add(1)
	return s.SessionStore.LookupSession(ctx, id, agent)
}

// sjReplica is one gateway replica over its own handle on the shared database.
type sjReplica struct {
	g     *Gateway
	db    *postgres.DB
	store *sjCountingStore
	calls *sjCalls
}

// sjCluster is two replicas, their clock and two agents' tokens.
type sjCluster struct {
	a, b      *sjReplica
	now       atomic.Pointer[time.Time]
	tok, tok2 string
}

func (c *sjCluster) advance(d time.Duration) {
	t := c.now.Load().Add(d)
	c.now.Store(&t)
}

func sjNewCluster(t *testing.T) *sjCluster {
	t.Helper()
	dsn := pgtest.DSN(t)
	c := &sjCluster{}
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	c.now.Store(&t0)
	var sha, sha2 string
	c.tok, sha = identity.NewToken()
	c.tok2, sha2 = identity.NewToken()
	agents, err := identity.NewRegistry([]identity.Registration{{Agent: identity.Agent{ID: "a1"}, TokenSHA256: sha}, {Agent: identity.Agent{ID: "a2"}, TokenSHA256: sha2}})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Compile([]policy.Source{{Name: "p.yaml", Data: []byte("rules: []\n")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	replica := func() *sjReplica {
		db, err := postgres.Open(t.Context(), dsn, postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		r := &sjReplica{db: db, store: &sjCountingStore{SessionStore: db}, calls: &sjCalls{}}
		r.g = New(Options{
			Auth: staticAuth{agents}, Calls: r.calls, Catalog: registry.New(nil, registry.Options{}),
			Policy: func() *policy.Policy { return pol }, Audit: discardAudit{}, MaxBody: 64 << 10,
			SessionIdle: 20 * time.Minute, Sessions: r.store, SessionStoreTimeout: 2 * time.Second,
			Now: func() time.Time { return *c.now.Load() },
		})
		return r
	}
	c.a, c.b = replica(), replica()
	return c
}

const sjInit = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}`

func sjInitialize(t *testing.T, r *sjReplica, tok string) string {
	t.Helper()
	w := do(r.g, tok, sjInit, nil)
	id := w.Header().Get("Mcp-Session-Id")
	if w.Code != http.StatusOK || id == "" {
		t.Fatalf("initialize = %d %s", w.Code, w.Body)
	}
	return id
}

func sjDeleteReq(r *sjReplica, tok, id string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodDelete, "/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Mcp-Session-Id", id)
	w := httptest.NewRecorder()
	r.g.ServeHTTP(w, req)
	return w
}

// sjErrorCode returns the JSON-RPC error code of a response, 0 if it has none.
func sjErrorCode(t *testing.T, w *httptest.ResponseRecorder) int {
	t.Helper()
	var resp struct {
		Error *struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatalf("response %q: %v", w.Body, err)
	}
	if resp.Error == nil {
		return 0
	}
	return resp.Error.Code
}

const (
	sjList = `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
	sjCall = `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"t","arguments":{}}}`
)

// TestSessionAcrossReplicas: a session initialized on one replica is served by another,
// for its own agent only; deleted on one, it is gone on both, and its flow ended once.
func TestSessionAcrossReplicas(t *testing.T) {
	t.Parallel()
	c := sjNewCluster(t)
	id := sjInitialize(t, c.a, c.tok)
	hdr := map[string]string{"Mcp-Session-Id": id}

	if w := do(c.b.g, c.tok, sjList, hdr); w.Code != http.StatusOK || sjErrorCode(t, w) != 0 {
		t.Fatalf("tools/list on replica B = %d %s", w.Code, w.Body)
	}
	w := do(c.b.g, c.tok, sjCall, hdr)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "session "+id) {
		t.Fatalf("tools/call on replica B = %d %s, want the call in session %s", w.Code, w.Body, id)
	}
	if c.b.g.Sessions() != 1 {
		t.Errorf("replica B holds %d sessions after adopting one", c.b.g.Sessions())
	}
	// The protocol negotiated on A is the session's on B: without the header, B answers as
	// 2025-06-18 does (no resultType).
	if strings.Contains(w.Body.String(), "resultType") {
		t.Errorf("replica B answered in another protocol: %s", w.Body)
	}

	// Another agent: not found, on either replica, and the session is not touched.
	for _, r := range []*sjReplica{c.a, c.b} {
		if w := do(r.g, c.tok2, sjCall, hdr); w.Code != http.StatusNotFound || sjErrorCode(t, w) != codeSessionNotFound {
			t.Errorf("another agent's session id = %d %s, want 404", w.Code, w.Body)
		}
	}
	if w := sjDeleteReq(c.b, c.tok2, id); w.Code != http.StatusNotFound {
		t.Errorf("DELETE by another agent = %d, want 404", w.Code)
	}

	if w := sjDeleteReq(c.b, c.tok, id); w.Code != http.StatusNoContent {
		t.Fatalf("DELETE on replica B = %d %s", w.Code, w.Body)
	}
	for name, r := range map[string]*sjReplica{"A": c.a, "B": c.b} {
		if w := do(r.g, c.tok, sjCall, hdr); w.Code != http.StatusNotFound || sjErrorCode(t, w) != codeSessionNotFound {
			t.Errorf("replica %s after DELETE = %d %s, want 404", name, w.Code, w.Body)
		}
	}
	if got := c.b.calls.endedSessions(); len(got) != 1 || got[0] != id {
		t.Errorf("replica B ended %q, want %q", got, id)
	}
	if got := c.a.calls.endedSessions(); len(got) != 0 {
		t.Errorf("replica A ended %q, want nothing: B ended it", got)
	}
	if c.a.g.Sessions() != 0 {
		t.Errorf("replica A still holds %d sessions", c.a.g.Sessions())
	}
	if w := sjDeleteReq(c.a, c.tok, id); w.Code != http.StatusNotFound {
		t.Errorf("second DELETE = %d, want 404", w.Code)
	}
}

// TestSessionStoreDown: a replica that cannot reach the store refuses with a JSON-RPC
// error the client should retry, not "session not found", and creates no session.
func TestSessionStoreDown(t *testing.T) {
	t.Parallel()
	c := sjNewCluster(t)
	id := sjInitialize(t, c.a, c.tok)
	c.b.db.Close()
	for name, w := range map[string]*httptest.ResponseRecorder{
		"unknown to B": do(c.b.g, c.tok, sjCall, map[string]string{"Mcp-Session-Id": id}),
		"initialize":   do(c.b.g, c.tok, sjInit, nil),
		"DELETE":       sjDeleteReq(c.b, c.tok, id),
		"ping":         do(c.b.g, c.tok, `{"jsonrpc":"2.0","id":9,"method":"ping"}`, map[string]string{"Mcp-Session-Id": id}),
		"notification": do(c.b.g, c.tok, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, map[string]string{"Mcp-Session-Id": id}),
	} {
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
			t.Errorf("%s with the store down = %d %s, want 503 with Retry-After", name, w.Code, w.Body)
			continue
		}
		if code := sjErrorCode(t, w); code != sjCodeStoreUnavailable {
			t.Errorf("%s with the store down: code %d, want %d", name, code, sjCodeStoreUnavailable)
		}
	}
	if n := c.b.g.Sessions(); n != 0 {
		t.Errorf("replica B holds %d sessions after failing to create one", n)
	}
	// A session B already holds is refused too: the store, not B's copy, says it exists.
	id2 := sjInitialize(t, c.a, c.tok)
	if w := do(c.a.g, c.tok, sjCall, map[string]string{"Mcp-Session-Id": id2}); w.Code != http.StatusOK {
		t.Fatalf("tools/call on A = %d %s", w.Code, w.Body)
	}
	c.a.db.Close()
	if w := do(c.a.g, c.tok, sjCall, map[string]string{"Mcp-Session-Id": id2}); w.Code != http.StatusServiceUnavailable {
		t.Errorf("a known session with the store down = %d %s, want 503", w.Code, w.Body)
	}
}

// TestSessionTouchAndExpiry: each request asks the store once; touches come at most
// every quarter of the idle time; a session in use on one replica is not expired by
// another, and an idle one is expired and ended exactly once.
func TestSessionTouchAndExpiry(t *testing.T) {
	t.Parallel()
	c := sjNewCluster(t) // idle 20m: touch every 5m, expire after 25m
	id := sjInitialize(t, c.a, c.tok)
	hdr := map[string]string{"Mcp-Session-Id": id}
	call := func(r *sjReplica) {
		t.Helper()
		if w := do(r.g, c.tok, sjCall, hdr); w.Code != http.StatusOK {
			t.Fatalf("tools/call = %d %s", w.Code, w.Body)
		}
	}
	for range 4 { // A created it: no touch for 5 minutes
		c.advance(time.Minute)
		call(c.a)
	}
	if tc, lc := c.a.store.touches.Load(), c.a.store.lookups.Load(); tc != 0 || lc != 4 {
		t.Errorf("within 5m of initialize: %d touches, %d look-ups; want 0 and 4", tc, lc)
	}
	c.advance(time.Minute)
	call(c.a)
	call(c.a)
	if tc := c.a.store.touches.Load(); tc != 1 {
		t.Errorf("after 5m: %d touches, want 1", tc)
	}

	// The session moves to B and stays busy there; A's copy goes idle.
	for range 30 {
		c.advance(time.Minute)
		call(c.b)
		if n := c.a.g.expire(); n != 0 {
			t.Fatalf("replica A expired %d sessions in use on B", n)
		}
	}
	if tc := c.b.store.touches.Load(); tc < 6 || tc > 8 {
		t.Errorf("30 calls in 30m on B: %d touches, want one per 5m", tc)
	}
	if c.a.g.Sessions() != 0 {
		t.Errorf("replica A kept its idle copy")
	}
	if got := c.a.calls.endedSessions(); len(got) != 0 {
		t.Fatalf("replica A ended %q while B used it", got)
	}

	// The last touch was up to a quarter of the idle time before the last use: the
	// session is not expired within the idle time of its last use, and is within the
	// idle time and a quarter.
	c.advance(19 * time.Minute)
	if n := c.a.g.expire() + c.b.g.expire(); n != 0 {
		t.Fatalf("expired %d sessions within the idle time of their last use", n)
	}
	c.advance(6 * time.Minute)
	if n := c.a.g.expire() + c.b.g.expire(); n != 1 {
		t.Fatalf("expired %d sessions, want 1", n)
	}
	if ended := append(c.a.calls.endedSessions(), c.b.calls.endedSessions()...); len(ended) != 1 || ended[0] != id {
		t.Errorf("ended %q, want %q once", ended, id)
	}
	if w := do(c.b.g, c.tok, sjCall, hdr); w.Code != http.StatusNotFound {
		t.Errorf("expired session on B = %d, want 404", w.Code)
	}
}

// TestSessionAdoptConcurrent: requests racing to adopt one session on a replica all
// succeed and leave one copy.
func TestSessionAdoptConcurrent(t *testing.T) {
	t.Parallel()
	c := sjNewCluster(t)
	id := sjInitialize(t, c.a, c.tok)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if w := do(c.b.g, c.tok, sjCall, map[string]string{"Mcp-Session-Id": id}); w.Code != http.StatusOK {
				t.Errorf("concurrent tools/call on B = %d %s", w.Code, w.Body)
			}
		})
	}
	wg.Wait()
	if n := c.b.g.Sessions(); n != 1 {
		t.Errorf("replica B holds %d copies, want 1", n)
	}
}
