package egress

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// curlPath finds curl; without it the test skips, unless CHAPERONE_REQUIRE_CURL is set.
func curlPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CHAPERONE_REQUIRE_CURL") != "" {
			t.Fatal("CHAPERONE_REQUIRE_CURL is set but curl was not found")
		}
		t.Skip("curl not found; set CHAPERONE_REQUIRE_CURL to make this a failure")
	}
	return p
}

// curlResult is what one curl run produced.
type curlResult struct {
	exit    int
	status  string // %{http_code}
	connect string // %{http_connect}
	body    string
	headers string
}

// curl runs curl with a clean environment (no proxy variables, no .curlrc) and the
// given arguments, writing the body and headers to files.
func curl(t *testing.T, args ...string) curlResult {
	t.Helper()
	bin := curlPath(t)
	dir := t.TempDir()
	bodyFile, headFile := filepath.Join(dir, "body"), filepath.Join(dir, "headers")
	full := append([]string{"-q", "-sS", "--max-time", "60", "-o", bodyFile, "-D", headFile,
		"-w", "%{http_code} %{http_connect}"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var r curlResult
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.exit = ee.ExitCode()
	case err != nil:
		t.Fatalf("curl %q: %v", args, err)
	}
	r.status, r.connect, _ = strings.Cut(strings.TrimSpace(stdout.String()), " ")
	b, _ := os.ReadFile(bodyFile)
	hd, _ := os.ReadFile(headFile)
	r.body, r.headers = string(b), string(hd)
	t.Logf("curl %s: exit %d, status %s, connect %s, stderr %q", strings.Join(args, " "), r.exit, r.status, r.connect, stderr.String())
	return r
}

func curlErrorCode(t *testing.T, body string) string {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("body %q is not the JSON error: %v", body, err)
	}
	return e.Error.Code
}

func TestCurl(t *testing.T) {
	curlPath(t)
	t.Parallel()
	h := newHarness(t, nil)
	proxy := "http://" + h.addr
	user := agentA + ":" + tokenA
	tlsURL := "https://secure.test:" + strconv.Itoa(h.tlsPort) + "/hello"

	t.Run("plain GET", func(t *testing.T) {
		r := curl(t, "-x", proxy, "-U", user, h.url("api.test", "/hello"))
		if r.exit != 0 || r.status != "200" || r.body != "hello from origin" {
			t.Errorf("curl GET = exit %d, %s %q; want 200 and the body", r.exit, r.status, r.body)
		}
	})
	t.Run("credentials in the proxy URL", func(t *testing.T) {
		r := curl(t, "-x", "http://"+user+"@"+h.addr, h.url("api.test", "/hello"))
		if r.status != "200" || r.body != "hello from origin" {
			t.Errorf("curl GET = %s %q; want 200 and the body", r.status, r.body)
		}
	})
	t.Run("HTTPS through CONNECT", func(t *testing.T) {
		r := curl(t, "-k", "-x", proxy, "-U", user, tlsURL)
		if r.exit != 0 || r.status != "200" || r.connect != "200" || r.body != "hello from origin" {
			t.Errorf("curl %s = exit %d, %s (connect %s) %q; want 200 through a tunnel", tlsURL, r.exit, r.status, r.connect, r.body)
		}
	})
	t.Run("CONNECT refused", func(t *testing.T) {
		r := curl(t, "-k", "-x", proxy, "-U", user, "https://other.test/")
		if r.exit == 0 || r.connect != "403" {
			t.Errorf("curl https://other.test/ = exit %d, connect %s; want a failure with 403", r.exit, r.connect)
		}
	})
	t.Run("method not allowed", func(t *testing.T) {
		r := curl(t, "-x", proxy, "-U", user, "-X", "POST", "--data", "x=1", h.url("api.test", "/echo"))
		if r.status != "403" || curlErrorCode(t, r.body) != CodeEgressDenied {
			t.Errorf("curl POST = %s %q; want 403 egress_denied", r.status, r.body)
		}
	})
	t.Run("redirect to a metadata name is refused", func(t *testing.T) {
		r := curl(t, "-L", "-x", proxy, "-U", user, h.url("api.test", "/redirect?to=http://metadata.test/latest/meta-data/"))
		if r.status != "403" || curlErrorCode(t, r.body) != CodeEgressDenied {
			t.Errorf("curl -L = %s %q; want the follow-up refused with 403 egress_denied", r.status, r.body)
		}
		if !strings.Contains(r.headers, "302") {
			t.Errorf("curl -L headers %q; want the 302 first", r.headers)
		}
		if rc, _ := h.lastRefusal(); !strings.Contains(rc.reason, "metadata address 169.254.169.254") {
			t.Errorf("Refused reason %q; want the metadata address", rc.reason)
		}
	})
	t.Run("missing token", func(t *testing.T) {
		r := curl(t, "-x", proxy, h.url("api.test", "/hello"))
		if r.status != "407" || !strings.Contains(r.headers, `Proxy-Authenticate: Bearer realm="chaperone", Basic realm="chaperone"`) {
			t.Errorf("curl without a token = %s, headers %q; want 407 with the challenge", r.status, r.headers)
		}
	})
	t.Run("invalid token", func(t *testing.T) {
		r := curl(t, "-x", proxy, "-U", agentA+":chp_wrong", h.url("api.test", "/hello"))
		if r.status != "407" || curlErrorCode(t, r.body) != CodeUnauthenticated {
			t.Errorf("curl with a wrong token = %s %q; want 407", r.status, r.body)
		}
	})
	if logs := h.logs.String(); strings.Contains(logs, tokenA) || strings.Contains(logs, "chp_wrong") {
		t.Errorf("a token reached the logs:\n%s", logs)
	}
}
