package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/egress"
	"github.com/chaperone-dev/chaperone/internal/gateway"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/inspect"
	"github.com/chaperone-dev/chaperone/internal/pipeline"
	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/upstream"
)

// The egress proxy's requests are calls of a tool the gateway provides: policy rules name
// it, and its arguments describe the request.
const (
	egressTool     = config.EgressTool
	egressUpstream = "egress"
)

// egressDefinition is the egress tool's definition: what policy conditions see as args.
var egressDefinition = upstream.Tool{
	Name:        egressTool,
	Description: "An HTTP request or HTTPS tunnel an agent makes through the egress proxy.",
	InputSchema: json.RawMessage(`{"type":"object","additionalProperties":false,` +
		`"required":["method","scheme","host","port","url","connect","rule"],"properties":{` +
		`"method":{"type":"string"},"scheme":{"type":"string","enum":["http","https"]},` +
		`"host":{"type":"string"},"port":{"type":"integer","minimum":1,"maximum":65535},` +
		`"url":{"type":"string"},"connect":{"type":"boolean"},"rule":{"type":"string"},` +
		`"query_dropped":{"type":"boolean"}}}`),
}

// egressArgs are the egress tool's arguments.
type egressArgs struct {
	Method       string `json:"method"`
	Scheme       string `json:"scheme"`
	Host         string `json:"host"`
	Port         int    `json:"port"`
	URL          string `json:"url"`
	Connect      bool   `json:"connect"`
	Rule         string `json:"rule"`
	QueryDropped bool   `json:"query_dropped,omitempty"`
}

// buildEgress sets up the egress proxy and binds its listener, when egress.listen is set.
func (d *Daemon) buildEgress() (err error) {
	e := d.cfg.Egress
	if e.Listen == "" {
		return nil
	}
	sensors, err := toolSettings(d.cfg, config.Tool{Upstream: egressUpstream, Name: egressTool, Class: policy.ClassExternal})
	if err != nil {
		return fmt.Errorf("egress: %w", err)
	}
	// The proxy itself allow-lists the destination and vets every address it resolves to
	// (with egress.allow_private); the argument sensor, which knows neither, would only
	// second-guess it.
	if sensors.Egress, err = inspect.CompileEgress(inspect.EgressPolicy{AllowPrivate: true}); err != nil {
		return fmt.Errorf("egress: %w", err)
	}
	if d.egressTool, err = registry.Builtin(registry.Declaration{Name: egressTool, Upstream: egressUpstream, UpstreamName: egressTool,
		Class: policy.ClassExternal, Sensors: sensors}, egressDefinition); err != nil {
		return err
	}
	rules := make([]egress.Rule, len(e.Rules))
	for i, r := range e.Rules {
		rules[i] = egress.Rule{Name: r.Name, Agents: r.Agents, Hosts: r.Hosts, Methods: r.Methods, Ports: r.Ports}
	}
	d.egress, err = egress.New(egress.Options{
		Authenticate: func(ctx context.Context, authorization string) (*identity.Principal, error) {
			pr, _, err := d.auth.AuthenticateContext(ctx, authorization)
			return pr, err
		},
		Rules: rules, Decide: d.decideEgress, Refused: d.egressRefused, Inject: d.injectEgress,
		Resolver: d.opts.EgressResolver, AllowPrivate: e.AllowPrivatePrefixes(),
		DialTimeout: e.DialTimeout.D(), IdleTimeout: e.IdleTimeout.D(),
		Logger: d.log.With("component", "egress"),
	})
	if err != nil {
		return fmt.Errorf("egress: %w", err)
	}
	if d.egressLn, err = net.Listen("tcp", e.Listen); err != nil {
		return fmt.Errorf("listen %s: %w", e.Listen, err)
	}
	return nil
}

// EgressURL is the egress proxy's URL, or "" when it is off.
func (d *Daemon) EgressURL() string {
	if d.egressLn == nil {
		return ""
	}
	return "http://" + d.egressLn.Addr().String()
}

// egressServer serves the proxy: its handler is the proxy itself (a ServeMux would mangle
// absolute-form and CONNECT requests).
func (d *Daemon) egressServer() *http.Server {
	s := d.httpServer(d.egress)
	s.DisableGeneralOptionsHandler = true
	s.WriteTimeout = 0 // tunnels and streamed bodies are bounded by the proxy's idle timeout
	s.ReadTimeout = 0
	return s
}

type egressForwardKey struct{}

// egressForward is the forwarder of one allowed egress request, and what it reported.
type egressForward struct {
	fn     func(context.Context) (egress.Result, error)
	result egress.Result
}

// forwardEgress runs the forwarder of the egress request ctx belongs to, and returns the
// outcome as a tool result for the audit log.
func forwardEgress(ctx context.Context) (json.RawMessage, error) {
	f, ok := ctx.Value(egressForwardKey{}).(*egressForward)
	if !ok {
		return nil, errors.New("egress: no request to forward: the egress tool is only reachable through the egress proxy")
	}
	res, err := f.fn(ctx)
	f.result = res
	if ex, ok := pipeline.ExecutionFrom(ctx); ok {
		for _, l := range res.Injected {
			ex.UsedCredential(l)
		}
	}
	if err != nil {
		return nil, err
	}
	text := fmt.Sprintf("HTTP %d, %d bytes relayed", res.Status, res.Bytes)
	return json.Marshal(map[string]any{
		"content":           []map[string]string{{"type": "text", "text": text}},
		"structuredContent": map[string]any{"status": res.Status, "bytes": res.Bytes, "sent": res.Sent},
		"isError":           res.Status >= 400,
	})
}

// decideEgress runs an egress request through the pipeline as a call of the egress tool:
// kill switches, policy, budgets and rate limits, flow rules and audit all apply. A call
// a person must approve cannot wait inside an HTTP request: it ends pending, and the agent
// retries once it is approved (approval ids are not carried over the proxy yet, so the
// retry is decided afresh).
func (d *Daemon) decideEgress(ctx context.Context, r *egress.Request, forward func(context.Context) (egress.Result, error)) *egress.Refusal {
	args, err := json.Marshal(egressArgs{Method: r.Method, Scheme: r.Scheme, Host: r.Host, Port: r.Port, URL: r.URL,
		Connect: r.Connect, Rule: r.Rule, QueryDropped: r.QueryDropped})
	if err != nil {
		return &egress.Refusal{Status: http.StatusInternalServerError, Code: egress.CodeInternal, Message: "The gateway could not describe this request."}
	}
	fw := &egressForward{fn: forward}
	c := &pipeline.Call{RequestID: gateway.NewRequestID(), Principal: r.Principal, Tool: egressTool, Arguments: args,
		NoWait: true, Builtin: d.egressTool}
	out := d.pipeline.Handle(context.WithValue(ctx, egressForwardKey{}, fw), c)
	if out.Refusal == nil {
		return nil
	}
	if fw.result.Status != 0 {
		// The request ran and the agent has its answer; the refusal is the pipeline's
		// verdict on what came back (a result sensor), already on record.
		return nil
	}
	return &egress.Refusal{Status: gateway.HTTPStatus(out.Refusal.Code), Code: string(out.Refusal.Code), Message: out.Refusal.Message}
}

// egressRefused records a request the proxy refused itself, like a refused tool call.
func (d *Daemon) egressRefused(ctx context.Context, r *egress.Request, code, reason string) {
	ev := &audit.Event{Time: time.Now(), Kind: audit.KindCallRefused, RequestID: gateway.NewRequestID(), Tool: egressTool,
		Upstream: egressUpstream, Decision: "deny", Reason: code, Message: reason}
	if r != nil {
		if pr := r.Principal; pr != nil {
			ev.User, ev.Task, ev.Chain, ev.TokenID = pr.User, pr.Task, pr.Chain, pr.TokenID
			if pr.Agent != nil {
				ev.Agent = pr.Agent.ID
			}
		}
		if r.Host != "" {
			ev.Sensors = []string{"egress:denied:" + r.Host}
			ev.Detail = fmt.Sprintf("%s %s", r.Method, r.URL)
		}
	}
	if err := d.audit.Append(context.WithoutCancel(ctx), ev); err != nil {
		d.log.ErrorContext(ctx, "egress refusal not recorded", "code", code, "err", err)
	}
}

// injectEgress attaches the credential of the rule that allowed a plain-HTTP request.
func (d *Daemon) injectEgress(ctx context.Context, r *egress.Request, h http.Header) ([]string, error) {
	name := egressCredentialPrefix + r.Rule
	if !d.broker.Has(name) {
		return nil, nil
	}
	// Inject runs inside forward, which only the pipeline's execution of the egress tool
	// calls: without one there is no decided call to attach a credential to.
	ex, ok := pipeline.ExecutionFrom(ctx)
	if !ok {
		return nil, errors.New("egress: a credential is attached only to a request the policy allowed")
	}
	used, err := d.broker.Apply(ctx, name, callInfo(name, r.Principal, ex), h)
	if err != nil {
		ex.CredentialFailed(err)
		return nil, err
	}
	return []string{used}, nil
}
