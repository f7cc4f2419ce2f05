package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// userHZ is the unit of /proc/<pid>/stat's CPU times: USER_HZ, 100 on every Linux
// architecture Chaperone builds for.
const userHZ = 100

// maxStatBytes bounds the /proc/<pid>/stat read.
const maxStatBytes = 4096

// ProcessCPU returns a reader of the CPU time (user and system) the process pid has
// used, from /proc (Linux only), with a resolution of 10ms: read it around runs of
// thousands of calls, not around one.
func ProcessCPU(pid int) func() (time.Duration, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	return func() (time.Duration, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0, fmt.Errorf("process %d: %w", pid, err)
		}
		return parseStatCPU(b)
	}
}

// parseStatCPU reads utime and stime (fields 14 and 15) from a /proc/<pid>/stat line.
// The second field, the command name in parentheses, may itself hold spaces and
// parentheses, so fields are counted from the last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	if len(b) > maxStatBytes {
		return 0, fmt.Errorf("stat line longer than %d bytes", maxStatBytes)
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat line has no command name: %.40q", b)
	}
	fields := bytes.Fields(b[i+1:])
	// fields[0] is field 3 (state): utime is field 14, stime field 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("stat line has %d fields after the command name, want at least 13", len(fields))
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(string(f), 10, 64)
		if err != nil || n < 0 || n > 1<<50 {
			return 0, fmt.Errorf("stat line has a bad CPU time %.20q", f)
		}
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / userHZ), nil
}
