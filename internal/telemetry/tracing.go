package telemetry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/net/http/httpguts"
)

// Trace exporters ([TraceOptions].Exporter).
const (
	ExporterNone     = "none"
	ExporterOTLPGRPC = "otlp-grpc"
	ExporterOTLPHTTP = "otlp-http"
)

// ServiceName is the service.name of every span Chaperone exports.
const ServiceName = "chaperone"

// DefaultTraceTimeout bounds one export when [TraceOptions].Timeout is 0.
const DefaultTraceTimeout = 10 * time.Second

// maxTraceHeaders bounds the headers sent with each export.
const maxTraceHeaders = 64

// TraceOptions configure span export.
type TraceOptions struct {
	// Exporter is "" or "none" (nothing is exported), "otlp-grpc" or "otlp-http".
	Exporter string
	// Endpoint is where spans go: "host:port" for otlp-grpc; a URL such as
	// "http://127.0.0.1:4318/v1/traces" for otlp-http (a URL without a path gets
	// "/v1/traces"; scheme http means no TLS).
	Endpoint string
	// Insecure sends otlp-grpc spans without TLS. For otlp-http the URL's scheme decides.
	Insecure bool
	// Headers are sent with every export (for example an API key of the collector).
	// Names must be valid header names; values must not hold line breaks.
	Headers map[string]string
	// Timeout bounds one export. 0 means DefaultTraceTimeout.
	Timeout time.Duration
	// SampleRatio is the share of new traces sampled, in (0, 1]; 0 means 1. A span
	// whose parent came with the call follows the parent's sampling decision.
	SampleRatio float64
	// ServiceVersion is the service.version of the exported spans.
	ServiceVersion string
}

// NewTracerProvider returns the tracer provider o describes and the function that
// shuts it down, flushing the spans not yet exported (bounded by its context).
//
// With Exporter "" or "none" the provider is a no-op: spans cost next to nothing and go
// nowhere. Otherwise spans are batched and sent over OTLP with a parent-based ratio
// sampler and a resource naming service.name "chaperone" and service.version. The
// exporter does not connect until it has spans to send, so an unreachable collector is
// not an error here; spans it cannot take are dropped, never queued without bound.
// Invalid options are errors that name the field.
func NewTracerProvider(ctx context.Context, o TraceOptions) (trace.TracerProvider, func(context.Context) error, error) {
	if o.Exporter == "" || o.Exporter == ExporterNone {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	if err := o.validate(); err != nil {
		return nil, nil, err
	}
	exp, err := o.exporter(ctx)
	if err != nil {
		return nil, nil, err
	}
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName(ServiceName), semconv.ServiceVersion(o.ServiceVersion)),
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, nil, fmt.Errorf("tracing: resource: %w", err)
	}
	ratio := o.SampleRatio
	if ratio == 0 {
		ratio = 1
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithExportTimeout(o.timeout())),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
		sdktrace.WithResource(res),
	)
	shutdown := func(ctx context.Context) error {
		if err := tp.Shutdown(ctx); err != nil {
			return fmt.Errorf("tracing: shutdown: %w", err)
		}
		return nil
	}
	return tp, shutdown, nil
}

func (o *TraceOptions) timeout() time.Duration {
	if o.Timeout == 0 {
		return DefaultTraceTimeout
	}
	return o.Timeout
}

// validate reports every problem of options that export spans.
func (o *TraceOptions) validate() error {
	var errs []error
	switch o.Exporter {
	case ExporterOTLPGRPC:
		if err := checkHostPort(o.Endpoint); err != nil {
			errs = append(errs, err)
		}
	case ExporterOTLPHTTP:
		if _, err := o.httpURL(); err != nil {
			errs = append(errs, err)
		}
	default:
		errs = append(errs, fmt.Errorf("tracing: exporter %q: unknown (want none, %s or %s)", o.Exporter, ExporterOTLPGRPC, ExporterOTLPHTTP))
	}
	if r := o.SampleRatio; math.IsNaN(r) || r < 0 || r > 1 {
		errs = append(errs, fmt.Errorf("tracing: sample ratio %v: outside (0, 1]", r))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("tracing: timeout %s: negative", o.Timeout))
	}
	if len(o.Headers) > maxTraceHeaders {
		errs = append(errs, fmt.Errorf("tracing: %d headers: more than %d", len(o.Headers), maxTraceHeaders))
	}
	for name, value := range o.Headers {
		// Header values are often credentials: an error names the header, never the value.
		if !httpguts.ValidHeaderFieldName(name) {
			errs = append(errs, fmt.Errorf("tracing: header %q: invalid name", name))
		} else if !httpguts.ValidHeaderFieldValue(value) {
			errs = append(errs, fmt.Errorf("tracing: header %q: value holds a control character", name))
		}
	}
	return errors.Join(errs...)
}

// checkHostPort checks an otlp-grpc endpoint: a host and a port from 1 to 65535.
func checkHostPort(endpoint string) error {
	if endpoint == "" {
		return errors.New("tracing: endpoint: empty (want host:port)")
	}
	if strings.ContainsAny(endpoint, "@/?#") {
		// A URL, possibly with credentials: not quoted.
		return errors.New("tracing: endpoint: want host:port, not a URL")
	}
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil {
		return fmt.Errorf("tracing: endpoint %q: want host:port", endpoint)
	}
	if host == "" {
		return fmt.Errorf("tracing: endpoint %q: no host", endpoint)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("tracing: endpoint %q: port %q not in 1 to 65535", endpoint, port)
	}
	return nil
}

// httpURL parses an otlp-http endpoint: an http or https URL with a host, without
// credentials, a query or a fragment (an error quotes the URL only once it is known to
// hold neither credentials nor a query). A URL without a path gets "/v1/traces".
func (o *TraceOptions) httpURL() (*url.URL, error) {
	if o.Endpoint == "" {
		return nil, errors.New("tracing: endpoint: empty (want a URL such as http://127.0.0.1:4318/v1/traces)")
	}
	u, err := url.Parse(o.Endpoint)
	if err != nil {
		// The parse error quotes the URL, which may hold credentials: leave it out.
		return nil, errors.New("tracing: endpoint: not a URL")
	}
	switch {
	case u.User != nil:
		return nil, errors.New("tracing: endpoint: a URL must not hold credentials (use headers)")
	case u.RawQuery != "" || u.ForceQuery:
		return nil, errors.New("tracing: endpoint: a URL must not hold a query (use headers)")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("tracing: endpoint %q: scheme %q (want http or https)", o.Endpoint, u.Scheme)
	case u.Host == "":
		return nil, fmt.Errorf("tracing: endpoint %q: no host", o.Endpoint)
	case u.Fragment != "":
		return nil, fmt.Errorf("tracing: endpoint %q: a fragment has no meaning here", o.Endpoint)
	case u.Scheme == "https" && o.Insecure:
		return nil, fmt.Errorf("tracing: endpoint %q: insecure with an https URL (use an http URL to send without TLS)", o.Endpoint)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("tracing: endpoint %q: port %q not in 1 to 65535", o.Endpoint, p)
		}
	}
	if u.Path == "" {
		u.Path = "/v1/traces"
	}
	return u, nil
}

// exporter makes the OTLP exporter of validated options.
func (o *TraceOptions) exporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	switch o.Exporter {
	case ExporterOTLPGRPC:
		opts := []otlptracegrpc.Option{
			otlptracegrpc.WithEndpoint(o.Endpoint),
			otlptracegrpc.WithTimeout(o.timeout()),
		}
		if o.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		if len(o.Headers) > 0 {
			opts = append(opts, otlptracegrpc.WithHeaders(o.Headers))
		}
		exp, err := otlptracegrpc.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("tracing: otlp-grpc exporter: %w", err)
		}
		return exp, nil
	default: // ExporterOTLPHTTP: validate allows nothing else
		u, err := o.httpURL()
		if err != nil {
			return nil, err
		}
		opts := []otlptracehttp.Option{
			otlptracehttp.WithEndpoint(u.Host),
			otlptracehttp.WithURLPath(u.EscapedPath()),
			otlptracehttp.WithTimeout(o.timeout()),
		}
		if u.Scheme == "http" {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		if len(o.Headers) > 0 {
			opts = append(opts, otlptracehttp.WithHeaders(o.Headers))
		}
		exp, err := otlptracehttp.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("tracing: otlp-http exporter: %w", err)
		}
		return exp, nil
	}
}
