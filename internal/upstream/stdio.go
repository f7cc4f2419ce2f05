package upstream

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

const (
	// terminateGrace is how long a child gets to exit after SIGTERM (on shutdown) or after
	// its stdin is closed (the SDK's graceful close) before it is killed.
	terminateGrace = 2 * time.Second
	// waitDelay bounds how long reaping a child waits for grandchildren that still hold
	// its stderr open.
	waitDelay = 2 * time.Second
	// maxStderrLine bounds one logged line of child stderr; the rest of the line is dropped.
	maxStderrLine = 1024
)

// childEnv returns the child's environment: PATH and HOME from the gateway, then extra.
// Nothing else is inherited, so secrets in the gateway's environment stay there.
func childEnv(extra []string) []string {
	env := make([]string, 0, 2+len(extra))
	for _, k := range []string{"PATH", "HOME"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return append(env, extra...) // exec.Cmd keeps the last value of a duplicated key
}

// command returns the child process for one connection attempt.
func (c *Client) command(stderr *lineLogger) *exec.Cmd {
	// exec.Command resolves a bare name in the gateway's PATH (not in Env's PATH) and
	// refuses names that resolve relative to the working directory.
	cmd := exec.Command(c.cfg.Command, c.cfg.Args...)
	cmd.Env = c.env
	cmd.Dir = c.cfg.Dir
	cmd.Stderr = stderr
	cmd.SysProcAttr = procAttr()
	cmd.WaitDelay = waitDelay
	return cmd
}

// signalGroup sends sig to the child's process group, which also reaches grandchildren
// (npx → npm → node) that would otherwise outlive the gateway. The child is a group
// leader (Setpgid), so its pid is the group id.
func signalGroup(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig) // ESRCH: the group is already gone
}

// lineLogger logs a child's stderr at Debug, one record per line, each at most
// maxStderrLine bytes.
type lineLogger struct {
	log *slog.Logger

	mu        sync.Mutex
	buf       []byte // partial line; guarded by mu
	truncated bool   // guarded by mu
}

func (w *lineLogger) Write(p []byte) (int, error) {
	n := len(p)
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := maxStderrLine - len(w.buf); len(chunk) > room {
			chunk, w.truncated = chunk[:room], true
		}
		w.buf = append(w.buf, chunk...)
		if i < 0 {
			break
		}
		w.flushLocked()
		p = p[i+1:]
	}
	return n, nil
}

// flush logs a final line that had no newline.
func (w *lineLogger) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 || w.truncated {
		w.flushLocked()
	}
}

func (w *lineLogger) flushLocked() {
	if w.log.Enabled(context.Background(), slog.LevelDebug) {
		line := string(bytes.TrimSuffix(w.buf, []byte("\r")))
		if w.truncated {
			w.log.Debug("upstream stderr", "line", line, "truncated", true)
		} else {
			w.log.Debug("upstream stderr", "line", line)
		}
	}
	w.buf, w.truncated = w.buf[:0], false
}
