// Package argcheck validates the arguments of a tool call before anything
// else is done with them.
//
// Each tool gets a [Validator], built once by [Compile] from the JSON Schema
// the upstream MCP server published for the tool's input ("inputSchema") and
// an optional [Overlay] of stricter, per-argument [Constraint]s written by the
// operator. [Validator.Validate] then checks every call and returns nil or an
// *[Error] listing what is wrong.
//
// # What is checked, in order
//
//  1. Unknown arguments. Every top-level argument must be declared in the
//     schema's "properties", whatever the schema says about
//     additionalProperties or patternProperties. A schema without
//     "properties" therefore accepts only an empty arguments object.
//     Properties declared only inside allOf, $ref and the like do not count.
//  2. The JSON Schema, with format assertions ("email", "uri", "date-time",
//     ...) on for every draft. Drafts 4, 6, 7, 2019-09 and 2020-12 are
//     supported; a schema without "$schema" is read as 2020-12. Patterns in
//     the schema use Go's RE2 syntax, so a schema relying on look-around
//     does not compile.
//  3. The overlay, on the declared arguments that are present and passed
//     the schema: pattern (anchored at both ends), enum, max_length (in code
//     points), minimum and maximum, path_prefixes and url_hosts. An argument
//     of the wrong JSON type for its constraint is refused.
//
// Every problem found is reported (bounded to [MaxProblems]), so a caller
// can fix a call in one round trip.
//
// # Guarantees
//
//   - Fail closed. A tool whose schema is not a self-contained JSON object
//     schema of type "object", or whose overlay is inconsistent, does not
//     compile. A call is accepted only when every check passed; a panic in
//     the schema library is a refusal.
//   - No I/O. Schemas are never fetched: a "$ref" or "$schema" naming
//     anything other than the schema itself or a standard metaschema fails
//     [Compile].
//   - No values in errors. An [Error] names the argument and the bound it
//     broke (the pattern, the allowed directories or hosts, the schema's
//     limit) but never the argument's value, which may be a secret. Names
//     chosen by the caller, such as unknown argument names, are quoted and
//     cut to a bounded length.
//   - A [Validator] is immutable and safe for concurrent use.
//
// # Paths
//
// A path_prefixes argument must be an absolute, slash-separated path. It is
// refused if it is not valid UTF-8 or holds a NUL byte, a control character,
// a backslash, a percent-encoded dot, slash, backslash or percent sign, or a
// ".." segment. After [path.Clean] it must equal an allowed directory or lie
// below one at a segment boundary ("/srv/data-evil" is not under
// "/srv/data").
//
// # URLs
//
// A url_hosts argument must parse with [net/url] as an absolute http or
// https URL without user information. Its host, lower-cased and without port
// or trailing dot, must be listed, or be a proper subdomain of a listed
// "*.example.com". IP addresses match only listed IP addresses. Non-ASCII
// hosts are refused; operators list the punycode form.
//
// # What it does not do
//
// The path check is lexical. It cannot see symlinks: a link inside an
// allowed directory that points outside it is the upstream's
// responsibility, as is any change to the filesystem between this check and
// the upstream's use of the path (TOCTOU). Likewise the URL check says
// nothing about where a host name resolves to or redirects to; preventing
// requests to internal addresses is the upstream's or the network's job.
// argcheck never rewrites arguments: what it accepted is forwarded as is.
package argcheck
