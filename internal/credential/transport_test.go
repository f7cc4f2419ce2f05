package credential

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// trackedBody is a request body that records whether it was closed.
type trackedBody struct {
	io.Reader
	closed atomic.Bool
}

func (b *trackedBody) Close() error { b.closed.Store(true); return nil }

// countingTransport counts the requests it passes on.
type countingTransport struct {
	base http.RoundTripper
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

func TestTransport(t *testing.T) {
	t.Parallel()
	const key = "crm-api-key-0123456789"
	e := newEnv(t, "secret:crm-key", key)
	b := e.broker(t, map[string]Spec{"crm": {Type: TypeBearer, Secret: "secret:crm-key"}})
	srv := newHeaderServer(t)
	rt := b.Transport("crm", http.DefaultTransport)

	ci := &CallInfo{Upstream: "crm", Tool: "crm.lookup", Agent: "a1"}
	for range 2 {
		body := &trackedBody{Reader: strings.NewReader(`{"jsonrpc":"2.0"}`)}
		req, err := http.NewRequestWithContext(WithCall(context.Background(), ci), http.MethodPost, srv.URL, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer agent-supplied") // replaced, not forwarded
		before := req.Header.Clone()
		res, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatalf("RoundTrip: %v", err)
		}
		res.Body.Close()
		if got := srv.last(t).Get("Authorization"); got != "Bearer "+key {
			t.Errorf("upstream saw Authorization %q, want the broker's credential", got)
		}
		if srv.last(t).Get("Content-Type") != "application/json" {
			t.Error("the caller's other headers did not reach the upstream")
		}
		if len(req.Header) != len(before) || req.Header.Get("Authorization") != "Bearer agent-supplied" {
			t.Errorf("the caller's request was mutated: header %v, was %v", req.Header, before)
		}
	}
	if got := ci.Used(); len(got) != 2 || got[0] != "bearer:crm-key" || got[1] != "bearer:crm-key" {
		t.Errorf("Used() = %q, want bearer:crm-key for each of 2 requests", got)
	}
	if ci.Err() != nil {
		t.Errorf("CallInfo.Err() = %v after successful requests", ci.Err())
	}
	if !b.Has("crm") || b.Has("billing") {
		t.Errorf("Has(crm), Has(billing) = %v, %v; want true, false", b.Has("crm"), b.Has("billing"))
	}

	t.Run("no CallInfo still authenticates", func(t *testing.T) {
		if err := get(t, b, "crm", srv.URL, nil); err != nil {
			t.Fatal(err)
		}
		if got := srv.last(t).Get("Authorization"); got != "Bearer "+key {
			t.Errorf("session request without a call: Authorization %q, want the credential", got)
		}
	})
	t.Run("CallInfo without Upstream is for this one", func(t *testing.T) {
		ci := &CallInfo{Tool: "x"}
		if err := get(t, b, "crm", srv.URL, ci); err != nil {
			t.Fatal(err)
		}
		if len(ci.Used()) != 1 {
			t.Errorf("Used() = %q, want one label", ci.Used())
		}
	})
}

func TestTransportRefuses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "secret:crm-key", "crm-api-key-0123456789")
	b := e.broker(t, map[string]Spec{
		"crm":     {Type: TypeBearer, Secret: "secret:crm-key"},
		"billing": {Type: TypeBearer, Secret: "secret:billing-key"}, // not in the store
	})
	srv := newHeaderServer(t)
	for _, tc := range []struct {
		name, upstream string
		ci             *CallInfo
		want           string
	}{
		{"call for another upstream", "crm", &CallInfo{Upstream: "billing", Tool: "refund"}, `credential for upstream "crm": the call is for upstream "billing"`},
		{"credential fails", "billing", &CallInfo{Upstream: "billing"}, `credential for upstream "billing": resolve secret:billing-key`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := &countingTransport{base: http.DefaultTransport}
			body := &trackedBody{Reader: strings.NewReader("{}")}
			req, err := http.NewRequestWithContext(WithCall(context.Background(), tc.ci), http.MethodPost, srv.URL, body)
			if err != nil {
				t.Fatal(err)
			}
			res, err := b.Transport(tc.upstream, base).RoundTrip(req)
			if err == nil {
				res.Body.Close()
				t.Fatal("RoundTrip succeeded, want refused")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("RoundTrip error %q, want it to contain %q", err, tc.want)
			}
			if base.n.Load() != 0 {
				t.Error("the refused request reached the base transport")
			}
			if !body.closed.Load() {
				t.Error("the refused request's body was not closed")
			}
			if len(tc.ci.Used()) != 0 {
				t.Errorf("Used() = %q after a refusal", tc.ci.Used())
			}
			if cerr := tc.ci.Err(); cerr == nil || cerr.Error() != err.Error() {
				t.Errorf("CallInfo.Err() = %v, want the transport's error %v", cerr, err)
			}
		})
	}
}

func TestTransportWithoutCredentialPassesThrough(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.broker(t, map[string]Spec{})
	srv := newHeaderServer(t)
	ci := &CallInfo{Upstream: "plain"}
	if err := get(t, b, "plain", srv.URL, ci); err != nil {
		t.Fatal(err)
	}
	if h := srv.last(t); h.Get("Authorization") != "" {
		t.Errorf("upstream without a credential got Authorization %q", h.Get("Authorization"))
	}
	if len(ci.Used()) != 0 {
		t.Errorf("Used() = %q for an upstream without a credential", ci.Used())
	}
}

func TestCallFrom(t *testing.T) {
	t.Parallel()
	if _, ok := CallFrom(context.Background()); ok {
		t.Error("CallFrom(empty context) found a call")
	}
	if _, ok := CallFrom(WithCall(context.Background(), nil)); ok {
		t.Error("CallFrom found a nil call")
	}
	ci := &CallInfo{Tool: "t"}
	if got, ok := CallFrom(WithCall(context.Background(), ci)); !ok || got != ci {
		t.Errorf("CallFrom = %p, %v; want %p", got, ok, ci)
	}
}
