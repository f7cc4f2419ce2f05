package suite

import (
	"fmt"
	"slices"
	"strings"

	"github.com/chaperone-dev/chaperone/internal/policy"
)

// Result is the outcome of one suite.
type Result struct {
	// Path is the suite file.
	Path string
	// Err, if not nil, says why the suite could not be run: it did not load, its policy did
	// not compile, or a case names a tool the policy was not compiled with. Cases is empty
	// then. The message names the file at fault.
	Err error
	// Cases are the results of the cases, in file order.
	Cases []CaseResult
}

// Passed returns the number of cases that passed.
func (r *Result) Passed() int {
	n := 0
	for _, c := range r.Cases {
		if c.Pass {
			n++
		}
	}
	return n
}

// Failed returns the number of cases that failed.
func (r *Result) Failed() int { return len(r.Cases) - r.Passed() }

// OK reports whether the suite ran and every case passed.
func (r *Result) OK() bool { return r.Err == nil && r.Failed() == 0 }

// CaseResult is the outcome of one case.
type CaseResult struct {
	// Name and Line are the case's.
	Name string
	Line int
	// Want is what the case expected.
	Want Expectation
	// Got is the decision the policy made.
	Got policy.Decision
	// Pass reports whether Got meets Want.
	Pass bool
}

// Message describes a failed case's mismatch:
//
//	got deny (rules [x]; "denied by rule \"x\""), want allow (rules [y])
//
// When the decision failed closed, the error follows the reason.
func (c *CaseResult) Message() string {
	var b strings.Builder
	fmt.Fprintf(&b, "got %s (rules %s; %q", c.Got.Effect, ruleList(c.Got.Rules), c.Got.Reason)
	if c.Got.Err != nil {
		fmt.Fprintf(&b, ": %v", c.Got.Err)
	}
	fmt.Fprintf(&b, "), want %s", c.Want.Effect)
	if c.Want.CheckRules {
		fmt.Fprintf(&b, " (rules %s)", ruleList(c.Want.Rules))
	}
	return b.String()
}

func ruleList(rules []string) string {
	return "[" + strings.Join(rules, " ") + "]"
}

// Run compiles the suite's policy against [Suite.Tools] once and decides every case. A
// compile error, or a case naming a tool not in Tools, is reported in [Result.Err].
func (s *Suite) Run() Result {
	res := Result{Path: s.Path}
	if len(s.Tools) == 0 {
		res.Err = &FileError{File: s.Path, Msg: "no tools: declare them under tools (or give the tools of a configuration)"}
		return res
	}
	if err := checkTools(s.Path, s.Tools, s.Cases); err != nil {
		res.Err = err
		return res
	}
	infos := make(map[string]policy.ToolInfo, len(s.Tools))
	for name, t := range s.Tools {
		infos[name] = policy.ToolInfo{Class: t.Class}
	}
	p, err := policy.Compile(s.sources, infos)
	if err != nil {
		res.Err = fmt.Errorf("%s: compile policy: %w", s.Path, err)
		return res
	}
	res.Cases = s.decide(p)
	return res
}

// decide decides every case with p.
func (s *Suite) decide(p *policy.Policy) []CaseResult {
	results := make([]CaseResult, 0, len(s.Cases))
	for i := range s.Cases {
		c := &s.Cases[i]
		f := c.Facts // a copy: Run does not change the suite
		t := s.Tools[f.Tool.Name]
		f.Tool.Class, f.Tool.Upstream = t.Class, t.Upstream
		d, err := p.Evaluate(&f)
		if err != nil {
			// Evaluate fails only on nil facts or policy; keep the decision, which denies.
			d.Err = err
		}
		pass := d.Effect == c.Want.Effect && (!c.Want.CheckRules || slices.Equal(d.Rules, c.Want.Rules))
		results = append(results, CaseResult{Name: c.Name, Line: c.Line, Want: c.Want, Got: d, Pass: pass})
	}
	return results
}
