package replay

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
)

// WriteJSONL writes one JSON object per call, in the trace's order, with the keys session,
// id, tool, decision, reason, rules and risk in that order; reason, rules and risk are
// omitted when empty. The same report always gives the same bytes.
func (r *Report) WriteJSONL(w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for i := range r.Decisions {
		if err := enc.Encode(&r.Decisions[i]); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// WriteSummary writes a human summary: calls per decision, per reason and per rule, then
// the warnings.
func (r *Report) WriteSummary(w io.Writer) error {
	decisions, reasons, rules := map[string]int{}, map[string]int{}, map[string]int{}
	for _, d := range r.Decisions {
		decisions[d.Effect]++
		if d.Reason != "" {
			reasons[d.Reason]++
		}
		for _, id := range d.Rules {
			rules[id]++
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "replayed %d calls in %d sessions with policy %s\n", len(r.Decisions), r.Sessions, r.PolicyVersion)
	for _, sec := range []struct {
		title string
		m     map[string]int
	}{{"decisions", decisions}, {"reasons", reasons}, {"rules", rules}} {
		if len(sec.m) == 0 {
			continue
		}
		fmt.Fprintf(tw, "\n%s:\n", sec.title)
		for _, k := range sortedKeys(sec.m) {
			fmt.Fprintf(tw, "  %s\t%d\n", k, sec.m[k])
		}
	}
	if len(r.Warnings) > 0 {
		fmt.Fprintf(tw, "\nwarnings:\n")
		for _, wn := range r.Warnings {
			fmt.Fprintf(tw, "  %s\n", wn)
		}
	}
	return tw.Flush()
}

// Change is a call whose decision differs between two replays of one trace.
type Change struct {
	A, B Decision
}

// Diff returns the calls whose decision (allow, deny, approve) differs from a to b, in the
// trace's order. a and b must be replays of the same trace.
func Diff(a, b *Report) ([]Change, error) {
	if len(a.Decisions) != len(b.Decisions) {
		return nil, errors.New("diff: the reports are of different traces")
	}
	var out []Change
	for i, da := range a.Decisions {
		db := b.Decisions[i]
		if da.Session != db.Session || da.ID != db.ID {
			return nil, errors.New("diff: the reports are of different traces")
		}
		if da.Effect != db.Effect {
			out = append(out, Change{A: da, B: db})
		}
	}
	return out, nil
}

// WriteDiff writes the changes, one per line ("session id tool: A → B", each side its
// decision, reason and rules), then how many calls changed, in all and per transition.
func WriteDiff(w io.Writer, changes []Change, calls int) error {
	bw := bufio.NewWriter(w)
	trans := map[string]int{}
	for _, c := range changes {
		fmt.Fprintf(bw, "%s %s %s: %s → %s\n", printable(c.A.Session), printable(c.A.ID), printable(c.A.Tool), describe(c.A), describe(c.B))
		trans[c.A.Effect+" → "+c.B.Effect]++
	}
	if len(changes) > 0 {
		bw.WriteString("\n")
	}
	fmt.Fprintf(bw, "%d of %d calls changed decision\n", len(changes), calls)
	for _, k := range sortedKeys(trans) {
		fmt.Fprintf(bw, "  %s: %d\n", k, trans[k])
	}
	return bw.Flush()
}

// describe renders a decision as "deny (denied_by_policy) [rule-a, rule-b]".
func describe(d Decision) string {
	var b strings.Builder
	b.WriteString(d.Effect)
	if d.Reason != "" {
		b.WriteString(" (" + d.Reason + ")")
	}
	if len(d.Rules) > 0 {
		b.WriteString(" [" + strings.Join(d.Rules, ", ") + "]")
	}
	return b.String()
}

// printable returns s as it is when it is plain text, else quoted: names come from the
// trace, and a terminal must not interpret them.
func printable(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if !unicode.IsGraphic(r) || unicode.IsSpace(r) || r == '"' {
			return strconv.Quote(s)
		}
	}
	return s
}
