// Package bench is the engine of `chaperone bench`: it drives many concurrent MCP
// sessions through a target and measures throughput, latency percentiles and CPU.
//
// A benchmark compares the same load through the gateway and directly against its
// upstream, in one run, so that the difference is what the gateway adds. For the
// difference to mean anything, the harness's own parts must cost little: the package
// therefore does not use the MCP SDK, only net/http and encoding/json, with request
// bodies built into reused buffers and only the fields it needs decoded from answers.
//
// # Parts
//
//   - [Upstream] is an MCP server (streamable HTTP, JSON answers) offering two tools,
//     "echo" and "blocked", that answer with precomputed text of a chosen size after an
//     optional delay.
//   - [Session] is an MCP client session opened with [Open] on a [Target]; [Session.Call]
//     makes one tools/call and classifies the answer as an [Outcome]. It accepts JSON and
//     event-stream answers.
//   - [Run] opens sessions, drives a [Load] through them in a closed loop (as fast as
//     each session can) or an open loop (a fixed rate, latency measured from each call's
//     scheduled time), closes them, and returns a [Result].
//   - [Summarize] and [Median] turn latencies and rounds into reported figures.
//   - [StartGateway] runs a Chaperone gateway in the process in front of an upstream,
//     with the default pipeline (policy of a chosen size, argument validation, result
//     sensors, flow tracking, a durable SQLite audit log) or parts of it turned off.
//   - [Compare] runs loads on a baseline (the upstream called directly) and on targets in
//     alternating rounds and reports what each target adds; [WriteText] and [WriteJSON]
//     print it. A target in another process can report its CPU through [ProcessCPU].
//   - [MeasureSessions] and [Soak] measure the memory sessions cost and whether it stays
//     flat while sessions come and go.
//
// # Example
//
//	up, err := bench.NewUpstream(bench.UpstreamOptions{ResultBytes: 1024})
//	if err != nil { ... }
//	srv := httptest.NewServer(up)
//	defer srv.Close()
//	hc := bench.NewHTTPClient(64)
//	res, err := bench.Run(ctx, hc, bench.Target{Name: "direct", URL: srv.URL},
//		bench.Load{Sessions: 64, Duration: 10 * time.Second})
//	if err != nil { ... }
//	fmt.Println(res.Throughput, res.Latency.P99, res.CPUPerCall())
//
// # What it does not do
//
// The client does not answer server requests (sampling, elicitation) and ignores
// notifications; it does not resume event streams. The upstream keeps sessions in
// memory and never sends notifications or event streams. Neither is a conformance
// reference for MCP: both implement what load measurement needs and reject the rest
// with clear errors.
package bench
