// Package classifier calls an external text classifier over HTTP, such as a Prompt Guard
// model served by text-embeddings-inference or a Hugging Face inference endpoint, to
// score a text for prompt injection.
//
// Unlike package inspect, this package does network I/O. Every call is bounded: a
// per-request timeout (at most 30 seconds), a bound on the text sent and on the response
// read (1 MiB), and no redirects. When the classifier cannot answer (timeout, transport
// error, non-2xx status, oversized or malformed response) the client applies the fail
// mode the operator chose explicitly: "open" treats the text as clean and reports the
// error, "closed" treats it as detected. There is no default fail mode.
//
// The client never logs, and its errors never contain header values (which may hold
// credentials) or the text classified.
//
// # Protocol
//
// The client POSTs {"text": "..."} (or {"inputs": "..."}, see [Options].Field) and
// accepts either a single object {"score": 0.97, "label": "INJECTION"} or the Hugging
// Face text-classification shape, a list of {"label", "score"} objects or a list holding
// one such list. The injection probability is the sum of the scores of the labels
// INJECTION, JAILBREAK, MALICIOUS, LABEL_1 and UNSAFE (case-insensitive; for Prompt
// Guard 1, INJECTION and JAILBREAK summed); when only benign labels (BENIGN, LABEL_0,
// SAFE) are present it is one minus their sum.
package classifier

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/chaperone-dev/chaperone/internal/inspect"
)

// Fail modes, as in [Options].FailMode.
const (
	// FailOpen treats a text the classifier could not score as clean (score 0).
	FailOpen = "open"
	// FailClosed treats a text the classifier could not score as detected (score 1).
	FailClosed = "closed"
)

// Defaults and bounds of [Options].
const (
	DefaultTimeout   = 2 * time.Second
	MaxTimeout       = 30 * time.Second
	DefaultThreshold = 0.5
	DefaultMaxBytes  = 64 << 10
	// MinMaxBytes and MaxMaxBytes bound Options.MaxBytes.
	MinMaxBytes = 64
	MaxMaxBytes = 1 << 20
	// MaxResponseBytes is the longest response body accepted.
	MaxResponseBytes = 1 << 20
)

// FindingKind is the Kind of the [inspect.Finding] a detection becomes, and
// FindingKindFailed the Kind when the text was only counted as detected because the
// classifier failed closed.
const (
	FindingKind       = "classifier"
	FindingKindFailed = "classifier_failed"
)

// ErrBadResponse is wrapped by the errors of responses that cannot be used: a non-2xx
// status, a body longer than [MaxResponseBytes], or one that does not decode.
var ErrBadResponse = errors.New("bad classifier response")

// truncationMark joins the head and tail of a text too long to send whole.
const truncationMark = "\n...\n"

// Options configure a Client.
type Options struct {
	// URL is the endpoint the text is POSTed to: http or https, without user info
	// (put credentials in Header).
	URL string
	// Timeout bounds each request, from sending to reading the whole response
	// (default 2s, at most 30s).
	Timeout time.Duration
	// FailMode is "open" (treat as score 0 and report the error) or "closed" (treat as
	// detected, score 1). It is required: there is no default.
	FailMode string
	// Header is sent with every request, e.g. Authorization. Its values are never
	// logged nor put in errors.
	Header map[string]string
	// Threshold is the score at or above which the text is detected (default 0.5).
	Threshold float64
	// MaxBytes is the longest text sent, in bytes (default 64 KiB, at least 64, at most
	// 1 MiB). A longer text is sent as its first half and its last part, joined by a
	// line "...", within MaxBytes and cut on character boundaries; its middle is not
	// classified (injections in tool output tend to sit at the start or the end).
	MaxBytes int
	// Field is the JSON field that carries the text: "text" (default) or "inputs"
	// (text-embeddings-inference, Hugging Face inference endpoints).
	Field string
	// HTTPClient sends the requests. If nil, a client that follows no redirects is used.
	HTTPClient *http.Client
}

// Client calls one classifier. It is immutable and safe for concurrent use.
type Client struct {
	url       string
	timeout   time.Duration
	closed    bool
	header    http.Header
	threshold float64
	maxBytes  int
	field     string
	hc        *http.Client
}

// New validates the options and returns a client. Every invalid option is reported,
// naming the field.
func New(o Options) (*Client, error) {
	var errs []error
	u, err := url.Parse(o.URL)
	switch {
	case o.URL == "":
		errs = append(errs, errors.New("URL: missing"))
	case err != nil:
		errs = append(errs, errors.New("URL: does not parse"))
	case u.Scheme != "http" && u.Scheme != "https":
		errs = append(errs, fmt.Errorf("URL: scheme %q: want http or https", u.Scheme))
	case u.Host == "":
		errs = append(errs, errors.New("URL: no host"))
	case u.User != nil:
		errs = append(errs, errors.New("URL: user info not allowed: put credentials in Header"))
	case u.Fragment != "":
		errs = append(errs, errors.New("URL: fragment not allowed"))
	}
	c := &Client{url: o.URL, timeout: o.Timeout, threshold: o.Threshold, maxBytes: o.MaxBytes, field: o.Field, hc: o.HTTPClient}
	switch {
	case o.Timeout == 0:
		c.timeout = DefaultTimeout
	case o.Timeout < 0 || o.Timeout > MaxTimeout:
		errs = append(errs, fmt.Errorf("timeout: %s is outside (0, %s]", o.Timeout, MaxTimeout))
	}
	switch o.FailMode {
	case FailOpen:
	case FailClosed:
		c.closed = true
	case "":
		errs = append(errs, errors.New(`fail mode: missing: want "open" or "closed"`))
	default:
		errs = append(errs, fmt.Errorf(`fail mode: %q: want "open" or "closed"`, o.FailMode))
	}
	switch {
	case o.Threshold == 0:
		c.threshold = DefaultThreshold
	case math.IsNaN(o.Threshold) || o.Threshold < 0 || o.Threshold > 1:
		errs = append(errs, fmt.Errorf("threshold: %v is outside (0, 1]", o.Threshold))
	}
	switch {
	case o.MaxBytes == 0:
		c.maxBytes = DefaultMaxBytes
	case o.MaxBytes < MinMaxBytes || o.MaxBytes > MaxMaxBytes:
		errs = append(errs, fmt.Errorf("max bytes: %d is outside [%d, %d]", o.MaxBytes, MinMaxBytes, MaxMaxBytes))
	}
	switch o.Field {
	case "":
		c.field = "text"
	case "text", "inputs":
	default:
		errs = append(errs, fmt.Errorf(`field: %q: want "text" or "inputs"`, o.Field))
	}
	c.header = make(http.Header, len(o.Header))
	for name, value := range o.Header {
		if err := checkHeader(name, value); err != nil {
			errs = append(errs, fmt.Errorf("header %q: %v", name, err))
			continue
		}
		c.header.Set(name, value)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("classifier options: %w", errors.Join(errs...))
	}
	if c.hc == nil {
		c.hc = &http.Client{
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return c, nil
}

// checkHeader validates a header name and value, without quoting the value.
func checkHeader(name, value string) error {
	if name == "" {
		return errors.New("empty name")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return errors.New("invalid character in name")
		}
	}
	switch http.CanonicalHeaderKey(name) {
	case "Host", "Content-Length", "Transfer-Encoding", "Connection", "Content-Type":
		return errors.New("set by the client")
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return errors.New("control character in value")
		}
	}
	return nil
}

// Result of one classification.
type Result struct {
	// Score is the injection probability, from 0 to 1; when Failed, 0 (fail open) or 1
	// (fail closed).
	Score float64
	// Label is the classifier's top label ("INJECTION", "BENIGN", "LABEL_1", ...), or
	// empty when Failed.
	Label string
	// Detected is Score >= Threshold.
	Detected bool
	// Failed is set when the classifier could not score the text and the fail mode
	// decided; Err says why.
	Failed bool
	Err    error
	// Latency is how long the call took.
	Latency time.Duration
	// Truncated is set when the text was longer than MaxBytes and only its head and
	// tail were sent.
	Truncated bool
}

// Finding turns a detection on text into an [inspect.Finding] of the injection sensor
// spanning the whole text, with Kind [FindingKind] ([FindingKindFailed] when the
// classifier failed closed). It reports false when the result is not a detection.
func (r Result) Finding(text string) (inspect.Finding, bool) {
	if !r.Detected {
		return inspect.Finding{}, false
	}
	kind := FindingKind
	if r.Failed {
		kind = FindingKindFailed
	}
	return inspect.Finding{Sensor: inspect.SensorInjection, Kind: kind, Span: inspect.Span{Start: 0, End: len(text)}, Score: r.Score}, true
}

// Classify sends {"text": "..."} and accepts either {"score": 0.97, "label": "INJECTION"}
// or the Hugging Face text-classification shape [{"label":"INJECTION","score":0.97},
// {"label":"BENIGN","score":0.03}] or [[...]] (as a Prompt Guard model served by
// text-embeddings-inference or HF inference returns), where the injection probability is
// the score of a label in {INJECTION, JAILBREAK, MALICIOUS, LABEL_1, unsafe}
// (case-insensitive; for Prompt Guard 1, INJECTION+JAILBREAK summed). On timeout,
// transport error, non-2xx status, oversized (> 1 MiB) or malformed response, or when ctx
// ends first, it applies the fail mode: Failed=true, Err set. A timeout's Err wraps
// context.DeadlineExceeded, a cancelled ctx's wraps its error, and a response's
// [ErrBadResponse].
func (c *Client) Classify(ctx context.Context, text string) Result {
	start := time.Now()
	body, truncated, err := c.prepare(text)
	var score float64
	var label string
	if err == nil {
		score, label, err = c.call(ctx, body)
	}
	r := Result{Latency: time.Since(start), Truncated: truncated}
	if err != nil {
		r.Failed, r.Err = true, err
		if c.closed {
			r.Score, r.Detected = 1, true
		}
		return r
	}
	r.Score, r.Label, r.Detected = score, label, score >= c.threshold
	return r
}

// prepare encodes the request body, cutting a long text to its head and tail.
func (c *Client) prepare(text string) ([]byte, bool, error) {
	truncated := len(text) > c.maxBytes
	if truncated {
		text = headTail(text, c.maxBytes)
	}
	// Invalid UTF-8 is sent as U+FFFD.
	body, err := json.Marshal(map[string]string{c.field: text})
	if err != nil {
		return nil, truncated, fmt.Errorf("encode classifier request: %w", err)
	}
	return body, truncated, nil
}

// headTail returns the first half and the last part of s, joined by truncationMark, in
// at most n bytes, cut on UTF-8 boundaries.
func headTail(s string, n int) string {
	head := n / 2
	for head > 0 && !utf8.RuneStart(s[head]) {
		head--
	}
	tail := len(s) - (n - head - len(truncationMark))
	for tail < len(s) && !utf8.RuneStart(s[tail]) {
		tail++
	}
	return s[:head] + truncationMark + s[tail:]
}

func (c *Client) call(parent context.Context, body []byte) (float64, string, error) {
	ctx, cancel := context.WithTimeout(parent, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return 0, "", fmt.Errorf("classifier request: %w", err)
	}
	req.Header = c.header.Clone()
	req.Header.Set("Content-Type", "application/json")
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, "", c.transportError(parent, ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return 0, "", fmt.Errorf("classifier returned status %d: %w", resp.StatusCode, ErrBadResponse)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return 0, "", c.transportError(parent, ctx, err)
	}
	if len(b) > MaxResponseBytes {
		return 0, "", fmt.Errorf("classifier response longer than %d bytes: %w", MaxResponseBytes, ErrBadResponse)
	}
	score, label, err := parseResponse(b)
	if err != nil {
		return 0, "", fmt.Errorf("decode classifier response: %v: %w", err, ErrBadResponse)
	}
	return score, label, nil
}

// transportError says why a request failed without repeating its URL.
func (c *Client) transportError(parent, ctx context.Context, err error) error {
	if perr := parent.Err(); perr != nil {
		return fmt.Errorf("classify: %w", perr)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("classifier did not answer within %s: %w", c.timeout, context.DeadlineExceeded)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("classifier request: %w", err)
}

// labelClass tells injection labels from benign ones.
func labelClass(label string) (injection, benign bool) {
	for _, l := range []string{"injection", "jailbreak", "malicious", "label_1", "unsafe"} {
		if strings.EqualFold(label, l) {
			return true, false
		}
	}
	for _, l := range []string{"benign", "label_0", "safe"} {
		if strings.EqualFold(label, l) {
			return false, true
		}
	}
	return false, false
}

type labelScore struct {
	Label *string  `json:"label"`
	Score *float64 `json:"score"`
}

// parseResponse decodes a classifier's answer into the injection probability and the
// top label.
func parseResponse(b []byte) (float64, string, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return 0, "", errors.New("empty body")
	}
	switch b[0] {
	case '{':
		var o labelScore
		if err := json.Unmarshal(b, &o); err != nil {
			return 0, "", errors.New("not a JSON object with a score")
		}
		if o.Score == nil {
			return 0, "", errors.New("no score")
		}
		s := *o.Score
		if s < 0 || s > 1 {
			return 0, "", fmt.Errorf("score %v outside [0, 1]", s)
		}
		if o.Label == nil || *o.Label == "" {
			return s, "", nil
		}
		inj, ben := labelClass(*o.Label)
		switch {
		case inj:
			return s, *o.Label, nil
		case ben:
			return 1 - s, *o.Label, nil
		}
		return 0, "", fmt.Errorf("unknown label %q", clip(*o.Label))
	case '[':
		var outer []json.RawMessage
		if err := json.Unmarshal(b, &outer); err != nil {
			return 0, "", errors.New("not a JSON list")
		}
		if len(outer) == 0 {
			return 0, "", errors.New("empty list")
		}
		if first := bytes.TrimSpace(outer[0]); len(first) > 0 && first[0] == '[' {
			// [[...]]: a batch; one text was sent.
			if len(outer) != 1 {
				return 0, "", fmt.Errorf("%d results for one text", len(outer))
			}
			b = first
		}
		var items []labelScore
		if err := json.Unmarshal(b, &items); err != nil {
			return 0, "", errors.New("not a list of label and score objects")
		}
		return scoreList(items)
	}
	return 0, "", errors.New("neither a JSON object nor a list")
}

func scoreList(items []labelScore) (float64, string, error) {
	if len(items) == 0 {
		return 0, "", errors.New("empty list")
	}
	var inj, ben float64
	sawInj, sawBen := false, false
	top, topScore := "", -1.0
	for i, it := range items {
		if it.Label == nil || it.Score == nil {
			return 0, "", fmt.Errorf("item %d: want a label and a score", i)
		}
		s := *it.Score
		if s < 0 || s > 1 {
			return 0, "", fmt.Errorf("item %d: score %v outside [0, 1]", i, s)
		}
		if s > topScore {
			top, topScore = *it.Label, s
		}
		switch i, b := labelClass(*it.Label); {
		case i:
			inj += s
			sawInj = true
		case b:
			ben += s
			sawBen = true
		}
	}
	switch {
	case sawInj:
		return min(inj, 1), top, nil
	case sawBen:
		return max(0, 1-ben), top, nil
	}
	return 0, "", fmt.Errorf("no known label among %d", len(items))
}

func clip(s string) string {
	if len(s) <= 40 {
		return s
	}
	i := 40
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}
