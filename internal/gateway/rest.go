package gateway

// The REST entry point: agents that do not speak MCP call tools over plain HTTP, with
// POST /v1/tools/{name}:call on the agent listener. A REST call is an MCP tools/call in
// another envelope: the same authentication (and audit of failures), the same bounds on
// what the call carries (checked by the same code), the same pipeline and audit events.
//
// What REST does not do: it keeps no session (a call's flow state and budget belong to its
// task, or to its agent without one — as for a sessionless MCP call; a Mcp-Session-Id
// header is ignored), and it cannot stream progress (a held call with "wait" blocks until
// a person decides or the approval hold ends, then answers once). docs/rest.md is the
// guide.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/chaperone-dev/chaperone/internal/pipeline"
)

// RequestIDHeader is the response header of the REST entry that carries the call's request
// id: the id its audit events and traces bear. Every response has it, refusals and
// malformed requests included.
const RequestIDHeader = "Chaperone-Request-Id"

// restCallSuffix ends the last path segment of a call: /v1/tools/{name}:call.
const restCallSuffix = ":call"

// The error codes of the REST entry's own refusals, for requests that never reached the
// pipeline. Refusals by the pipeline carry its [pipeline.Code] instead.
const (
	restInvalidRequest   = "invalid_request"
	restNotFound         = "not_found"
	restMethodNotAllowed = "method_not_allowed"
	restUnsupportedType  = "unsupported_media_type"
	restBodyTooLarge     = "body_too_large"
	restInternal         = "internal_error"
)

// restStatus is the HTTP status of a refusal with each pipeline code. Every code has an
// entry; TestRESTStatusCoversEveryCode fails when a code is added without one.
var restStatus = map[pipeline.Code]int{
	pipeline.CodeUnauthenticated: http.StatusUnauthorized,

	pipeline.CodeUnknownTool: http.StatusNotFound,

	pipeline.CodeInvalidArguments: http.StatusUnprocessableEntity,

	// The call is not allowed, now or ever, without something changing: a person, the
	// policy, the agent's standing or the credential.
	pipeline.CodeOutOfScope:       http.StatusForbidden,
	pipeline.CodeEnvironment:      http.StatusForbidden,
	pipeline.CodeQuarantined:      http.StatusForbidden,
	pipeline.CodeDeniedByPolicy:   http.StatusForbidden,
	pipeline.CodeApprovalRequired: http.StatusForbidden,
	pipeline.CodeApprovalDenied:   http.StatusForbidden,
	pipeline.CodeApprovalExpired:  http.StatusForbidden,
	pipeline.CodeSuggested:        http.StatusForbidden,
	pipeline.CodeKilled:           http.StatusForbidden,
	pipeline.CodeBreakerOpen:      http.StatusForbidden,
	pipeline.CodeEgressDenied:     http.StatusForbidden,
	pipeline.CodeResultWithheld:   http.StatusForbidden,

	// A person has been asked: the call has not run; retry it with the approval id.
	pipeline.CodeApprovalPending: http.StatusAccepted,

	// Too much, too fast, or the same thing too often.
	pipeline.CodeBudgetExhausted: http.StatusTooManyRequests,
	pipeline.CodeRateLimited:     http.StatusTooManyRequests,
	pipeline.CodeLoopDetected:    http.StatusTooManyRequests,

	// The idempotency key does not fit this call, or its earlier call's outcome is unknown.
	pipeline.CodeIdempotencyConflict: http.StatusConflict,
	pipeline.CodeIdempotencyUnknown:  http.StatusConflict,

	pipeline.CodePolicyError: http.StatusInternalServerError,

	pipeline.CodeUpstreamError: http.StatusBadGateway,

	// Something the gateway needs is out of reach for now; the same call may succeed later.
	pipeline.CodeToolUnavailable:       http.StatusServiceUnavailable,
	pipeline.CodeAuditUnavailable:      http.StatusServiceUnavailable,
	pipeline.CodeFlowUnavailable:       http.StatusServiceUnavailable,
	pipeline.CodeSensorUnavailable:     http.StatusServiceUnavailable,
	pipeline.CodeCredentialUnavailable: http.StatusServiceUnavailable,
}

// HTTPStatus returns the HTTP status of a refusal with code c, for every entry that answers
// over plain HTTP (the REST entry and the egress proxy); a code without an entry is an
// internal error.
func HTTPStatus(c pipeline.Code) int {
	if s, ok := restStatus[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// restOptionNames name the REST body's fields in errors.
var restOptionNames = optionNames{
	prompt: `field "prompt"`, approval: `field "approval_id"`, reason: `field "reason"`,
	idemKey: `field "idempotency_key"`, usage: `field "usage"`, strict: true,
}

// REST returns the handler of the REST entry point, to be mounted on the agent listener
// beside the MCP endpoint (its patterns are absolute: mount it at "/v1/" or "/"). It
// serves POST /v1/tools/{name}:call, where {name} is the tool's name as tools/call takes
// it, path-escaped. Every other path is a 404 and every other method a 405, both as JSON
// and both only after the credential is checked.
func (g *Gateway) REST() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/tools/{call}", g.restCall)
	mux.HandleFunc("/", g.restOther)
	return mux
}

// restOther answers requests for anything but a call, once they are authenticated.
func (g *Gateway) restOther(w http.ResponseWriter, r *http.Request) {
	rid := newID("req")
	w.Header().Set(RequestIDHeader, rid)
	a := g.arrive(r)
	if g.authenticate(w, r, &a, rid) == nil {
		writeRESTUnauthenticated(w, rid)
		return
	}
	writeRESTError(w, http.StatusNotFound, rid, restNotFound, "no such endpoint: call a tool with POST /v1/tools/{name}:call")
}

// restCall serves POST /v1/tools/{name}:call. Order of checks: authenticate (before
// anything is read; failures are audited), path, method, content type, body size, body,
// then the pipeline.
func (g *Gateway) restCall(w http.ResponseWriter, r *http.Request) {
	rid := newID("req")
	w.Header().Set(RequestIDHeader, rid)
	a := g.arrive(r)
	pr := g.authenticate(w, r, &a, rid)
	if pr == nil {
		writeRESTUnauthenticated(w, rid)
		return
	}
	tool, ok := strings.CutSuffix(r.PathValue("call"), restCallSuffix)
	if !ok || tool == "" {
		writeRESTError(w, http.StatusNotFound, rid, restNotFound, "no such endpoint: call a tool with POST /v1/tools/{name}:call")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeRESTError(w, http.StatusMethodNotAllowed, rid, restMethodNotAllowed, "method not allowed: call a tool with POST")
		return
	}
	if !isJSONContentType(r.Header.Get("Content-Type")) {
		writeRESTError(w, http.StatusUnsupportedMediaType, rid, restUnsupportedType, "unsupported content type: must be application/json")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.opts.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeRESTError(w, http.StatusRequestEntityTooLarge, rid, restBodyTooLarge, fmt.Sprintf("request body larger than %d bytes", g.opts.MaxBody))
			return
		}
		writeRESTError(w, http.StatusBadRequest, rid, restInvalidRequest, "request body could not be read")
		return
	}
	req, err := decodeRESTRequest(body)
	if err != nil {
		writeRESTError(w, http.StatusBadRequest, rid, restInvalidRequest, "invalid request: "+err.Error())
		return
	}
	c := &pipeline.Call{RequestID: rid, Principal: pr, Tool: tool, Arguments: req.Arguments}
	reported, err := req.options.apply(c, &restOptionNames)
	if err != nil {
		writeRESTError(w, http.StatusBadRequest, rid, restInvalidRequest, "invalid request: "+err.Error())
		return
	}
	ctx, span := g.startCall(r.Context(), a, &traceMeta{}, rid, pr, nil, nil, "", tool, reported)
	defer span.End()
	out := g.opts.Calls.Handle(ctx, c)
	switch {
	case out.Refusal != nil:
		writeRESTRefusal(w, rid, out.Refusal)
	case len(out.Result) == 0:
		// Neither a result nor a refusal: nothing to pass on, so nothing is (fail closed).
		g.opts.Logger.ErrorContext(ctx, "call ended without a result", "request_id", rid)
		writeRESTError(w, http.StatusInternalServerError, rid, restInternal, "the call ended without a result")
	default:
		writeRESTResult(w, rid, out.Result)
	}
}

// restRequest is the body of a call.
type restRequest struct {
	// Arguments are the tool's arguments as sent, for the pipeline to check; nil if none.
	Arguments json.RawMessage
	options   callOptions
}

// maxFieldNameBytes bounds how much of an unknown field's name an error repeats.
const maxFieldNameBytes = 64

// decodeRESTRequest decodes a call's body: one JSON object whose fields are "arguments"
// (passed on as sent: the pipeline checks it is an object), "approval_id", "wait",
// "reason", "idempotency_key", "usage" and "prompt", each at most once. null is the same
// as leaving a field out. An unknown or repeated field, a value of the wrong type, or
// anything after the object is an error saying which. The bounds on the values are
// [callOptions.apply]'s.
func decodeRESTRequest(body []byte) (*restRequest, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return nil, errors.New("request body must be a JSON object")
	}
	if !json.Valid(body) {
		// Only an invalid body pays for the second scan that says where it goes wrong.
		var se *json.SyntaxError
		if err := json.Unmarshal(body, new(struct{})); errors.As(err, &se) {
			return nil, fmt.Errorf("request body is not valid JSON: %s (at byte %d)", se.Error(), se.Offset)
		}
		return nil, errors.New("request body is not valid JSON")
	}
	// The body is valid JSON from here on: the decoder's errors are about its shape.
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil {
		return nil, errors.New("request body is not valid JSON")
	}
	req := &restRequest{}
	o := &req.options
	var seen uint8
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errors.New("request body is not valid JSON")
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, errors.New("request body is not valid JSON")
		}
		bit, ok := restFields[key]
		if !ok {
			return nil, fmt.Errorf("unknown field %q (known: arguments, approval_id, wait, reason, idempotency_key, usage, prompt)", truncate(key, maxFieldNameBytes))
		}
		if seen&bit != 0 {
			return nil, fmt.Errorf("field %q appears more than once", key)
		}
		seen |= bit
		if string(raw) == "null" {
			continue
		}
		switch key {
		case "arguments":
			req.Arguments = raw
		case "usage":
			o.Usage = raw
		case "wait":
			var b bool
			if json.Unmarshal(raw, &b) != nil {
				return nil, errors.New(`field "wait" must be true or false`)
			}
			o.Wait = &b
		default:
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return nil, fmt.Errorf("field %q must be a string", key)
			}
			switch key {
			case "approval_id":
				o.Approval = s
			case "reason":
				o.Reason = s
			case "idempotency_key":
				o.IdemKey = s
			case "prompt":
				o.Prompt = &s
			}
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, errors.New("request body is not valid JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("request body must hold one JSON object and nothing after it")
	}
	return req, nil
}

// restFields are the fields of a call's body, each with its bit in a set of seen fields.
var restFields = map[string]uint8{
	"arguments": 1 << 0, "approval_id": 1 << 1, "wait": 1 << 2, "reason": 1 << 3,
	"idempotency_key": 1 << 4, "usage": 1 << 5, "prompt": 1 << 6,
}

// restError is the error of a refused REST call.
type restError struct {
	Code        string   `json:"code"`
	Message     string   `json:"message"`
	Rules       []string `json:"rules,omitempty"`
	Explanation string   `json:"explanation,omitempty"`
	ApprovalID  string   `json:"approval_id,omitempty"`
}

// writeRESTResult writes a call's result, as the upstream returned it.
func writeRESTResult(w http.ResponseWriter, rid string, result json.RawMessage) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	b := make([]byte, 0, len(result)+len(rid)+32)
	b = append(b, `{"request_id":`...)
	b = appendJSONString(b, rid)
	b = append(b, `,"result":`...)
	b = append(b, result...)
	b = append(b, '}')
	w.Write(b)
}

// writeRESTRefusal writes a pipeline's refusal with the status of its code.
func writeRESTRefusal(w http.ResponseWriter, rid string, r *pipeline.Refusal) {
	writeRESTBody(w, HTTPStatus(r.Code), rid, &restError{Code: string(r.Code), Message: r.Message, Rules: r.Rules,
		Explanation: r.Explanation, ApprovalID: r.ApprovalID})
}

// writeRESTUnauthenticated writes the 401 of a refused credential; the challenge is set.
func writeRESTUnauthenticated(w http.ResponseWriter, rid string) {
	writeRESTError(w, http.StatusUnauthorized, rid, string(pipeline.CodeUnauthenticated), "unauthenticated: a valid bearer token is required")
}

// writeRESTError writes one of the REST entry's own refusals.
func writeRESTError(w http.ResponseWriter, status int, rid, code, msg string) {
	writeRESTBody(w, status, rid, &restError{Code: code, Message: msg})
}

func writeRESTBody(w http.ResponseWriter, status int, rid string, e *restError) {
	body, err := json.Marshal(struct {
		RequestID string     `json:"request_id"`
		Error     *restError `json:"error"`
	}{rid, e})
	if err != nil {
		// A struct of strings always encodes; should it not, say nothing more than that.
		status, body = http.StatusInternalServerError, []byte(`{"error":{"code":"internal_error","message":"the response could not be encoded"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(body)
}

// appendJSONString appends s as a JSON string. Request ids are URL-safe base64 with a
// prefix, so the fast path copies them as they are.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
