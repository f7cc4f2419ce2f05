package audit

import "time"

// QueueLen returns the number of events waiting for l's writer, so that tests
// can wait until their appends are queued.
func QueueLen(l *Log) int { return len(l.queue) }

// IsClosing reports whether Close has been called on l.
func IsClosing(l *Log) bool {
	select {
	case <-l.closing:
		return true
	default:
		return false
	}
}

// SetSleep replaces how l's writer waits for more events (time.Sleep). Call it before
// the first Append: the append's send to the writer orders the two.
func SetSleep(l *Log, sleep func(time.Duration)) { l.sleep = sleep }
