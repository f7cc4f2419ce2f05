package contain

import (
	"sync"
	"testing"
	"time"
)

func TestBudgets(t *testing.T) {
	now := time.Unix(1000, 0)
	b := NewBudgets(func() time.Time { return now })
	exp := now.Add(time.Minute)
	for i := range 3 {
		if !b.Use("t1", 1, 3, exp) {
			t.Fatalf("Use #%d of 3 refused", i+1)
		}
	}
	if b.Use("t1", 1, 3, exp) {
		t.Errorf("Use beyond the budget accepted")
	}
	if got := b.Remaining("t1", 3); got != 0 {
		t.Errorf("Remaining = %d, want 0", got)
	}
	if !b.Use("t2", 2, 5, exp) || b.Use("t2", 4, 5, exp) || b.Remaining("t2", 5) != 3 {
		t.Errorf("reservation of more than remains was not refused whole")
	}
	if !b.Use("unbounded", 1, 0, exp) || b.Remaining("unbounded", 0) != 0 {
		t.Errorf("unbounded token tracked")
	}
	now = now.Add(2 * time.Minute)
	if n := func() int { b.mu.Lock(); defer b.mu.Unlock(); return b.sweep() }(); n != 2 {
		t.Errorf("sweep dropped %d expired entries, want 2", n)
	}
}

func TestBudgetsConcurrent(t *testing.T) {
	b := NewBudgets(nil)
	exp := time.Now().Add(time.Hour)
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if b.Use("t", 1, 100, exp) {
					mu.Lock()
					granted++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if granted != 100 {
		t.Errorf("granted %d calls of a budget of 100", granted)
	}
}
