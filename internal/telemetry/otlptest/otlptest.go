// Package otlptest runs real OTLP trace receivers on the loopback interface for tests:
// [StartHTTP] accepts OTLP/HTTP (protobuf or JSON, optionally gzip-compressed) and
// [StartGRPC] serves the OTLP TraceService over gRPC. A test points an exporter at
// [Receiver.Endpoint] and reads what arrived with [Receiver.Spans] or
// [Receiver.WaitSpans]. Both receivers stop when the test ends.
package otlptest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // accept gzip-compressed exports
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Bounds of the receivers.
const (
	// MaxBodyBytes bounds one OTLP/HTTP request body, before and after decompression.
	MaxBodyBytes = 16 << 20
	// MaxSpans bounds the spans a receiver keeps; later ones are counted in
	// [Receiver.Dropped].
	MaxSpans = 100_000
	// maxValueDepth bounds the nesting of an attribute value that is converted.
	maxValueDepth = 32
)

// TracesPath is the OTLP/HTTP path for traces.
const TracesPath = "/v1/traces"

// Span is one received span, flattened: with the attributes of its resource and
// instrumentation scope.
type Span struct {
	Name string
	// TraceID, SpanID and ParentSpanID are lower-case hex; ParentSpanID is "" for a
	// root span.
	TraceID, SpanID, ParentSpanID string
	// Kind is "internal", "server", "client", "producer", "consumer" or "unspecified".
	Kind string
	// Attributes maps each attribute to a string, bool, int64, float64, []byte, []any or
	// map[string]any.
	Attributes map[string]any
	// Status is "unset", "ok" or "error"; StatusMessage its description.
	Status        string
	StatusMessage string
	// Resource holds the attributes of the span's resource.
	Resource map[string]any
	// Scope is the instrumentation scope's name and ScopeAttributes its attributes.
	Scope           string
	ScopeAttributes map[string]any
	Start, End      time.Time
}

// Receiver collects the spans exported to it. It is safe for concurrent use.
type Receiver struct {
	endpoint string

	// mu guards the fields below.
	mu       sync.Mutex
	spans    []Span
	dropped  int
	requests int
	headers  http.Header
	// changed is closed and replaced whenever spans arrive.
	changed chan struct{}
}

func newReceiver() *Receiver {
	return &Receiver{headers: http.Header{}, changed: make(chan struct{})}
}

// StartHTTP starts an OTLP/HTTP receiver on 127.0.0.1. It accepts POST /v1/traces
// with an ExportTraceServiceRequest in application/x-protobuf or application/json
// (ids in hex, as OTLP/JSON has them), optionally gzip-compressed, of at most
// [MaxBodyBytes]. [Receiver.Endpoint] is the full URL. It stops when t ends.
func StartHTTP(t testing.TB) *Receiver {
	t.Helper()
	r := newReceiver()
	mux := http.NewServeMux()
	mux.HandleFunc(TracesPath, r.serveHTTP)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ReadHeaderTimeout = 10 * time.Second
	srv.Config.ReadTimeout = 30 * time.Second
	srv.Config.WriteTimeout = 30 * time.Second
	srv.Config.IdleTimeout = time.Minute
	srv.Config.MaxHeaderBytes = 64 << 10
	srv.Start()
	t.Cleanup(srv.Close)
	r.endpoint = srv.URL + TracesPath
	return r
}

// StartGRPC starts an OTLP/gRPC receiver (the TraceService, without TLS) on
// 127.0.0.1. [Receiver.Endpoint] is its host:port. It stops when t ends.
func StartGRPC(t testing.TB) *Receiver {
	t.Helper()
	r := newReceiver()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("otlptest: listen: %v", err)
	}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, traceService{r: r})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis) // returns when Stop closes the listener
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	r.endpoint = lis.Addr().String()
	return r
}

// Endpoint is where to export to: the URL of POST /v1/traces for an HTTP receiver,
// host:port for a gRPC receiver.
func (r *Receiver) Endpoint() string { return r.endpoint }

// Spans returns a copy of the spans received so far, in the order they arrived.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Requests returns how many export requests were accepted.
func (r *Receiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// Dropped returns how many spans arrived after the receiver held [MaxSpans].
func (r *Receiver) Dropped() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped
}

// Headers returns the HTTP headers, or gRPC metadata, of every accepted export
// request, merged, with canonical names.
func (r *Receiver) Headers() http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.headers.Clone()
}

// WaitSpans waits until at least n spans have arrived and returns them; it fails t if
// they have not within timeout.
func (r *Receiver) WaitSpans(t testing.TB, n int, timeout time.Duration) []Span {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		if len(r.spans) >= n {
			spans := append([]Span(nil), r.spans...)
			r.mu.Unlock()
			return spans
		}
		got, changed := len(r.spans), r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("otlptest: %d spans arrived at %s within %s, want at least %d", got, r.endpoint, timeout, n)
			return nil
		}
	}
}

// add records an accepted export request.
func (r *Receiver) add(req *coltracepb.ExportTraceServiceRequest, h http.Header) {
	spans := Flatten(req)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	for name, values := range h {
		r.headers[http.CanonicalHeaderKey(name)] = append(r.headers[http.CanonicalHeaderKey(name)], values...)
	}
	room := max(MaxSpans-len(r.spans), 0)
	if len(spans) > room {
		r.dropped += len(spans) - room
		spans = spans[:room]
	}
	r.spans = append(r.spans, spans...)
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *Receiver) serveHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ct, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil || (ct != contentProtobuf && ct != contentJSON) {
		http.Error(w, "unsupported content type (want application/x-protobuf or application/json)", http.StatusUnsupportedMediaType)
		return
	}
	body, err := readBody(w, req)
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, errTooLarge) {
			status = http.StatusRequestEntityTooLarge
		}
		http.Error(w, err.Error(), status)
		return
	}
	msg, err := DecodeHTTP(body, ct)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.add(msg, req.Header)
	resp := &coltracepb.ExportTraceServiceResponse{}
	var out []byte
	if ct == contentJSON {
		out, err = protojson.Marshal(resp)
	} else {
		out, err = proto.Marshal(resp)
	}
	if err != nil {
		http.Error(w, "encode response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ct)
	_, _ = w.Write(out)
}

// The OTLP/HTTP content types.
const (
	contentProtobuf = "application/x-protobuf"
	contentJSON     = "application/json"
)

var errTooLarge = fmt.Errorf("body larger than %d bytes", MaxBodyBytes)

// readBody reads a request body of at most MaxBodyBytes, decompressing gzip.
func readBody(w http.ResponseWriter, req *http.Request) ([]byte, error) {
	var body io.Reader = http.MaxBytesReader(w, req.Body, MaxBodyBytes)
	switch enc := req.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, fmt.Errorf("gzip body: %w", err)
		}
		defer zr.Close()
		body = zr
	default:
		return nil, fmt.Errorf("content encoding %q: unsupported", enc)
	}
	data, err := io.ReadAll(io.LimitReader(body, MaxBodyBytes+1))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe), len(data) > MaxBodyBytes:
		return nil, errTooLarge
	case err != nil:
		return nil, fmt.Errorf("read body: %w", err)
	}
	return data, nil
}

// DecodeHTTP decodes an OTLP/HTTP trace export body of the given content type
// ("application/x-protobuf" or "application/json"). In JSON, trace and span ids are
// hex, as OTLP/JSON writes them; unknown fields are ignored.
func DecodeHTTP(body []byte, contentType string) (*coltracepb.ExportTraceServiceRequest, error) {
	msg := &coltracepb.ExportTraceServiceRequest{}
	switch contentType {
	case contentProtobuf:
		if err := proto.Unmarshal(body, msg); err != nil {
			return nil, fmt.Errorf("decode protobuf request: %w", err)
		}
	case contentJSON:
		norm, err := hexIDsToBase64(body)
		if err != nil {
			return nil, fmt.Errorf("decode json request: %w", err)
		}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(norm, msg); err != nil {
			return nil, fmt.Errorf("decode json request: %w", err)
		}
	default:
		return nil, fmt.Errorf("content type %q: unsupported", contentType)
	}
	return msg, nil
}

// hexIDsToBase64 rewrites the trace and span ids of an OTLP/JSON request from hex,
// which OTLP/JSON uses, to base64, which protojson expects for bytes fields. Ids that
// are not hex are left for protojson to judge.
func hexIDsToBase64(body []byte) ([]byte, error) {
	var root map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&root); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the request")
	}
	for _, rs := range objects(root["resourceSpans"]) {
		for _, ss := range objects(rs["scopeSpans"]) {
			for _, sp := range objects(ss["spans"]) {
				rewriteIDs(sp, "traceId", "spanId", "parentSpanId")
				for _, l := range objects(sp["links"]) {
					rewriteIDs(l, "traceId", "spanId")
				}
			}
		}
	}
	return json.Marshal(root)
}

// objects returns the JSON objects in v if it is an array.
func objects(v any) []map[string]any {
	list, _ := v.([]any)
	out := make([]map[string]any, 0, len(list))
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func rewriteIDs(m map[string]any, keys ...string) {
	for _, k := range keys {
		s, ok := m[k].(string)
		if !ok {
			continue
		}
		if b, err := hex.DecodeString(s); err == nil {
			m[k] = base64.StdEncoding.EncodeToString(b)
		}
	}
}

// traceService is the OTLP/gRPC TraceService of a receiver.
type traceService struct {
	coltracepb.UnimplementedTraceServiceServer
	r *Receiver
}

func (s traceService) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	h := http.Header{}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		for k, v := range md {
			h[http.CanonicalHeaderKey(k)] = append([]string(nil), v...)
		}
	}
	s.r.add(req, h)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// Flatten returns the spans of an export request, each with its resource's and
// scope's attributes.
func Flatten(req *coltracepb.ExportTraceServiceRequest) []Span {
	var out []Span
	for _, rs := range req.GetResourceSpans() {
		res := attributes(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			scope := attributes(ss.GetScope().GetAttributes())
			for _, sp := range ss.GetSpans() {
				out = append(out, Span{
					Name:            sp.GetName(),
					TraceID:         hex.EncodeToString(sp.GetTraceId()),
					SpanID:          hex.EncodeToString(sp.GetSpanId()),
					ParentSpanID:    hex.EncodeToString(sp.GetParentSpanId()),
					Kind:            spanKind(sp.GetKind()),
					Attributes:      attributes(sp.GetAttributes()),
					Status:          statusCode(sp.GetStatus().GetCode()),
					StatusMessage:   sp.GetStatus().GetMessage(),
					Resource:        res,
					Scope:           ss.GetScope().GetName(),
					ScopeAttributes: scope,
					Start:           unixNano(sp.GetStartTimeUnixNano()),
					End:             unixNano(sp.GetEndTimeUnixNano()),
				})
			}
		}
	}
	return out
}

func unixNano(n uint64) time.Time {
	if n > uint64(1<<63-1) {
		n = 1<<63 - 1
	}
	return time.Unix(0, int64(n)).UTC()
}

func spanKind(k tracepb.Span_SpanKind) string {
	switch k {
	case tracepb.Span_SPAN_KIND_UNSPECIFIED:
		return "unspecified"
	case tracepb.Span_SPAN_KIND_INTERNAL:
		return "internal"
	case tracepb.Span_SPAN_KIND_SERVER:
		return "server"
	case tracepb.Span_SPAN_KIND_CLIENT:
		return "client"
	case tracepb.Span_SPAN_KIND_PRODUCER:
		return "producer"
	case tracepb.Span_SPAN_KIND_CONSUMER:
		return "consumer"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

func statusCode(c tracepb.Status_StatusCode) string {
	switch c {
	case tracepb.Status_STATUS_CODE_UNSET:
		return "unset"
	case tracepb.Status_STATUS_CODE_OK:
		return "ok"
	case tracepb.Status_STATUS_CODE_ERROR:
		return "error"
	}
	return "code(" + strconv.Itoa(int(c)) + ")"
}

func attributes(kvs []*commonpb.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = value(kv.GetValue(), 0)
	}
	return m
}

// value converts an attribute value; nesting deeper than maxValueDepth becomes nil.
func value(v *commonpb.AnyValue, depth int) any {
	if v == nil || depth > maxValueDepth {
		return nil
	}
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	case *commonpb.AnyValue_BytesValue:
		return x.BytesValue
	case *commonpb.AnyValue_ArrayValue:
		list := make([]any, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			list = append(list, value(e, depth+1))
		}
		return list
	case *commonpb.AnyValue_KvlistValue:
		m := make(map[string]any, len(x.KvlistValue.GetValues()))
		for _, kv := range x.KvlistValue.GetValues() {
			m[kv.GetKey()] = value(kv.GetValue(), depth+1)
		}
		return m
	}
	return nil
}
