// Package telemetry gives operators a view of Chaperone from outside: Prometheus
// metrics and OpenTelemetry traces.
//
// # Metrics
//
// [Metrics] are derived from the audit events the audit log has durably committed
// ([Metrics.Observe]), so what the metrics count and what the evidence records agree:
// a call that is not on record is not counted either. A few instruments are fed
// directly: the gateway's latency per call ([Metrics.ObserveCall]) and the audit
// checkpoints ([Metrics.CheckpointWritten], [Metrics.CheckpointPublishFailed],
// [Metrics.AuditHead]). They live in a private registry served by [Metrics.Handler];
// docs/metrics.md is the reference and deploy/grafana/chaperone.json the dashboard.
//
// Every label value is bounded ([MaxLabelValues] distinct values per label name,
// [MaxLabelBytes] bytes each, valid UTF-8), so neither an agent that makes up tool names
// nor a malformed event can grow the number of series without bound. Metrics never
// carry call content, hosts, scores or counts as label values.
//
// # Traces
//
// [NewTracerProvider] builds the tracer provider from [TraceOptions]: a no-op one when
// tracing is off, else a batching OTLP exporter over gRPC or HTTP. [FromHTTP] and
// [FromMeta] take the W3C trace context an agent sent (HTTP headers, or the MCP
// params._meta keys "traceparent" and "tracestate"), and [ToMeta] writes it for a
// request Chaperone sends on. Malformed trace context is ignored, never an error.
//
// The package does no I/O of its own beyond the exporter it builds, and touches no
// global state: neither the default Prometheus registry nor the global OpenTelemetry
// provider or propagator.
package telemetry
