package audit

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
