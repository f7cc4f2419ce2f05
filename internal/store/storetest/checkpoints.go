package storetest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/store"
)

// ctKey is the suite's checkpoint signing key.
func ctKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("chaperone storetest checkpoint key"))
	return ed25519.NewKeyFromSeed(seed[:])
}

func ctPublic(k ed25519.PrivateKey) []ed25519.PublicKey {
	return []ed25519.PublicKey{k.Public().(ed25519.PublicKey)}
}

// ctSign signs the checkpoint of event e at the time at.
func ctSign(t *testing.T, e audit.Event, at time.Time) audit.Checkpoint {
	t.Helper()
	cp, err := audit.SignCheckpoint(ctKey(), e.Seq, e.Hash, at)
	if err != nil {
		t.Fatalf("SignCheckpoint(%d): %v", e.Seq, err)
	}
	return cp
}

func ctCheckpointCases() []ctCase {
	return []ctCase{
		{"SaveAndRead", ctCheckpoints},
		{"SaveRace", ctCheckpointsRace},
	}
}

func ctCheckpoints(t *testing.T, st store.Store) {
	ctx := t.Context()
	if cp, ok, err := st.LatestCheckpoint(ctx); ok || err != nil {
		t.Fatalf("LatestCheckpoint on an empty store = %+v, %v, %v; want false, nil", cp, ok, err)
	}
	if cps, err := st.Checkpoints(ctx, 0, 10); len(cps) != 0 || err != nil {
		t.Errorf("Checkpoints(0, 10) on an empty store = %v, %v; want none", cps, err)
	}
	if cp, ok, err := st.Checkpoint(ctx, 1); ok || err != nil {
		t.Errorf("Checkpoint(1) on an empty store = %+v, %v, %v; want false, nil", cp, ok, err)
	}

	l := ctNewLog(t, st)
	var events []audit.Event
	for i := range 10 {
		events = append(events, ctAppend(t, l, audit.Event{Time: ctT0.Add(time.Duration(i) * time.Second), Kind: audit.KindAuthFailed, Agent: "mallory"}))
	}
	cp3 := ctSign(t, events[2], ctT0.Add(time.Minute))
	// Signed at a time finer than a microsecond and not in UTC: SignCheckpoint keeps UTC
	// microseconds, and the store gives them back.
	cp6 := ctSign(t, events[5], time.Date(2026, 3, 1, 10, 2, 3, 456789999, time.FixedZone("CET", 3600)))
	cp9 := ctSign(t, events[8], ctT0.Add(3*time.Minute))
	ctAllSet(t, "checkpoint", cp6)
	for _, cp := range []audit.Checkpoint{cp6, cp3, cp9} { // out of order
		if err := st.SaveCheckpoint(ctx, cp); err != nil {
			t.Fatalf("SaveCheckpoint(%d): %v", cp.Seq, err)
		}
	}
	// The same checkpoint again is not an error.
	if err := st.SaveCheckpoint(ctx, cp6); err != nil {
		t.Errorf("SaveCheckpoint(%d) again, the same: %v; want nil", cp6.Seq, err)
	}
	// A different checkpoint for a stored seq is, and the stored one stays.
	forked := ctSign(t, audit.Event{Seq: 6, Hash: "sha256:" + strings.Repeat("ee", 32)}, cp6.Time)
	if err := st.SaveCheckpoint(ctx, forked); err == nil {
		t.Errorf("SaveCheckpoint(%d) with a different head succeeded, want an error", forked.Seq)
	}

	got, ok, err := st.Checkpoint(ctx, 6)
	if err != nil || !ok {
		t.Fatalf("Checkpoint(6) = _, %v, %v; want the checkpoint", ok, err)
	}
	if diff := cmp.Diff(cp6, got); diff != "" {
		t.Errorf("Checkpoint(6) (-want +got):\n%s", diff)
	}
	ctUTC(t, "Checkpoint(6).Time", got.Time)
	if err := got.Check(ctPublic(ctKey())); err != nil {
		t.Errorf("Checkpoint(6) read back does not verify: %v", err)
	}
	if cp, ok, err := st.Checkpoint(ctx, 7); ok || err != nil {
		t.Errorf("Checkpoint(7) = %+v, %v, %v; want false, nil", cp, ok, err)
	}
	latest, ok, err := st.LatestCheckpoint(ctx)
	if err != nil || !ok {
		t.Fatalf("LatestCheckpoint = _, %v, %v", ok, err)
	}
	if diff := cmp.Diff(cp9, latest); diff != "" {
		t.Errorf("LatestCheckpoint (-want +got):\n%s", diff)
	}
	all := []audit.Checkpoint{cp3, cp6, cp9}
	for _, tt := range []struct {
		after int64
		limit int
		want  []audit.Checkpoint
	}{
		{0, 10, all},
		{0, 2, all[:2]},
		{0, 1, all[:1]},
		{3, 10, all[1:]},
		{4, 1, all[1:2]},
		{9, 10, nil},
	} {
		got, err := st.Checkpoints(ctx, tt.after, tt.limit)
		if err != nil {
			t.Errorf("Checkpoints(%d, %d): %v", tt.after, tt.limit, err)
			continue
		}
		if diff := cmp.Diff(tt.want, ctNilIfEmpty(got)); diff != "" {
			t.Errorf("Checkpoints(%d, %d) (-want +got):\n%s", tt.after, tt.limit, diff)
		}
	}
	for _, limit := range []int{0, -1} {
		if got, err := st.Checkpoints(ctx, 0, limit); err == nil {
			t.Errorf("Checkpoints(0, %d) = %v, nil; want an error", limit, got)
		}
	}

	stored, err := st.Checkpoints(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	r := ctVerify(t, st, audit.VerifyOptions{Keys: ctPublic(ctKey()), Checkpoints: stored}, 10)
	if r.Checkpoints != 3 || r.Anchor == nil || r.Anchor.Seq != 9 {
		t.Errorf("VerifyChain with the stored checkpoints matched %d, anchor %+v; want 3, the one at 9", r.Checkpoints, r.Anchor)
	}
}

// ctCheckpointsRace saves checkpoints at one seq from many goroutines: the same one
// is saved by all, and of different ones exactly one is kept.
func ctCheckpointsRace(t *testing.T, st store.Store) {
	ctx := t.Context()
	l := ctNewLog(t, st)
	e1 := ctAppend(t, l, audit.Event{Time: ctT0, Kind: audit.KindAuthFailed})
	e2 := ctAppend(t, l, audit.Event{Time: ctT0, Kind: audit.KindAuthFailed})

	same := ctSign(t, e1, ctT0)
	for i, err := range ctRace(ctRaceN, func(int) error { return st.SaveCheckpoint(ctx, same) }) {
		if err != nil {
			t.Errorf("SaveCheckpoint(the same checkpoint) by racer %d: %v", i, err)
		}
	}
	cps := make([]audit.Checkpoint, ctRaceN)
	for i := range cps {
		cps[i] = ctSign(t, audit.Event{Seq: 2, Hash: fmt.Sprintf("sha256:%064x", i)}, ctT0)
	}
	cps[ctRaceN/2] = ctSign(t, e2, ctT0)
	errs := ctRace(ctRaceN, func(i int) error { return st.SaveCheckpoint(ctx, cps[i]) })
	w := ctOneWinner(t, "SaveCheckpoint of different checkpoints at event 2", errs)
	got, ok, err := st.Checkpoint(ctx, 2)
	if err != nil || !ok {
		t.Fatalf("Checkpoint(2) = _, %v, %v", ok, err)
	}
	if diff := cmp.Diff(cps[w], got); diff != "" {
		t.Errorf("Checkpoint(2) after the race (-winner +stored):\n%s", diff)
	}
	if got, err := st.Checkpoints(ctx, 0, 10); err != nil || len(got) != 2 {
		t.Errorf("Checkpoints(0, 10) after the races = %v, %v; want 2", got, err)
	}
}

func ctPruneCases() []ctCase {
	return []ctCase{{"PruneEvents", ctPrune}}
}

func ctPrune(t *testing.T, st store.Store) {
	ctx := t.Context()
	l := ctNewLog(t, st)
	old := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	kinds := []string{audit.KindAuthFailed, audit.KindCallRefused, audit.KindToolPinned}
	var events []audit.Event
	for i := range 12 {
		events = append(events, ctAppend(t, l, audit.Event{
			Time: old.Add(time.Duration(i) * time.Minute), Kind: kinds[i%3], RequestID: fmt.Sprint("req-", i+1),
			Agent: "mallory", Message: "content that retention removes", Rules: []string{"r"},
		}))
	}
	// The newest checkpoint covers events 1 to 9; 10 to 12 are ahead of it.
	cp := ctSign(t, events[8], old.Add(time.Hour))
	if err := st.SaveCheckpoint(ctx, cp); err != nil {
		t.Fatalf("SaveCheckpoint(9): %v", err)
	}
	cutoff := old.Add(7 * time.Minute) // events 1 to 7 expired, and 10 to 12 would be too
	var seen []audit.Event
	expired := func(e *audit.Event) bool {
		seen = append(seen, *e)
		return e.Time.Before(cutoff) || e.Seq > 9
	}

	pruned := map[int64]bool{}
	for _, tt := range []struct {
		name  string
		kinds []string
		want  []int64 // the seqs pruned
	}{
		{"one kind", []string{audit.KindAuthFailed}, []int64{1, 4, 7}},
		{"no kind", []string{}, nil},
		{"two kinds, one unknown", []string{audit.KindCallRefused, "no.such.kind"}, []int64{2, 5}},
		{"every kind (nil)", nil, []int64{3, 6}},
		{"every kind again: tombstones are not pruned twice", nil, nil},
	} {
		seen = nil
		n, err := st.PruneEvents(ctx, cp.Seq, tt.kinds, expired)
		if err != nil {
			t.Fatalf("PruneEvents(%d, %s): %v", cp.Seq, tt.name, err)
		}
		if n != int64(len(tt.want)) {
			t.Errorf("PruneEvents(%d, %s) = %d, want %d (events %v)", cp.Seq, tt.name, n, len(tt.want), tt.want)
		}
		for _, e := range seen {
			switch {
			case e.Seq > cp.Seq:
				t.Errorf("PruneEvents(%d, %s) asked about event %d, beyond the checkpoint", cp.Seq, tt.name, e.Seq)
			case tt.kinds != nil && !slices.Contains(tt.kinds, e.Kind):
				t.Errorf("PruneEvents(%d, %s) asked about event %d of kind %s", cp.Seq, tt.name, e.Seq, e.Kind)
			case e.Pruned:
				t.Errorf("PruneEvents(%d, %s) asked about event %d, already a tombstone", cp.Seq, tt.name, e.Seq)
			case e.Agent == "" || e.Message == "":
				t.Errorf("PruneEvents(%d, %s) asked about event %d without its content: %+v", cp.Seq, tt.name, e.Seq, e)
			}
		}
		for _, s := range tt.want {
			pruned[s] = true
		}
		want := make([]audit.Event, len(events))
		for i, e := range events {
			want[i] = e
			if pruned[e.Seq] {
				want[i] = audit.Tombstone(e)
			}
		}
		if diff := cmp.Diff(want, ctScanAll(t, st)); diff != "" {
			t.Errorf("events after PruneEvents(%d, %s) (-want +got):\n%s", cp.Seq, tt.name, diff)
		}
	}

	opts := audit.VerifyOptions{Keys: ctPublic(ctKey()), Checkpoints: []audit.Checkpoint{cp}}
	if r := ctVerify(t, st, opts, 12); r.Pruned != 7 {
		t.Errorf("VerifyChain after pruning counted %d tombstones, want 7", r.Pruned)
	}
	if last, ok, err := st.LastEvent(ctx); err != nil || !ok || !cmp.Equal(events[11], last) {
		t.Errorf("LastEvent after pruning = %+v, %v, %v; want event 12 untouched", last, ok, err)
	}
	// The chain goes on from the pruned log.
	l2 := ctNewLog(t, st)
	next := ctAppend(t, l2, audit.Event{Time: old.Add(time.Hour), Kind: audit.KindAuthFailed})
	if next.Seq != 13 || next.PrevHash != events[11].Hash {
		t.Errorf("Append after pruning = seq %d prev %q, want 13 after %q", next.Seq, next.PrevHash, events[11].Hash)
	}
	ctVerify(t, st, opts, 13)
}
