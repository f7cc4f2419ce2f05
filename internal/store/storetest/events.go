package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/store"
)

// ctChain returns n events continuing the chain after head (the zero Event for an empty
// log), numbered and hashed as a Log would, with request ids tag-<seq>.
func ctChain(head audit.Event, n int, tag string) []audit.Event {
	events := ctUnchained(n, tag)
	for i := range events {
		events[i].RequestID = fmt.Sprintf("%s-%d", tag, head.Seq+int64(i)+1)
	}
	ctNumber(events, head.Seq, head.Hash)
	return events
}

// ctUnchained returns n valid events, not yet numbered or hashed, with request ids
// tag-<i> and times one second apart.
func ctUnchained(n int, tag string) []audit.Event {
	events := make([]audit.Event, n)
	for i := range events {
		events[i] = audit.Event{
			Time:      ctT0.Add(time.Duration(i) * time.Second),
			Kind:      audit.KindCallIntent,
			RequestID: fmt.Sprintf("%s-%d", tag, i),
			Agent:     "mail-assistant",
			Tool:      "send_email",
			Rules:     []string{"r1"},
		}
	}
	return events
}

// ctNumber numbers and hashes events in place to continue the head (seq, hash), as a
// Log's chain function does.
func ctNumber(events []audit.Event, seq int64, hash string) error {
	prev := hash
	for i := range events {
		seq++
		e := &events[i]
		e.Seq, e.PrevHash, e.Hash = seq, prev, ""
		e.Hash = e.ComputeHash()
		prev = e.Hash
	}
	return nil
}

// ctScanAll returns every stored event, reading pages of 7 to exercise paging.
func ctScanAll(t *testing.T, st store.Store) []audit.Event {
	t.Helper()
	var all []audit.Event
	for {
		after := int64(0)
		if len(all) > 0 {
			after = all[len(all)-1].Seq
		}
		page, err := st.ScanEvents(t.Context(), after, 7)
		if err != nil {
			t.Fatalf("ScanEvents(%d, 7): %v", after, err)
		}
		if len(page) > 7 {
			t.Fatalf("ScanEvents(%d, 7) returned %d events, want at most 7", after, len(page))
		}
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
	}
}

// ctVerify checks the stored chain with audit.VerifyChain and fails the test if it is
// broken or does not hold want events.
func ctVerify(t *testing.T, st store.Store, opts audit.VerifyOptions, want int64) audit.Report {
	t.Helper()
	r, err := audit.VerifyChain(t.Context(), st, opts)
	if err != nil {
		t.Fatalf("VerifyChain: %v", err)
	}
	if r.Broken != nil {
		t.Fatalf("VerifyChain: chain broken at event %d: %s", r.Broken.Seq, r.Broken.Problem)
	}
	if r.Events != want {
		t.Fatalf("VerifyChain verified %d events, want %d", r.Events, want)
	}
	return r
}

// ctNewLog opens an audit.Log over st, closed (and its close checked) when the test ends.
func ctNewLog(t *testing.T, st store.Store) *audit.Log {
	t.Helper()
	l, err := audit.NewLog(t.Context(), st, audit.LogOptions{})
	if err != nil {
		t.Fatalf("audit.NewLog: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := l.Close(ctx); err != nil {
			t.Errorf("audit Log.Close: %v", err)
		}
	})
	return l
}

// ctAppend appends e through l and returns it as recorded.
func ctAppend(t *testing.T, l *audit.Log, e audit.Event) audit.Event {
	t.Helper()
	if err := l.Append(t.Context(), &e); err != nil {
		t.Fatalf("Log.Append(%s %s): %v", e.Kind, e.RequestID, err)
	}
	return e
}

// ctFullEvent is an event with every field the log records set, with content that
// tests a backend's encoding: non-ASCII text, HTML characters, a NUL escape, JSON
// whose key order and number spelling are not canonical, large integers and
// fractions.
func ctFullEvent() audit.Event {
	return audit.Event{
		// Not UTC and finer than a microsecond: the log records it in UTC, truncated.
		Time:      time.Date(2026, 3, 1, 10, 0, 7, 123456789, time.FixedZone("CET", 3600)),
		Kind:      audit.KindCallIntent,
		RequestID: "req-full", SessionID: "sess-1", Agent: "finance-assistant", User: "dana@example.com",
		Tool: "send_money", Upstream: "bank",
		ArgsHash:       "sha256:" + strings.Repeat("ab", 32),
		ArgsSummary:    "amount:number, memo:string(9)",
		Decision:       "allow",
		Reason:         "allowed_by_policy",
		Message:        "Zahlung an Ümit ✓ <&> \"quoted\" \\ tab\t newline\n nul\x00 end 🏠",
		Rules:          []string{"payments", "two-person"},
		PolicyVersion:  "sha256:" + strings.Repeat("cd", 32),
		LatencyMicros:  1_234_567,
		ResultBytes:    1 << 40,
		ResultError:    true,
		Detail:         "old sha256:aa new sha256:bb",
		Task:           "tsk_1",
		Chain:          []string{"planner", "finance-assistant"},
		TokenID:        "jti-1",
		ShadowDecision: "deny",
		ShadowRules:    []string{"shadow-1"},
		Arguments:      json.RawMessage(`{"memo": "rent <&> \u0000 é", "amount": 80.50, "nested": {"b": [1, 2e3, {"z": null}], "a": true}}`),
		Result:         json.RawMessage(`{"content":[{"type":"text","text":"sent"}],"isError":false}`),
		Captured:       audit.CapturedArguments,
		Prompt:         "pay the rent",
		Explanation:    "amount came from mail",
		Risk:           87,
		RiskFactors:    []string{"new recipient"},
		Approval:       "apr_x",
		Spend:          0.1,
		Tokens:         1<<53 + 1,
		Charges:        map[string]float64{"usd": 0.25, "eur": 1e-7},
		Steps:          42,
		Deviations:     []string{"new tool"},
		IdempotencyKey: "pay-1",
		Sensors:        []string{"pii:EMAIL", "redacted:secret:2"},
		Scope:          "agent:finance-assistant",
		Credentials:    []string{"oauth_client_credentials:crm", "receipt:crm"},
		PolicySigner:   "release-team",
	}
}

func ctEventCases() []ctCase {
	return []ctCase{
		{"Empty", ctEventsEmpty},
		{"RoundTripEveryField", ctEventsRoundTrip},
		{"ScanAndTail", ctEventsScanAndTail},
		{"AppendEventsRefusesBrokenChain", ctEventsRefuseBroken},
		{"AppendEventsRace", ctEventsRace},
	}
}

func ctEventsEmpty(t *testing.T, st store.Store) {
	ctx := t.Context()
	if e, ok, err := st.LastEvent(ctx); ok || err != nil {
		t.Fatalf("LastEvent on an empty store = %+v, %v, %v; want false, nil", e, ok, err)
	}
	if got, err := st.ScanEvents(ctx, 0, 10); len(got) != 0 || err != nil {
		t.Errorf("ScanEvents(0, 10) on an empty store = %v, %v; want none", got, err)
	}
	if got, err := st.TailEvents(ctx, 5); len(got) != 0 || err != nil {
		t.Errorf("TailEvents(5) on an empty store = %v, %v; want none", got, err)
	}
	if err := st.AppendEvents(ctx, nil); err != nil {
		t.Errorf("AppendEvents(nil) = %v, want nil", err)
	}
	if err := st.AppendEvents(ctx, []audit.Event{}); err != nil {
		t.Errorf("AppendEvents(empty) = %v, want nil", err)
	}
	// The first event of a log is event 1 and links to nothing.
	two := ctChain(audit.Event{}, 2, "e")
	if err := st.AppendEvents(ctx, two[1:]); err == nil {
		t.Error("AppendEvents(event 2) on an empty store succeeded, want an error")
	}
	linked := ctChain(audit.Event{Hash: "sha256:" + strings.Repeat("00", 32)}, 1, "e")
	if err := st.AppendEvents(ctx, linked); err == nil {
		t.Error("AppendEvents(event 1 with a prev_hash) on an empty store succeeded, want an error")
	}
	if e, ok, err := st.LastEvent(ctx); ok || err != nil {
		t.Fatalf("LastEvent after refused batches = %+v, %v, %v; want false, nil", e, ok, err)
	}
}

func ctEventsRoundTrip(t *testing.T, st store.Store) {
	ctx := t.Context()
	l := ctNewLog(t, st)
	first := ctAppend(t, l, audit.Event{Time: ctT0, Kind: audit.KindPolicyLoaded, PolicyVersion: "v1"})
	full := ctAppend(t, l, ctFullEvent())
	ctAllSet(t, "the full event as recorded", full, "Pruned")
	if full.Seq != 2 || full.PrevHash != first.Hash {
		t.Fatalf("Append(full event) = seq %d prev %q, want seq 2 after %q", full.Seq, full.PrevHash, first.Hash)
	}
	want := []audit.Event{first, full}

	last, ok, err := st.LastEvent(ctx)
	if err != nil || !ok {
		t.Fatalf("LastEvent = _, %v, %v; want the full event", ok, err)
	}
	if diff := cmp.Diff(full, last); diff != "" {
		t.Errorf("LastEvent (-want +got):\n%s", diff)
	}
	ctUTC(t, "LastEvent().Time", last.Time)
	got, err := st.ScanEvents(ctx, 0, 10)
	if err != nil {
		t.Fatalf("ScanEvents(0, 10): %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ScanEvents(0, 10) (-want +got):\n%s", diff)
	}
	got, err = st.TailEvents(ctx, 1)
	if err != nil {
		t.Fatalf("TailEvents(1): %v", err)
	}
	if diff := cmp.Diff(want[1:], got); diff != "" {
		t.Errorf("TailEvents(1) (-want +got):\n%s", diff)
	}
	for _, e := range got {
		if rec, err := e.MarshalRecord(); err != nil || e.ComputeHash() != e.Hash {
			t.Errorf("event %d read back does not hash to its Hash (record %s, %v)", e.Seq, rec, err)
		}
	}
	ctVerify(t, st, audit.VerifyOptions{}, 2)
}

func ctEventsScanAndTail(t *testing.T, st store.Store) {
	ctx := t.Context()
	events := ctChain(audit.Event{}, 25, "scan")
	if err := st.AppendEvents(ctx, events[:20]); err != nil {
		t.Fatalf("AppendEvents(1-20): %v", err)
	}
	if err := st.AppendEvents(ctx, events[20:]); err != nil {
		t.Fatalf("AppendEvents(21-25): %v", err)
	}
	last, ok, err := st.LastEvent(ctx)
	if err != nil || !ok {
		t.Fatalf("LastEvent = _, %v, %v", ok, err)
	}
	if diff := cmp.Diff(events[24], last); diff != "" {
		t.Errorf("LastEvent (-want +got):\n%s", diff)
	}
	for _, tt := range []struct {
		after int64
		limit int
		want  []audit.Event
	}{
		{0, 100, events},
		{0, 1, events[:1]},
		{5, 10, events[5:15]},
		{20, 10, events[20:]},
		{24, 10, events[24:]},
		{25, 10, nil},
		{1000, 10, nil},
	} {
		got, err := st.ScanEvents(ctx, tt.after, tt.limit)
		if err != nil {
			t.Errorf("ScanEvents(%d, %d): %v", tt.after, tt.limit, err)
			continue
		}
		if diff := cmp.Diff(tt.want, ctNilIfEmpty(got)); diff != "" {
			t.Errorf("ScanEvents(%d, %d) (-want +got):\n%s", tt.after, tt.limit, diff)
		}
	}
	for _, tt := range []struct {
		n    int
		want []audit.Event
	}{
		{0, nil},
		{1, events[24:]},
		{3, events[22:]},
		{25, events},
		{100, events},
	} {
		got, err := st.TailEvents(ctx, tt.n)
		if err != nil {
			t.Errorf("TailEvents(%d): %v", tt.n, err)
			continue
		}
		if diff := cmp.Diff(tt.want, ctNilIfEmpty(got)); diff != "" {
			t.Errorf("TailEvents(%d) (-want +got):\n%s", tt.n, diff)
		}
	}
	for _, limit := range []int{0, -1} {
		if got, err := st.ScanEvents(ctx, 0, limit); err == nil {
			t.Errorf("ScanEvents(0, %d) = %d events, nil; want an error", limit, len(got))
		}
	}
	if got, err := st.TailEvents(ctx, -1); err == nil {
		t.Errorf("TailEvents(-1) = %d events, nil; want an error", len(got))
	}
	if diff := cmp.Diff(events, ctScanAll(t, st)); diff != "" {
		t.Errorf("all events paged (-want +got):\n%s", diff)
	}
	ctVerify(t, st, audit.VerifyOptions{}, 25)
}

// ctNilIfEmpty returns nil for an empty list, so that "none" compares equal however a
// backend spells it.
func ctNilIfEmpty[T any](list []T) []T {
	if len(list) == 0 {
		return nil
	}
	return list
}

func ctEventsRefuseBroken(t *testing.T, st store.Store) {
	ctx := t.Context()
	head := ctChain(audit.Event{}, 2, "head")
	if err := st.AppendEvents(ctx, head); err != nil {
		t.Fatalf("AppendEvents(1-2): %v", err)
	}
	for _, tt := range []struct {
		name   string
		events func() []audit.Event
	}{
		{"seq reused", func() []audit.Event { return ctChain(head[0], 3, "reused") }},
		{"seq skipped", func() []audit.Event { return ctChain(head[1], 2, "skipped")[1:] }},
		{"wrong prev_hash", func() []audit.Event {
			e := ctChain(head[1], 3, "prev")
			e[0].PrevHash = "sha256:" + strings.Repeat("00", 32)
			return e
		}},
		{"gap inside the batch", func() []audit.Event {
			e := ctChain(head[1], 3, "gap")
			e[2].Seq++
			return e
		}},
		{"broken link inside the batch", func() []audit.Event {
			e := ctChain(head[1], 3, "link")
			e[2].PrevHash = e[0].Hash
			return e
		}},
		{"fork of the head", func() []audit.Event {
			return ctChain(head[0], 1, "fork") // a second event 2
		}},
	} {
		events := tt.events()
		if err := st.AppendEvents(ctx, events); err == nil {
			t.Errorf("AppendEvents(%s) succeeded, want an error", tt.name)
		}
		got, err := st.ScanEvents(ctx, 0, 100)
		if err != nil {
			t.Fatalf("ScanEvents after AppendEvents(%s): %v", tt.name, err)
		}
		if diff := cmp.Diff(head, got); diff != "" {
			t.Errorf("after the refused batch %s, the store changed (-want +got):\n%s", tt.name, diff)
		}
	}
	// Refused batches leave the store usable.
	next := ctChain(head[1], 2, "next")
	if err := st.AppendEvents(ctx, next); err != nil {
		t.Fatalf("AppendEvents(3-4) after refused batches: %v", err)
	}
	ctVerify(t, st, audit.VerifyOptions{}, 4)
}

// ctEventsRace races writers that all read the same head: exactly one batch continues
// it, the others are refused, and the log does not fork.
func ctEventsRace(t *testing.T, st store.Store) {
	ctx := t.Context()
	head := ctChain(audit.Event{}, 1, "head")
	if err := st.AppendEvents(ctx, head); err != nil {
		t.Fatalf("AppendEvents(1): %v", err)
	}
	batches := make([][]audit.Event, ctRaceN)
	for i := range batches {
		batches[i] = ctChain(head[0], 2, fmt.Sprint("racer", i))
	}
	errs := ctRace(ctRaceN, func(i int) error { return st.AppendEvents(ctx, batches[i]) })
	w := ctOneWinner(t, "AppendEvents of event 2-3 by racers that read the same head", errs)
	got := ctScanAll(t, st)
	if diff := cmp.Diff(append(head, batches[w]...), got); diff != "" {
		t.Errorf("events after the race (-want +got):\n%s", diff)
	}
	ctVerify(t, st, audit.VerifyOptions{}, 3)
}

// ctChainStore returns st as an audit.ChainStore, which every backend must be.
func ctChainStore(t *testing.T, st store.Store) audit.ChainStore {
	t.Helper()
	cs, ok := st.(audit.ChainStore)
	if !ok {
		t.Fatalf("%T (backend %q) does not implement audit.ChainStore", st, st.Backend())
	}
	return cs
}

func ctChainCases() []ctCase {
	return []ctCase{
		{"AppendChained", ctChained},
		{"AppendChainedRefusesMisnumbered", ctChainedMisnumbered},
		{"AppendChainedRace", ctChainedRace},
		{"LogsRace", ctLogsRace},
	}
}

func ctChained(t *testing.T, st store.Store) {
	ctx := t.Context()
	cs := ctChainStore(t, st)

	// An empty log: the head is 0 and "".
	a := ctUnchained(3, "a")
	var calls int
	var headSeq int64 = -1
	headHash := "unset"
	err := cs.AppendChained(ctx, a, func(seq int64, hash string) error {
		calls++
		headSeq, headHash = seq, hash
		return ctNumber(a, seq, hash)
	})
	if err != nil {
		t.Fatalf("AppendChained(3 events) on an empty store: %v", err)
	}
	if calls < 1 || headSeq != 0 || headHash != "" {
		t.Fatalf("AppendChained on an empty store called chain %d times, last with (%d, %q); want at least once with (0, \"\")", calls, headSeq, headHash)
	}
	if a[0].Seq != 1 || a[2].Seq != 3 {
		t.Fatalf("AppendChained numbered events %d to %d, want 1 to 3", a[0].Seq, a[2].Seq)
	}

	// A plain AppendEvents continues the chain, and AppendChained continues that.
	b := ctChain(a[2], 1, "b")
	if err := st.AppendEvents(ctx, b); err != nil {
		t.Fatalf("AppendEvents(4) after AppendChained: %v", err)
	}
	c := ctUnchained(2, "c")
	calls = 0
	err = cs.AppendChained(ctx, c, func(seq int64, hash string) error {
		calls++
		headSeq, headHash = seq, hash
		return ctNumber(c, seq, hash)
	})
	if err != nil {
		t.Fatalf("AppendChained(2 events) after event 4: %v", err)
	}
	if calls < 1 || headSeq != 4 || headHash != b[0].Hash {
		t.Errorf("AppendChained called chain with (%d, %q), want (4, %q)", headSeq, headHash, b[0].Hash)
	}
	want := append(append(append([]audit.Event{}, a...), b...), c...)
	if diff := cmp.Diff(want, ctScanAll(t, st)); diff != "" {
		t.Errorf("events after AppendChained (-want +got):\n%s", diff)
	}

	// A chain function's error is returned and nothing is written.
	errRefused := errors.New("storetest: chain refused")
	d := ctUnchained(2, "d")
	err = cs.AppendChained(ctx, d, func(seq int64, hash string) error {
		ctNumber(d, seq, hash)
		return errRefused
	})
	ctCheckErr(t, "AppendChained with a failing chain function", err, errRefused)
	if last, ok, err := st.LastEvent(ctx); err != nil || !ok || last.Seq != 6 {
		t.Errorf("LastEvent after a refused AppendChained = seq %d, %v, %v; want event 6", last.Seq, ok, err)
	}
	ctVerify(t, st, audit.VerifyOptions{}, 6)
}

// ctChainedMisnumbered checks that a store does not trust the chain function: a batch
// it numbered so that it does not continue the head is refused, like AppendEvents
// refuses one.
func ctChainedMisnumbered(t *testing.T, st store.Store) {
	ctx := t.Context()
	cs := ctChainStore(t, st)
	head := ctChain(audit.Event{}, 2, "head")
	if err := st.AppendEvents(ctx, head); err != nil {
		t.Fatalf("AppendEvents(1-2): %v", err)
	}
	for _, tt := range []struct {
		name  string
		chain func(events []audit.Event, seq int64, hash string)
	}{
		{"skips a seq", func(e []audit.Event, seq int64, hash string) { ctNumber(e, seq+1, hash) }},
		{"reuses a seq", func(e []audit.Event, seq int64, hash string) { ctNumber(e, seq-1, hash) }},
		{"wrong prev_hash", func(e []audit.Event, seq int64, _ string) {
			ctNumber(e, seq, "sha256:"+strings.Repeat("00", 32))
		}},
		{"broken link inside the batch", func(e []audit.Event, seq int64, hash string) {
			ctNumber(e, seq, hash)
			e[1].PrevHash = "sha256:" + strings.Repeat("11", 32)
		}},
	} {
		events := ctUnchained(2, "bad")
		err := cs.AppendChained(ctx, events, func(seq int64, hash string) error {
			tt.chain(events, seq, hash)
			return nil
		})
		if err == nil {
			t.Errorf("AppendChained whose chain function %s succeeded, want an error", tt.name)
		}
		if diff := cmp.Diff(head, ctScanAll(t, st)); diff != "" {
			t.Errorf("after AppendChained whose chain function %s (-want +got):\n%s", tt.name, diff)
		}
	}
}

// ctChainedRace appends batches from many goroutines at once with AppendChained: they
// make one chain, each batch in one piece, with no fork and no gap.
func ctChainedRace(t *testing.T, st store.Store) {
	ctx := t.Context()
	cs := ctChainStore(t, st)
	const perBatch = 3
	batches := make([][]audit.Event, ctRaceN)
	for i := range batches {
		batches[i] = ctUnchained(perBatch, fmt.Sprint("racer", i))
	}
	errs := ctRace(ctRaceN, func(i int) error {
		b := batches[i]
		return cs.AppendChained(ctx, b, func(seq int64, hash string) error { return ctNumber(b, seq, hash) })
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("AppendChained by racer %d: %v", i, err)
		}
	}
	all := ctScanAll(t, st)
	if len(all) != ctRaceN*perBatch {
		t.Fatalf("%d events stored after %d batches of %d, want %d", len(all), ctRaceN, perBatch, ctRaceN*perBatch)
	}
	for i, b := range batches {
		if errs[i] != nil {
			continue
		}
		first := b[0].Seq
		if first < 1 || first+perBatch-1 > int64(len(all)) {
			t.Errorf("racer %d's batch numbered %d to %d, outside the stored 1 to %d", i, first, first+perBatch-1, len(all))
			continue
		}
		// One transaction: the batch is stored in one piece, as its chain function numbered it.
		if diff := cmp.Diff(b, all[first-1:first-1+perBatch]); diff != "" {
			t.Errorf("racer %d's batch as stored (-numbered +stored):\n%s", i, diff)
		}
	}
	ctVerify(t, st, audit.VerifyOptions{}, int64(len(all)))
}

// ctLogsRace appends through several audit.Logs over one store at once, as gateway
// replicas do: every append succeeds and the log is one chain.
func ctLogsRace(t *testing.T, st store.Store) {
	const (
		logs    = 4
		perLog  = 4 // goroutines per log
		appends = 3 // sequential appends per goroutine
	)
	ls := make([]*audit.Log, logs)
	for i := range ls {
		ls[i] = ctNewLog(t, st)
	}
	recorded := make([][]audit.Event, logs*perLog)
	errs := ctRace(logs*perLog, func(i int) error {
		for j := range appends {
			e := audit.Event{
				Time:      ctT0.Add(time.Duration(i*appends+j) * time.Millisecond),
				Kind:      audit.KindToolPinned,
				RequestID: fmt.Sprintf("log%d-g%d-%d", i%logs, i, j),
				Detail:    "replica " + fmt.Sprint(i%logs),
			}
			if err := ls[i%logs].Append(t.Context(), &e); err != nil {
				return err
			}
			recorded[i] = append(recorded[i], e)
		}
		return nil
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("Log.Append by goroutine %d of log %d: %v", i, i%logs, err)
		}
	}
	all := ctScanAll(t, st)
	const total = logs * perLog * appends
	if len(all) != total {
		t.Fatalf("%d events stored, want %d", len(all), total)
	}
	for _, rec := range recorded {
		for _, e := range rec {
			if e.Seq < 1 || e.Seq > int64(len(all)) {
				t.Errorf("Append recorded %s at seq %d, outside the stored 1 to %d", e.RequestID, e.Seq, len(all))
				continue
			}
			if diff := cmp.Diff(e, all[e.Seq-1]); diff != "" {
				t.Errorf("event %d as Append recorded it and as stored (-recorded +stored):\n%s", e.Seq, diff)
			}
		}
	}
	ctVerify(t, st, audit.VerifyOptions{}, total)
}
