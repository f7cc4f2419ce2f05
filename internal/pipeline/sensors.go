package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chaperone-dev/chaperone/internal/flow"
	"github.com/chaperone-dev/chaperone/internal/inspect"
	"github.com/chaperone-dev/chaperone/internal/inspect/classifier"
	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/registry"
)

// The reason codes of the sensors.
const (
	// CodeEgressDenied: the call would send something to a destination its tool may not
	// reach (an allow- or deny-list, or a private or metadata address).
	CodeEgressDenied Code = "egress_denied"
	// CodeResultWithheld: the call ran, but its result is withheld from the agent: it
	// holds an injection or a credential the tool's settings block, or a rule on results
	// denies it.
	CodeResultWithheld Code = "result_withheld"
	// CodeSensorUnavailable: a content sensor failed or overran its time budget, and
	// sensors fail closed.
	CodeSensorUnavailable Code = "sensor_unavailable"
)

// Sensors are the content sensors the pipeline runs on calls and their results. A nil
// sensor is not run.
type Sensors struct {
	Injection *inspect.InjectionDetector
	// Classifier, if set, also scores texts for injection; a text's score is the higher
	// of the two.
	Classifier *classifier.Client
	Secrets    *inspect.SecretScanner
	PII        *inspect.PIIScanner
	// Budget bounds each sensor on one text larger than inlineSenseBytes; smaller texts
	// are scanned inline, their cost bounded by their size. Default 50ms.
	Budget time.Duration
	// FailOpen makes a sensor that fails or overruns its budget count as having found
	// nothing; by default the call is refused or its result withheld.
	FailOpen bool
	// Resolver resolves host names for tools whose egress settings ask for it. Default
	// net.DefaultResolver.
	Resolver inspect.Resolver
	// VaultKey keys the personal-data placeholders (at least 16 bytes).
	VaultKey []byte
	// Nonce returns a fresh random nonce (hex) for a spotlight block.
	Nonce func() string

	defaultEgress *inspect.Egress
	states        senseStates
}

// inlineSenseBytes is the size up to which a text is scanned inline.
const inlineSenseBytes = 64 << 10

// maxSenseStrings bounds the strings of one call's arguments or result that are scanned.
const maxSenseStrings = 10_000

// Init prepares the sensors; call it once before use.
func (s *Sensors) Init() error {
	if s.Budget <= 0 {
		s.Budget = 50 * time.Millisecond
	}
	if s.Resolver == nil {
		s.Resolver = net.DefaultResolver
	}
	e, err := inspect.CompileEgress(inspect.EgressPolicy{})
	if err != nil {
		return fmt.Errorf("default egress policy: %w", err)
	}
	s.defaultEgress = e
	if s.PII != nil && len(s.VaultKey) < 16 {
		return errors.New("personal-data sensor: the placeholder key must be at least 16 bytes")
	}
	if s.Nonce == nil {
		return errors.New("spotlighting needs a nonce source")
	}
	s.states.m = map[string]*senseState{}
	return nil
}

// errSensorBudget says a sensor overran its time budget.
var errSensorBudget = errors.New("the sensor overran its time budget")

// scan runs f on a text of size bytes: inline when small, else under the budget.
func scan[T any](ctx context.Context, s *Sensors, size int, f func() T) (T, error) {
	if size <= inlineSenseBytes {
		return f(), nil
	}
	done := make(chan T, 1)
	go func() { done <- f() }()
	t := time.NewTimer(s.Budget)
	defer t.Stop()
	var zero T
	select {
	case v := <-done:
		return v, nil
	case <-t.C:
		return zero, errSensorBudget
	case <-ctx.Done():
		return zero, context.Cause(ctx)
	}
}

// senseState is what the sensors remember about one call context: the placeholders of
// the personal data its results were given. (The injections it took in are part of its
// flow state.)
type senseState struct {
	mu    sync.Mutex
	vault *inspect.Vault
	used  time.Time
}

// senseStates holds the state of each call context that was given placeholders, keyed
// like the flow state.
type senseStates struct {
	mu sync.Mutex
	m  map[string]*senseState
}

// maxSenseStates bounds the contexts remembered; the one idle longest makes room. A
// context whose vault is forgotten cannot have its placeholders swapped back: its tools
// get the placeholders, never a value they should not.
const maxSenseStates = 100_000

func (ss *senseStates) get(key string, now time.Time) *senseState {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	st := ss.m[key]
	if st == nil {
		if len(ss.m) >= maxSenseStates {
			oldest, at := "", now
			for k, v := range ss.m {
				if v.used.Before(at) {
					oldest, at = k, v.used
				}
			}
			delete(ss.m, oldest)
		}
		st = &senseState{}
		ss.m[key] = st
	}
	st.used = now
	return st
}

func (ss *senseStates) peek(key string) *senseState {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.m[key]
}

func (ss *senseStates) end(key string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, key)
}

// expire forgets contexts idle since before cutoff.
func (ss *senseStates) expire(cutoff time.Time) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for k, v := range ss.m {
		if v.used.Before(cutoff) {
			delete(ss.m, k)
		}
	}
}

// senseIdle is how long the sensors remember an idle context.
const senseIdle = time.Hour

// vault returns the context's placeholder vault, making it on first use.
func (s *Sensors) vault(st *senseState) (*inspect.Vault, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.vault == nil {
		v, err := inspect.NewVault(s.VaultKey, 0)
		if err != nil {
			return nil, err
		}
		st.vault = v
	}
	return st.vault, nil
}

// callSense is what the sensors found in a call's inputs.
type callSense struct {
	facts policy.Sensors
	// notes are the audit entries (never values).
	notes []string
}

// senseCall runs the sensors on a call's inputs: egress checks of the destinations in
// its arguments, the injection detector on the user's prompt, and the secret and
// personal-data sensors on the arguments. A non-empty code refuses the call.
func (p *Pipeline) senseCall(ctx context.Context, c *Call, t *registry.Tool, args map[string]any) (callSense, Code, string) {
	s := p.opts.Sensors
	var cs callSense
	set := &t.Sensors

	dests := inspect.Destinations(args)
	for _, d := range dests {
		if d.Host != "" && !slices.Contains(cs.facts.ArgHosts, d.Host) {
			cs.facts.ArgHosts = append(cs.facts.ArgHosts, d.Host)
		}
	}
	if len(dests) > 0 {
		ectx, esp := p.span(ctx, SpanSensorEgress)
		eg := set.Egress
		if eg == nil {
			eg = s.defaultEgress
		}
		verdicts := eg.Check(dests)
		if set.Resolve {
			rctx, cancel := context.WithTimeout(ectx, s.Budget)
			verdicts = append(verdicts, eg.Resolve(rctx, s.Resolver, dests)...)
			cancel()
		}
		for _, v := range verdicts {
			if !v.Allowed {
				if esp.IsRecording() {
					esp.SetAttributes(AttrFound.StringSlice([]string{"egress_denied"}), AttrRefusal.String(string(CodeEgressDenied)))
				}
				cs.notes = append(cs.notes, "egress:denied:"+noteValue(v.Destination.Host))
				where := v.Destination.Arg
				if where == "" {
					where = "an argument"
				}
				esp.End()
				return cs, CodeEgressDenied, fmt.Sprintf("The call would send to %s (%s), which tool %q may not reach: %s.",
					truncate(v.Destination.Value, 120), where, t.Name, v.Reason)
			}
		}
		esp.End()
	}

	if c.Prompt != "" && s.Injection != nil {
		ictx, isp := p.span(ctx, SpanSensorInject)
		inj, err := p.injection(ictx, c.Prompt)
		traceInjection(isp, inj, err)
		if err != nil {
			return cs, CodeSensorUnavailable, "A content sensor could not check the prompt in time, so the call is refused."
		}
		cs.facts.Prompt = inj
		if inj.Detected {
			cs.notes = append(cs.notes, injectionNote("prompt:injection", inj))
		}
	}

	texts := argStrings(args)
	size := 0
	for _, x := range texts {
		size += len(x)
	}
	type found struct{ secrets, pii []string }
	tm := p.sensorTimes()
	f, err := scan(ctx, s, size, func() found {
		var f found
		tm.start()
		for _, x := range texts {
			if s.Secrets != nil {
				for _, fd := range s.Secrets.Scan(x) {
					f.secrets = appendOnce(f.secrets, fd.Kind)
				}
			}
		}
		tm.split()
		for _, x := range texts {
			if s.PII != nil {
				for _, fd := range s.PII.Scan(x) {
					f.pii = appendOnce(f.pii, fd.Kind)
				}
			}
		}
		tm.split()
		return f
	})
	p.traceScans(ctx, &tm, err, f.secrets, f.pii)
	if err != nil {
		if !s.FailOpen {
			return cs, CodeSensorUnavailable, "A content sensor could not check the arguments in time, so the call is refused."
		}
		cs.notes = append(cs.notes, "args:unscanned")
	}
	cs.facts.ArgSecrets, cs.facts.ArgPII = f.secrets, f.pii
	for _, k := range f.secrets {
		cs.notes = append(cs.notes, "args:secret:"+k)
	}
	for _, k := range f.pii {
		cs.notes = append(cs.notes, "args:pii:"+k)
	}
	return cs, "", ""
}

// detokenize swaps the context's personal-data placeholders in raw arguments back for
// their values, for the types the tool may receive. It returns the arguments to send and
// the audit notes.
func (p *Pipeline) detokenize(t *registry.Tool, key string, raw json.RawMessage) (json.RawMessage, []string) {
	s := p.opts.Sensors
	if s == nil || s.PII == nil || len(t.Sensors.ReceivePII) == 0 || !bytes.Contains(raw, []byte("[pii:")) {
		return raw, nil
	}
	st := s.states.peek(key)
	if st == nil {
		return raw, nil
	}
	st.mu.Lock()
	v := st.vault
	st.mu.Unlock()
	if v == nil {
		return raw, nil
	}
	text := string(raw)
	phs := v.Placeholders(text)
	if len(phs) == 0 {
		return raw, nil
	}
	var b strings.Builder
	last, n := 0, 0
	var kinds []string
	for _, ph := range phs {
		if !t.Sensors.Receives(ph.Kind) {
			continue
		}
		val, swapped := v.Detokenize(text[ph.Span.Start:ph.Span.End])
		if len(swapped) == 0 {
			continue
		}
		// The value goes into a JSON string: escape it as one.
		enc, err := json.Marshal(val)
		if err != nil {
			continue
		}
		b.WriteString(text[last:ph.Span.Start])
		b.Write(enc[1 : len(enc)-1])
		last = ph.Span.End
		n++
		kinds = appendOnce(kinds, ph.Kind)
	}
	if n == 0 {
		return raw, nil
	}
	b.WriteString(text[last:])
	out := json.RawMessage(b.String())
	if !json.Valid(out) {
		return raw, nil
	}
	notes := []string{"detokenized:pii:" + strconv.Itoa(n)}
	for _, k := range kinds {
		notes = append(notes, "detokenized:"+k)
	}
	return out, notes
}

// injection scores one text with the detector and, if configured, the classifier.
func (p *Pipeline) injection(ctx context.Context, text string) (policy.Injection, error) {
	s := p.opts.Sensors
	var inj policy.Injection
	if s.Injection != nil {
		r, err := scan(ctx, s, len(text), func() inspect.InjectionResult { return s.Injection.Detect(text) })
		if err != nil {
			if !s.FailOpen {
				return inj, err
			}
			// Fail open: nothing found, and the record says the text was not read.
			inj.Signals = append(inj.Signals, "unscanned")
		} else {
			inj.Score, inj.Detected = r.Score, r.Detected
			for _, e := range r.Evidence {
				inj.Signals = appendOnce(inj.Signals, e.Signal)
			}
			for _, tr := range r.Tricks {
				inj.Signals = appendOnce(inj.Signals, "hidden:"+tr)
			}
		}
	}
	if s.Classifier != nil {
		r := s.Classifier.Classify(ctx, text)
		if r.Failed {
			inj.Signals = appendOnce(inj.Signals, "classifier:failed")
		}
		if r.Score > inj.Score {
			inj.Score = r.Score
		}
		if r.Detected {
			inj.Detected = true
			inj.Signals = appendOnce(inj.Signals, "classifier")
		}
	}
	return inj, nil
}

// resultSense is what became of a result on its way to the agent.
type resultSense struct {
	result json.RawMessage
	facts  policy.Result
	notes  []string
	// untrusted says the result's values must count as untrusted whatever the tool's
	// labels say: an injection was found in it.
	untrusted bool
	refusal   *Refusal
	// rules are the ids of the rules on results that withheld it.
	rules []string
}

// senseResult runs the sensors on a result: injection, secrets and personal data; then
// the rules on results; then redaction, sanitising, tokenising and spotlighting as the
// tool's settings say.
func (p *Pipeline) senseResult(ctx context.Context, t *registry.Tool, key string, res json.RawMessage, judge func(*policy.Result) (policy.Decision, error), now time.Time) resultSense {
	s := p.opts.Sensors
	set := &t.Sensors
	rs := resultSense{result: res}
	doc, err := parseResultDoc(res)
	if err != nil {
		if s.FailOpen {
			rs.notes = append(rs.notes, "result:unreadable")
			return rs
		}
		rs.refusal = &Refusal{Code: CodeSensorUnavailable, Message: "The result could not be read by the content sensors, so it is withheld."}
		return rs
	}
	isErr, _ := doc.root["isError"].(bool)
	rs.facts.Bytes, rs.facts.Error = int64(len(res)), isErr

	if set.ResultInjection != inspect.InjectionOff && len(doc.fields) > 0 {
		ictx, isp := p.span(ctx, SpanSensorInject)
		inj, err := p.injection(ictx, doc.joined())
		traceInjection(isp, inj, err)
		if err != nil {
			rs.refusal = &Refusal{Code: CodeSensorUnavailable, Message: "A content sensor could not check the result in time, so it is withheld."}
			return rs
		}
		rs.facts.Injection = inj
		if inj.Detected {
			rs.untrusted = true
			rs.notes = append(rs.notes, injectionNote("injection", inj))
		}
	}

	type found struct {
		secrets, pii []string
		secretSpans  [][]inspect.Finding
		piiSpans     [][]inspect.Finding
	}
	tm := p.sensorTimes()
	f, err := scan(ctx, s, doc.size(), func() found {
		f := found{secretSpans: make([][]inspect.Finding, len(doc.fields)), piiSpans: make([][]inspect.Finding, len(doc.fields))}
		tm.start()
		for i, fl := range doc.fields {
			if s.Secrets != nil {
				f.secretSpans[i] = s.Secrets.Scan(fl.text)
				for _, fd := range f.secretSpans[i] {
					f.secrets = appendOnce(f.secrets, fd.Kind)
				}
			}
		}
		tm.split()
		for i, fl := range doc.fields {
			if s.PII != nil {
				f.piiSpans[i] = s.PII.Scan(fl.text)
				for _, fd := range f.piiSpans[i] {
					f.pii = appendOnce(f.pii, fd.Kind)
				}
			}
		}
		tm.split()
		return f
	})
	p.traceScans(ctx, &tm, err, f.secrets, f.pii)
	if err != nil {
		if !s.FailOpen {
			rs.refusal = &Refusal{Code: CodeSensorUnavailable, Message: "A content sensor could not check the result in time, so it is withheld."}
			return rs
		}
		// Fail open: the result passes as it came, and the record says it was not read.
		rs.notes = append(rs.notes, "result:unscanned")
		return rs
	}
	rs.facts.Secrets, rs.facts.PII = f.secrets, f.pii
	for _, k := range f.secrets {
		rs.notes = append(rs.notes, "secret:"+k)
	}
	for _, k := range f.pii {
		rs.notes = append(rs.notes, "pii:"+k)
	}

	switch {
	case rs.facts.Injection.Detected && set.ResultInjection == inspect.InjectionBlock:
		rs.refusal = &Refusal{Code: CodeResultWithheld, Message: fmt.Sprintf("The result of %s reads as a prompt injection (score %.2f), so it is withheld.", t.Name, rs.facts.Injection.Score)}
		return rs
	case len(f.secrets) > 0 && set.ResultSecrets == inspect.SecretsBlock:
		rs.refusal = &Refusal{Code: CodeResultWithheld, Message: fmt.Sprintf("The result of %s holds a credential (%s), so it is withheld.", t.Name, strings.Join(f.secrets, ", "))}
		return rs
	}
	if judge != nil {
		d, err := judge(&rs.facts)
		if err != nil || d.Effect != policy.Allow {
			rs.rules = d.Rules
			rs.refusal = &Refusal{Code: CodeResultWithheld, Rules: d.Rules, Message: fmt.Sprintf("The result of %s is withheld by policy (%s).", t.Name, ruleList(d.Rules))}
			return rs
		}
	}

	// Transform: sanitise, redact secrets, handle personal data, spotlight.
	var vault *inspect.Vault
	if set.ResultPII == inspect.PIITokenize && len(f.pii) > 0 {
		if vault, err = s.vault(s.states.get(key, now)); err != nil {
			vault = nil
		}
	}
	changed := false
	redacted, piiDone, sanitized := 0, 0, []string(nil)
	for i := range doc.fields {
		fl := &doc.fields[i]
		text := fl.text
		if set.Sanitize != "" && fl.content {
			out, removed, err := inspect.Sanitize(text, set.Sanitize)
			if err == nil && out != text {
				text = out
				for _, r := range removed {
					sanitized = appendOnce(sanitized, r)
				}
				// Offsets of the earlier scans no longer hold: scan again.
				if s.Secrets != nil {
					f.secretSpans[i] = s.Secrets.Scan(text)
				}
				if s.PII != nil {
					f.piiSpans[i] = s.PII.Scan(text)
				}
			}
		}
		if len(f.secretSpans[i]) > 0 && set.ResultSecrets == inspect.SecretsRedact {
			text, _ = s.Secrets.Redact(text)
			redacted += len(f.secretSpans[i])
			if s.PII != nil && len(f.piiSpans[i]) > 0 {
				f.piiSpans[i] = s.PII.Scan(text)
			}
		}
		if mode := set.ResultPII; mode != inspect.PIIAllow && len(f.piiSpans[i]) > 0 {
			if mode == inspect.PIITokenize && vault == nil {
				mode = inspect.PIIRedact // no placeholders to be had: never pass the value
			}
			out, err := inspect.TransformPII(text, f.piiSpans[i], mode, vault)
			if err != nil && mode == inspect.PIITokenize {
				out, err = inspect.TransformPII(text, f.piiSpans[i], inspect.PIIRedact, nil)
			}
			if err == nil {
				text = out
				piiDone += len(f.piiSpans[i])
			}
		}
		if set.Spotlight && fl.content {
			out, err := inspect.Spotlight(text, inspect.SpotlightOptions{Label: t.Name, Datamark: set.Datamark, Nonce: s.Nonce()})
			if err != nil {
				// Unmarked untrusted text must not pass as marked: withhold it.
				rs.refusal = &Refusal{Code: CodeSensorUnavailable, Message: "The result could not be marked as data, so it is withheld."}
				return rs
			}
			text = out
		}
		if text != fl.text {
			fl.set(text)
			changed = true
		}
	}
	if redacted > 0 {
		rs.notes = append(rs.notes, "redacted:secret:"+strconv.Itoa(redacted))
	}
	if piiDone > 0 {
		rs.notes = append(rs.notes, set.ResultPII+":pii:"+strconv.Itoa(piiDone))
	}
	for _, r := range sanitized {
		rs.notes = append(rs.notes, "sanitized:"+r)
	}
	if changed {
		out, err := doc.encode()
		if err != nil {
			rs.refusal = &Refusal{Code: CodeSensorUnavailable, Message: "The result could not be rewritten by the content sensors, so it is withheld."}
			return rs
		}
		rs.result = out
	}
	return rs
}

// resultJudge returns the function that judges a result by the rules on results, with
// the call's facts and a fresh view of its context's flow; nil when no rule judges the
// tool's results.
func (p *Pipeline) resultJudge(fs *flow.Session, facts *policy.Facts, t *registry.Tool, pol *policy.Policy, now time.Time) func(*policy.Result) (policy.Decision, error) {
	if pol == nil || !pol.ResultRules(t.Name) {
		return nil
	}
	return func(r *policy.Result) (policy.Decision, error) {
		fs.RLock()
		defer fs.RUnlock()
		f := *facts
		f.Flow = flow.NewView(fs, facts.Args, &t.Flow, now)
		f.Result = r
		return pol.EvaluateResult(&f)
	}
}

// redactSecrets replaces the credentials in a text meant for the audit log or an agent.
func (p *Pipeline) redactSecrets(s string) string {
	if p.opts.Sensors == nil || p.opts.Sensors.Secrets == nil || s == "" {
		return s
	}
	out, _ := p.opts.Sensors.Secrets.RedactText(s)
	return out
}

// redactJSON replaces the credentials in the strings of a JSON value meant for the audit
// log or a span ([inspect.SecretScanner.RedactJSON]: values are also read behind their
// member's name). JSON it cannot walk — invalid, or nested too deep — is replaced whole
// by [inspect.RedactedUnreadableJSON] and ok is false: nothing unscanned passes.
func (p *Pipeline) redactJSON(raw json.RawMessage) (_ json.RawMessage, ok bool) {
	if p.opts.Sensors == nil || p.opts.Sensors.Secrets == nil || len(raw) == 0 {
		return raw, true
	}
	out, _, err := p.opts.Sensors.Secrets.RedactJSON(raw)
	if err != nil {
		return json.RawMessage(inspect.RedactedUnreadableJSON), false
	}
	return out, true
}

// untrustedLabels returns the labels of a tool's result that an injection was found in:
// its values count as untrusted whatever the tool declares.
func untrustedLabels(l flow.Labels) *flow.Labels {
	l.Trusted = false
	return &l
}

func injectionNote(prefix string, inj policy.Injection) string {
	note := fmt.Sprintf("%s:%.2f", prefix, inj.Score)
	if len(inj.Signals) > 0 {
		note += ":" + strings.Join(inj.Signals, ",")
	}
	return note
}

// noteValue bounds a value quoted in an audit note.
func noteValue(s string) string { return truncate(s, 64) }

func appendOnce(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// argStrings returns the string values in decoded arguments (see stringFields).
func argStrings(args map[string]any) []string {
	var root any = args
	fields := stringFields(&root)
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = f.text
	}
	return out
}

// resultDoc is a CallToolResult opened up for the sensors: its text fields, each with a
// way to replace it.
type resultDoc struct {
	root   map[string]any
	fields []resultField
}

type resultField struct {
	text string
	set  func(string)
	// content says the field is a content item's text (sanitised and spotlighted), not
	// a value of structured content.
	content bool
}

func parseResultDoc(res json.RawMessage) (*resultDoc, error) {
	d := &resultDoc{}
	if len(bytes.TrimSpace(res)) == 0 {
		return d, nil
	}
	if err := decodeJSON(res, &d.root); err != nil {
		return nil, fmt.Errorf("decode result: %w", err)
	}
	if !flow.ExactResult(d.root) {
		// A client that matches member names regardless of case could show the model a
		// member these rules would not read: read every string, as structured values.
		collectStrings(d.root, nil, &d.fields, 0)
		return d, nil
	}
	if items, ok := d.root["content"].([]any); ok {
		for _, it := range items {
			m, ok := it.(map[string]any)
			if !ok {
				continue
			}
			if txt, ok := m["text"].(string); ok {
				d.fields = append(d.fields, resultField{text: txt, content: true, set: func(s string) { m["text"] = s }})
			}
			if r, ok := m["resource"].(map[string]any); ok {
				if txt, ok := r["text"].(string); ok {
					d.fields = append(d.fields, resultField{text: txt, content: true, set: func(s string) { r["text"] = s }})
				}
			}
		}
	}
	if sc, ok := d.root["structuredContent"]; ok {
		collectStrings(sc, func(s string) { d.root["structuredContent"] = s }, &d.fields, 0)
	}
	return d, nil
}

// stringFields returns every string in the decoded JSON value *root (object keys aside),
// depth first, each with a setter that replaces it in place.
func stringFields(root *any) []resultField {
	var out []resultField
	collectStrings(*root, func(s string) { *root = s }, &out, 0)
	return out
}

// collectStrings appends the strings in v to out; set replaces v itself. It stops at
// maxSenseStrings strings and 64 levels of nesting.
func collectStrings(v any, set func(string), out *[]resultField, depth int) {
	if len(*out) >= maxSenseStrings || depth > 64 {
		return
	}
	switch x := v.(type) {
	case string:
		*out = append(*out, resultField{text: x, set: set})
	case map[string]any:
		for k, e := range x {
			collectStrings(e, func(s string) { x[k] = s }, out, depth+1)
		}
	case []any:
		for i, e := range x {
			collectStrings(e, func(s string) { x[i] = s }, out, depth+1)
		}
	}
}

func (d *resultDoc) size() int {
	n := 0
	for _, f := range d.fields {
		n += len(f.text)
	}
	return n
}

// joined is every text of the result, one after another, for the injection detector.
func (d *resultDoc) joined() string {
	if len(d.fields) == 1 {
		return d.fields[0].text
	}
	var b strings.Builder
	b.Grow(d.size() + len(d.fields))
	for _, f := range d.fields {
		b.WriteString(f.text)
		b.WriteByte('\n')
	}
	return b.String()
}

func (d *resultDoc) encode() (json.RawMessage, error) { return encodeJSON(d.root) }

// decodeJSON decodes raw into v keeping numbers as they were written.
func decodeJSON(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec.Decode(v)
}

// encodeJSON encodes v compactly, without escaping HTML characters.
func encodeJSON(v any) (json.RawMessage, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
