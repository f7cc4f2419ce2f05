package console

import (
	"fmt"
	"net/http"
	"sync"
	"time"
)

// broadcaster wakes every live stream when something changed.
type broadcaster struct {
	mu      sync.Mutex
	version uint64
	ch      chan struct{}
}

func newBroadcaster() *broadcaster { return &broadcaster{ch: make(chan struct{})} }

func (b *broadcaster) bump() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.version++
	close(b.ch)
	b.ch = make(chan struct{})
}

func (b *broadcaster) wait() (<-chan struct{}, uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ch, b.version
}

// Live stream timing: changes within liveCoalesce reach a browser as one event; a comment
// every liveHeartbeat keeps proxies from closing the stream; a stream ends after liveMax
// (the browser reconnects), so that an ended session stops receiving.
const (
	liveCoalesce  = 200 * time.Millisecond
	liveHeartbeat = 15 * time.Second
	liveMax       = 5 * time.Minute
)

// liveStream sends "change" events (server-sent events) while the session lives.
func (c *Console) liveStream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	// The admin server's write timeout would cut the stream: this one ends by itself.
	_ = rc.SetWriteDeadline(time.Now().Add(liveMax + time.Minute))
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n\n")
	if rc.Flush() != nil {
		return
	}
	end := time.NewTimer(liveMax)
	defer end.Stop()
	beat := time.NewTicker(liveHeartbeat)
	defer beat.Stop()
	ch, seen := c.live.wait()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-c.opts.Done:
			return
		case <-end.C:
			return
		case <-beat.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case <-ch:
			select {
			case <-time.After(liveCoalesce):
			case <-r.Context().Done():
				return
			}
			var v uint64
			ch, v = c.live.wait()
			if v == seen {
				continue
			}
			seen = v
			if _, err := fmt.Fprintf(w, "event: change\ndata: %d\n\n", v); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}
