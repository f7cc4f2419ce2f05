// Package anchor publishes signed audit checkpoints outside the gateway's store, where
// someone who can rewrite the store cannot reach them: an append-only file (on another
// mount, or shipped elsewhere), a webhook, or an object store that refuses to overwrite
// (S3 and most of its kin honour `If-None-Match: *` on PUT).
//
// `chaperone audit verify --checkpoints FILE` reads what the file publisher wrote, or any
// file of checkpoint lines gathered from the other places.
package anchor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// MaxFileCheckpoints bounds the checkpoints ReadFile reads from one file.
const MaxFileCheckpoints = 1_000_000

// File appends each checkpoint as one JSON line to a file, synced before Publish returns.
type File struct {
	Path string
	mu   sync.Mutex
	last int64 // Seq of the last line written by this process
}

// Name implements audit.Publisher.
func (f *File) Name() string { return "file:" + f.Path }

// Publish appends c, once: a checkpoint at or below the last one written is skipped.
func (f *File) Publish(_ context.Context, c audit.Checkpoint) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.Seq <= f.last {
		return nil
	}
	line, err := c.MarshalJSON()
	if err != nil {
		return err
	}
	fh, err := os.OpenFile(f.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("anchor: %w", err)
	}
	_, werr := fh.Write(append(line, '\n'))
	if err := errors.Join(werr, fh.Sync(), fh.Close()); err != nil {
		return fmt.Errorf("anchor: append to %s: %w", f.Path, err)
	}
	f.last = c.Seq
	return nil
}

// ReadFile reads a file of checkpoint lines (blank lines skipped). A line that is not a
// checkpoint is an error naming its line number: a published anchor must not be
// silently half-read.
func ReadFile(path string) ([]audit.Checkpoint, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("anchor: %w", err)
	}
	defer fh.Close()
	return Read(fh, path)
}

// Read reads checkpoint lines from r; name is used in errors.
func Read(r io.Reader, name string) ([]audit.Checkpoint, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), audit.MaxCheckpointBytes+2)
	var out []audit.Checkpoint
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if len(out) == MaxFileCheckpoints {
			return nil, fmt.Errorf("anchor: %s: more than %d checkpoints", name, MaxFileCheckpoints)
		}
		c, err := audit.ParseCheckpoint(line)
		if err != nil {
			return nil, fmt.Errorf("anchor: %s line %d: %w", name, n, err)
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("anchor: %s: a line longer than %d bytes", name, audit.MaxCheckpointBytes)
		}
		return nil, fmt.Errorf("anchor: %s: %w", name, err)
	}
	return out, nil
}

// HTTPOptions are shared by the webhook and object store publishers.
type HTTPOptions struct {
	// Headers are sent with every request (an Authorization header, say).
	Headers map[string]string
	// Timeout bounds one request. Default 10s.
	Timeout time.Duration
	// Client, if set, is used instead of a default client.
	Client *http.Client
}

func (o *HTTPOptions) client() *http.Client {
	if o.Client != nil {
		return o.Client
	}
	t := o.Timeout
	if t <= 0 {
		t = 10 * time.Second
	}
	return &http.Client{Timeout: t, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// maxErrorBody bounds what is read of an error response.
const maxErrorBody = 512

// Webhook POSTs each checkpoint as JSON (Content-Type application/json) to URL. Any 2xx
// answer accepts it. The body is signed by the checkpoint itself: the receiver verifies
// it with the gateway's public key, so no shared secret is needed.
type Webhook struct {
	URL string
	HTTPOptions
}

// Name implements audit.Publisher.
func (w *Webhook) Name() string { return "webhook:" + redactURL(w.URL) }

// Publish implements audit.Publisher.
func (w *Webhook) Publish(ctx context.Context, c audit.Checkpoint) error {
	body, err := c.MarshalJSON()
	if err != nil {
		return err
	}
	resp, err := w.do(ctx, http.MethodPost, w.URL, body, nil)
	if err != nil {
		return err
	}
	return drain(resp, "webhook")
}

// ObjectStore PUTs each checkpoint as its own object, <Prefix><seq, 20 digits>.json, with
// `If-None-Match: *` so that an object once written is never replaced: the store is
// append-only. A 412 answer (the object exists) is accepted when the stored object is
// the same checkpoint, and is an error otherwise (a second writer, or a forgery).
type ObjectStore struct {
	// Prefix is the URL objects are named under, e.g.
	// https://anchor-bucket.s3.eu-west-1.amazonaws.com/chaperone/prod/ (with a presigning
	// proxy or bucket policy in front) — it must end with "/".
	Prefix string
	HTTPOptions
}

// Name implements audit.Publisher.
func (o *ObjectStore) Name() string { return "object_store:" + redactURL(o.Prefix) }

// ObjectURL is where the checkpoint of seq is stored.
func (o *ObjectStore) ObjectURL(seq int64) string {
	return fmt.Sprintf("%s%020d.json", o.Prefix, seq)
}

// Publish implements audit.Publisher.
func (o *ObjectStore) Publish(ctx context.Context, c audit.Checkpoint) error {
	body, err := c.MarshalJSON()
	if err != nil {
		return err
	}
	u := o.ObjectURL(c.Seq)
	resp, err := o.do(ctx, http.MethodPut, u, body, map[string]string{"If-None-Match": "*"})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusPreconditionFailed {
		return drain(resp, "object store")
	}
	resp.Body.Close()
	// The object exists: it must be this checkpoint.
	got, err := o.do(ctx, http.MethodGet, u, nil, nil)
	if err != nil {
		return err
	}
	defer got.Body.Close()
	if got.StatusCode/100 != 2 {
		return drain(got, "object store")
	}
	have, err := io.ReadAll(io.LimitReader(got.Body, audit.MaxCheckpointBytes+1))
	if err != nil {
		return fmt.Errorf("anchor: object store: read %s: %w", redactURL(u), err)
	}
	old, err := audit.ParseCheckpoint(have)
	if err != nil || old.Head != c.Head {
		return fmt.Errorf("anchor: object store: %s already holds a different checkpoint for event %d", redactURL(u), c.Seq)
	}
	return nil
}

func (o *HTTPOptions) do(ctx context.Context, method, u string, body []byte, extra map[string]string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("anchor: %s %s: %w", method, redactURL(u), err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range o.Headers {
		req.Header.Set(k, v)
	}
	for k, v := range extra {
		req.Header.Set(k, v)
	}
	resp, err := o.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("anchor: %s %s: %w", method, redactURL(u), err)
	}
	return resp, nil
}

// drain closes resp and turns a non-2xx status into an error quoting the start of the body.
func drain(resp *http.Response, what string) error {
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return fmt.Errorf("anchor: %s answered %s: %q", what, resp.Status, strings.TrimSpace(string(b)))
}

// redactURL drops the query and user information, where signed URLs and passwords live.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}
