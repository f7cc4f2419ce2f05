// Package testclock is a settable clock for tests: components under test take its Now in
// place of time.Now, and the test moves it. It is safe for concurrent use.
package testclock

import (
	"sync/atomic"
	"time"
)

// Clock is a settable clock. Its times are in UTC with nanosecond precision and carry
// no monotonic reading.
type Clock struct{ ns atomic.Int64 }

// New returns a Clock reading t.
func New(t time.Time) *Clock {
	c := &Clock{}
	c.Set(t)
	return c
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// Advance moves the clock forward by d (back, for a negative d).
func (c *Clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
