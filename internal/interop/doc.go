// Package interop holds Chaperone's interoperability test: a real gateway in front of MCP
// software nobody here wrote, driven by MCP clients nobody here wrote.
//
// The package has no non-test code. Its test starts a gateway in-process (with
// [github.com/chaperone-dev/chaperone/internal/chaperonetest]) whose upstreams are the
// official reference servers from npm, @modelcontextprotocol/server-filesystem and
// @modelcontextprotocol/server-everything, run over stdio, and drives it with the official
// TypeScript SDK client (@modelcontextprotocol/sdk, through testdata/sdk-client.mjs) and the
// official MCP Inspector's command line (@modelcontextprotocol/inspector). It checks what
// each client sees (the tool list, real upstream results, and refusals with their stable
// reason codes) and then that the audit log recorded every call with an intact hash chain.
//
// # Running it
//
// The npm packages are pinned in testdata/package.json and testdata/package-lock.json. The
// test installs them once with npm into
//
//	<os.UserCacheDir()>/chaperone/interop-<hash of package.json and package-lock.json>
//
// or, when CHAPERONE_NPM_CACHE is set, into $CHAPERONE_NPM_CACHE/interop-<hash>, and reuses
// a complete installation on later runs. It needs node (20 or newer) and npm on PATH and,
// for the first run, access to the npm registry.
//
// Without node or npm, or when the installation fails, the test skips; with
// CHAPERONE_REQUIRE_INTEROP=1 (as in CI) it fails instead. Under -short it skips unless
// CHAPERONE_REQUIRE_INTEROP=1.
//
//	CHAPERONE_REQUIRE_INTEROP=1 go test -race -count=1 -v ./internal/interop/
package interop
