package inspect

// The modes of the result sensors for injections and secrets.
const (
	// InjectionFlag lets a result with an injection through, marks the session as having
	// seen one and counts the values the result brought in as untrusted.
	InjectionFlag = "flag"
	// InjectionBlock withholds a result with an injection from the agent.
	InjectionBlock = "block"
	// InjectionOff does not scan the tool's results for injections.
	InjectionOff = "off"

	// SecretsRedact replaces each credential in a result with [REDACTED:kind].
	SecretsRedact = "redact"
	// SecretsBlock withholds a result that holds a credential.
	SecretsBlock = "block"
	// SecretsAllow lets credentials in results through (they are still redacted from
	// audit records).
	SecretsAllow = "allow"
)

// ToolSettings are one tool's sensor settings, per direction.
type ToolSettings struct {
	// ResultInjection is InjectionFlag, InjectionBlock or InjectionOff.
	ResultInjection string
	// ResultSecrets is SecretsRedact, SecretsBlock or SecretsAllow.
	ResultSecrets string
	// ResultPII is PIIAllow, PIIRedact, PIIMask or PIITokenize.
	ResultPII string
	// Sanitize is "" (off), SanitizeText or SanitizeMarkup.
	Sanitize string
	// Spotlight wraps the result's text in a labelled data block; Datamark also marks
	// the words within it.
	Spotlight, Datamark bool
	// ReceivePII lists the personal-data types whose placeholders are swapped back for
	// their values in arguments sent to the tool; "*" means every type.
	ReceivePII []string
	// Egress checks the destinations in the tool's arguments; nil checks against the
	// default policy (any public destination, no private ones).
	Egress *Egress
	// Resolve also resolves the host names among them.
	Resolve bool
}

// Receives reports whether the tool may receive values of a personal-data type.
func (s *ToolSettings) Receives(typ string) bool {
	for _, t := range s.ReceivePII {
		if t == "*" || t == typ {
			return true
		}
	}
	return false
}
