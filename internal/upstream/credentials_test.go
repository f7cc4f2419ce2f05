package upstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/chaperone-dev/chaperone/internal/demo"
	"github.com/chaperone-dev/chaperone/internal/upstream"
)

// callKey carries a per-call value from Call's context to the credentials transport.
type callKey struct{}

// TestHTTPCredentialsSeeTheCallContext shows that the transport Config.Credentials wraps
// runs for every request and sees the context of the Call that caused it, which is how the
// credential broker attaches a per-call credential.
func TestHTTPCredentialsSeeTheCallContext(t *testing.T) {
	t.Parallel()
	srv, _ := demo.NewServer(demo.Options{})
	var mu sync.Mutex
	var seen []string // the X-Call header of each tools/call the upstream received
	var unauth atomic.Int64
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer per-call" {
			unauth.Add(1)
			http.Error(w, "no credential", http.StatusUnauthorized)
			return
		}
		if c := r.Header.Get("X-Call"); c != "" {
			mu.Lock()
			seen = append(seen, c)
			mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)

	c := newClient(t, upstream.Config{Name: "http", URL: ts.URL, Credentials: func(base http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			r = r.Clone(r.Context())
			r.Header.Set("Authorization", "Bearer per-call")
			if v, ok := r.Context().Value(callKey{}).(string); ok {
				r.Header.Set("X-Call", v)
			}
			return base.RoundTrip(r)
		})
	}})
	waitReady(t, c)
	for _, id := range []string{"call-1", "call-2"} {
		ctx := context.WithValue(context.Background(), callKey{}, id)
		if _, err := c.Call(ctx, "read_file", json.RawMessage(`{"path":"nope"}`)); err != nil {
			t.Fatalf("Call(%s): %v", id, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, ",") != "call-1,call-2" {
		t.Errorf("the upstream saw calls %q, want call-1,call-2 (the context of each Call)", seen)
	}
	if n := unauth.Load(); n != 0 {
		t.Errorf("%d requests arrived without the credential", n)
	}
}

func TestStdioSecretEnvResolvedAtEachStart(t *testing.T) {
	t.Parallel()
	var starts atomic.Int64
	c := newClient(t, upstream.Config{Name: "stdio", Command: stdioServer, SecretEnv: func(ctx context.Context) ([]string, error) {
		n := starts.Add(1)
		if n == 1 {
			return nil, errors.New("secret crm-key: unknown secret")
		}
		return []string{"CRM_KEY=key-from-vault"}, nil
	}})
	waitReady(t, c) // the first start failed and was retried
	if starts.Load() < 2 {
		t.Fatalf("SecretEnv called %d times, want a retry after its failure", starts.Load())
	}
	raw, err := c.Call(context.Background(), "env", nil)
	if err != nil {
		t.Fatalf("Call(env): %v", err)
	}
	var env map[string]string
	if err := json.Unmarshal([]byte(decodeResult(t, raw).text()), &env); err != nil {
		t.Fatalf("env result %s: %v", raw, err)
	}
	if env["CRM_KEY"] != "key-from-vault" {
		t.Errorf("child environment CRM_KEY = %q, want the value SecretEnv returned", env["CRM_KEY"])
	}
}

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
