// Package contain holds the brakes: today, the call budgets of access tokens. Kill
// switches, breakers and rate limits arrive with the containment work (TODO(#7)).
package contain

import (
	"sync"
	"time"
)

// MaxTracked bounds the tokens whose budgets are tracked at once; past it, unexpired
// bounded tokens are refused rather than forgotten (fail closed).
const MaxTracked = 1_000_000

// Budgets counts the calls made with each bounded access token and the calls reserved for
// the tokens delegated from it. It is safe for concurrent use; an entry lives until its
// token expires. State is per process: replicas share it once state moves to PostgreSQL
// (TODO(#10)).
type Budgets struct {
	now func() time.Time

	// mu guards used.
	mu   sync.Mutex
	used map[string]*entry
}

type entry struct {
	n   int64
	exp time.Time
}

// NewBudgets returns empty budgets; now is the clock (time.Now if nil).
func NewBudgets(now func() time.Time) *Budgets {
	if now == nil {
		now = time.Now
	}
	return &Budgets{now: now, used: map[string]*entry{}}
}

// Use takes n calls from the token's budget of max, which lasts until exp. It reports
// false, taking nothing, when fewer than n remain. A max of 0 means unbounded: nothing is
// tracked and Use reports true.
func (b *Budgets) Use(tokenID string, n, max int64, exp time.Time) bool {
	if max <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.used[tokenID]
	if !ok {
		if len(b.used) >= MaxTracked && b.sweep() == 0 {
			return false
		}
		e = &entry{exp: exp}
		b.used[tokenID] = e
	}
	if e.n+n > max {
		return false
	}
	e.n += n
	return true
}

// Remaining returns how many of max calls the token has left (max itself for an
// untracked token; 0 means unbounded only when max is 0).
func (b *Budgets) Remaining(tokenID string, max int64) int64 {
	if max <= 0 {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.used[tokenID]; ok {
		return max - e.n
	}
	return max
}

// sweep drops expired entries and returns how many it dropped. b.mu must be held.
func (b *Budgets) sweep() int {
	now, n := b.now(), 0
	for id, e := range b.used {
		if !now.Before(e.exp) {
			delete(b.used, id)
			n++
		}
	}
	return n
}
