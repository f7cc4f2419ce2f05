package telemetry

import (
	"strings"
	"sync"
	"unicode/utf8"
)

// Bounds on label values. Most values (agents, tools, upstreams, rule ids) come from
// configuration, but a refused call can name any tool an agent made up and an event's
// strings are whatever its producer put there: every label value passes through a
// [labelSet] so that no input can grow the number of series without bound.
const (
	// MaxLabelValues is how many distinct values one label name takes; every further
	// value is reported as [OtherLabel].
	MaxLabelValues = 500
	// MaxLabelBytes is the longest label value in bytes; a longer one is cut at the last
	// whole UTF-8 character that fits.
	MaxLabelBytes = 128
	// OtherLabel stands for every value of a label name seen after its first
	// [MaxLabelValues] distinct values.
	OtherLabel = "other"
)

// labelSet bounds the values of one label name. It is safe for concurrent use.
type labelSet struct {
	// mu guards seen.
	mu   sync.RWMutex
	seen map[string]struct{}
}

func newLabelSet() *labelSet {
	return &labelSet{seen: make(map[string]struct{})}
}

// value returns v as it may be used as a label value: valid UTF-8, at most
// MaxLabelBytes long, and one of the first MaxLabelValues distinct values, else
// OtherLabel.
func (s *labelSet) value(v string) string {
	v = cleanLabel(v)
	s.mu.RLock()
	_, ok := s.seen[v]
	s.mu.RUnlock()
	if ok {
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[v]; ok {
		return v
	}
	if len(s.seen) >= MaxLabelValues {
		return OtherLabel
	}
	// A copy: v may be a prefix of a much longer string the set must not keep alive.
	v = strings.Clone(v)
	s.seen[v] = struct{}{}
	return v
}

// cleanLabel returns v with invalid UTF-8 replaced by U+FFFD and cut to at most
// MaxLabelBytes bytes without splitting a character.
func cleanLabel(v string) string {
	if !utf8.ValidString(v) {
		v = strings.ToValidUTF8(v, "\uFFFD")
	}
	if len(v) <= MaxLabelBytes {
		return v
	}
	cut := MaxLabelBytes
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return v[:cut]
}

// labelSets holds one [labelSet] per bounded label name, so that one value maps to the
// same label value (itself or OtherLabel) in every metric that uses the name.
type labelSets struct {
	tool, agent, decision, reason, rule, kind, upstream, to, sink *labelSet
}

func newLabelSets() labelSets {
	return labelSets{
		tool: newLabelSet(), agent: newLabelSet(), decision: newLabelSet(), reason: newLabelSet(),
		rule: newLabelSet(), kind: newLabelSet(), upstream: newLabelSet(), to: newLabelSet(), sink: newLabelSet(),
	}
}
