package bench

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		line string
		want time.Duration
		err  string
	}{
		{"1234 (chaperone) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 8 0 100 0 0", 3250 * time.Millisecond, ""},
		// A command name with spaces and a closing parenthesis of its own.
		{"77 (my (odd) proc) R 1 77 77 0 -1 0 0 0 0 0 3 4 0 0", 70 * time.Millisecond, ""},
		{"77 my proc R 1", 0, "no command name"},
		{"77 (p) R 1 2 3", 0, "has 4 fields after the command name, want at least 13"},
		{"77 (p) R 1 77 77 0 -1 0 0 0 0 0 x 4 0 0", 0, "bad CPU time"},
		{"77 (p) R 1 77 77 0 -1 0 0 0 0 0 -3 4 0 0", 0, "bad CPU time"},
		{"77 (p) " + strings.Repeat("1 ", 3000), 0, "longer than 4096 bytes"},
	} {
		got, err := parseStatCPU([]byte(tc.line))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseStatCPU(%.30q) = %v, %v; want an error with %q", tc.line, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseStatCPU(%.30q) = %v, %v; want %v", tc.line, got, err, tc.want)
		}
	}
}

func TestProcessCPUOfThisProcess(t *testing.T) {
	t.Parallel()
	if _, err := ProcessCPU(-1)(); err == nil {
		t.Error("a missing process read without error")
	}
	read := ProcessCPU(os.Getpid())
	before, err := read()
	if err != nil {
		t.Skipf("no /proc here: %v", err) // Linux only
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		x := 0
		for i := range 5_000_000 {
			x += i
		}
		_ = x
		after, err := read()
		if err != nil {
			t.Fatal(err)
		}
		if after > before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time did not grow from %v while spinning", before)
		}
	}
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add([]byte("1234 (chaperone) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 8 0 100 0 0"))
	f.Add([]byte("1 ()) ) 1 2 3 4 5 6 7 8 9 10 11 12 13"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseStatCPU(b)
		if err == nil && d < 0 {
			t.Fatalf("negative CPU time %v", d)
		}
	})
}
