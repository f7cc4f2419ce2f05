// sdk-client.mjs drives an MCP server over streamable HTTP with the official TypeScript SDK
// client (@modelcontextprotocol/sdk), for internal/interop's tests.
//
//   CHAPERONE_TOKEN=<bearer token> node sdk-client.mjs <url> '<calls as JSON>'
//
// The token comes from the environment so it never shows in a process listing. Calls is a
// JSON array of {"method": "tools/list"} and {"method": "tools/call", "name": ...,
// "arguments": {...}}. They run in order in one session; each prints one JSON line:
// {"method", "name", "result"} or, for a JSON-RPC error, {"method", "name", "error":
// {"code", "message"}}. The exit status is non-zero only if the session could not be used.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, callsJSON] = process.argv.slice(2);
if (!url || !callsJSON) {
  console.error("usage: CHAPERONE_TOKEN=... node sdk-client.mjs <url> <calls-json>");
  process.exit(2);
}
const token = process.env.CHAPERONE_TOKEN ?? "";
const calls = JSON.parse(callsJSON);

const headers = token ? { Authorization: `Bearer ${token}` } : {};
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
const client = new Client({ name: "chaperone-interop-sdk-client", version: "1.0.0" });
await client.connect(transport);

const out = (line) => process.stdout.write(JSON.stringify(line) + "\n");
out({
  method: "initialize",
  result: { protocolVersion: transport.protocolVersion ?? null, serverInfo: client.getServerVersion() ?? null },
});

for (const c of calls) {
  const line = { method: c.method, name: c.name };
  try {
    switch (c.method) {
      case "tools/list":
        line.result = await client.listTools();
        break;
      case "tools/call":
        line.result = await client.callTool({ name: c.name, arguments: c.arguments ?? {} });
        break;
      default:
        throw new Error(`unsupported method ${c.method}`);
    }
  } catch (err) {
    line.error = { code: err?.code ?? null, message: String(err?.message ?? err) };
  }
  out(line);
}

await client.close();
