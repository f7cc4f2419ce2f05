package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/sign"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

func newKey(tb testing.TB) ed25519.PrivateKey {
	tb.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func pub(k ed25519.PrivateKey) []ed25519.PublicKey {
	return []ed25519.PublicKey{k.Public().(ed25519.PublicKey)}
}

// checkpointAt signs the head of db as it is now.
func checkpointAt(tb testing.TB, db *sqlite.DB, key ed25519.PrivateKey) audit.Checkpoint {
	tb.Helper()
	cp, err := newCheckpointer(tb, db, key).Checkpoint(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	return cp
}

func newCheckpointer(tb testing.TB, db *sqlite.DB, key ed25519.PrivateKey, pubs ...audit.Publisher) *checkpointerT {
	tb.Helper()
	c, err := audit.NewCheckpointer(audit.CheckpointerOptions{Key: key, Events: db, Store: db, Publish: pubs})
	if err != nil {
		tb.Fatal(err)
	}
	return &checkpointerT{c}
}

type checkpointerT struct{ *audit.Checkpointer }

func (c *checkpointerT) Checkpoint(ctx context.Context) (audit.Checkpoint, error) {
	cp, ok, err := c.Checkpointer.Checkpoint(ctx)
	if err == nil && !ok {
		err = errors.New("no checkpoint: empty log")
	}
	return cp, err
}

func storedCheckpoints(tb testing.TB, db *sqlite.DB) []audit.Checkpoint {
	tb.Helper()
	cps, err := db.Checkpoints(tb.Context(), 0, 1000)
	if err != nil {
		tb.Fatal(err)
	}
	return cps
}

func verifyWith(tb testing.TB, db *sqlite.DB, opts audit.VerifyOptions) audit.Report {
	tb.Helper()
	r, err := audit.VerifyChain(tb.Context(), db, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

func TestCheckpointSignature(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	head := "sha256:" + strings.Repeat("ab", 32)
	cp, err := audit.SignCheckpoint(key, 42, head, time.Date(2026, 3, 1, 9, 0, 0, 123456789, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Check(pub(key)); err != nil {
		t.Fatalf("Check(own key) = %v", err)
	}
	raw, err := cp.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	back, err := audit.ParseCheckpoint(raw)
	if err != nil {
		t.Fatalf("ParseCheckpoint(%s) = %v", raw, err)
	}
	if err := back.Check(pub(key)); err != nil {
		t.Fatalf("a checkpoint read back does not verify: %v", err)
	}
	other := newKey(t)
	for name, c := range map[string]func(c *audit.Checkpoint){
		"seq changed":  func(c *audit.Checkpoint) { c.Seq++ },
		"head changed": func(c *audit.Checkpoint) { c.Head = "sha256:" + strings.Repeat("cd", 32) },
		"time changed": func(c *audit.Checkpoint) { c.Time = c.Time.Add(time.Second) },
		"sig garbage":  func(c *audit.Checkpoint) { c.Sig = "not base64!" },
		"key swapped":  func(c *audit.Checkpoint) { c.Key = sign.KeyID(other.Public().(ed25519.PublicKey)) },
	} {
		bad := cp
		c(&bad)
		if err := bad.Check(append(pub(key), pub(other)...)); !errors.Is(err, audit.ErrBadSignature) {
			t.Errorf("%s: Check = %v, want ErrBadSignature", name, err)
		}
	}
	// Signed by a key that is not trusted.
	forged, _ := audit.SignCheckpoint(other, 42, head, time.Now())
	if err := forged.Check(pub(key)); !errors.Is(err, audit.ErrBadSignature) || !strings.Contains(err.Error(), "not a trusted key") {
		t.Errorf("Check(untrusted signer) = %v", err)
	}
	if _, err := audit.SignCheckpoint(key, 0, head, time.Now()); err == nil {
		t.Error("SignCheckpoint(seq 0) succeeded")
	}
	if _, err := audit.SignCheckpoint(key, 1, "sha256:xyz", time.Now()); err == nil {
		t.Error("SignCheckpoint(bad head) succeeded")
	}
}

func TestParseCheckpointRefuses(t *testing.T) {
	t.Parallel()
	good := `{"seq":3,"head":"sha256:` + strings.Repeat("0a", 32) + `","time":"2026-03-01T09:00:00Z","key":"ed25519:00","sig":"AA=="}`
	if _, err := audit.ParseCheckpoint([]byte(good)); err != nil {
		t.Fatalf("ParseCheckpoint(good) = %v", err)
	}
	for name, raw := range map[string]string{
		"unknown field": strings.Replace(good, `"seq":3`, `"seq":3,"extra":1`, 1),
		"trailing":      good + `{}`,
		"seq 0":         strings.Replace(good, `"seq":3`, `"seq":0`, 1),
		"bad head":      strings.Replace(good, `sha256:0a`, `md5:0a`, 1),
		"upper hex":     strings.Replace(good, `0a0a`, `0A0A`, 1),
		"no sig":        strings.Replace(good, `"sig":"AA=="`, `"sig":""`, 1),
		"no time":       strings.Replace(good, `"time":"2026-03-01T09:00:00Z",`, ``, 1),
		"oversized":     strings.Replace(good, `"key":"ed25519:00"`, `"key":"`+strings.Repeat("k", 2000)+`"`, 1),
		"not json":      `seq=3`,
	} {
		if _, err := audit.ParseCheckpoint([]byte(raw)); err == nil {
			t.Errorf("%s: ParseCheckpoint succeeded", name)
		}
	}
}

func TestVerifyWithCheckpointsDetectsTruncation(t *testing.T) {
	t.Parallel()
	db := tempDB(t)
	key := newKey(t)
	events := seed(t, db, 10)
	cp := checkpointAt(t, db, key)
	if cp.Seq != 10 || cp.Head != events[9].Hash {
		t.Fatalf("checkpoint = %+v, want seq 10 and the head", cp)
	}
	opts := audit.VerifyOptions{Keys: pub(key), Checkpoints: storedCheckpoints(t, db)}
	r := verifyWith(t, db, opts)
	if r.Broken != nil || r.Checkpoints != 1 || r.Anchor == nil || r.Anchor.Seq != 10 {
		t.Fatalf("intact log: %+v", r)
	}

	// The newest events deleted: the chain alone passes, the checkpoint does not.
	exec(t, db, `DELETE FROM audit_events WHERE seq > 7`)
	if plain := verify(t, db); plain.Broken != nil {
		t.Fatalf("plain Verify = %+v: a cut chain is a valid chain", plain)
	}
	r = verifyWith(t, db, opts)
	if r.Broken == nil || r.Broken.Seq != 8 || !strings.Contains(r.Broken.Problem, "deleted from the end") {
		t.Fatalf("truncated log with a checkpoint: %+v", r.Broken)
	}
}

func TestVerifyWithCheckpointsDetectsRewrite(t *testing.T) {
	t.Parallel()
	db := tempDB(t)
	key := newKey(t)
	seed(t, db, 6)
	checkpointAt(t, db, key)
	opts := audit.VerifyOptions{Keys: pub(key), Checkpoints: storedCheckpoints(t, db)}

	// A forger rewrites the whole log consistently: every link holds, the head moves.
	other := tempDB(t)
	forged := seed(t, other, 6)
	exec(t, db, `DELETE FROM audit_events`)
	prev := ""
	for i, e := range forged {
		e.Reason = "rewritten"
		e.PrevHash, e.Hash = prev, ""
		e.Hash = e.ComputeHash()
		prev = e.Hash
		rec, _ := e.MarshalRecord()
		exec(t, db, `INSERT INTO audit_events (seq, event) VALUES (?, ?)`, i+1, string(rec))
	}
	if plain := verify(t, db); plain.Broken != nil {
		t.Fatalf("the forgery does not even pass the chain: %+v", plain.Broken)
	}
	r := verifyWith(t, db, opts)
	if r.Broken == nil || r.Broken.Seq != 6 || !strings.Contains(r.Broken.Problem, "rewritten") {
		t.Fatalf("rewritten log: %+v", r.Broken)
	}

	// A checkpoint the forger signed with their own key is refused.
	fake, _ := audit.SignCheckpoint(newKey(t), 6, prev, time.Now())
	r = verifyWith(t, db, audit.VerifyOptions{Keys: pub(key), Checkpoints: []audit.Checkpoint{fake}})
	if r.Broken == nil || !strings.Contains(r.Broken.Problem, "not trustworthy") {
		t.Fatalf("forged checkpoint: %+v", r.Broken)
	}
}

func TestVerifyFromCheckpoint(t *testing.T) {
	t.Parallel()
	db := tempDB(t)
	key := newKey(t)
	seed(t, db, 5)
	from := checkpointAt(t, db, key)
	more := seed(t, db, 4)
	r := verifyWith(t, db, audit.VerifyOptions{Keys: pub(key), From: &from})
	if r.Broken != nil || r.Events != 4 || r.From != 5 || r.Head != more[3].Hash {
		t.Fatalf("VerifyChain(from 5) = %+v", r)
	}
	// The range is read alone: an event before the checkpoint that is unreadable does not
	// matter, and is not read.
	exec(t, db, `UPDATE audit_events SET event = '{"junk":1}' WHERE seq = 2`)
	if r := verifyWith(t, db, audit.VerifyOptions{Keys: pub(key), From: &from}); r.Broken != nil {
		t.Fatalf("VerifyChain(from 5) read before 5: %+v", r.Broken)
	}
	// An edit inside the range is found.
	e := more[1]
	e.Message = "edited"
	rewrite(t, db, e.Seq, e)
	if r := verifyWith(t, db, audit.VerifyOptions{Keys: pub(key), From: &from}); r.Broken == nil || r.Broken.Seq != 7 {
		t.Fatalf("edit in range: %+v", r.Broken)
	}
	// The event right after the checkpoint must link to its head.
	bad := from
	bad.Head = "sha256:" + strings.Repeat("00", 32)
	forged, _ := audit.SignCheckpoint(key, bad.Seq, bad.Head, bad.Time)
	if r := verifyWith(t, db, audit.VerifyOptions{Keys: pub(key), From: &forged}); r.Broken == nil || r.Broken.Seq != 6 ||
		!strings.Contains(r.Broken.Problem, "head of the checkpoint") {
		t.Fatalf("from a checkpoint the chain does not pass through: %+v", r.Broken)
	}
	// A From the keys do not vouch for is refused.
	if r := verifyWith(t, db, audit.VerifyOptions{Keys: pub(newKey(t)), From: &from}); r.Broken == nil {
		t.Fatal("VerifyChain(from an untrusted checkpoint) passed")
	}
}

func TestCheckpointsDisagree(t *testing.T) {
	t.Parallel()
	db := tempDB(t)
	key := newKey(t)
	seed(t, db, 3)
	a := checkpointAt(t, db, key)
	b, _ := audit.SignCheckpoint(key, a.Seq, "sha256:"+strings.Repeat("11", 32), a.Time.Add(time.Second))
	r := verifyWith(t, db, audit.VerifyOptions{Keys: pub(key), Checkpoints: []audit.Checkpoint{a, b}})
	if r.Broken == nil || !strings.Contains(r.Broken.Problem, "disagree") {
		t.Fatalf("two checkpoints for one event: %+v", r.Broken)
	}
	if err := db.SaveCheckpoint(t.Context(), b); err == nil {
		t.Fatal("the store accepted a second, different checkpoint for one event")
	}
	if err := db.SaveCheckpoint(t.Context(), a); err != nil {
		t.Fatalf("saving the same checkpoint again = %v", err)
	}
}

func TestCheckpointerSkipsUnmovedHead(t *testing.T) {
	t.Parallel()
	db := tempDB(t)
	key := newKey(t)
	c := newCheckpointer(t, db, key)
	if _, ok, err := c.Checkpointer.Checkpoint(t.Context()); ok || err != nil {
		t.Fatalf("checkpoint of an empty log: %v, %v", ok, err)
	}
	seed(t, db, 2)
	first, _ := c.Checkpoint(t.Context())
	again, _ := c.Checkpoint(t.Context())
	if again != first || len(storedCheckpoints(t, db)) != 1 {
		t.Fatalf("an unmoved head made a new checkpoint: %+v then %+v", first, again)
	}
	seed(t, db, 1)
	next, _ := c.Checkpoint(t.Context())
	if next.Seq != 3 || len(storedCheckpoints(t, db)) != 2 {
		t.Fatalf("moved head: %+v", next)
	}
}

// failingPublisher fails until ok is set, and records what it accepted.
type failingPublisher struct {
	ok  bool
	got []int64
}

func (f *failingPublisher) Name() string { return "test" }
func (f *failingPublisher) Publish(_ context.Context, c audit.Checkpoint) error {
	if !f.ok {
		return errors.New("unreachable")
	}
	f.got = append(f.got, c.Seq)
	return nil
}

func TestCheckpointerRetriesPublish(t *testing.T) {
	t.Parallel()
	db := tempDB(t)
	p := &failingPublisher{}
	c := newCheckpointer(t, db, newKey(t), p)
	seed(t, db, 2)
	if _, ok, err := c.Checkpointer.Checkpoint(t.Context()); !ok || err == nil {
		t.Fatalf("publish failure not reported: %v %v", ok, err)
	}
	if n := len(storedCheckpoints(t, db)); n != 1 {
		t.Fatalf("the checkpoint was not stored although publishing failed: %d", n)
	}
	p.ok = true
	if _, err := c.Checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(p.got) != 1 || p.got[0] != 2 {
		t.Fatalf("published %v, want the pending checkpoint once", p.got)
	}
}

func TestPruneBehindCheckpoint(t *testing.T) {
	t.Parallel()
	db := tempDB(t)
	key := newKey(t)
	l, err := audit.NewLog(t.Context(), db, audit.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, kind := range []string{audit.KindAuthFailed, audit.KindCallRefused, audit.KindAuthFailed, audit.KindCallRefused, audit.KindAuthFailed} {
		e := audit.Event{Time: old.Add(time.Duration(i) * time.Minute), Kind: kind, Agent: "mallory", Message: "secret-ish text"}
		if err := l.Append(t.Context(), &e); err != nil {
			t.Fatal(err)
		}
	}
	checkpointAt(t, db, key)
	late := audit.Event{Time: old, Kind: audit.KindAuthFailed, Message: "after the checkpoint"}
	if err := l.Append(t.Context(), &late); err != nil {
		t.Fatal(err)
	}
	l.Close(t.Context())

	ret := audit.Retention{Kinds: map[string]time.Duration{audit.KindAuthFailed: 24 * time.Hour}}
	now := old.Add(72 * time.Hour)
	n, err := db.PruneEvents(t.Context(), 5, ret.Candidates(), func(e *audit.Event) bool { return ret.Expired(e, now) })
	if err != nil || n != 3 {
		t.Fatalf("PruneEvents = %d, %v; want the 3 auth.failed events behind the checkpoint", n, err)
	}
	evs, _ := db.ScanEvents(t.Context(), 0, 10)
	for _, e := range evs {
		if want := e.Kind == audit.KindAuthFailed && e.Seq <= 5; e.Pruned != want || (e.Pruned && (e.Agent != "" || e.Message != "")) {
			t.Errorf("event %d (%s): pruned=%v agent=%q message=%q", e.Seq, e.Kind, e.Pruned, e.Agent, e.Message)
		}
	}
	opts := audit.VerifyOptions{Keys: pub(key), Checkpoints: storedCheckpoints(t, db)}
	r := verifyWith(t, db, opts)
	if r.Broken != nil || r.Pruned != 3 || r.Events != 6 {
		t.Fatalf("pruned log: %+v", r)
	}
	// Without the checkpoint nothing vouches for the tombstones.
	if r := verify(t, db); r.Broken == nil || r.Broken.Seq != 1 {
		t.Fatalf("tombstones with no checkpoint passed: %+v", r)
	}
	// A tombstone ahead of the newest checkpoint (someone removing the content of event 6
	// and calling it pruned) is a break.
	e6 := evs[5]
	ts := audit.Tombstone(e6)
	rec, _ := ts.MarshalRecord()
	exec(t, db, `UPDATE audit_events SET event = ? WHERE seq = 6`, string(rec))
	if r := verifyWith(t, db, opts); r.Broken == nil || r.Broken.Seq != 6 || !strings.Contains(r.Broken.Problem, "ahead of every signed checkpoint") {
		t.Fatalf("tombstone ahead of the checkpoint: %+v", r.Broken)
	}
	// A tombstone whose hash was swapped breaks the link to the next event.
	restore, _ := e6.MarshalRecord()
	exec(t, db, `UPDATE audit_events SET event = ? WHERE seq = 6`, string(restore))
	ts1 := audit.Tombstone(evs[0])
	ts1.Hash = "sha256:" + strings.Repeat("22", 32)
	rec, _ = ts1.MarshalRecord()
	exec(t, db, `UPDATE audit_events SET event = ? WHERE seq = 1`, string(rec))
	if r := verifyWith(t, db, opts); r.Broken == nil || r.Broken.Seq != 2 {
		t.Fatalf("tombstone with a swapped hash: %+v", r.Broken)
	}
}

func TestTombstoneCannotBeAppended(t *testing.T) {
	t.Parallel()
	l := newLog(t, tempDB(t), audit.LogOptions{})
	e := audit.Event{Time: time.Now(), Kind: audit.KindAuthFailed, Pruned: true}
	if err := l.Append(t.Context(), &e); !errors.Is(err, audit.ErrInvalidEvent) {
		t.Fatalf("Append(tombstone) = %v, want ErrInvalidEvent", err)
	}
}

func FuzzParseCheckpoint(f *testing.F) {
	key := newKey(f)
	cp, _ := audit.SignCheckpoint(key, 7, "sha256:"+strings.Repeat("ab", 32), time.Unix(1700000000, 0))
	good, _ := cp.MarshalJSON()
	f.Add(good)
	f.Add([]byte(`{"seq":1}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := audit.ParseCheckpoint(raw)
		if err != nil {
			return
		}
		again, err := c.MarshalJSON()
		if err != nil {
			t.Fatalf("a parsed checkpoint does not encode: %v", err)
		}
		back, err := audit.ParseCheckpoint(again)
		if err != nil || !back.Time.Equal(c.Time) || back.Seq != c.Seq || back.Head != c.Head || back.Sig != c.Sig {
			t.Fatalf("round trip: %+v, %v", back, err)
		}
		if c.Check(pub(key)) == nil && !bytes.Equal(c.SignedBytes(), cp.SignedBytes()) {
			t.Fatalf("a checkpoint other than the signed one verifies: %s", raw)
		}
		var m map[string]any
		if json.Unmarshal(again, &m) != nil {
			t.Fatal("encoding is not JSON")
		}
	})
}

func TestOnCommitSeesCommittedEvents(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []int64
	l := newLog(t, tempDB(t), audit.LogOptions{OnCommit: func(evs []audit.Event) {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range evs {
			if e.Hash == "" {
				t.Errorf("event %d handed over without its hash", e.Seq)
			}
			seen = append(seen, e.Seq)
		}
	}})
	for i := range 5 {
		e := event(audit.KindCallRefused, fmt.Sprint("r", i))
		if err := l.Append(t.Context(), &e); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(seen) != "[1 2 3 4 5]" {
		t.Fatalf("OnCommit saw %v", seen)
	}
}
