package pipeline

import (
	"slices"
	"sync"

	"github.com/chaperone-dev/chaperone/internal/policy"
)

// ShadowCount is what one shadow rule would have done under the policy in force.
type ShadowCount struct {
	Rule string `json:"rule"`
	// Applied counts calls whose would-be decision this rule was part of.
	Applied int64 `json:"applied"`
	// Changed counts those of them whose would-be decision differs from the one enforced.
	Changed int64 `json:"changed"`
}

// shadowStats counts, per shadow rule of the policy version in force, the calls it would
// have decided and changed. A new version starts from zero.
type shadowStats struct {
	// mu guards the fields below.
	mu      sync.Mutex
	version string
	order   []string
	counts  map[string]*ShadowCount
}

func (s *shadowStats) record(pol *policy.Policy, d policy.Decision) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reset(pol)
	for _, id := range d.Shadow.Rules {
		if c, ok := s.counts[id]; ok {
			c.Applied++
			if d.Shadow.Changed {
				c.Changed++
			}
		}
	}
}

// reset starts counting afresh when the policy version changed. s.mu must be held.
func (s *shadowStats) reset(pol *policy.Policy) {
	if pol == nil || s.version == pol.Version() {
		return
	}
	s.version, s.order = pol.Version(), pol.ShadowRules()
	s.counts = make(map[string]*ShadowCount, len(s.order))
	for _, id := range s.order {
		s.counts[id] = &ShadowCount{Rule: id}
	}
}

// ShadowStats returns the policy version in force and, for each of its shadow rules in
// bundle order, how many calls it would have decided and changed since that version took
// effect (in this process).
func (p *Pipeline) ShadowStats() (string, []ShadowCount) {
	s := &p.shadow
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reset(p.opts.Policy())
	out := make([]ShadowCount, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, *s.counts[id])
	}
	return s.version, slices.Clip(out)
}
