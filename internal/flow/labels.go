package flow

import (
	"fmt"
	"slices"
)

// Trust levels and data kinds as written in the configuration.
const (
	TrustTrusted   = "trusted"
	TrustUntrusted = "untrusted"
	DataPrivate    = "private"
	DataPublic     = "public"
)

// Labels are what a tool's results are and which of its arguments are sinks. The zero
// value is the fail-closed default: untrusted, private results and no declared sinks.
type Labels struct {
	// Trusted says the tool's results are content no outsider can influence.
	Trusted bool
	// Public says the tool's results hold no data that must not leave.
	Public bool
	// Sinks are the arguments that choose where the call's effect lands.
	Sinks []string
	// AllSinks makes every argument a sink (the default of non-read tools).
	AllSinks bool
}

// ParseLabels builds a tool's labels from its configuration: trust ("trusted",
// "untrusted" or "" for untrusted), data ("private", "public" or "" for private) and
// sinks (nil for the default of the class: every argument for write, external and
// destructive tools, none for read tools; an empty list for none).
func ParseLabels(class, trust, data string, sinks []string) (Labels, error) {
	var l Labels
	switch trust {
	case "", TrustUntrusted:
	case TrustTrusted:
		l.Trusted = true
	default:
		return Labels{}, fmt.Errorf("trust: unknown value %q: want trusted or untrusted", trust)
	}
	switch data {
	case "", DataPrivate:
	case DataPublic:
		l.Public = true
	default:
		return Labels{}, fmt.Errorf("data: unknown value %q: want private or public", data)
	}
	for i, s := range sinks {
		if s == "" {
			return Labels{}, fmt.Errorf("sinks[%d]: empty argument name", i)
		}
		if slices.Contains(sinks[:i], s) {
			return Labels{}, fmt.Errorf("sinks[%d]: %q is listed twice", i, s)
		}
	}
	switch {
	case sinks != nil:
		l.Sinks = slices.Clone(sinks)
	case class != "read":
		l.AllSinks = true
	}
	return l, nil
}
