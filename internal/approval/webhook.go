package approval

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	// DefaultWebhookTimeout bounds a webhook delivery unless
	// [WebhookOptions.Timeout] says otherwise.
	DefaultWebhookTimeout = 5 * time.Second
	// maxWebhookResponse is how much of a response body is read (and discarded).
	maxWebhookResponse = 64 << 10

	// Slack's limits: a section's text and each field's text.
	maxSlackText  = 3000
	maxSlackField = 2000
)

// Webhook headers.
const (
	// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the body, keyed by
	// [WebhookOptions.Secret].
	SignatureHeader = "X-Chaperone-Signature"
	// TimestampHeader carries the Unix time the body was sent, in seconds; the body
	// holds the same value as chaperone.timestamp, so the signature covers it.
	TimestampHeader = "X-Chaperone-Timestamp"
)

// WebhookOptions configures a [Webhook].
type WebhookOptions struct {
	// Secret, if not empty, signs every body (SignatureHeader), so the receiver can
	// tell it came from this gateway.
	Secret string
	// Timeout bounds each delivery, from connecting to reading the response; default
	// DefaultWebhookTimeout.
	Timeout time.Duration
	// Transport sends the requests; default http.DefaultTransport.
	Transport http.RoundTripper
	// Now is the clock for the timestamp; default time.Now.
	Now func() time.Time
}

// Webhook is a [Notifier] that POSTs each event as JSON to a URL. The body is both a
// Slack incoming-webhook message ("text" and "blocks") and, under "chaperone", the
// machine-readable event, with the arguments redacted by [Preview].
//
// The URL must be https, or http to a loopback address. Redirects are not followed;
// a response other than 2xx is an error. Errors never contain the URL, which for many
// services (Slack among them) is itself a secret.
type Webhook struct {
	url    string
	secret []byte
	client *http.Client
	now    func() time.Time
}

var _ Notifier = (*Webhook)(nil)

// NewWebhook returns a Webhook posting to rawURL. It returns an error if rawURL is
// not an absolute https URL, or an http URL whose host is localhost or a loopback IP
// address.
func NewWebhook(rawURL string, o WebhookOptions) (*Webhook, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("approval: webhook: URL does not parse")
	}
	switch {
	case u.Host == "" || u.Hostname() == "":
		return nil, errors.New("approval: webhook: URL has no host")
	case u.Scheme == "https":
	case u.Scheme == "http":
		if !loopback(u.Hostname()) {
			return nil, fmt.Errorf("approval: webhook: http URL to %s: only loopback hosts may use http, use https", shortQuote(u.Hostname()))
		}
	default:
		return nil, fmt.Errorf("approval: webhook: URL scheme %s: want https", shortQuote(u.Scheme))
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultWebhookTimeout
	}
	if o.Transport == nil {
		o.Transport = http.DefaultTransport
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	w := &Webhook{
		url: u.String(),
		client: &http.Client{
			Transport: o.Transport,
			Timeout:   o.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse // a 3xx is returned, and is an error
			},
		},
		now: o.Now,
	}
	if o.Secret != "" {
		w.secret = []byte(o.Secret)
	}
	return w, nil
}

// loopback reports whether host is localhost or a loopback IP address.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Notify posts ev. It returns an error for a failed delivery or a response other
// than 2xx, naming the status.
func (w *Webhook) Notify(ctx context.Context, ev Event) error {
	ts := w.now().Unix()
	body, err := webhookBody(ev, ts)
	if err != nil {
		return fmt.Errorf("approval: webhook %s: encode: %w", ev.Kind, err)
	}
	if err := w.post(ctx, ts, body); err != nil {
		return fmt.Errorf("approval: webhook %s: %w", ev.Kind, err)
	}
	return nil
}

// Post sends a notification that is not about an approval — a tripped breaker, a
// kill switch — in the same form: a Slack-compatible text line, and the event as
// "chaperone", to which a "timestamp" (the signed Unix time) is added. Text is sent
// as it is: the caller redacts it.
func (w *Webhook) Post(ctx context.Context, kind, text string, event map[string]any) error {
	ts := w.now().Unix()
	e := make(map[string]any, len(event)+2)
	for k, v := range event {
		e[k] = v
	}
	e["kind"], e["timestamp"] = kind, ts
	msg := struct {
		Text      string         `json:"text"`
		Chaperone map[string]any `json:"chaperone"`
	}{slackEscape(text), e}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(msg); err != nil {
		return fmt.Errorf("webhook %s: encode: %w", kind, err)
	}
	if err := w.post(ctx, ts, bytes.TrimSuffix(b.Bytes(), []byte("\n"))); err != nil {
		return fmt.Errorf("webhook %s: %w", kind, err)
	}
	return nil
}

// post delivers one signed body.
func (w *Webhook) post(ctx context.Context, ts int64, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return stripURL(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "chaperone")
	req.Header.Set(TimestampHeader, strconv.FormatInt(ts, 10))
	if w.secret != nil {
		req.Header.Set(SignatureHeader, Sign(w.secret, body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("post: %w", stripURL(err))
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxWebhookResponse))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("response status %s", shortQuote(resp.Status))
	}
	return nil
}

// Sign returns the value of SignatureHeader for body: "sha256=" and the hex
// HMAC-SHA256 of body keyed by secret. A receiver recomputes it and compares in
// constant time (hmac.Equal).
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// stripURL returns the cause of a *url.Error, which would otherwise name the URL.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// webhookMessage is the body of a webhook delivery.
type webhookMessage struct {
	Text      string       `json:"text"`
	Blocks    []slackBlock `json:"blocks"`
	Chaperone webhookEvent `json:"chaperone"`
}

type slackBlock struct {
	Type   string      `json:"type"`
	Text   *slackText  `json:"text,omitempty"`
	Fields []slackText `json:"fields,omitempty"`
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// webhookEvent is the machine-readable event. Free text is redacted by RedactText,
// arguments by Preview.
type webhookEvent struct {
	Kind          string          `json:"kind"`
	ID            string          `json:"id"`
	Status        Status          `json:"status"`
	Tool          string          `json:"tool"`
	Upstream      string          `json:"upstream"`
	Agent         string          `json:"agent"`
	User          string          `json:"user"`
	Task          string          `json:"task"`
	Reason        string          `json:"reason"`
	Risk          int             `json:"risk"`
	RiskFactors   []string        `json:"risk_factors"`
	Rules         []string        `json:"rules"`
	PolicyVersion string          `json:"policy_version"`
	Explanation   string          `json:"explanation"`
	Undo          string          `json:"undo"`
	Arguments     json.RawMessage `json:"arguments"`
	Required      int             `json:"required"`
	ApprovedBy    []string        `json:"approved_by"`
	DeniedBy      string          `json:"denied_by"`
	DenyCode      string          `json:"deny_code"`
	DenyText      string          `json:"deny_text"`
	CreatedAt     time.Time       `json:"created_at"`
	ExpiresAt     time.Time       `json:"expires_at"`
	DecidedAt     *time.Time      `json:"decided_at,omitempty"`
	URL           string          `json:"url"`
	Timestamp     int64           `json:"timestamp"`
}

// webhookBody returns the JSON body for ev, sent at Unix time ts.
func webhookBody(ev Event, ts int64) ([]byte, error) {
	r := ev.Request
	approvers := make([]string, 0, len(r.Approvals))
	for _, v := range r.Approvals {
		approvers = append(approvers, v.By)
	}
	e := webhookEvent{
		Kind: ev.Kind, ID: r.ID, Status: r.Status, Tool: r.Tool, Upstream: r.Upstream,
		Agent: r.Agent, User: r.User, Task: r.Task, Reason: RedactText(r.Reason),
		Risk: r.Risk, RiskFactors: nonNil(r.RiskFactors), Rules: nonNil(r.Rules),
		PolicyVersion: r.PolicyVersion, Explanation: RedactText(r.Explanation), Undo: RedactText(r.Undo),
		Arguments: Preview(r.Arguments), Required: r.Required, ApprovedBy: approvers,
		DeniedBy: r.DeniedBy, DenyCode: r.DenyCode, DenyText: RedactText(r.DenyText),
		CreatedAt: r.CreatedAt.UTC(), ExpiresAt: r.ExpiresAt.UTC(), URL: ev.URL, Timestamp: ts,
	}
	if !r.DecidedAt.IsZero() {
		d := r.DecidedAt.UTC()
		e.DecidedAt = &d
	}
	summary := summaryLine(ev)
	msg := webhookMessage{
		Text: slackEscape(summary),
		Blocks: []slackBlock{{
			Type:   "section",
			Text:   &slackText{Type: "mrkdwn", Text: slackCut(slackEscape(summary), maxSlackText)},
			Fields: slackFields(ev, e.Arguments),
		}},
		Chaperone: e,
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(msg); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// summaryLine is the one-line description of ev:
//
//	Approval needed: send_money by finance-assistant for dana@example.com (risk 80) — https://gw/approvals/apr_x
func summaryLine(ev Event) string {
	r := ev.Request
	var b strings.Builder
	switch ev.Kind {
	case EventRequested:
		b.WriteString("Approval needed: ")
	case EventApproved:
		b.WriteString("Approved: ")
	case EventDenied:
		b.WriteString("Denied: ")
	case EventExpired:
		b.WriteString("Expired, nobody decided in time: ")
	default:
		b.WriteString(ev.Kind + ": ")
	}
	b.WriteString(r.Tool + " by " + r.Agent)
	if r.User != "" {
		b.WriteString(" for " + r.User)
	}
	switch ev.Kind {
	case EventRequested:
		fmt.Fprintf(&b, " (risk %d)", r.Risk)
	case EventApproved:
		approvers := make([]string, 0, len(r.Approvals))
		for _, v := range r.Approvals {
			approvers = append(approvers, v.By)
		}
		b.WriteString(", approved by " + strings.Join(approvers, " and "))
	case EventDenied:
		b.WriteString(", denied by " + r.DeniedBy + " (" + r.DenyCode + ")")
	}
	if ev.URL != "" {
		b.WriteString(" — " + ev.URL)
	}
	return b.String()
}

// slackFields returns the Slack section fields describing ev (at most 10, Slack's
// limit), leaving out empty ones.
func slackFields(ev Event, preview json.RawMessage) []slackText {
	r := ev.Request
	var fs []slackText
	add := func(label, value string) {
		if value == "" {
			return
		}
		text := "*" + label + "*\n" + slackEscape(value)
		fs = append(fs, slackText{Type: "mrkdwn", Text: slackCut(text, maxSlackField)})
	}
	tool := r.Tool
	if r.Upstream != "" {
		tool += " (" + r.Upstream + ")"
	}
	add("Tool", tool)
	add("Agent", r.Agent)
	add("User", r.User)
	add("Task", r.Task)
	risk := strconv.Itoa(r.Risk)
	if len(r.RiskFactors) > 0 {
		risk += ": " + strings.Join(r.RiskFactors, ", ")
	}
	add("Risk", risk)
	add("Rules", strings.Join(r.Rules, ", "))
	add("Agent's reason", RedactText(r.Reason))
	add("Explanation", RedactText(r.Explanation))
	if ev.Kind == EventRequested {
		add("Expires", r.ExpiresAt.UTC().Format(time.RFC3339))
	} else {
		add("Status", string(r.Status))
	}
	// A code block; ``` inside it would end it early.
	code := strings.ReplaceAll(slackEscape(string(preview)), "```", "`\u200b``")
	const fence = "```"
	code = slackCut(code, maxSlackField-len("*Arguments*\n")-2*len(fence)-1)
	fs = append(fs, slackText{Type: "mrkdwn", Text: "*Arguments*\n" + fence + code + fence})
	return fs
}

// slackEscape escapes the three characters Slack's mrkdwn treats as control
// characters, so text from agents cannot form links or mentions.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// slackCut cuts s to at most limit runes (Slack counts characters), ending with "…"
// when cut.
func slackCut(s string, limit int) string {
	if utf8.RuneCountInString(s) <= limit {
		return s
	}
	n, i := 0, 0
	for i = range s {
		if n == limit-1 {
			break
		}
		n++
	}
	// Do not leave half an escape (&amp;) at the end.
	if amp := strings.LastIndexByte(s[:i], '&'); amp >= 0 && !strings.Contains(s[amp:i], ";") {
		i = amp
	}
	return s[:i] + "…"
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
