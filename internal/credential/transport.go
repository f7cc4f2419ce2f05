package credential

import "net/http"

// Transport wraps base (http.DefaultTransport if nil) so that every request to upstream
// carries upstream's credential. The request is cloned, never mutated: the caller's header
// map stays as it was.
//
// A request whose context carries a [CallInfo] ([WithCall]) gets the credential for that
// call, and the label [Broker.Apply] returns is appended to the CallInfo (see
// [CallInfo.Used]). A request without one (an MCP session's initialize, tools/list, the
// SSE GET) still gets the credential, since upstreams require authentication on every
// request, for a CallInfo with only Upstream set: a receipt then names no tool, agent or
// user (its sub is the gateway), and a token_exchange credential uses the client's own
// client_credentials token (it acts for no user). A CallInfo naming another upstream fails the request: a call's credential
// decisions must not leak to another upstream's transport.
//
// An upstream with no credential gets its requests passed to base untouched. When Apply
// fails, RoundTrip records the error on the CallInfo ([CallInfo.Err]), closes the request
// body and returns the error without calling base.
func (b *Broker) Transport(upstream string, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{b: b, upstream: upstream, base: base}
}

type transport struct {
	b        *Broker
	upstream string
	base     http.RoundTripper
}

// RoundTrip implements [http.RoundTripper].
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if _, ok := t.b.creds[t.upstream]; !ok {
		return t.base.RoundTrip(req)
	}
	ctx := req.Context()
	ci, ok := CallFrom(ctx)
	if !ok {
		ci = &CallInfo{Upstream: t.upstream}
	}
	fail := func(err error) (*http.Response, error) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	r2 := req.Clone(ctx) // a deep copy of the header map; the body is shared, as it must be
	if r2.Header == nil {
		r2.Header = http.Header{}
	}
	used, err := t.b.Apply(ctx, t.upstream, ci, r2.Header)
	if err != nil {
		ci.setErr(err)
		return fail(err)
	}
	ci.addUsed(used)
	return t.base.RoundTrip(r2)
}

// CloseIdleConnections closes base's idle connections, if it has a way to.
func (t *transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
