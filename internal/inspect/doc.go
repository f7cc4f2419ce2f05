// Package inspect holds the content sensors: prompt-injection detection, secret
// detection and personal-data detection, the normalisation of hidden-text tricks that
// runs before them, the sanitising and spotlighting of untrusted results, and the
// egress checks of URLs, hosts and mail recipients.
//
// Sensors produce findings; they decide nothing. The pipeline turns their findings into
// facts for the policy and into redactions, and the policy decides.
//
// The package does no I/O and imports no other Chaperone package, except where a type
// says otherwise: the egress check resolves host names through a resolver it is given,
// and the external classifier (package inspect/classifier) calls a remote model.
package inspect
