package progress

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/testclock"
)

// recorder keeps each Write apart. It is deliberately not synchronised: the race
// detector then reports a Bar that writes from two goroutines at once.
type recorder struct{ writes []string }

func (r *recorder) Write(p []byte) (int, error) {
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

func (r *recorder) String() string { return strings.Join(r.writes, "") }

// env is an environment for Options.Getenv.
func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// newBar starts a bar that always draws on a recorder, on a test clock.
func newBar(opts Options) (*Bar, *recorder, *testclock.Clock) {
	rec, clk := &recorder{}, testclock.New(t0)
	opts.Mode, opts.Now = Always, clk.Now
	return New(rec, opts), rec, clk
}

// use calls every method of b, as a command would.
func use(b *Bar) {
	b.SetTotal(10)
	b.Add(3)
	b.Set(7)
	b.Note("3 written")
	b.Done()
	b.Stop()
}

func TestQuietWhenNotATerminal(t *testing.T) {
	t.Parallel()
	// Nothing is written to a buffer, a pipe or a regular file: New returns nil and
	// the nil Bar does nothing.
	var buf bytes.Buffer
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for _, tc := range []struct {
		name string
		w    io.Writer
	}{
		{"buffer", &buf},
		{"pipe", pw},
		{"file", file},
		{"nil writer", nil},
	} {
		b := New(tc.w, Options{Label: "replaying calls", Total: 10, Getenv: env("TERM", "xterm")})
		if b != nil || b.Enabled() {
			t.Errorf("New(%s, Auto) = %p, want nil", tc.name, b)
		}
		use(b)
	}
	pw.Close()
	if got, _ := io.ReadAll(pr); len(got) != 0 {
		t.Errorf("a bar wrote %q to a pipe", got)
	}
	if buf.Len() != 0 {
		t.Errorf("a bar wrote %q to a buffer", buf.String())
	}
	if fi, err := file.Stat(); err != nil || fi.Size() != 0 {
		t.Errorf("a bar wrote to a file: %v, %v", fi, err)
	}
}

func TestModeAndEnvironment(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mode Mode
		env  func(string) string
		want bool
	}{
		{"auto off a terminal", Auto, nil, false},
		{"always", Always, nil, true},
		{"never", Never, nil, false},
		{"env always overrides auto", Auto, env(EnvMode, "always"), true},
		{"env always, any case", Auto, env(EnvMode, " Always "), true},
		{"env never overrides always", Always, env(EnvMode, "never"), false},
		{"env auto keeps always", Always, env(EnvMode, "auto"), true},
		{"env auto keeps auto", Auto, env(EnvMode, "auto"), false},
		{"unknown env value keeps the mode", Always, env(EnvMode, "sometimes"), true},
		{"unknown env value does not force", Auto, env(EnvMode, "yes"), false},
	} {
		var rec recorder
		if got := Wanted(&rec, Options{Mode: tc.mode, Getenv: tc.env}); got != tc.want || len(rec.writes) > 0 {
			t.Errorf("%s: Wanted(buffer, %v) = %v (wrote %q), want %v and nothing written", tc.name, tc.mode, got, rec.String(), tc.want)
		}
		b := New(&rec, Options{Label: "x", Mode: tc.mode, Getenv: tc.env})
		if b.Enabled() != tc.want {
			t.Errorf("%s: New(buffer, %v).Enabled() = %v, want %v", tc.name, tc.mode, b.Enabled(), tc.want)
		}
		if wrote := len(rec.writes) > 0; wrote != tc.want {
			t.Errorf("%s: wrote %q, want a line: %v", tc.name, rec.String(), tc.want)
		}
	}
}

// A character device counts as a terminal. /dev/null is one, and the only one a test
// can count on.
func TestTerminal(t *testing.T) {
	t.Parallel()
	dev, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("open %s: %v", os.DevNull, err)
	}
	defer dev.Close()
	if fi, err := dev.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Skipf("%s is not a character device here", os.DevNull)
	}
	if !Terminal(dev) {
		t.Errorf("Terminal(%s) = false, want true", os.DevNull)
	}
	if b := New(dev, Options{Label: "x"}); !b.Enabled() {
		t.Errorf("New(%s, Auto) does not draw", os.DevNull)
	} else {
		b.Done()
	}
	if b := New(dev, Options{Label: "x", Getenv: env(EnvMode, "never")}); b.Enabled() {
		t.Errorf("New(%s) with %s=never draws", os.DevNull, EnvMode)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	var nilFile *os.File
	for _, w := range []io.Writer{pw, nilFile, &bytes.Buffer{}} {
		if Terminal(w) {
			t.Errorf("Terminal(%T) = true, want false", w)
		}
	}
}

func TestKnownTotal(t *testing.T) {
	t.Parallel()
	b, rec, clk := newBar(Options{Label: "replaying calls", Total: 5000})
	b.Add(1000) // throttled: the first line was drawn at the start
	clk.Advance(500 * time.Millisecond)
	b.Add(250) // not throttled
	clk.Advance(50 * time.Millisecond)
	b.Add(0) // throttled: 50ms after the last redraw
	clk.Advance(450 * time.Millisecond)
	b.Set(1250)
	clk.Advance(3 * time.Second)
	b.Set(5000)
	b.Done()
	b.Add(1) // after Done: nothing
	b.Done()
	b.Stop()
	want := []string{
		"\rreplaying calls  0/5000 (0%)\x1b[K",
		"\rreplaying calls  1250/5000 (25%)  2.5k/s  eta 2s\x1b[K",
		"\rreplaying calls  1250/5000 (25%)  1.2k/s  eta 3s\x1b[K",
		"\rreplaying calls  5000/5000 (100%)  1.2k/s\x1b[K",
		"\rreplaying calls  5000/5000 (100%)  1.2k/s  in 4.0s\x1b[K\n",
	}
	if diff := cmp.Diff(want, rec.writes); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
}

func TestUnknownTotalAndNote(t *testing.T) {
	t.Parallel()
	b, rec, clk := newBar(Options{Label: "exporting events", Unit: "events"})
	clk.Advance(time.Second)
	b.Note("12 written")
	b.Add(1234)
	clk.Advance(time.Second)
	b.SetTotal(2000) // becomes known
	b.Add(766)
	clk.Advance(500 * time.Millisecond)
	b.Done()
	want := []string{
		"\rexporting events  0 events\x1b[K",
		"\rexporting events  1234 events  1.2k/s  12 written\x1b[K",
		"\rexporting events  2000/2000 (100%)  1.0k/s  12 written\x1b[K",
		"\rexporting events  2000/2000 (100%)  800/s  in 2.5s  12 written\x1b[K\n",
	}
	if diff := cmp.Diff(want, rec.writes); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
}

// A count beyond the total (a log that grew while it was read) raises the total.
func TestCountBeyondTotal(t *testing.T) {
	t.Parallel()
	b, rec, clk := newBar(Options{Label: "reading events", Total: 10})
	clk.Advance(time.Second)
	b.Set(15)
	b.Done()
	if got, want := rec.writes[len(rec.writes)-1], "\rreading events  15/15 (100%)  15/s  in 1.0s\x1b[K\n"; got != want {
		t.Errorf("final line = %q, want %q", got, want)
	}
}

// NO_COLOR and TERM=dumb get no escape sequence: a shorter line is padded with spaces
// over the longer one, and Stop clears with spaces.
func TestPlain(t *testing.T) {
	t.Parallel()
	for _, e := range [][]string{{EnvNoColor, "1"}, {EnvTerm, "dumb"}} {
		rec, clk := &recorder{}, testclock.New(t0)
		b := New(rec, Options{Label: "x", Unit: "rows", Mode: Always, Getenv: env(e...), Now: clk.Now})
		clk.Advance(time.Second)
		b.Note("abcdef")
		b.Add(5)
		clk.Advance(time.Second)
		b.Note("")
		b.Add(5)
		b.Stop()
		b.Done()
		want := []string{
			"\rx  0 rows",
			"\rx  5 rows  5.0/s  abcdef",
			"\rx  10 rows  5.0/s" + strings.Repeat(" ", 7),
			"\r" + strings.Repeat(" ", len("x  10 rows  5.0/s")) + "\r",
		}
		if diff := cmp.Diff(want, rec.writes); diff != "" {
			t.Errorf("%s=%s: writes (-want +got):\n%s", e[0], e[1], diff)
		}
	}
	// An empty NO_COLOR is unset, by its definition.
	b, rec, _ := newBar(Options{Label: "x", Getenv: env(EnvNoColor, "", EnvTerm, "xterm-256color")})
	b.Stop()
	if got := rec.String(); !strings.Contains(got, "\x1b[K") {
		t.Errorf("with NO_COLOR empty and TERM=xterm-256color the bar wrote %q, want escape sequences", got)
	}
}

// Stop clears the line so that an error message starts on a clean one.
func TestStop(t *testing.T) {
	t.Parallel()
	b, rec, clk := newBar(Options{Label: "verifying the chain", Total: 100})
	clk.Advance(time.Second)
	b.Add(40)
	b.Stop()
	b.Done()
	b.Add(10)
	want := []string{
		"\rverifying the chain  0/100 (0%)\x1b[K",
		"\rverifying the chain  40/100 (40%)  40/s  eta 2s\x1b[K",
		"\r\x1b[K",
	}
	if diff := cmp.Diff(want, rec.writes); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	w.n++
	return 0, errors.New("broken pipe")
}

// A Bar whose writes fail stops writing.
func TestWriteFailure(t *testing.T) {
	t.Parallel()
	w, clk := &failWriter{}, testclock.New(t0)
	b := New(w, Options{Label: "x", Mode: Always, Now: clk.Now})
	for range 5 {
		clk.Advance(time.Second)
		b.Add(1)
	}
	b.Done()
	b.Stop()
	if w.n != 1 {
		t.Errorf("a bar whose first write failed wrote %d times, want 1", w.n)
	}
}

// Several goroutines count at once; drawing is serialised (the recorder is not: the
// race detector sees any overlap) and the final count is exact.
func TestConcurrentAdd(t *testing.T) {
	t.Parallel()
	const workers, each = 8, 2000
	rec := &recorder{}
	b := New(rec, Options{Label: "evaluating rows", Total: workers * each, Mode: Always, Interval: time.Nanosecond})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				b.Add(1)
			}
		})
	}
	wg.Wait()
	b.Done()
	for i, w := range rec.writes {
		last := i == len(rec.writes)-1
		if !strings.HasPrefix(w, "\revaluating rows  ") || strings.Count(w, "\r") != 1 ||
			!strings.HasSuffix(w, "\x1b[K") && !last || last && !strings.HasSuffix(w, "\x1b[K\n") {
			t.Fatalf("write %d of %d is not one whole line: %q", i+1, len(rec.writes), w)
		}
	}
	final := rec.writes[len(rec.writes)-1]
	if !strings.Contains(final, "16000/16000 (100%)") {
		t.Errorf("final line = %q, want 16000/16000", final)
	}
}

func TestClean(t *testing.T) {
	t.Parallel()
	b, rec, _ := newBar(Options{Label: "a\x1b[2J\r\nb\u200bc\u00e9" + strings.Repeat("x", 100), Unit: "rows\n"})
	b.Note("n\x07\x1b[31mote")
	b.Done()
	// Control and format characters go; the label is cut to 40 characters.
	want := "\ra[2Jbc\u00e9" + strings.Repeat("x", 33) + "  0 rows  n[31mote\x1b[K\n"
	if got := rec.writes[len(rec.writes)-1]; got != want {
		t.Errorf("final line = %q, want %q", got, want)
	}
}

func TestParseMode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want Mode
		err  string
	}{
		{"", Auto, ""},
		{"auto", Auto, ""},
		{"always", Always, ""},
		{"ALWAYS", Always, ""},
		{" never\n", Never, ""},
		{"1", Auto, `CHAPERONE_PROGRESS: "1": want always, never or auto`},
		{"on", Auto, `"on"`},
		{strings.Repeat("a", 17), Auto, "17 bytes, longer than 16"},
	} {
		got, err := ParseMode(tc.in)
		if got != tc.want || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseMode(%q) = %v, %v; want %v, error containing %q", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestFormats(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"},
		{0, "0s"},
		{300 * time.Millisecond, "1s"},
		{3 * time.Second, "3s"},
		{59*time.Second + time.Millisecond, "1m00s"},
		{80 * time.Second, "1m20s"},
		{2*time.Hour + 5*time.Minute, "2h05m"},
		{101 * time.Hour, ">100h"},
	} {
		if got := formatDuration(tc.d); got != tc.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
	for _, tc := range []struct {
		r    float64
		want string
	}{
		{0.25, "0.2/s"},
		{9.96, "10.0/s"},
		{850, "850/s"},
		{1234, "1.2k/s"},
		{3.4e6, "3.4M/s"},
		{2e9, "2.0G/s"},
	} {
		if got := formatRate(tc.r); got != tc.want {
			t.Errorf("formatRate(%g) = %q, want %q", tc.r, got, tc.want)
		}
	}
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{3400 * time.Microsecond, "3ms"},
		{2500 * time.Millisecond, "2.5s"},
		{75 * time.Second, "1m15s"},
	} {
		if got := formatElapsed(tc.d); got != tc.want {
			t.Errorf("formatElapsed(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func FuzzParseMode(f *testing.F) {
	for _, s := range []string{"", "auto", "always", "never", "ALWAYS", " never\n", "1", "on", strings.Repeat("a", 17)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMode(s)
		if err != nil && m != Auto {
			t.Errorf("ParseMode(%q) = %v with error %v, want Auto", s, m, err)
		}
		if err == nil && m != Auto && m != Always && m != Never {
			t.Errorf("ParseMode(%q) = %v, not a mode", s, m)
		}
	})
}

// FuzzLine draws lines of any label, note and counts: each is one write of one line,
// with no control character but the leading carriage return, the escape sequence that
// clears the rest of the line and, last, a newline.
func FuzzLine(f *testing.F) {
	f.Add("replaying calls", "", int64(1250), int64(5000), int64(1000))
	f.Add("exporting events", "12 written", int64(1234), int64(0), int64(1))
	f.Add("a\x1b[2J\r\nb", "n\x07ote", int64(-5), int64(-1), int64(0))
	f.Add(strings.Repeat("\u00e9", 50), "\xff\xfe", int64(1<<62), int64(1<<62-1), int64(1<<40))
	f.Fuzz(func(t *testing.T, label, note string, done, total, ms int64) {
		rec, clk := &recorder{}, testclock.New(t0)
		b := New(rec, Options{Label: label, Total: total, Mode: Always, Now: clk.Now, Getenv: env(EnvTerm, "dumb")})
		b.Note(note)
		clk.Advance(time.Duration(ms) * time.Millisecond)
		b.Set(done)
		b.Done()
		for i, w := range rec.writes {
			body, ok := strings.CutPrefix(w, "\r")
			if i == len(rec.writes)-1 {
				body, ok = strings.CutSuffix(body, "\n")
				ok = ok && strings.HasPrefix(w, "\r")
			}
			if !ok {
				t.Fatalf("write %d = %q: not one line", i, w)
			}
			for _, r := range body {
				if unicode.IsControl(r) {
					t.Fatalf("write %d = %q holds control character %U", i, w, r)
				}
			}
		}
	})
}
