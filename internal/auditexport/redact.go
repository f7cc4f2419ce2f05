package auditexport

import (
	"encoding/json"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/inspect"
)

// MaxJSONDepth is the deepest nesting of arrays and objects [Redactor.JSON] walks.
// Deeper JSON is an error; [Redactor.Event] then replaces the value whole.
const MaxJSONDepth = inspect.MaxRedactJSONDepth

// Redactor removes secrets from the content of audit events before they leave the
// store, with Chaperone's secret scanner ([inspect.SecretScanner.RedactText] and
// [inspect.SecretScanner.RedactJSON]): each secret found becomes "[REDACTED:<kind>]".
// A Redactor is safe for concurrent use; building one compiles the scanner's ruleset,
// so build it once per export and reuse it.
type Redactor struct {
	scanner *inspect.SecretScanner
}

// NewRedactor returns a Redactor with the embedded secret ruleset compiled.
func NewRedactor() *Redactor {
	return &Redactor{scanner: inspect.NewSecretScanner()}
}

// String is [inspect.SecretScanner.RedactText].
func (r *Redactor) String(s string) (string, int) { return r.scanner.RedactText(s) }

// JSON is [inspect.SecretScanner.RedactJSON].
func (r *Redactor) JSON(raw json.RawMessage) (json.RawMessage, int, error) {
	return r.scanner.RedactJSON(raw)
}

// Event returns a copy of e with the secrets in its content redacted, and how many it
// redacted. The content is every field that can carry text an agent, a user or an
// upstream chose: Message, Detail, Explanation, Prompt, Reason, ArgsSummary, Tool,
// User, Task, IdempotencyKey, Scope, and the captured Arguments and Result (walked
// with [Redactor.JSON]). Captured JSON that cannot be walked is replaced whole by the
// JSON string "[REDACTED:unreadable_json]" and counted, so nothing unscanned leaves.
// Seq, Hash and PrevHash are kept: they are those of the stored event.
func (r *Redactor) Event(e *audit.Event) (audit.Event, int) {
	c := *e
	total := 0
	for _, s := range []*string{
		&c.Message, &c.Detail, &c.Explanation, &c.Prompt, &c.Reason, &c.ArgsSummary,
		&c.Tool, &c.User, &c.Task, &c.IdempotencyKey, &c.Scope,
	} {
		var n int
		*s, n = r.String(*s)
		total += n
	}
	for _, raw := range []*json.RawMessage{&c.Arguments, &c.Result} {
		out, n, err := r.JSON(*raw)
		if err != nil {
			*raw = json.RawMessage(inspect.RedactedUnreadableJSON)
			total++
			continue
		}
		*raw = out
		total += n
	}
	return c, total
}
