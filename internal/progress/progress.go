// Package progress shows how far a long command has got, on one line of a terminal
// that it redraws: "replaying calls  1234/5000 (24%)  1.2k/s  eta 3s", or, when the
// number of items is not known, "exporting events  1234 events  1.2k/s".
//
// A [Bar] draws only where a person is watching: when its writer (the command's standard
// error) is a terminal, or when told to ([Always], or CHAPERONE_PROGRESS=always). In a
// pipe or a file it draws nothing at all, so that what a script captures is unchanged;
// [New] then returns nil, and the methods of a nil *Bar do nothing. CHAPERONE_PROGRESS=never
// turns it off on a terminal too. With NO_COLOR set or TERM=dumb the line is redrawn
// with a carriage return and spaces only, without escape sequences.
//
// Redraws are throttled (at most one per [Options].Interval, ten a second by default);
// the counter is atomic, so several goroutines may count at once.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

// Mode says when a Bar draws.
type Mode int

// The modes.
const (
	// Auto draws only when the writer is a terminal (a character device).
	Auto Mode = iota
	// Always draws whatever the writer is.
	Always
	// Never draws nothing.
	Never
)

// Environment variables a Bar reads through [Options].Getenv.
const (
	// EnvMode overrides [Options].Mode: "always", "never" or "auto" (keep the mode).
	EnvMode = "CHAPERONE_PROGRESS"
	// EnvNoColor, when not empty, asks for output without escape sequences
	// (https://no-color.org).
	EnvNoColor = "NO_COLOR"
	// EnvTerm is the terminal type; "dumb" gets no escape sequences.
	EnvTerm = "TERM"
)

// Bounds of what a line shows.
const (
	// maxLabel bounds the label, in characters: longer labels are cut.
	maxLabel = 40
	// maxNote bounds the note, in characters.
	maxNote = 40
	// maxModeInput bounds the length of a mode ParseMode reads.
	maxModeInput = 16
	// DefaultInterval is the least time between two redraws when [Options].Interval is 0.
	DefaultInterval = 100 * time.Millisecond
)

// ParseMode reads a value of CHAPERONE_PROGRESS: "always", "never", or "auto" or ""
// for [Auto], in any case, with surrounding spaces ignored. Anything else is an error
// naming the value.
func ParseMode(s string) (Mode, error) {
	if len(s) > maxModeInput {
		return Auto, fmt.Errorf("%s: %d bytes, longer than %d: want always, never or auto", EnvMode, len(s), maxModeInput)
	}
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return Auto, nil
	case "always":
		return Always, nil
	case "never":
		return Never, nil
	}
	return Auto, fmt.Errorf("%s: %q: want always, never or auto", EnvMode, s)
}

// Options say what a Bar shows and when.
type Options struct {
	// Label names the work, first on the line: "replaying calls". At most 40
	// characters are shown; control characters are dropped.
	Label string
	// Total is the number of items the work has; 0 (or less) if not known. It may be
	// set later with [Bar.SetTotal].
	Total int64
	// Unit names the items when Total is not known, as in "1234 events"; default
	// "items".
	Unit string
	// Mode says when to draw: [Auto] (the default) on a terminal only. A valid
	// CHAPERONE_PROGRESS other than auto, read through Getenv, overrides it.
	Mode Mode
	// Getenv reads the environment: CHAPERONE_PROGRESS, NO_COLOR and TERM. nil reads
	// none, as if they were all unset. Commands pass os.Getenv.
	Getenv func(string) string
	// Now is the clock the rate, the time left and the throttling are measured with;
	// default time.Now.
	Now func() time.Time
	// Interval is the least time between two redraws; 0 means [DefaultInterval].
	Interval time.Duration
}

// Bar is one line of progress. Add, Set and SetTotal may be called from several
// goroutines at once; drawing is serialised. Done or Stop ends it, after which its
// methods do nothing. A nil *Bar is valid and draws nothing.
type Bar struct {
	w        io.Writer
	label    string
	unit     string
	now      func() time.Time
	interval time.Duration
	plain    bool // no escape sequences: clear with spaces
	start    time.Time

	done  atomic.Int64
	total atomic.Int64
	// next is the time since start, in nanoseconds, before which Add and Set do not
	// redraw.
	next atomic.Int64

	// mu serialises drawing and guards the fields below.
	mu     sync.Mutex
	note   string
	width  int  // characters of the line on screen; 0 if none is
	closed bool // Done or Stop was called, or a write failed
}

// New returns a Bar drawing on w, and draws its first line; or nil, which draws nothing,
// when the mode is [Never], or [Auto] and w is not a terminal.
func New(w io.Writer, opts Options) *Bar {
	if !Wanted(w, opts) {
		return nil
	}
	plain := opts.Getenv != nil && (opts.Getenv(EnvNoColor) != "" || strings.TrimSpace(opts.Getenv(EnvTerm)) == "dumb")
	b := &Bar{
		w: w, label: clean(opts.Label, maxLabel), unit: clean(opts.Unit, maxLabel),
		now: opts.Now, interval: opts.Interval, plain: plain,
	}
	if b.unit == "" {
		b.unit = "items"
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.interval <= 0 {
		b.interval = DefaultInterval
	}
	b.start = b.now()
	b.total.Store(max(opts.Total, 0))
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next.Store(int64(b.interval))
	b.draw(b.start, false)
	return b
}

// Wanted reports whether [New] would draw on w with opts, without drawing: a command
// asks it before it spends anything on the numbers a Bar would show, such as a total
// that costs a query.
func Wanted(w io.Writer, opts Options) bool {
	mode := opts.Mode
	if opts.Getenv != nil {
		if m, err := ParseMode(opts.Getenv(EnvMode)); err == nil && m != Auto {
			mode = m
		}
	}
	switch {
	case w == nil, mode == Never:
		return false
	case mode == Always:
		return true
	}
	return Terminal(w)
}

// Terminal reports whether w is a terminal: an *os.File that is a character device.
// Pipes, regular files and other writers are not.
func Terminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || f == nil {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Enabled reports whether b draws: false for a nil Bar.
func (b *Bar) Enabled() bool { return b != nil }

// Add counts n more items done and redraws if the last redraw is old enough.
func (b *Bar) Add(n int64) {
	if b == nil {
		return
	}
	b.done.Add(n)
	b.tick()
}

// Set sets the number of items done and redraws if the last redraw is old enough.
func (b *Bar) Set(n int64) {
	if b == nil {
		return
	}
	b.done.Store(n)
	b.tick()
}

// SetTotal sets the number of items the work has; 0 if not known. It does not redraw.
func (b *Bar) SetTotal(n int64) {
	if b == nil {
		return
	}
	b.total.Store(max(n, 0))
}

// Note sets a short text shown after the counts, such as "12 written"; "" removes it. It
// does not redraw.
func (b *Bar) Note(s string) {
	if b == nil {
		return
	}
	s = clean(s, maxNote)
	b.mu.Lock()
	b.note = s
	b.mu.Unlock()
}

// Done draws the final line, with the time the work took, and ends it with a newline.
func (b *Bar) Done() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.draw(b.now(), true)
	b.closed = true
}

// Stop ends the bar without a final line: the line drawn, if any, is cleared, so that
// what is written next (an error) starts on a clean line. It is for failures; after
// Done it does nothing, so a command may defer Stop and call Done on success.
func (b *Bar) Stop() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	if b.width == 0 {
		return
	}
	if b.plain {
		b.write("\r" + strings.Repeat(" ", b.width) + "\r")
	} else {
		b.write("\r\x1b[K")
	}
	b.width = 0
}

// tick redraws unless a redraw happened less than an interval ago or another goroutine
// is drawing.
func (b *Bar) tick() {
	now := b.now()
	since := int64(now.Sub(b.start))
	if since < b.next.Load() || !b.mu.TryLock() {
		return
	}
	defer b.mu.Unlock()
	if b.closed || since < b.next.Load() {
		return
	}
	b.next.Store(since + int64(b.interval))
	b.draw(now, false)
}

// draw writes the line for the time now in one Write; final ends it with a newline.
// b.mu is held.
func (b *Bar) draw(now time.Time, final bool) {
	if b.closed {
		return
	}
	line := b.line(now.Sub(b.start), final)
	width := utf8.RuneCountInString(line)
	var sb strings.Builder
	sb.WriteByte('\r')
	sb.WriteString(line)
	if b.plain {
		sb.WriteString(strings.Repeat(" ", max(b.width-width, 0)))
	} else {
		sb.WriteString("\x1b[K")
	}
	b.width = width
	if final {
		sb.WriteByte('\n')
		b.width = 0
	}
	b.write(sb.String())
}

// write writes s to w; after a failed write the bar draws no more. b.mu is held.
func (b *Bar) write(s string) {
	if _, err := io.WriteString(b.w, s); err != nil {
		b.closed = true
	}
}

// line is the text of the line after elapsed; final shows the time taken instead of the
// time left.
func (b *Bar) line(elapsed time.Duration, final bool) string {
	done, total := b.done.Load(), b.total.Load()
	var sb strings.Builder
	sb.WriteString(b.label)
	if total > 0 {
		total = max(total, done)
		pct := int64(0)
		if done > 0 {
			pct = int64(float64(done) / float64(total) * 100)
		}
		fmt.Fprintf(&sb, "  %d/%d (%d%%)", done, total, pct)
	} else {
		fmt.Fprintf(&sb, "  %d %s", done, b.unit)
	}
	secs := elapsed.Seconds()
	if secs > 0 && done > 0 {
		rate := float64(done) / secs
		sb.WriteString("  " + formatRate(rate))
		if !final && total > done {
			sb.WriteString("  eta " + formatDuration(seconds(float64(total-done)/rate)))
		}
	}
	if final && secs > 0 {
		sb.WriteString("  in " + formatElapsed(elapsed))
	}
	if b.note != "" {
		sb.WriteString("  " + b.note)
	}
	return sb.String()
}

// seconds converts a number of seconds to a Duration, saturating instead of overflowing.
func seconds(s float64) time.Duration {
	const most = float64(1<<63-1) / float64(time.Second)
	if s >= most {
		return 1<<63 - 1
	}
	return time.Duration(s * float64(time.Second))
}

// formatRate writes a rate per second with a k, M or G suffix: "850/s", "1.2k/s".
func formatRate(r float64) string {
	switch {
	case r >= 1e9:
		return fmt.Sprintf("%.1fG/s", r/1e9)
	case r >= 1e6:
		return fmt.Sprintf("%.1fM/s", r/1e6)
	case r >= 1e3:
		return fmt.Sprintf("%.1fk/s", r/1e3)
	case r >= 10:
		return fmt.Sprintf("%.0f/s", r)
	}
	return fmt.Sprintf("%.1f/s", r)
}

// formatDuration writes a time left rounded up to whole seconds: "3s", "1m20s", "2h05m".
func formatDuration(d time.Duration) string {
	const maxShown = 100 * time.Hour
	switch {
	case d <= 0:
		return "0s"
	case d > maxShown:
		return ">100h"
	}
	s := int64((d + time.Second - 1) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	}
	m := (s + 30) / 60
	return fmt.Sprintf("%dh%02dm", m/60, m%60)
}

// formatElapsed writes the time a piece of work took: "40ms", "2.5s", "12s", "1m20s".
func formatElapsed(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Round(time.Millisecond)/time.Millisecond)
	}
	if d < 10*time.Second {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return formatDuration(d.Round(time.Second))
}

// clean drops control characters (which would move the cursor or end the line) from s
// and cuts it to at most limit characters.
func clean(s string, limit int) string {
	var sb strings.Builder
	n := 0
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			continue
		}
		if n == limit {
			break
		}
		sb.WriteRune(r)
		n++
	}
	return sb.String()
}
