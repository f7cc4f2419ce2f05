package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/store"
)

func ctScope(t *testing.T, s string) contain.Scope {
	t.Helper()
	sc, err := contain.ParseScope(s)
	if err != nil {
		t.Fatalf("ParseScope(%q): %v", s, err)
	}
	return sc
}

func ctKillCases() []ctCase {
	return []ctCase{
		{"EngageLiftRead", ctKills},
		{"EngageRace", ctKillsEngageRace},
		{"LiftRace", ctKillsLiftRace},
	}
}

func ctKills(t *testing.T, st store.Store) {
	ctx := t.Context()
	if got, err := st.Kills(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Kills() on an empty store = %v, %v; want none", got, err)
	}
	billing := ctScope(t, "agent:billing")
	all := ctScope(t, "all")
	user := ctScope(t, "user:dana müller")
	// Not UTC: the store gives it back in UTC.
	at := time.Date(2026, 3, 1, 10, 0, 0, 100_000, time.FixedZone("CET", 3600))

	k1, err := st.EngageKill(ctx, contain.Kill{Scope: billing, Reason: "runaway — «loop»", By: "alice", EngagedAt: at})
	if err != nil {
		t.Fatalf("EngageKill(%s): %v", billing, err)
	}
	if k1.ID <= 0 {
		t.Errorf("EngageKill(%s) = ID %d, want a positive id", billing, k1.ID)
	}
	want1 := contain.Kill{ID: k1.ID, Scope: billing, Reason: "runaway — «loop»", By: "alice", EngagedAt: at}
	if diff := cmp.Diff(want1, k1); diff != "" {
		t.Errorf("EngageKill(%s) (-want +got):\n%s", billing, diff)
	}
	ctUTC(t, "EngageKill result EngagedAt", k1.EngagedAt)
	ctCheckErr(t, "EngageKill(an engaged scope)", ctKillErr(st.EngageKill(ctx, contain.Kill{Scope: billing, Reason: "again", By: "bob", EngagedAt: at})), contain.ErrKillEngaged)
	kAll, err := st.EngageKill(ctx, contain.Kill{Scope: all, Reason: "incident", By: "carol", EngagedAt: at.Add(time.Second)})
	if err != nil {
		t.Fatalf("EngageKill(all) beside another scope's kill: %v", err)
	}
	kUser, err := st.EngageKill(ctx, contain.Kill{Scope: user, Reason: "phished", By: "carol", EngagedAt: at.Add(2 * time.Second)})
	if err != nil {
		t.Fatalf("EngageKill(%s): %v", user, err)
	}
	if kAll.ID == k1.ID || kUser.ID == k1.ID || kUser.ID == kAll.ID {
		t.Errorf("EngageKill ids %d, %d, %d, want distinct ids", k1.ID, kAll.ID, kUser.ID)
	}

	ctCheckErr(t, "LiftKill(a scope not killed)", ctKillErr(st.LiftKill(ctx, ctScope(t, "tool:x"), "bob", "x", at)), contain.ErrNotKilled)
	ctCheckErr(t, "LiftKill(agent:billin, a prefix)", ctKillErr(st.LiftKill(ctx, ctScope(t, "agent:billin"), "bob", "x", at)), contain.ErrNotKilled)
	liftedAt := at.Add(time.Minute + time.Microsecond)
	l1, err := st.LiftKill(ctx, billing, "bob", "fixed", liftedAt)
	if err != nil {
		t.Fatalf("LiftKill(%s): %v", billing, err)
	}
	want1.LiftedAt, want1.LiftedBy, want1.LiftedReason = liftedAt, "bob", "fixed"
	ctAllSet(t, "the lifted kill", want1)
	if diff := cmp.Diff(want1, l1); diff != "" {
		t.Errorf("LiftKill(%s) (-want +got):\n%s", billing, diff)
	}
	ctUTC(t, "LiftKill result times", l1.EngagedAt, l1.LiftedAt)
	ctCheckErr(t, "LiftKill(a lifted scope)", ctKillErr(st.LiftKill(ctx, billing, "bob", "again", liftedAt)), contain.ErrNotKilled)

	// Lifted, the scope can be killed again; both kills stay.
	k2, err := st.EngageKill(ctx, contain.Kill{Scope: billing, Reason: "again", By: "dave", EngagedAt: at.Add(2 * time.Minute)})
	if err != nil {
		t.Fatalf("EngageKill(%s) after its lift: %v", billing, err)
	}
	if k2.ID <= kUser.ID {
		t.Errorf("EngageKill(%s) again = ID %d, want an id after the earlier kills' (%d)", billing, k2.ID, kUser.ID)
	}
	wantAll := []contain.Kill{
		want1,
		{ID: kAll.ID, Scope: all, Reason: "incident", By: "carol", EngagedAt: at.Add(time.Second)},
		{ID: kUser.ID, Scope: user, Reason: "phished", By: "carol", EngagedAt: at.Add(2 * time.Second)},
		{ID: k2.ID, Scope: billing, Reason: "again", By: "dave", EngagedAt: at.Add(2 * time.Minute)},
	}
	got, err := st.Kills(ctx)
	if err != nil {
		t.Fatalf("Kills: %v", err)
	}
	if diff := cmp.Diff(wantAll, got); diff != "" { // oldest first
		t.Errorf("Kills() (-want +got):\n%s", diff)
	}
	for _, k := range got {
		ctUTC(t, fmt.Sprintf("kill %d times", k.ID), k.EngagedAt, k.LiftedAt)
	}
}

func ctKillErr(_ contain.Kill, err error) error { return err }

func ctKillsEngageRace(t *testing.T, st store.Store) {
	ctx := t.Context()
	sc := ctScope(t, "tool:send_money")
	var winners []contain.Kill
	for round := range ctRounds {
		if round > 0 {
			if _, err := st.LiftKill(ctx, sc, "op", "next round", ctT0.Add(time.Duration(round)*time.Minute)); err != nil {
				t.Fatalf("round %d: LiftKill(%s): %v", round, sc, err)
			}
			winners[round-1].LiftedAt, winners[round-1].LiftedBy, winners[round-1].LiftedReason = ctT0.Add(time.Duration(round)*time.Minute), "op", "next round"
		}
		results := make([]contain.Kill, ctRaceN)
		errs := ctRace(ctRaceN, func(i int) error {
			var err error
			results[i], err = st.EngageKill(ctx, contain.Kill{Scope: sc, Reason: fmt.Sprint("racer ", i), By: "op", EngagedAt: ctT0.Add(time.Duration(round) * time.Minute)})
			return err
		})
		w := ctOneWinner(t, fmt.Sprintf("round %d: EngageKill of one scope", round), errs, contain.ErrKillEngaged)
		winners = append(winners, results[w])
	}
	got, err := st.Kills(ctx)
	if err != nil {
		t.Fatalf("Kills: %v", err)
	}
	if diff := cmp.Diff(winners, got); diff != "" {
		t.Errorf("Kills() after the races, want only the winners (-want +got):\n%s", diff)
	}
	// Kills of different scopes do not conflict.
	scopes := make([]contain.Scope, ctRaceN)
	for i := range scopes {
		scopes[i] = ctScope(t, fmt.Sprint("agent:a", i))
	}
	errs := ctRace(ctRaceN, func(i int) error {
		_, err := st.EngageKill(ctx, contain.Kill{Scope: scopes[i], Reason: "r", By: "op", EngagedAt: ctT0})
		return err
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("EngageKill(agent:a%d) racing other scopes: %v", i, err)
		}
	}
	got, err = st.Kills(ctx)
	if err != nil || len(got) != ctRaceN+ctRounds {
		t.Fatalf("Kills() after engaging %d more scopes = %d kills, %v; want %d", ctRaceN, len(got), err, ctRaceN+ctRounds)
	}
	ids := map[int64]bool{}
	for i, k := range got {
		if ids[k.ID] {
			t.Errorf("Kills() holds id %d twice", k.ID)
		}
		ids[k.ID] = true
		if i > 0 && k.ID <= got[i-1].ID {
			t.Errorf("Kills() lists id %d after %d, want oldest (lowest id) first", k.ID, got[i-1].ID)
		}
	}
}

func ctKillsLiftRace(t *testing.T, st store.Store) {
	ctx := t.Context()
	sc := ctScope(t, "upstream:bank")
	k, err := st.EngageKill(ctx, contain.Kill{Scope: sc, Reason: "r", By: "op", EngagedAt: ctT0})
	if err != nil {
		t.Fatal(err)
	}
	errs := ctRace(ctRaceN, func(i int) error {
		return ctKillErr(st.LiftKill(ctx, sc, fmt.Sprint("op-", i), "race", ctT0.Add(time.Minute)))
	})
	w := ctOneWinner(t, "LiftKill of one scope", errs, contain.ErrNotKilled)
	got, err := st.Kills(ctx)
	if err != nil || len(got) != 1 || got[0].ID != k.ID || got[0].LiftedBy != fmt.Sprint("op-", w) {
		t.Errorf("Kills() after the race = %+v, %v; want kill %d lifted by op-%d", got, err, k.ID, w)
	}
}

func ctBreakerCases() []ctCase {
	return []ctCase{{"SetRead", ctBreakers}}
}

func ctBreakers(t *testing.T, st store.Store) {
	ctx := t.Context()
	if got, err := st.Breakers(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Breakers() on an empty store = %v, %v; want none", got, err)
	}
	at := time.Date(2026, 3, 1, 10, 0, 0, 1000, time.FixedZone("CET", 3600))
	full := store.BreakerRecord{Agent: "ab", State: "half_open", Signal: "denials", Detail: "5 in 10m — ü", OpenedAt: at.Add(time.Minute)}
	ctAllSet(t, "the full breaker", full)
	for _, r := range []store.BreakerRecord{
		{Agent: "ab", State: "open", Signal: "denials", Detail: "5 in 10m", OpenedAt: at},
		{Agent: "gone", State: "open", Signal: "errors", OpenedAt: at},
		{Agent: "Zed", State: "open", Signal: "errors", OpenedAt: at},
		{Agent: "a-c", State: "open", Signal: "spend", OpenedAt: at},
		full,                              // replaces ab's
		{Agent: "gone", State: "closed"},  // deletes it
		{Agent: "never", State: "closed"}, // deletes nothing
	} {
		if err := st.SetBreaker(ctx, r); err != nil {
			t.Fatalf("SetBreaker(%+v): %v", r, err)
		}
	}
	if err := st.SetBreaker(ctx, store.BreakerRecord{Agent: "c", State: "tripped", OpenedAt: at}); err == nil {
		t.Error("SetBreaker with state tripped succeeded, want an error")
	}
	want := []store.BreakerRecord{ // by agent, as bytes
		{Agent: "Zed", State: "open", Signal: "errors", OpenedAt: at},
		{Agent: "a-c", State: "open", Signal: "spend", OpenedAt: at},
		full,
	}
	got, err := st.Breakers(ctx)
	if err != nil {
		t.Fatalf("Breakers: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Breakers() (-want +got):\n%s", diff)
	}
	for _, r := range got {
		ctUTC(t, "breaker "+r.Agent+".OpenedAt", r.OpenedAt)
	}
}

func ctBaselineCases() []ctCase {
	return []ctCase{{"PutWalk", ctBaselines}}
}

func ctBaselines(t *testing.T, st store.Store) {
	ctx := t.Context()
	walk := func() map[string]string {
		t.Helper()
		seen := map[string]string{}
		var order []string
		err := st.Baselines(ctx, func(agent string, profile []byte) error {
			seen[agent] = string(profile)
			order = append(order, agent)
			return nil
		})
		if err != nil {
			t.Fatalf("Baselines: %v", err)
		}
		for i := 1; i < len(order); i++ {
			if order[i] <= order[i-1] {
				t.Errorf("Baselines walked %q after %q, want agents in ascending (byte) order", order[i], order[i-1])
			}
		}
		return seen
	}
	if got := walk(); len(got) != 0 {
		t.Fatalf("Baselines on an empty store walked %v, want nothing", got)
	}
	at := ctT0
	// Profiles come back byte for byte: key order and spacing are the encoder's.
	profiles := map[string]string{
		"ab":  `{"calls":2,"tools":{"send_email":0.5},"a":[1,2.50]}`,
		"Zed": `{"z":1, "a": "ü"}`,
		"a-c": `{}`,
	}
	if err := st.PutBaseline(ctx, "ab", []byte(`{"calls":1}`), at); err != nil {
		t.Fatalf("PutBaseline(ab): %v", err)
	}
	for _, agent := range []string{"ab", "Zed", "a-c"} {
		if err := st.PutBaseline(ctx, agent, []byte(profiles[agent]), at.Add(time.Minute)); err != nil {
			t.Fatalf("PutBaseline(%q): %v", agent, err)
		}
	}
	if err := st.PutBaseline(ctx, "b", []byte(`not json`), at); err == nil {
		t.Error("PutBaseline(invalid JSON) succeeded, want an error")
	}
	if diff := cmp.Diff(profiles, walk()); diff != "" {
		t.Errorf("Baselines (-want +got):\n%s", diff)
	}
	// An error from f stops the walk and is returned.
	errStop := errors.New("storetest: stop")
	var calls int
	err := st.Baselines(ctx, func(string, []byte) error {
		calls++
		return errStop
	})
	ctCheckErr(t, "Baselines with f failing", err, errStop)
	if calls != 1 {
		t.Errorf("Baselines called f %d times after it failed, want 1", calls)
	}
}

func ctIdem(agent, key, requestID string, created time.Time) contain.IdemRecord {
	return contain.IdemRecord{
		Agent: agent, Key: key, Tool: "send_money", ArgsHash: "sha256:aa", RequestID: requestID,
		State: contain.IdemRunning, CreatedAt: created,
	}
}

func ctIdemCases() []ctCase {
	return []ctCase{
		{"Lifecycle", ctIdemLifecycle},
		{"CreateRace", ctIdemCreateRace},
		{"FinishRace", ctIdemFinishRace},
	}
}

func ctIdemLifecycle(t *testing.T, st store.Store) {
	ctx := t.Context()
	rec := ctIdem("finance", "pay-1", "req-1", ctT0)
	if got, created, err := st.CreateIdem(ctx, rec); err != nil || !created || got != nil {
		t.Fatalf("CreateIdem(new) = %v, %v, %v; want nil, true, nil", got, created, err)
	}
	// A second claim, even with other fields, gets the first record.
	other := ctIdem("finance", "pay-1", "req-2", ctT0.Add(time.Second))
	other.ArgsHash, other.Tool = "sha256:bb", "other_tool"
	got, created, err := st.CreateIdem(ctx, other)
	if err != nil || created {
		t.Fatalf("CreateIdem(existing) = %v, %v, %v; want the record, false", got, created, err)
	}
	if diff := cmp.Diff(&rec, got); diff != "" {
		t.Errorf("CreateIdem(existing) record (-want +got):\n%s", diff)
	}
	ctUTC(t, "CreateIdem(existing) times", got.CreatedAt, got.FinishedAt)
	// Keys are per agent, and a key is not matched by its prefix.
	if _, created, err := st.CreateIdem(ctx, ctIdem("mail", "pay-1", "req-3", ctT0)); err != nil || !created {
		t.Errorf("CreateIdem(other agent, same key) = %v, %v; want created", created, err)
	}
	if _, created, err := st.CreateIdem(ctx, ctIdem("finance", "pay-", "req-3b", ctT0)); err != nil || !created {
		t.Errorf("CreateIdem(same agent, a prefix of the key) = %v, %v; want created", created, err)
	}

	result := json.RawMessage(`{"content":[{"type":"text","text":"sent — ü <&>"}], "isError":false}`)
	finished := ctT0.Add(2*time.Second + 7*time.Microsecond)
	if err := st.FinishIdem(ctx, "finance", "pay-1", contain.IdemDone, result, "sha256:rr", finished); err != nil {
		t.Fatalf("FinishIdem: %v", err)
	}
	got, created, err = st.CreateIdem(ctx, other)
	if err != nil || created {
		t.Fatalf("CreateIdem(done) = %v, %v, %v; want the record, false", got, created, err)
	}
	want := rec
	want.State, want.Result, want.ResultHash, want.FinishedAt = contain.IdemDone, result, "sha256:rr", finished
	ctAllSet(t, "the finished idempotency record", want)
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("CreateIdem(done) record (-want +got):\n%s", diff)
	}
	ctUTC(t, "CreateIdem(done) times", got.CreatedAt, got.FinishedAt)
	// A finished outcome is never overwritten.
	if err := st.FinishIdem(ctx, "finance", "pay-1", contain.IdemUnknown, nil, "", finished); err == nil {
		t.Error("FinishIdem(a done record) succeeded, want an error")
	}
	if err := st.FinishIdem(ctx, "finance", "nope", contain.IdemDone, result, "sha256:rr", finished); err == nil {
		t.Error("FinishIdem(no record) succeeded, want an error")
	}
	if err := st.FinishIdem(ctx, "mail", "pay-1", contain.IdemRunning, nil, "", finished); err == nil {
		t.Error("FinishIdem(state running) succeeded, want an error")
	}
	if err := st.FinishIdem(ctx, "mail", "pay-1", "lost", nil, "", finished); err == nil {
		t.Error("FinishIdem(state lost) succeeded, want an error")
	}
	if got, _, err := st.CreateIdem(ctx, other); err != nil || !cmp.Equal(&want, got) {
		t.Errorf("CreateIdem after refused finishes = %+v, %v; want %+v unchanged", got, err, want)
	}

	// A result not kept reads back as nil.
	if err := st.FinishIdem(ctx, "mail", "pay-1", contain.IdemDone, nil, "sha256:big", finished); err != nil {
		t.Fatalf("FinishIdem(result not kept): %v", err)
	}
	got, _, err = st.CreateIdem(ctx, ctIdem("mail", "pay-1", "req-4", ctT0))
	if err != nil || got == nil || got.State != contain.IdemDone || got.Result != nil || got.ResultHash != "sha256:big" || !got.FinishedAt.Equal(finished) {
		t.Errorf("CreateIdem(done, result not kept) = %+v, %v; want done with a nil result", got, err)
	}

	// Unknown.
	if _, _, err := st.CreateIdem(ctx, ctIdem("finance", "pay-2", "req-5", ctT0)); err != nil {
		t.Fatalf("CreateIdem(pay-2): %v", err)
	}
	if err := st.FinishIdem(ctx, "finance", "pay-2", contain.IdemUnknown, nil, "", finished); err != nil {
		t.Fatalf("FinishIdem(unknown): %v", err)
	}
	got, _, err = st.CreateIdem(ctx, ctIdem("finance", "pay-2", "req-6", ctT0))
	wantUnknown := ctIdem("finance", "pay-2", "req-5", ctT0)
	wantUnknown.State, wantUnknown.FinishedAt = contain.IdemUnknown, finished
	if err != nil || !cmp.Equal(&wantUnknown, got) {
		t.Errorf("CreateIdem(unknown) = %+v, %v; want %+v", got, err, wantUnknown)
	}

	// Delete lets the key be claimed again; deleting a missing key is not an error.
	if err := st.DeleteIdem(ctx, "finance", "pay-2"); err != nil {
		t.Fatalf("DeleteIdem: %v", err)
	}
	if err := st.DeleteIdem(ctx, "finance", "pay-2"); err != nil {
		t.Errorf("DeleteIdem(missing): %v", err)
	}
	if _, created, err := st.CreateIdem(ctx, ctIdem("finance", "pay-2", "req-7", ctT0.Add(time.Hour))); err != nil || !created {
		t.Errorf("CreateIdem after DeleteIdem = %v, %v; want created", created, err)
	}

	// Expiry goes by creation time, whatever the state: finance/pay-1, mail/pay-1 and
	// finance/pay- at ctT0, finance/pay-2 at ctT0+1h.
	if n, err := st.ExpireIdem(ctx, ctT0); err != nil || n != 0 {
		t.Errorf("ExpireIdem(ctT0) = %d, %v; want 0 (strictly before)", n, err)
	}
	if n, err := st.ExpireIdem(ctx, ctT0.Add(time.Microsecond)); err != nil || n != 3 {
		t.Errorf("ExpireIdem(ctT0+1µs) = %d, %v; want 3", n, err)
	}
	if n, err := st.ExpireIdem(ctx, ctT0.Add(time.Minute)); err != nil || n != 0 {
		t.Errorf("ExpireIdem(ctT0+1m) again = %d, %v; want 0", n, err)
	}
	if _, created, err := st.CreateIdem(ctx, ctIdem("finance", "pay-1", "req-8", ctT0)); err != nil || !created {
		t.Errorf("CreateIdem after ExpireIdem = %v, %v; want created", created, err)
	}
	if _, created, err := st.CreateIdem(ctx, ctIdem("finance", "pay-2", "req-9", ctT0)); err != nil || created {
		t.Errorf("CreateIdem(pay-2, unexpired) = %v, %v; want the existing record", created, err)
	}
	for name, r := range map[string]contain.IdemRecord{
		"no key":   {Agent: "finance", CreatedAt: ctT0},
		"no agent": {Key: "k", CreatedAt: ctT0},
	} {
		if _, _, err := st.CreateIdem(ctx, r); err == nil {
			t.Errorf("CreateIdem(%s) succeeded, want an error", name)
		}
	}
}

func ctIdemCreateRace(t *testing.T, st store.Store) {
	ctx := t.Context()
	for round := range ctRounds {
		key := fmt.Sprint("pay-", round)
		seen := make([]*contain.IdemRecord, ctRaceN)
		errs := ctRace(ctRaceN, func(i int) error {
			got, created, err := st.CreateIdem(ctx, ctIdem("finance", key, fmt.Sprint("req-", i), ctT0))
			switch {
			case err != nil:
				return err
			case created:
				return nil
			case got == nil:
				return errors.New("CreateIdem returned neither a record nor created")
			}
			seen[i] = got
			return errors.New("lost") // not created: compared below
		})
		w := ctOneWinner(t, fmt.Sprintf("round %d: CreateIdem of one key", round), errs)
		for i, got := range seen {
			if i == w {
				continue
			}
			if got == nil {
				t.Errorf("round %d, racer %d: %v", round, i, errs[i])
				continue
			}
			if got.RequestID != fmt.Sprint("req-", w) {
				t.Errorf("round %d: racer %d saw the record of %s, want the winner's req-%d", round, i, got.RequestID, w)
			}
		}
	}
}

func ctIdemFinishRace(t *testing.T, st store.Store) {
	ctx := t.Context()
	if _, created, err := st.CreateIdem(ctx, ctIdem("finance", "pay-1", "req-1", ctT0)); err != nil || !created {
		t.Fatalf("CreateIdem = %v, %v", created, err)
	}
	errs := ctRace(ctRaceN, func(i int) error {
		return st.FinishIdem(ctx, "finance", "pay-1", contain.IdemDone, json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)), fmt.Sprint("sha256:", i), ctT0.Add(time.Second))
	})
	w := ctOneWinner(t, "FinishIdem of one running record", errs)
	got, _, err := st.CreateIdem(ctx, ctIdem("finance", "pay-1", "req-2", ctT0))
	if err != nil || got == nil || string(got.Result) != fmt.Sprintf(`{"n":%d}`, w) || got.ResultHash != fmt.Sprint("sha256:", w) {
		t.Errorf("record after the race = %+v, %v; want the winner's (%d) result", got, err, w)
	}
}
