package otlptest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

var (
	traceID = mustHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID  = mustHex("00f067aa0ba902b7")
	childID = mustHex("b7ad6b7169203331")
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func str(s string) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
}

// request is an export of two spans, parent and child, with every kind of value.
func request() *coltracepb.ExportTraceServiceRequest {
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: str("chaperone")}}},
		ScopeSpans: []*tracepb.ScopeSpans{{
			Scope: &commonpb.InstrumentationScope{Name: "gateway", Attributes: []*commonpb.KeyValue{{Key: "scope.k", Value: str("v")}}},
			Spans: []*tracepb.Span{
				{
					TraceId: traceID, SpanId: spanID, Name: "parent", Kind: tracepb.Span_SPAN_KIND_SERVER,
					StartTimeUnixNano: 1_700_000_000_000_000_000, EndTimeUnixNano: 1_700_000_001_000_000_000,
					Attributes: []*commonpb.KeyValue{
						{Key: "s", Value: str("x")},
						{Key: "i", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: -7}}},
						{Key: "f", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 0.5}}},
						{Key: "b", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}},
						{Key: "list", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{str("a"), str("b")}}}}},
						{Key: "map", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: []*commonpb.KeyValue{{Key: "k", Value: str("v")}}}}}},
					},
					Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_OK},
				},
				{
					TraceId: traceID, SpanId: childID, ParentSpanId: spanID, Name: "child", Kind: tracepb.Span_SPAN_KIND_CLIENT,
					Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "boom"},
					Links:  []*tracepb.Span_Link{{TraceId: traceID, SpanId: spanID}},
				},
			},
		}},
	}}}
}

func checkSpans(t *testing.T, spans []Span) {
	t.Helper()
	if len(spans) != 2 {
		t.Fatalf("got %d spans, want 2: %+v", len(spans), spans)
	}
	p, c := spans[0], spans[1]
	if p.Name != "parent" || p.TraceID != hex.EncodeToString(traceID) || p.SpanID != hex.EncodeToString(spanID) || p.ParentSpanID != "" || p.Kind != "server" || p.Status != "ok" {
		t.Errorf("parent = %+v", p)
	}
	if c.Name != "child" || c.ParentSpanID != p.SpanID || c.TraceID != p.TraceID || c.Kind != "client" || c.Status != "error" || c.StatusMessage != "boom" {
		t.Errorf("child = %+v, want the child of %s", c, p.SpanID)
	}
	if p.Attributes["s"] != "x" || p.Attributes["i"] != int64(-7) || p.Attributes["f"] != 0.5 || p.Attributes["b"] != true {
		t.Errorf("parent attributes = %v", p.Attributes)
	}
	if l, ok := p.Attributes["list"].([]any); !ok || len(l) != 2 || l[1] != "b" {
		t.Errorf("parent attribute list = %#v", p.Attributes["list"])
	}
	if m, ok := p.Attributes["map"].(map[string]any); !ok || m["k"] != "v" {
		t.Errorf("parent attribute map = %#v", p.Attributes["map"])
	}
	if p.Resource["service.name"] != "chaperone" || p.Scope != "gateway" || p.ScopeAttributes["scope.k"] != "v" {
		t.Errorf("parent resource %v scope %q %v", p.Resource, p.Scope, p.ScopeAttributes)
	}
	if want := time.Unix(1_700_000_000, 0).UTC(); !p.Start.Equal(want) || !p.End.Equal(want.Add(time.Second)) {
		t.Errorf("parent times %v to %v, want %v to %v", p.Start, p.End, want, want.Add(time.Second))
	}
}

func post(t *testing.T, url, contentType, encoding string, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	resp.Body.Close()
	return resp
}

func TestHTTPProtobuf(t *testing.T) {
	t.Parallel()
	r := StartHTTP(t)
	body, err := proto.Marshal(request())
	if err != nil {
		t.Fatal(err)
	}
	if resp := post(t, r.Endpoint(), "application/x-protobuf", "", body); resp.StatusCode != http.StatusOK {
		t.Fatalf("POST protobuf status = %d, want 200", resp.StatusCode)
	}
	checkSpans(t, r.WaitSpans(t, 2, 10*time.Second))
	if r.Requests() != 1 {
		t.Errorf("Requests() = %d, want 1", r.Requests())
	}
}

func TestHTTPGzip(t *testing.T) {
	t.Parallel()
	r := StartHTTP(t)
	body, err := proto.Marshal(request())
	if err != nil {
		t.Fatal(err)
	}
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	_, _ = zw.Write(body)
	_ = zw.Close()
	if resp := post(t, r.Endpoint(), "application/x-protobuf", "gzip", zb.Bytes()); resp.StatusCode != http.StatusOK {
		t.Fatalf("POST gzip protobuf status = %d, want 200", resp.StatusCode)
	}
	checkSpans(t, r.Spans())
}

// TestHTTPJSON exports through the OpenTelemetry exporter's own OTLP/JSON encoding,
// which writes ids in hex.
func TestHTTPJSON(t *testing.T) {
	t.Parallel()
	r := StartHTTP(t)
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(r.Endpoint()),
		otlptracehttp.WithEncoding(otlptracehttp.EncodingJSON))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	ctx, parent := tp.Tracer("json").Start(context.Background(), "parent")
	_, child := tp.Tracer("json").Start(ctx, "child")
	child.SetAttributes(attribute.Int("n", 3))
	child.End()
	parent.End()
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	spans := r.WaitSpans(t, 2, 10*time.Second)
	if spans[0].Name != "child" || spans[0].ParentSpanID != parent.SpanContext().SpanID().String() ||
		spans[0].TraceID != parent.SpanContext().TraceID().String() || spans[0].Attributes["n"] != int64(3) {
		t.Errorf("JSON child span = %+v, want the child of %s", spans[0], parent.SpanContext().SpanID())
	}
}

func TestHTTPRejects(t *testing.T) {
	t.Parallel()
	r := StartHTTP(t)
	good, err := proto.Marshal(request())
	if err != nil {
		t.Fatal(err)
	}
	var big bytes.Buffer
	zw := gzip.NewWriter(&big)
	_, _ = zw.Write(make([]byte, MaxBodyBytes+1)) // a small body that inflates past the bound
	_ = zw.Close()
	tests := []struct {
		name, contentType, encoding string
		body                        []byte
		want                        int
	}{
		{"text/plain", "text/plain", "", good, http.StatusUnsupportedMediaType},
		{"no content type", "", "", good, http.StatusUnsupportedMediaType},
		{"malformed protobuf", "application/x-protobuf", "", []byte{0xff, 0xff, 0xff}, http.StatusBadRequest},
		{"malformed json", "application/json", "", []byte(`{"resourceSpans": [`), http.StatusBadRequest},
		{"json trailing data", "application/json", "", []byte(`{} {}`), http.StatusBadRequest},
		{"json bad id", "application/json", "", []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"not hex!"}]}]}]}`), http.StatusBadRequest},
		{"not gzip", "application/x-protobuf", "gzip", good, http.StatusBadRequest},
		{"unknown encoding", "application/x-protobuf", "br", good, http.StatusBadRequest},
		{"oversized", "application/x-protobuf", "", make([]byte, MaxBodyBytes+1), http.StatusRequestEntityTooLarge},
		{"gzip bomb", "application/x-protobuf", "gzip", big.Bytes(), http.StatusRequestEntityTooLarge},
	}
	for _, tc := range tests {
		if resp := post(t, r.Endpoint(), tc.contentType, tc.encoding, tc.body); resp.StatusCode != tc.want {
			t.Errorf("POST %s: status %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
	resp, err := http.Get(r.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET %s status = %d, want 405", r.Endpoint(), resp.StatusCode)
	}
	if resp := post(t, strings.TrimSuffix(r.Endpoint(), TracesPath)+"/v1/metrics", "application/x-protobuf", "", good); resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /v1/metrics status = %d, want 404", resp.StatusCode)
	}
	if n := len(r.Spans()); n != 0 || r.Requests() != 0 {
		t.Errorf("after rejected requests: %d spans, %d requests, want none", n, r.Requests())
	}
}

func TestGRPC(t *testing.T) {
	t.Parallel()
	r := StartGRPC(t)
	conn, err := grpc.NewClient(r.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-api-key", "k1")
	if _, err := coltracepb.NewTraceServiceClient(conn).Export(ctx, request()); err != nil {
		t.Fatalf("Export: %v", err)
	}
	checkSpans(t, r.WaitSpans(t, 2, 10*time.Second))
	if got := r.Headers().Get("X-Api-Key"); got != "k1" {
		t.Errorf("Headers().Get(X-Api-Key) = %q, want k1", got)
	}
}

func TestMaxSpans(t *testing.T) {
	t.Parallel()
	r := newReceiver()
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{{}}}}}
	ss := req.ResourceSpans[0].ScopeSpans[0]
	for range MaxSpans + 5 {
		ss.Spans = append(ss.Spans, &tracepb.Span{Name: "s"})
	}
	r.add(req, nil)
	if len(r.Spans()) != MaxSpans || r.Dropped() != 5 {
		t.Errorf("after %d spans: kept %d, dropped %d; want %d and 5", MaxSpans+5, len(r.Spans()), r.Dropped(), MaxSpans)
	}
}

func TestValueDepth(t *testing.T) {
	t.Parallel()
	v := str("leaf")
	for range maxValueDepth + 10 {
		v = &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{v}}}}
	}
	got := value(v, 0)
	depth := 0
	for {
		l, ok := got.([]any)
		if !ok {
			break
		}
		depth++
		got = l[0]
	}
	if depth != maxValueDepth+1 || got != nil {
		t.Errorf("value of %d nested lists: depth %d ending in %v, want depth %d ending in nil", maxValueDepth+10, depth, got, maxValueDepth+1)
	}
}

func FuzzDecodeHTTP(f *testing.F) {
	pb, _ := proto.Marshal(request())
	f.Add(pb, false)
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","name":"x","kind":2,"startTimeUnixNano":"1"}]}]}]}`), true)
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"links":[{"traceId":"00"}],"attributes":[{"key":"k","value":{"arrayValue":{"values":[{"intValue":"3"}]}}}]}]}]}]}`), true)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, body []byte, isJSON bool) {
		ct := "application/x-protobuf"
		if isJSON {
			ct = "application/json"
		}
		msg, err := DecodeHTTP(body, ct)
		if err != nil {
			return
		}
		for _, s := range Flatten(msg) {
			for _, id := range []string{s.TraceID, s.SpanID, s.ParentSpanID} {
				if _, err := hex.DecodeString(id); err != nil {
					t.Fatalf("Flatten id %q is not hex", id)
				}
			}
		}
	})
}
