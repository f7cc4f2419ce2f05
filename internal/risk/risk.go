// Package risk scores a tool call from 0 to 100, deterministically, from what the gateway
// knows about it: the tool's class, its arguments (amounts, recipients outside the
// organisation, bulk sizes, destructive verbs), the session's information flow and the
// agent's recent record. The score and the factors behind it are facts for policy
// (risk.score, risk.factors) and are shown to approvers; thresholds live in policy.
//
// Points, added up and capped at 100:
//
//	class             read 5, write 25, external 40, destructive 50
//	amount            the largest of the numeric arguments amount, value, total, sum, price,
//	                  quantity: ≥ 100 +10, ≥ 1,000 +20, ≥ 10,000 +30
//	outside recipient an e-mail address in the arguments whose domain is not internal +15
//	                  (once, however many)
//	bulk              a list argument with more than 10 items, or a count/limit argument of
//	                  100 or more, +10
//	destructive verb  the tool name or a string argument says delete, drop, truncate, wipe,
//	                  purge, destroy, erase or "rm -rf", +10
//	flow              (calls that are not reads) the session has seen untrusted content +10,
//	                  private data +5; a sink came from untrusted content +25
//	record            the agent had calls denied in the last 24 hours: 1–4 +5, 5 or more +15
//
// The package does no I/O and imports no other Chaperone package.
package risk

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Input is what a call's score is computed from.
type Input struct {
	Tool  string
	Class string
	// Args are the decoded arguments.
	Args map[string]any
	// InternalDomains are the organisation's mail domains; addresses at them, or at their
	// subdomains, are not outside recipients.
	InternalDomains []string
	// Flow facts of the session.
	SessionUntrusted, SessionPrivate, SinksFromUntrusted bool
	// RecentDenials counts the agent's calls denied in the last 24 hours.
	RecentDenials int
}

// Factor is one contribution to a score.
type Factor struct {
	// Name says what contributed, for people: "amount 12,500 ≥ 10,000".
	Name   string
	Points int
}

// String renders the factor as approvers and policy see it: "amount 12500 ≥ 10,000 (+30)".
func (f Factor) String() string { return fmt.Sprintf("%s (+%d)", f.Name, f.Points) }

// Score is a call's risk.
type Score struct {
	// Value is 0 to 100.
	Value   int
	Factors []Factor
}

// FactorNames returns the factors rendered, in order.
func (s Score) FactorNames() []string {
	out := make([]string, len(s.Factors))
	for i, f := range s.Factors {
		out[i] = f.String()
	}
	return out
}

var classPoints = map[string]int{"read": 5, "write": 25, "external": 40, "destructive": 50}

var amountArgs = []string{"amount", "value", "total", "sum", "price", "quantity"}

var destructiveVerbs = []string{"delete", "drop", "truncate", "wipe", "purge", "destroy", "erase", "rm -rf"}

// maxDepth bounds the walk of nested arguments.
const maxDepth = 32

// Assess scores one call.
func Assess(in Input) Score {
	var s Score
	add := func(points int, format string, args ...any) {
		s.Factors = append(s.Factors, Factor{Name: fmt.Sprintf(format, args...), Points: points})
	}
	if p, ok := classPoints[in.Class]; ok {
		add(p, "class %s", in.Class)
	} else {
		add(50, "unknown class %q", in.Class)
	}

	largest := math.Inf(-1)
	for _, name := range amountArgs {
		if v, ok := in.Args[name].(float64); ok && math.Abs(v) > largest {
			largest = math.Abs(v)
		}
	}
	switch {
	case largest >= 10_000:
		add(30, "amount %s ≥ 10,000", fmtNum(largest))
	case largest >= 1_000:
		add(20, "amount %s ≥ 1,000", fmtNum(largest))
	case largest >= 100:
		add(10, "amount %s ≥ 100", fmtNum(largest))
	}

	var outside, verb string
	bulk := ""
	for _, k := range sortedKeys(in.Args) {
		v := in.Args[k]
		if l, ok := v.([]any); ok && len(l) > 10 && bulk == "" {
			bulk = fmt.Sprintf("%s has %d items", k, len(l))
		}
		if n, ok := v.(float64); ok && n >= 100 && (k == "count" || k == "limit" || k == "n" || k == "batch_size") && bulk == "" {
			bulk = fmt.Sprintf("%s = %s", k, fmtNum(n))
		}
		walkStrings(v, 0, func(str string) {
			if outside == "" {
				outside = outsideAddress(str, in.InternalDomains)
			}
			if verb == "" {
				verb = destructiveVerb(str)
			}
		})
	}
	if verb == "" {
		verb = destructiveVerb(in.Tool)
	}
	if outside != "" {
		add(15, "outside recipient %s", outside)
	}
	if bulk != "" {
		add(10, "bulk: %s", bulk)
	}
	if verb != "" {
		add(10, "destructive verb %q", verb)
	}

	if in.Class != "read" {
		if in.SessionUntrusted {
			add(10, "session has seen untrusted content")
		}
		if in.SessionPrivate {
			add(5, "session has seen private data")
		}
		if in.SinksFromUntrusted {
			add(25, "destination from untrusted content")
		}
	}
	switch {
	case in.RecentDenials >= 5:
		add(15, "%d denied calls in 24h", in.RecentDenials)
	case in.RecentDenials > 0:
		add(5, "%d denied calls in 24h", in.RecentDenials)
	}

	for _, f := range s.Factors {
		s.Value += f.Points
	}
	s.Value = min(s.Value, 100)
	return s
}

func walkStrings(v any, depth int, f func(string)) {
	if depth > maxDepth {
		return
	}
	switch x := v.(type) {
	case string:
		f(x)
	case []any:
		for _, e := range x {
			walkStrings(e, depth+1, f)
		}
	case map[string]any:
		for _, k := range sortedKeys(x) {
			walkStrings(x[k], depth+1, f)
		}
	}
}

// outsideAddress returns the first e-mail address in s whose domain is not internal.
func outsideAddress(s string, internal []string) string {
	for _, w := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' || r == ';' || r == '<' || r == '>' || r == '"' }) {
		at := strings.LastIndexByte(w, '@')
		if at <= 0 || at == len(w)-1 {
			continue
		}
		domain := strings.ToLower(strings.TrimRight(w[at+1:], "."))
		if !strings.Contains(domain, ".") {
			continue
		}
		if !slices.ContainsFunc(internal, func(d string) bool {
			d = strings.ToLower(d)
			return domain == d || strings.HasSuffix(domain, "."+d)
		}) {
			return strings.ToLower(w)
		}
	}
	return ""
}

func destructiveVerb(s string) string {
	l := strings.ToLower(s)
	for _, v := range destructiveVerbs {
		if strings.Contains(l, v) {
			return v
		}
	}
	return ""
}

func fmtNum(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return fmt.Sprintf("%d", int64(f))
	}
	return fmt.Sprintf("%.2f", f)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
