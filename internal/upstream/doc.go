// Package upstream connects the gateway to the MCP servers behind it: a command it starts
// and supervises over stdio, a streamable HTTP endpoint, or an in-process *mcp.Server.
//
// A [Client] is built with [New] and kept connected by [Client.Run], which reconnects with
// exponential backoff (with jitter, capped, reset once a connection has stayed up for 30s)
// whenever the session ends: the child exited, the HTTP session was lost, the transport
// failed. While it is down, [Client.Call] and [Client.Tools] fail fast with
// [ErrUnavailable]; nothing is queued.
//
// # What it guarantees
//
//   - Tool schemas and call results are passed through as the JSON the upstream sent
//     (see "Raw JSON" below).
//   - A stdio child gets PATH, HOME and Config.Env, not the gateway's environment. It runs
//     in its own process group, which is signalled as a whole on shutdown and after the
//     child dies, so grandchildren (npx → node) do not outlive it. On Linux the kernel also
//     kills the child if the gateway dies abruptly.
//   - Config.Headers values never appear in logs or errors, and are sent only to the
//     configured origin; redirects are not followed.
//   - Every tools/call and tools/list has a deadline (Config.CallTimeout).
//
// # What it does not do
//
// It does not authorise, validate or log tool arguments and results: that is the
// pipeline's job. It does not bridge roots, sampling or elicitation: the client advertises
// no capabilities, so upstreams cannot ask the agent anything through the gateway.
//
// # Raw JSON
//
// The SDK client decodes results into its own types (an input schema becomes a
// map[string]any, a CallToolResult is rebuilt from typed content), which would lose key
// order, number precision and fields the SDK does not know, and fails on content types it
// does not know. So the client captures the raw "result" of its own tools/list and
// tools/call responses below the SDK: for stdio and in-process upstreams by wrapping the
// SDK connection, for streamable HTTP in the http.RoundTripper. If nothing was captured
// (an HTTP response over 16 MiB), it falls back to marshalling the SDK's decoded value.
// [Client.Call] sends the caller's arguments verbatim.
//
// # Protocol
//
// The client offers MCP 2025-11-25, advertises no client capabilities, and identifies
// itself as "chaperone".
package upstream
