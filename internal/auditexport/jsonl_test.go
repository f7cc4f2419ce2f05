package auditexport_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/auditexport"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite/sqlitetest"
)

func TestWriteJSONL(t *testing.T) {
	t.Parallel()
	src := fixture(t)
	var out bytes.Buffer
	st, err := auditexport.WriteJSONL(t.Context(), src, &out, auditexport.Filter{})
	if err != nil {
		t.Fatalf("WriteJSONL: %v", err)
	}
	want := auditexport.Stats{Written: len(src) - 1, Tombstones: 1, Redacted: 3, LastSeq: int64(len(src))}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("WriteJSONL stats (-want +got):\n%s", diff)
	}
	noSecrets(t, "the jsonl export", out.Bytes())

	recs := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(recs) != st.Written {
		t.Fatalf("WriteJSONL wrote %d lines, stats say %d", len(recs), st.Written)
	}
	redacted := map[int64]bool{}
	for i, line := range recs {
		stored := &src[i]
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if m["hash"] != stored.Hash || m["prev_hash"] != stored.PrevHash || m["seq"] != float64(stored.Seq) {
			t.Errorf("line %d: hash, prev_hash or seq differ from the stored event %s", i+1, describe(stored))
		}
		if m["export_redacted"] == true {
			redacted[stored.Seq] = true
			if !strings.HasSuffix(line, `,"export_redacted":true}`) {
				t.Errorf("line %d: the mark is not the last field: %s", i+1, line)
			}
			continue
		}
		// Not redacted: the canonical record, whose content hashes to its hash.
		e, err := audit.ParseRecord([]byte(line))
		if err != nil {
			t.Errorf("line %d is not a canonical record: %v", i+1, err)
			continue
		}
		if e.ComputeHash() != e.Hash {
			t.Errorf("line %d: content does not hash to its hash", i+1)
		}
	}
	// The events with secrets: the intent (arguments, prompt), its outcome (result) and
	// the refusal (message, detail).
	if diff := cmp.Diff(map[int64]bool{6: true, 7: true, 8: true}, redacted); diff != "" {
		t.Errorf("redacted events (-want +got):\n%s", diff)
	}
	// The redacted arguments keep their other values and stay valid JSON.
	var intent struct {
		Arguments map[string]any `json:"arguments"`
		Prompt    string         `json:"prompt"`
	}
	if err := json.Unmarshal([]byte(recs[5]), &intent); err != nil {
		t.Fatal(err)
	}
	if intent.Arguments["path"] != "/x" || intent.Arguments["n"] != 1.5 || intent.Arguments["key"] != "[REDACTED:aws_access_key]" ||
		intent.Prompt != "Use my token [REDACTED:github_token] to read /x" {
		t.Errorf("redacted intent: arguments %v, prompt %q", intent.Arguments, intent.Prompt)
	}

	var again bytes.Buffer
	if _, err := auditexport.WriteJSONL(t.Context(), src, &again, auditexport.Filter{}); err != nil || !bytes.Equal(out.Bytes(), again.Bytes()) {
		t.Errorf("two WriteJSONL runs of one log differ (%v)", err)
	}
}

func TestWriteJSONLFilter(t *testing.T) {
	t.Parallel()
	src := fixture(t)
	f := auditexport.Filter{Kinds: []string{"call.*"}, Agents: []string{"mail-bot"}, From: t0.Add(6 * time.Minute), To: t0.Add(13 * time.Minute)}
	var out bytes.Buffer
	st, err := auditexport.WriteJSONL(t.Context(), src, &out, f)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for _, m := range lines(t, out.Bytes()) {
		seqs = append(seqs, int64(m["seq"].(float64)))
	}
	// r1's outcome (7), r3's refusal (9), r4's intent and outcome (10, 11), r6 (13); not
	// the tombstone, other agents' calls or the event at To.
	if diff := cmp.Diff([]int64{7, 9, 10, 11, 13}, seqs); diff != "" {
		t.Errorf("WriteJSONL(%+v) seqs (-want +got):\n%s", f, diff)
	}
	if st.Tombstones != 0 || st.LastSeq != int64(len(src)) {
		t.Errorf("WriteJSONL(%+v) stats = %+v; want no tombstone in range, LastSeq %d", f, st, len(src))
	}

	// The tombstone is counted when the range and kinds select it.
	st, err = auditexport.WriteJSONL(t.Context(), src, &out, auditexport.Filter{Kinds: []string{audit.KindCallIntent}, After: 20})
	if err != nil || st.Tombstones != 1 || st.Written != 0 {
		t.Errorf("WriteJSONL(intents after 20) = %+v, %v; want the tombstone counted and nothing written", st, err)
	}

	if _, err := auditexport.WriteJSONL(t.Context(), src, &out, auditexport.Filter{From: t0, To: t0}); err == nil {
		t.Errorf("WriteJSONL with an empty range: no error")
	}
}

// errSource fails after its first page, as a store that breaks mid-export.
type errSource struct{ memSource }

var errBroken = errors.New("disk on fire")

func (s errSource) ScanEvents(ctx context.Context, after int64, limit int) ([]audit.Event, error) {
	if after > 0 {
		return nil, errBroken
	}
	return s.memSource.ScanEvents(ctx, after, 1)
}

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errBroken }

func TestWriteErrors(t *testing.T) {
	t.Parallel()
	src := fixture(t)
	for name, write := range map[string]func(context.Context, audit.Source, *bytes.Buffer) error{
		"jsonl": func(ctx context.Context, s audit.Source, w *bytes.Buffer) error {
			_, err := auditexport.WriteJSONL(ctx, s, w, auditexport.Filter{})
			return err
		},
		"ocsf": func(ctx context.Context, s audit.Source, w *bytes.Buffer) error {
			_, err := auditexport.WriteOCSF(ctx, s, w, auditexport.Filter{})
			return err
		},
	} {
		var out bytes.Buffer
		if err := write(t.Context(), errSource{src}, &out); !errors.Is(err, errBroken) || !strings.Contains(err.Error(), "after event 1") {
			t.Errorf("%s over a failing store: %v; want the store's error, naming where", name, err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := write(ctx, src, &out); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v", name, err)
		}
	}
	if _, err := auditexport.WriteJSONL(t.Context(), src, failWriter{}, auditexport.Filter{}); !errors.Is(err, errBroken) {
		t.Errorf("WriteJSONL to a failing writer: %v", err)
	}
	// A store that hands back an event out of order is not trusted.
	if _, err := auditexport.WriteJSONL(t.Context(), memSource{src[1], src[0]}, &bytes.Buffer{}, auditexport.Filter{}); err == nil {
		t.Errorf("WriteJSONL over events out of order: no error")
	}
}

// TestWriteJSONLStore exports a real SQLite audit log, pruned by retention: the
// tombstones are counted and not written, the rest is written in order.
func TestWriteJSONLStore(t *testing.T) {
	t.Parallel()
	db, log := sqlitetest.Open(t)
	for i, e := range fixtureEvents()[:12] {
		e.Time = t0.Add(time.Duration(i) * time.Second)
		if err := log.Append(t.Context(), &e); err != nil {
			t.Fatalf("Append(%s): %v", e.Kind, err)
		}
	}
	// Retention removes the two outcomes.
	n, err := db.PruneEvents(t.Context(), 12, nil, func(e *audit.Event) bool { return e.Kind == audit.KindCallOutcome })
	if err != nil || n != 2 {
		t.Fatalf("PruneEvents = %d, %v; want 2", n, err)
	}
	var out bytes.Buffer
	st, err := auditexport.WriteJSONL(t.Context(), db, &out, auditexport.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Written != 10 || st.Tombstones != 2 || st.LastSeq != 12 || st.Redacted != 2 {
		t.Errorf("WriteJSONL(store) stats = %+v; want 10 written, 2 tombstones, 2 redacted, last 12", st)
	}
	for _, m := range lines(t, out.Bytes()) {
		if m["kind"] == audit.KindCallOutcome || m["pruned"] != nil {
			t.Errorf("a tombstone was written: %v", m)
		}
	}
	noSecrets(t, "the jsonl export of the store", out.Bytes())
}

// Progress is told, page by page, how many events were read and written, and at the end
// the totals; it selects nothing, so the output is the same as without it.
func TestWriteProgress(t *testing.T) {
	t.Parallel()
	var evs []audit.Event
	for len(evs) <= 250 {
		evs = append(evs, fixtureEvents()...)
	}
	src := chain(t, evs)
	if len(src) <= 200 {
		t.Fatalf("the source holds %d events: too few for three pages", len(src))
	}
	for name, write := range map[string]func(context.Context, audit.Source, *bytes.Buffer, auditexport.Filter) (auditexport.Stats, error){
		"jsonl": func(ctx context.Context, s audit.Source, w *bytes.Buffer, f auditexport.Filter) (auditexport.Stats, error) {
			return auditexport.WriteJSONL(ctx, s, w, f)
		},
		"ocsf": func(ctx context.Context, s audit.Source, w *bytes.Buffer, f auditexport.Filter) (auditexport.Stats, error) {
			return auditexport.WriteOCSF(ctx, s, w, f)
		},
	} {
		f := auditexport.Filter{Kinds: []string{"call.*"}, After: 3}
		var plain, with bytes.Buffer
		want, err := write(t.Context(), src, &plain, f)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var got [][2]int
		f.Progress = func(read, written int) { got = append(got, [2]int{read, written}) }
		st, err := write(t.Context(), src, &with, f)
		if err != nil {
			t.Fatalf("%s with Progress: %v", name, err)
		}
		if st != want || with.String() != plain.String() {
			t.Errorf("%s with Progress: stats %+v and %d bytes, want %+v and %d bytes", name, st, with.Len(), want, plain.Len())
		}
		read := len(src) - 3
		if len(got) < 3 || got[0][0] != 100 || got[len(got)-1] != [2]int{read, want.Written} {
			t.Fatalf("%s: Progress calls = %v; want a call per page of 100, the last (%d read, %d written)", name, got, read, want.Written)
		}
		for i := 1; i < len(got); i++ {
			if got[i][0] < got[i-1][0] || got[i][1] < got[i-1][1] || got[i][1] > got[i][0] {
				t.Errorf("%s: Progress calls %v go back, or write more than they read", name, got)
			}
		}
	}
}
