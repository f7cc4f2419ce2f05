package approval_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/approval"
)

// capture is a webhook receiver that records the last request.
type capture struct {
	srv     *httptest.Server
	status  int
	body    chan []byte
	headers chan http.Header
}

func newCapture(tb testing.TB, status int) *capture {
	tb.Helper()
	c := &capture{status: status, body: make(chan []byte, 10), headers: make(chan http.Header, 10)}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c.body <- b
		c.headers <- r.Header.Clone()
		w.WriteHeader(c.status)
	}))
	tb.Cleanup(c.srv.Close)
	return c
}

func event() approval.Event {
	return approval.Event{
		Kind: approval.EventRequested,
		Request: approval.Request{
			ID: "apr_x", CallHash: "sha256:h", Tool: "send_money", Upstream: "bank",
			Arguments: json.RawMessage(`{"to":"ACME <!channel>","amount":80,"password":"hunter2","memo":"ghp_abcdefghijklmnopqrstuvwxyz0123456789"}`),
			Agent:     "finance-assistant", User: "dana@example.com", Task: "tsk_1",
			Reason: "rent, see <https://evil.example|the invoice>", Rules: []string{"payments-need-a-person"},
			PolicyVersion: "sha256:pv", Risk: 80, RiskFactors: []string{"new recipient", "amount"},
			Explanation: "amount came from mail", Status: approval.StatusPending, Required: 1,
			CreatedAt: t0, ExpiresAt: t0.Add(15 * time.Minute),
		},
		URL: "https://gw.example/approvals/apr_x",
	}
}

func TestWebhookBody(t *testing.T) {
	t.Parallel()
	c := newCapture(t, http.StatusOK)
	w, err := approval.NewWebhook(c.srv.URL+"/hook", approval.WebhookOptions{Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Notify(t.Context(), event()); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	body, h := <-c.body, <-c.headers
	if got := h.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	if got := h.Get(approval.SignatureHeader); got != "" {
		t.Errorf("%s = %q without a secret, want none", approval.SignatureHeader, got)
	}
	if got := h.Get(approval.TimestampHeader); got != strconv.FormatInt(t0.Unix(), 10) {
		t.Errorf("%s = %q, want %d", approval.TimestampHeader, got, t0.Unix())
	}
	if strings.Contains(string(body), "hunter2") || strings.Contains(string(body), "ghp_abc") {
		t.Errorf("body holds a secret from the arguments: %s", body)
	}

	var msg struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type string `json:"type"`
			Text struct {
				Type, Text string
			} `json:"text"`
			Fields []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"fields"`
		} `json:"blocks"`
		Chaperone map[string]any `json:"chaperone"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, body)
	}
	const line = "Approval needed: send_money by finance-assistant for dana@example.com (risk 80) — https://gw.example/approvals/apr_x"
	if msg.Text != line {
		t.Errorf("text = %q, want %q", msg.Text, line)
	}
	if len(msg.Blocks) != 1 || msg.Blocks[0].Type != "section" || msg.Blocks[0].Text.Type != "mrkdwn" || msg.Blocks[0].Text.Text != line {
		t.Fatalf("blocks = %+v, want one mrkdwn section headed by the line", msg.Blocks)
	}
	fields := map[string]string{}
	for _, f := range msg.Blocks[0].Fields {
		if f.Type != "mrkdwn" {
			t.Errorf("field %q of type %q, want mrkdwn", f.Text, f.Type)
		}
		label, value, _ := strings.Cut(f.Text, "\n")
		fields[label] = value
	}
	wantFields := map[string]string{
		"*Tool*":           "send_money (bank)",
		"*Agent*":          "finance-assistant",
		"*User*":           "dana@example.com",
		"*Task*":           "tsk_1",
		"*Risk*":           "80: new recipient, amount",
		"*Rules*":          "payments-need-a-person",
		"*Agent's reason*": "rent, see &lt;https://evil.example|the invoice&gt;",
		"*Explanation*":    "amount came from mail",
		"*Expires*":        "2026-03-01T09:15:07Z",
		"*Arguments*":      "```" + `{"to":"ACME &lt;!channel&gt;","amount":80,"password":"[redacted]","memo":"[redacted]"}` + "```",
	}
	if diff := cmp.Diff(wantFields, fields); diff != "" {
		t.Errorf("section fields (-want +got):\n%s", diff)
	}

	wantEvent := map[string]any{
		"kind": "approval.requested", "id": "apr_x", "status": "pending", "tool": "send_money", "upstream": "bank",
		"agent": "finance-assistant", "user": "dana@example.com", "task": "tsk_1",
		"reason": "rent, see <https://evil.example|the invoice>", "risk": 80.0,
		"risk_factors": []any{"new recipient", "amount"}, "rules": []any{"payments-need-a-person"},
		"policy_version": "sha256:pv", "explanation": "amount came from mail", "undo": "",
		"arguments": map[string]any{"to": "ACME <!channel>", "amount": 80.0, "password": "[redacted]", "memo": "[redacted]"},
		"required":  1.0, "approved_by": []any{}, "denied_by": "", "deny_code": "", "deny_text": "",
		"created_at": "2026-03-01T09:00:07.123456Z", "expires_at": "2026-03-01T09:15:07.123456Z",
		"url": "https://gw.example/approvals/apr_x", "timestamp": float64(t0.Unix()),
	}
	if diff := cmp.Diff(wantEvent, msg.Chaperone); diff != "" {
		t.Errorf("chaperone event (-want +got):\n%s", diff)
	}
}

func TestWebhookDecisionLines(t *testing.T) {
	t.Parallel()
	c := newCapture(t, http.StatusNoContent)
	w, err := approval.NewWebhook(c.srv.URL, approval.WebhookOptions{})
	if err != nil {
		t.Fatal(err)
	}
	approved := event()
	approved.Kind, approved.URL = approval.EventApproved, ""
	approved.Request.Status, approved.Request.DecidedAt = approval.StatusApproved, t0.Add(time.Minute)
	approved.Request.Approvals = []approval.Verdict{{By: "erin", At: t0}, {By: "frank", At: t0}}
	denied := event()
	denied.Kind = approval.EventDenied
	denied.Request.Status, denied.Request.DeniedBy, denied.Request.DenyCode = approval.StatusDenied, "erin", "wrong_amount"
	denied.Request.User = ""
	expired := event()
	expired.Kind, expired.Request.Status = approval.EventExpired, approval.StatusExpired
	for _, tt := range []struct {
		ev   approval.Event
		want string
	}{
		{approved, "Approved: send_money by finance-assistant for dana@example.com, approved by erin and frank"},
		{denied, "Denied: send_money by finance-assistant, denied by erin (wrong_amount) — https://gw.example/approvals/apr_x"},
		{expired, "Expired, nobody decided in time: send_money by finance-assistant for dana@example.com — https://gw.example/approvals/apr_x"},
	} {
		if err := w.Notify(t.Context(), tt.ev); err != nil {
			t.Fatalf("Notify(%s): %v", tt.ev.Kind, err)
		}
		var msg struct {
			Text      string
			Chaperone struct {
				Kind       string   `json:"kind"`
				Status     string   `json:"status"`
				ApprovedBy []string `json:"approved_by"`
				DeniedBy   string   `json:"denied_by"`
				DenyCode   string   `json:"deny_code"`
			}
		}
		<-c.headers
		if err := json.Unmarshal(<-c.body, &msg); err != nil {
			t.Fatal(err)
		}
		if msg.Text != tt.want {
			t.Errorf("Notify(%s) text = %q, want %q", tt.ev.Kind, msg.Text, tt.want)
		}
		if msg.Chaperone.Kind != tt.ev.Kind || msg.Chaperone.Status != string(tt.ev.Request.Status) ||
			msg.Chaperone.DeniedBy != tt.ev.Request.DeniedBy || msg.Chaperone.DenyCode != tt.ev.Request.DenyCode ||
			len(msg.Chaperone.ApprovedBy) != len(tt.ev.Request.Approvals) {
			t.Errorf("Notify(%s) chaperone = %+v, want the decision", tt.ev.Kind, msg.Chaperone)
		}
	}
}

func TestWebhookSignature(t *testing.T) {
	t.Parallel()
	c := newCapture(t, http.StatusOK)
	const secret = "whsec-0123456789"
	w, err := approval.NewWebhook(c.srv.URL, approval.WebhookOptions{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Notify(t.Context(), event()); err != nil {
		t.Fatal(err)
	}
	body, h := <-c.body, <-c.headers
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	got := h.Get(approval.SignatureHeader)
	if !hmac.Equal([]byte(got), []byte(want)) {
		t.Errorf("%s = %q, want %q", approval.SignatureHeader, got, want)
	}
	if got != approval.Sign([]byte(secret), body) {
		t.Errorf("Sign disagrees with the header")
	}
	if strings.Contains(string(body), secret) {
		t.Error("the body holds the secret")
	}
	// The timestamp is signed: it is in the body too.
	var msg struct {
		Chaperone struct {
			Timestamp int64 `json:"timestamp"`
		}
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatal(err)
	}
	if ts := h.Get(approval.TimestampHeader); ts != strconv.FormatInt(msg.Chaperone.Timestamp, 10) || ts == "0" {
		t.Errorf("%s = %q, body timestamp %d; want equal", approval.TimestampHeader, ts, msg.Chaperone.Timestamp)
	}
}

func TestWebhookFailures(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	t.Run("status", func(t *testing.T) {
		t.Parallel()
		c := newCapture(t, http.StatusInternalServerError)
		w, err := approval.NewWebhook(c.srv.URL+"/services/T0/SECRETPATH", approval.WebhookOptions{})
		if err != nil {
			t.Fatal(err)
		}
		err = w.Notify(ctx, event())
		if err == nil || !strings.Contains(err.Error(), "500") || strings.Contains(err.Error(), "SECRETPATH") {
			t.Errorf("Notify to a 500 = %v, want an error naming 500 and not the URL", err)
		}
	})

	t.Run("redirect not followed", func(t *testing.T) {
		t.Parallel()
		var followed atomic.Bool
		mux := http.NewServeMux()
		mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/other", http.StatusFound) })
		mux.HandleFunc("/other", func(w http.ResponseWriter, r *http.Request) { followed.Store(true) })
		srv := httptest.NewServer(mux)
		defer srv.Close()
		w, err := approval.NewWebhook(srv.URL+"/hook", approval.WebhookOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Notify(ctx, event()); err == nil || !strings.Contains(err.Error(), "302") {
			t.Errorf("Notify to a redirect = %v, want an error naming 302", err)
		}
		if followed.Load() {
			t.Error("the redirect was followed")
		}
	})

	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		defer srv.Close()
		defer close(release)
		w, err := approval.NewWebhook(srv.URL, approval.WebhookOptions{Timeout: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err = w.Notify(ctx, event())
		if err == nil {
			t.Fatal("Notify to a server that never answers succeeded")
		}
		if el := time.Since(start); el > 10*time.Second {
			t.Errorf("Notify returned after %v, want about 50ms", el)
		}
		if strings.Contains(err.Error(), srv.URL) {
			t.Errorf("Notify error %q names the URL", err)
		}
	})

	t.Run("connection refused hides the URL", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL + "/services/T0/SECRETPATH?token=SECRETQUERY"
		srv.Close()
		w, err := approval.NewWebhook(url, approval.WebhookOptions{})
		if err != nil {
			t.Fatal(err)
		}
		err = w.Notify(ctx, event())
		if err == nil || strings.Contains(err.Error(), "SECRET") {
			t.Errorf("Notify to a closed server = %v, want an error without the URL's path or query", err)
		}
	})

	t.Run("large response", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			chunk := []byte(strings.Repeat("x", 64<<10))
			for range 160 { // 10 MiB, of which the client reads 64 KiB
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}))
		defer srv.Close()
		w, err := approval.NewWebhook(srv.URL, approval.WebhookOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Notify(ctx, event()); err != nil {
			t.Errorf("Notify with a large 200 response = %v, want nil", err)
		}
	})
}

func TestWebhookHTTPS(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	w, err := approval.NewWebhook(srv.URL, approval.WebhookOptions{Transport: srv.Client().Transport})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Notify(t.Context(), event()); err != nil || hits.Load() != 1 {
		t.Errorf("Notify over https = %v with %d hits, want success", err, hits.Load())
	}
	// Without trusting the test certificate, the delivery fails.
	w, err = approval.NewWebhook(srv.URL, approval.WebhookOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Notify(t.Context(), event()); err == nil {
		t.Error("Notify to an untrusted certificate succeeded")
	}
}

func TestNewWebhookURL(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		url string
		ok  bool
	}{
		{"https://hooks.slack.com/services/T0/B0/x", true},
		{"https://example.com:8443/hook", true},
		{"http://127.0.0.1:9000/hook", true},
		{"http://127.1.2.3/hook", true},
		{"http://[::1]:9000/hook", true},
		{"http://localhost:9000/hook", true},
		{"http://LOCALHOST/hook", true},
		{"http://example.com/hook", false},
		{"http://10.0.0.1/hook", false},
		{"http://[::ffff:10.0.0.1]/hook", false},
		{"http://localhost.example.com/hook", false},
		{"ftp://example.com/hook", false},
		{"hooks.slack.com/services/x", false},
		{"https:///path", false},
		{"", false},
		{"https://exa mple.com/", false},
	} {
		_, err := approval.NewWebhook(tt.url, approval.WebhookOptions{})
		if (err == nil) != tt.ok {
			t.Errorf("NewWebhook(%q) = %v, want ok %v", tt.url, err, tt.ok)
		}
	}
	// The error does not echo the URL's path.
	_, err := approval.NewWebhook("http://example.com/services/SECRETPATH", approval.WebhookOptions{})
	if err == nil || strings.Contains(err.Error(), "SECRETPATH") {
		t.Errorf("NewWebhook(http to a remote host) = %v, want an error without the path", err)
	}
}

// TestManagerWebhook wires a Webhook into a Manager: notifications reach the receiver,
// and a receiver that fails does not stop a decision.
func TestManagerWebhook(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := newCapture(t, http.StatusServiceUnavailable)
	w, err := approval.NewWebhook(c.srv.URL, approval.WebhookOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *approval.Options) { o.Notifiers = []approval.Notifier{w} })
	r := f.request(t, call())
	if got, err := f.m.Approve(ctx, r.ID, "erin"); err != nil || got.Status != approval.StatusApproved {
		t.Fatalf("Approve with a failing webhook = %+v, %v; want approved", got, err)
	}
	for _, want := range []string{approval.EventRequested, approval.EventApproved} {
		var msg struct {
			Chaperone struct {
				Kind string `json:"kind"`
				ID   string `json:"id"`
				URL  string `json:"url"`
			}
		}
		if err := json.Unmarshal(<-c.body, &msg); err != nil {
			t.Fatal(err)
		}
		<-c.headers
		if msg.Chaperone.Kind != want || msg.Chaperone.ID != r.ID || msg.Chaperone.URL != "https://gw.example/approvals/"+r.ID {
			t.Errorf("webhook event = %+v, want %s of %s with its URL", msg.Chaperone, want, r.ID)
		}
	}
}
