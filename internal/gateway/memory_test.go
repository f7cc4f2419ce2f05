package gateway

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
)

const (
	// memInit opens a session.
	memInit = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}`
	// memInitialized completes the handshake of a session.
	memInitialized = `{"jsonrpc":"2.0","method":"notifications/initialized"}`
	// memMaxPerSession is the most heap an idle session may hold: far above what one
	// needs, so only a leak or a blow-up (a buffer, a goroutine, a request kept per
	// session) goes over it.
	memMaxPerSession = 16 << 10
)

// heapAlloc returns the bytes of live heap objects after a full collection.
func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// memOpen opens a session through ServeHTTP and completes its handshake, and returns
// its id.
func memOpen(tb testing.TB, g *Gateway, tok string) string {
	tb.Helper()
	w := do(g, tok, memInit, nil)
	id := w.Header().Get("Mcp-Session-Id")
	if w.Code != http.StatusOK || id == "" {
		tb.Fatalf("initialize = %d %s (session %q), want 200 with a session id", w.Code, w.Body, id)
	}
	if w := do(g, tok, memInitialized, map[string]string{"Mcp-Session-Id": id}); w.Code != http.StatusAccepted {
		tb.Fatalf("notifications/initialized in session %s = %d %s, want 202", id, w.Code, w.Body)
	}
	return id
}

// memDelete ends a session with DELETE through ServeHTTP.
func memDelete(tb testing.TB, g *Gateway, tok, id string) {
	tb.Helper()
	r := httptest.NewRequest(http.MethodDelete, "/mcp", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	r.Header.Set("Mcp-Session-Id", id)
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	if w.Code != http.StatusNoContent {
		tb.Fatalf("DELETE session %s = %d %s, want 204", id, w.Code, w.Body)
	}
}

// TestSessionMemory measures the heap an idle MCP session holds in the gateway: 2,000
// sessions opened through ServeHTTP must each cost less than memMaxPerSession, and once
// every one is deleted the heap must come back to where it started (within 25% + 1 MiB:
// the session map keeps its buckets). It runs alone, not in parallel, so that no other
// test's allocations count.
func TestSessionMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the heap of 2,000 sessions")
	}
	const sessions = 2000
	g, tok := newTestGateway(t)
	ids := make([]string, 0, sessions)
	// One session first, so that what is allocated once (lazily built tables, pools)
	// does not count per session.
	memDelete(t, g, tok, memOpen(t, g, tok))

	before := heapAlloc()
	for range sessions {
		ids = append(ids, memOpen(t, g, tok))
	}
	open := heapAlloc()
	if n := g.Sessions(); n != sessions {
		t.Fatalf("Sessions() = %d after opening %d, want %d", n, sessions, sessions)
	}
	seen := make(map[string]bool, sessions)
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("session id %s was given twice", id)
		}
		seen[id] = true
	}

	grown := int64(open) - int64(before)
	perSession := float64(grown) / sessions
	t.Logf("%d idle sessions: heap %d -> %d bytes, %.0f bytes per session", sessions, before, open, perSession)
	if perSession > memMaxPerSession {
		t.Errorf("an idle session holds %.0f bytes of heap, want at most %d", perSession, memMaxPerSession)
	}
	// A session holds at least its id, agent, protocol and three counters: a smaller
	// figure means the measurement saw nothing.
	if perSession < 64 {
		t.Errorf("an idle session holds %.0f bytes of heap, want at least 64: the measurement missed the sessions", perSession)
	}

	for _, id := range ids {
		memDelete(t, g, tok, id)
	}
	if n := g.Sessions(); n != 0 {
		t.Fatalf("Sessions() = %d after deleting every session, want 0", n)
	}
	after := heapAlloc()
	limit := before + before/4 + 1<<20
	t.Logf("after deleting every session: heap %d bytes (started at %d, limit %d)", after, before, limit)
	if after > limit {
		t.Errorf("heap after deleting %d sessions = %d bytes, want at most %d (start %d + 25%% + 1 MiB): sessions are not freed",
			sessions, after, limit, before)
	}
	runtime.KeepAlive(g)
}

// BenchmarkSessionOpen is opening one MCP session through ServeHTTP (initialize, then
// notifications/initialized), with the heap each open session holds reported as
// bytes/session. Sessions stay open, as idle sessions do, up to memBenchBatch at a time
// in one gateway; outside the timer, a full batch is deleted and the next batch starts
// in a new gateway, so that every batch pays for growing the session table.
func BenchmarkSessionOpen(b *testing.B) {
	const memBenchBatch = 2000
	g, tok := newTestGateway(b)
	ids := make([]string, 0, memBenchBatch)

	var heldBytes, held int64
	base := heapAlloc()
	measure := func() {
		heldBytes += int64(heapAlloc()) - int64(base)
		held += int64(len(ids))
		for _, id := range ids {
			memDelete(b, g, tok, id)
		}
		if n := g.Sessions(); n != 0 {
			b.Fatalf("Sessions() = %d after deleting every session, want 0", n)
		}
		ids = ids[:0]
		g, tok = newTestGateway(b)
		base = heapAlloc()
	}
	b.ReportAllocs()
	for b.Loop() {
		if len(ids) == memBenchBatch {
			b.StopTimer()
			measure()
			b.StartTimer()
		}
		ids = append(ids, memOpen(b, g, tok))
	}
	measure()
	b.ReportMetric(float64(heldBytes)/float64(held), "bytes/session")
}
