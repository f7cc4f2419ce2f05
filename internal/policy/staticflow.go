package policy

import (
	"slices"
	"time"
)

// StaticFlow is a [Flow] given as plain facts, for policy tests and tools without a live
// session. Windowed history questions get the whole-session answers: a static flow has
// no times.
type StaticFlow struct {
	// SessionUntrusted and SessionPrivate are session.untrusted and session.private.
	SessionUntrusted, SessionPrivate bool
	// UntrustedArgs, TrustedArgs and UserArgs name the arguments from untrusted content,
	// from trusted sources and from the user's prompt. An argument from the user is from a
	// trusted source too.
	UntrustedArgs, TrustedArgs, UserArgs []string
	// Sinks are the call's sink arguments.
	Sinks []string
	// Calls counts earlier calls by tool.
	CallCounts map[string]int64
	// Totals sums earlier numeric arguments by "tool.argument".
	Totals map[string]float64
}

var _ Flow = (*StaticFlow)(nil)

func (s *StaticFlow) Untrusted() bool { return s.SessionUntrusted }
func (s *StaticFlow) Private() bool   { return s.SessionPrivate }
func (s *StaticFlow) ArgFromUntrusted(name string) bool {
	return slices.Contains(s.UntrustedArgs, name)
}
func (s *StaticFlow) ArgFromTrusted(name string) bool {
	return !s.ArgFromUntrusted(name) && (slices.Contains(s.TrustedArgs, name) || slices.Contains(s.UserArgs, name))
}
func (s *StaticFlow) ArgFromUser(name string) bool {
	return !s.ArgFromUntrusted(name) && slices.Contains(s.UserArgs, name)
}
func (s *StaticFlow) SinksFromUntrusted() bool {
	return slices.ContainsFunc(s.Sinks, s.ArgFromUntrusted)
}
func (s *StaticFlow) SinksFromTrusted() bool {
	return len(s.Sinks) > 0 && !slices.ContainsFunc(s.Sinks, func(n string) bool { return !s.ArgFromTrusted(n) })
}
func (s *StaticFlow) Calls(tool string) int64 {
	if tool != anyTool {
		return s.CallCounts[tool]
	}
	var n int64
	for _, c := range s.CallCounts {
		n += c
	}
	return n
}
func (s *StaticFlow) CallsWithin(tool string, _ time.Duration) int64 { return s.Calls(tool) }
func (s *StaticFlow) Total(tool, arg string) float64 {
	if tool != anyTool {
		return s.Totals[tool+"."+arg]
	}
	var t float64
	for k, v := range s.Totals {
		if len(k) > len(arg) && k[len(k)-len(arg)-1:] == "."+arg {
			t += v
		}
	}
	return t
}
func (s *StaticFlow) TotalWithin(tool, arg string, _ time.Duration) float64 {
	return s.Total(tool, arg)
}
