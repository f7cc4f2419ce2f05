package anchor_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/audit/anchor"
)

func checkpoint(tb testing.TB, seq int64) (audit.Checkpoint, ed25519.PublicKey) {
	tb.Helper()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	c, err := audit.SignCheckpoint(key, seq, "sha256:"+strings.Repeat("ab", 32), time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	return c, pub
}

func TestFileAppendsOnce(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "anchor.jsonl")
	f := &anchor.File{Path: path}
	c1, pub := checkpoint(t, 1)
	c2, _ := checkpoint(t, 2)
	for _, c := range []audit.Checkpoint{c1, c1, c2} {
		if err := f.Publish(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	got, err := anchor.ReadFile(path)
	if err != nil || len(got) != 2 || got[0].Seq != 1 || got[1].Seq != 2 {
		t.Fatalf("ReadFile = %+v, %v", got, err)
	}
	if err := got[0].Check([]ed25519.PublicKey{pub}); err != nil {
		t.Fatalf("published checkpoint does not verify: %v", err)
	}
	// A damaged line is an error naming it.
	os.WriteFile(path, []byte("\n"+mustJSON(t, c1)+"\n{not a checkpoint}\n"), 0o644)
	if _, err := anchor.ReadFile(path); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("ReadFile(damaged) = %v, want an error naming line 3", err)
	}
	if _, err := anchor.ReadFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("ReadFile(missing) succeeded")
	}
	if _, err := anchor.Read(strings.NewReader(strings.Repeat("x", 5000)), "big"); err == nil {
		t.Fatal("Read(oversized line) succeeded")
	}
}

func mustJSON(tb testing.TB, c audit.Checkpoint) string {
	b, err := c.MarshalJSON()
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func TestWebhook(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var bodies []string
	fail := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Method != http.MethodPost || r.Header.Get("Authorization") != "Bearer t0k" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if fail {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
	}))
	defer srv.Close()
	w := &anchor.Webhook{URL: srv.URL + "/hook?sig=secret", HTTPOptions: anchor.HTTPOptions{Headers: map[string]string{"Authorization": "Bearer t0k"}}}
	c, _ := checkpoint(t, 9)
	err := w.Publish(t.Context(), c)
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "try later") {
		t.Fatalf("Publish to a failing webhook = %v", err)
	}
	if strings.Contains(w.Name(), "secret") || strings.Contains(err.Error(), "sig=secret") {
		t.Fatalf("the URL's query leaked: %s / %v", w.Name(), err)
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	if err := w.Publish(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	if len(bodies) != 1 || bodies[0] != mustJSON(t, c) {
		t.Fatalf("webhook got %q", bodies)
	}
}

// objectStore is a loopback object store that refuses to overwrite: a PUT with
// If-None-Match: * on an existing key answers 412, as S3 does.
type objectStore struct {
	mu      sync.Mutex
	objects map[string][]byte
}

func (s *objectStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Method {
	case http.MethodPut:
		if _, ok := s.objects[r.URL.Path]; ok {
			if r.Header.Get("If-None-Match") == "*" {
				w.WriteHeader(http.StatusPreconditionFailed)
				return
			}
		}
		b, _ := io.ReadAll(r.Body)
		s.objects[r.URL.Path] = b
	case http.MethodGet:
		b, ok := s.objects[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func TestObjectStoreAppendOnly(t *testing.T) {
	t.Parallel()
	st := &objectStore{objects: map[string][]byte{}}
	srv := httptest.NewServer(st)
	defer srv.Close()
	o := &anchor.ObjectStore{Prefix: srv.URL + "/anchors/prod/"}
	c, _ := checkpoint(t, 12)
	if err := o.Publish(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	key := "/anchors/prod/00000000000000000012.json"
	if !bytes.Equal(st.objects[key], []byte(mustJSON(t, c))) {
		t.Fatalf("objects = %q", st.objects)
	}
	// Publishing the same checkpoint again is fine (a retry).
	if err := o.Publish(t.Context(), c); err != nil {
		t.Fatalf("retry: %v", err)
	}
	// A different checkpoint for the same event is refused, and the object stays.
	other, _ := checkpoint(t, 12)
	other.Head = "sha256:" + strings.Repeat("cd", 32)
	if err := o.Publish(t.Context(), other); err == nil || !strings.Contains(err.Error(), "different checkpoint") {
		t.Fatalf("overwrite attempt = %v", err)
	}
	if !bytes.Equal(st.objects[key], []byte(mustJSON(t, c))) {
		t.Fatal("the object was replaced")
	}
	// An unreachable store is an error.
	bad := &anchor.ObjectStore{Prefix: "http://127.0.0.1:1/x/", HTTPOptions: anchor.HTTPOptions{Timeout: time.Second}}
	if err := bad.Publish(t.Context(), c); err == nil {
		t.Fatal("Publish to a closed port succeeded")
	}
}

func FuzzRead(f *testing.F) {
	c, _ := checkpoint(f, 3)
	b, _ := c.MarshalJSON()
	f.Add(append(append(b, '\n'), b...))
	f.Add([]byte("\n\n{}\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		cps, err := anchor.Read(bytes.NewReader(raw), "fuzz")
		if err != nil {
			return
		}
		for _, c := range cps {
			if c.Seq < 1 {
				t.Fatalf("accepted seq %d", c.Seq)
			}
		}
	})
}
