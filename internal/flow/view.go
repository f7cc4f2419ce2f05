package flow

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// View answers policy's questions about one call in a session: the session's flow state,
// where the call's argument values came from and what the session has done. Create it
// with [NewView] and use it only while holding the session's read lock. It remembers what
// it found, so that [View.Explain] can say why a flow rule fired.
type View struct {
	s      *Session
	args   map[string]any
	labels *Labels
	now    time.Time

	cache [8]struct {
		name string
		cls  argClass
	}
	cached int

	finding    *Finding
	askedState bool
	// notTrusted is the first sink that was asked about and not from trusted sources.
	notTrusted string
}

// Finding is an argument found to hold a value from untrusted content.
type Finding struct {
	// Arg is the argument's name.
	Arg string
	// Value is the value as first seen, shortened for display.
	Value string
	// From is the call whose untrusted result the value first appeared in; zero when the
	// argument counts as untrusted because the session overflowed.
	From Origin
}

// NewView returns a view of call args (to a tool with labels) at now.
func NewView(s *Session, args map[string]any, labels *Labels, now time.Time) *View {
	if labels == nil {
		labels = &Labels{}
	}
	return &View{s: s, args: args, labels: labels, now: now}
}

// argClass says where an argument's values came from.
type argClass uint8

const (
	// clsUntrusted: some value came only from untrusted content.
	clsUntrusted argClass = 1 << iota
	// clsTrusted: it has traceable values and every one came from a trusted source.
	clsTrusted
	// clsUser: it has traceable values and every one came from the user's prompt.
	clsUser
)

// Untrusted reports whether the session has seen untrusted content.
func (v *View) Untrusted() bool { v.askedState = true; return v.s.untrusted }

// Private reports whether the session has seen private data.
func (v *View) Private() bool { v.askedState = true; return v.s.private }

// ArgFromUntrusted reports whether argument name holds a value that came only from
// untrusted content. An absent argument does not.
func (v *View) ArgFromUntrusted(name string) bool { return v.class(name)&clsUntrusted != 0 }

// ArgFromTrusted reports whether every traceable value of argument name came from a
// trusted source: the user's prompt or a trusted tool's result. An absent argument, or one
// with no value distinctive enough to trace, does not.
func (v *View) ArgFromTrusted(name string) bool { return v.class(name)&clsTrusted != 0 }

// ArgFromUser reports whether every traceable value of argument name came from the
// user's prompt.
func (v *View) ArgFromUser(name string) bool { return v.class(name)&clsUser != 0 }

// SinksFromUntrusted reports whether any sink argument of the call holds a value that
// came only from untrusted content.
func (v *View) SinksFromUntrusted() bool {
	found := false
	v.sinks(func(name string) bool {
		found = v.ArgFromUntrusted(name)
		return !found
	})
	return found
}

// SinksFromTrusted reports whether the call has a sink argument and every sink argument
// it has is from trusted sources.
func (v *View) SinksFromTrusted() bool {
	any, all := false, true
	v.sinks(func(name string) bool {
		any = true
		if !v.ArgFromTrusted(name) {
			all = false
			if v.notTrusted == "" {
				v.notTrusted = name
			}
			return false
		}
		return true
	})
	return any && all
}

// sinks calls f for each sink argument present in the call, in a stable order, until f
// returns false.
func (v *View) sinks(f func(string) bool) {
	if v.labels.AllSinks {
		names := make([]string, 0, len(v.args))
		for k := range v.args {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, k := range names {
			if !f(k) {
				return
			}
		}
		return
	}
	for _, k := range v.labels.Sinks {
		if _, ok := v.args[k]; ok && !f(k) {
			return
		}
	}
}

// Calls returns how many times tool ran in the session before this call ("*": any tool).
func (v *View) Calls(tool string) int64 { return v.s.hist.count(tool) }

// CallsWithin returns how many times tool ran in the session within d before now.
func (v *View) CallsWithin(tool string, d time.Duration) int64 {
	return v.s.hist.countWithin(tool, d, v.now)
}

// Total returns the sum of numeric argument arg over the session's earlier calls of tool.
func (v *View) Total(tool, arg string) float64 { return v.s.hist.total(tool, arg) }

// TotalWithin returns the sum of numeric argument arg over the calls of tool within d
// before now.
func (v *View) TotalWithin(tool, arg string, d time.Duration) float64 {
	return v.s.hist.totalWithin(tool, arg, d, v.now)
}

// Finding returns the first argument found to come from untrusted content, if any.
func (v *View) Finding() *Finding { return v.finding }

// class classifies argument name once per view.
func (v *View) class(name string) argClass {
	for i := 0; i < v.cached; i++ {
		if v.cache[i].name == name {
			return v.cache[i].cls
		}
	}
	a, ok := v.args[name]
	var c argClass
	if ok {
		c = v.classify(name, a)
	}
	if v.cached < len(v.cache) {
		v.cache[v.cached].name, v.cache[v.cached].cls = name, c
		v.cached++
	}
	return c
}

func (v *View) classify(name string, a any) argClass {
	traced, trusted, user := 0, 0, 0
	untrusted := false
	eachLeaf(a, 0, func(leaf any) {
		var has, lt, lu, lun, unknown bool
		ArgumentValues(leaf, func(val Value) {
			has = true
			m, ok := v.s.values[val.Key]
			if !ok {
				unknown = true
				return
			}
			if m.seen != 0 {
				lt = true
				lu = lu || m.seen&seenPrompt != 0
				return
			}
			if m.origin >= 0 && !lun {
				lun = true
				if v.finding == nil {
					v.finding = &Finding{Arg: name, Value: display(m.raw, m.kind), From: v.s.origin(m.origin)}
				}
			}
		})
		if !has {
			return
		}
		if !lun && !lt && unknown && v.s.overflow {
			lun = true
			if v.finding == nil {
				v.finding = &Finding{Arg: name, Value: display(leafText(leaf), KindIdent)}
			}
		}
		traced++
		switch {
		case lun:
			untrusted = true
		case lt:
			trusted++
			if lu {
				user++
			}
		}
	})
	var c argClass
	if untrusted {
		c |= clsUntrusted
	}
	if traced > 0 && trusted == traced {
		c |= clsTrusted
		if user == traced {
			c |= clsUser
		}
	}
	return c
}

// eachLeaf calls f for each string and number inside an argument value.
func eachLeaf(a any, depth int, f func(any)) {
	if depth > maxDepth {
		return
	}
	switch x := a.(type) {
	case string, float64:
		f(x)
	case []any:
		for _, e := range x {
			eachLeaf(e, depth+1, f)
		}
	case map[string]any:
		for _, e := range x {
			eachLeaf(e, depth+1, f)
		}
	}
}

func leafText(leaf any) string {
	if s, ok := leaf.(string); ok {
		return s
	}
	return fmt.Sprint(leaf)
}

// display shortens a value for an explanation: account-like identifiers show their first
// and last four characters, anything else at most 48 characters.
func display(raw string, k Kind) string {
	raw = strings.Join(strings.Fields(raw), " ")
	if k == KindIdent {
		compact := strings.ReplaceAll(raw, " ", "")
		if len(compact) >= 12 {
			return compact[:4] + "…" + compact[len(compact)-4:]
		}
	}
	if len(raw) > 48 {
		return cutUTF8(raw, 47) + "…"
	}
	return raw
}

// Explain says in one sentence why flow facts made a rule fire, for the refusal and the
// approval request; "" if the view found nothing to explain.
func (v *View) Explain() string {
	if f := v.finding; f != nil {
		if f.From.Call == "" {
			return fmt.Sprintf("%s %s is treated as untrusted: this session has seen more untrusted values than Chaperone remembers", f.Arg, f.Value)
		}
		return fmt.Sprintf("%s %s first appeared in the result of %s, which is untrusted", f.Arg, f.Value, f.From.Call)
	}
	if !v.askedState || !(v.s.untrusted || v.s.private) {
		return ""
	}
	var parts []string
	if v.s.untrusted {
		parts = append(parts, "untrusted content (first in the result of "+v.s.origin(v.s.untrustedFrom).Call+")")
	}
	if v.s.private {
		parts = append(parts, "private data (first in the result of "+v.s.origin(v.s.privateFrom).Call+")")
	}
	msg := "this session has seen " + strings.Join(parts, " and ")
	if v.notTrusted != "" {
		msg += ", and " + v.notTrusted + " did not come from the user or a trusted tool"
	}
	return msg
}
