package identity

import (
	"sync"
	"time"
)

// Bounds of the verified-token cache.
const (
	verifiedMaxEntries = 16384
	verifiedMaxToken   = 2048 // longer tokens are verified every time rather than held
)

// verifiedCache maps the exact bytes of verified access tokens to their claims until they
// expire. A hit re-checks exp and nbf; nothing else about a token can change while the
// same bytes are presented (keys leave the key set only after their tokens expired).
type verifiedCache struct {
	// mu guards m.
	mu sync.RWMutex
	m  map[string]*Claims
}

func (c *verifiedCache) get(raw string, now time.Time, leeway time.Duration) (*Claims, bool) {
	c.mu.RLock()
	cl, ok := c.m[raw]
	c.mu.RUnlock()
	if !ok || !now.Before(cl.Expiry.Add(leeway)) || now.Add(leeway).Before(cl.NotBefore) {
		return nil, false
	}
	return cl, true
}

func (c *verifiedCache) put(raw string, cl *Claims) {
	if len(raw) > verifiedMaxToken {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]*Claims)
	}
	if len(c.m) >= verifiedMaxEntries {
		// Drop what has expired; if that frees nothing, drop half (map order is random):
		// the cache is an accelerator, a miss only costs a verification.
		now := time.Now()
		for k, v := range c.m {
			if !now.Before(v.Expiry) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < verifiedMaxEntries/2 {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[raw] = cl
}
