package journal

import (
	"math/rand/v2"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// TestQueue drives a queue with random pushes and drops against a plain slice: the
// items come out in order, and no slot outside the live items keeps a reference.
func TestQueue(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	var q queue
	var want []int64
	next := int64(1)
	compactions, shrinks := 0, 0
	for step := range 20000 {
		if rng.IntN(3) > 0 || len(want) == 0 {
			for range rng.IntN(40) {
				q.push(item{event: audit.Event{Seq: next}, record: "r"})
				want = append(want, next)
				next++
			}
		} else {
			n := 1 + rng.IntN(len(want))
			front := q.front(n)
			for i, it := range front {
				if it.event.Seq != want[i] {
					t.Fatalf("step %d: front item %d is event %d, want %d", step, i, it.event.Seq, want[i])
				}
			}
			c := cap(q.items)
			q.drop(n, 256)
			want = want[n:]
			switch {
			case q.head == 0 && len(want) > 0: // a drop without moving leaves head past 0
				compactions++
			case q.items == nil && c > 256:
				shrinks++
			}
		}
		if q.len() != len(want) {
			t.Fatalf("step %d: len %d, want %d", step, q.len(), len(want))
		}
		full := q.items[:cap(q.items)]
		for i := range full {
			if (i < q.head || i >= len(q.items)) && (full[i].record != "" || full[i].event.Seq != 0) {
				t.Fatalf("step %d: slot %d (live %d to %d) still holds event %d", step, i, q.head, len(q.items), full[i].event.Seq)
			}
		}
		if q.head > q.len() && q.len() > 0 {
			t.Fatalf("step %d: %d dead items in front of %d live ones", step, q.head, q.len())
		}
	}
	if compactions == 0 || shrinks == 0 {
		t.Errorf("%d drops moved the live items down and %d let go of the array; want both to happen", compactions, shrinks)
	}
}

// TestQueueDropsALargeArray checks that an emptied queue lets go of an array larger than
// it is told to keep, and keeps a smaller one.
func TestQueueDropsALargeArray(t *testing.T) {
	t.Parallel()
	var q queue
	for i := range 100 {
		q.push(item{event: audit.Event{Seq: int64(i + 1)}})
	}
	q.drop(100, 1000)
	if q.items == nil || q.len() != 0 || q.head != 0 {
		t.Fatalf("after emptying a small queue: items nil %v, len %d, head %d; want its array kept, empty", q.items == nil, q.len(), q.head)
	}
	for i := range 2000 {
		q.push(item{event: audit.Event{Seq: int64(i + 1)}})
	}
	q.drop(2000, 1000)
	if q.items != nil || q.head != 0 {
		t.Fatalf("after emptying a queue of 2,000: items nil %v, head %d; want the array dropped", q.items == nil, q.head)
	}
}
