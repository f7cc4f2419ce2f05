package storetest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/store"
)

// Ids in the lists below are chosen so that byte order, which the sqlite store sorts by,
// differs from the order of a linguistic collation ("Zed" < "a-c" < "ab" as bytes).

func ctAgent(id string) identity.AgentRecord {
	return identity.AgentRecord{
		Agent: identity.Agent{
			ID: id, Owner: "alice@example.com", Purpose: "mail", Environment: "prod",
			Capabilities: []string{"read_file", "*"}, Autonomy: 1,
			Labels: map[string]string{"team": "support"}, Status: identity.StatusActive,
		},
		SecretSHA256: identity.HashToken("chs_x"),
		CreatedAt:    ctT0,
		UpdatedAt:    ctT0,
	}
}

func ctAgentCases() []ctCase {
	return []ctCase{
		{"PutUpdateRead", ctAgents},
		{"RefusesInvalid", ctAgentsInvalid},
		{"PutRace", ctAgentsPutRace},
	}
}

func ctAgents(t *testing.T, st store.Store) {
	ctx := t.Context()
	if got, err := st.Agents(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Agents() on an empty store = %v, %v; want none", got, err)
	}
	if got, ok, err := st.Agent(ctx, "ab"); ok || err != nil {
		t.Fatalf("Agent(ab) on an empty store = %+v, %v, %v; want false, nil", got, ok, err)
	}
	seed := sha256.Sum256([]byte("storetest agent key"))
	pub := ed25519.NewKeyFromSeed(seed[:]).Public().(ed25519.PublicKey)

	full := ctAgent("ab")
	full.PublicKey, full.StatusReason = pub, "looping"
	full.Agent.Status, full.Agent.Autonomy, full.Agent.Environment = identity.StatusSuspended, 3, "test"
	full.Agent.Labels = map[string]string{"team": "support", "cost-center": "4711 ü"}
	full.UpdatedAt = ctT0.Add(time.Hour + time.Microsecond)
	ctAllSet(t, "the full agent record", full, "Declared")
	ctAllSet(t, "the full agent", full.Agent)
	bare := ctAgent("Zed")
	bare.SecretSHA256, bare.Agent.Labels, bare.Agent.Purpose, bare.Agent.Autonomy = "", nil, "", 0
	dashed := ctAgent("a-c")
	dashed.Declared = true // stores ignore it
	for _, r := range []identity.AgentRecord{full, bare, dashed} {
		if err := st.PutAgent(ctx, r); err != nil {
			t.Fatalf("PutAgent(%q): %v", r.Agent.ID, err)
		}
	}
	dashed.Declared = false

	dup := ctAgent("ab")
	dup.Agent.Owner = "mallory"
	ctCheckErr(t, "PutAgent(ab) again", st.PutAgent(ctx, dup), identity.ErrAgentExists)
	ctCheckErr(t, "UpdateAgent(nobody)", st.UpdateAgent(ctx, ctAgent("nobody")), identity.ErrUnknownAgent)
	if _, ok, err := st.Agent(ctx, "nobody"); ok || err != nil {
		t.Errorf("Agent(nobody) after UpdateAgent(nobody) = %v, %v; want false, nil: an update does not create", ok, err)
	}

	// An update changes everything but the id and the creation time.
	upd := ctAgent("Zed")
	upd.Agent.Status, upd.StatusReason, upd.UpdatedAt = identity.StatusRevoked, "compromised", ctT0.Add(2*time.Hour)
	upd.Agent.Capabilities, upd.Agent.Owner, upd.Agent.Labels = []string{"x"}, "bob@example.com", map[string]string{"k": "v"}
	upd.PublicKey, upd.SecretSHA256 = pub, ""
	upd.CreatedAt = ctT0.Add(time.Hour)
	if err := st.UpdateAgent(ctx, upd); err != nil {
		t.Fatalf("UpdateAgent(Zed): %v", err)
	}
	upd.CreatedAt = ctT0

	want := []identity.AgentRecord{upd, dashed, full} // by id, as bytes
	got, err := st.Agents(ctx)
	if err != nil {
		t.Fatalf("Agents: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Agents() (-want +got):\n%s", diff)
	}
	for _, w := range want {
		r, ok, err := st.Agent(ctx, w.Agent.ID)
		if err != nil || !ok {
			t.Errorf("Agent(%q) = _, %v, %v; want the agent", w.Agent.ID, ok, err)
			continue
		}
		if diff := cmp.Diff(w, r); diff != "" {
			t.Errorf("Agent(%q) (-want +got):\n%s", w.Agent.ID, diff)
		}
		ctUTC(t, "Agent("+w.Agent.ID+") times", r.CreatedAt, r.UpdatedAt)
	}
}

func ctAgentsInvalid(t *testing.T, st store.Store) {
	ctx := t.Context()
	stored := ctAgent("ab")
	if err := st.PutAgent(ctx, stored); err != nil {
		t.Fatalf("PutAgent(ab): %v", err)
	}
	for _, tt := range []struct {
		name string
		mod  func(*identity.AgentRecord)
	}{
		{"unknown status", func(r *identity.AgentRecord) { r.Agent.Status = "paused" }},
		{"autonomy 4", func(r *identity.AgentRecord) { r.Agent.Autonomy = 4 }},
		{"autonomy -1", func(r *identity.AgentRecord) { r.Agent.Autonomy = -1 }},
		{"unknown environment", func(r *identity.AgentRecord) { r.Agent.Environment = "staging" }},
	} {
		r := ctAgent("c")
		tt.mod(&r)
		if err := st.PutAgent(ctx, r); err == nil {
			t.Errorf("PutAgent(%s) succeeded, want an error", tt.name)
		}
		r = ctAgent("ab")
		tt.mod(&r)
		if err := st.UpdateAgent(ctx, r); err == nil {
			t.Errorf("UpdateAgent(%s) succeeded, want an error", tt.name)
		}
	}
	got, err := st.Agents(ctx)
	if err != nil || !cmp.Equal([]identity.AgentRecord{stored}, got) {
		t.Errorf("Agents() after refused writes = %+v, %v; want only ab, unchanged", got, err)
	}
}

func ctAgentsPutRace(t *testing.T, st store.Store) {
	ctx := t.Context()
	errs := ctRace(ctRaceN, func(i int) error {
		r := ctAgent("racer")
		r.Agent.Owner = fmt.Sprint("owner-", i)
		return st.PutAgent(ctx, r)
	})
	w := ctOneWinner(t, "PutAgent of one id", errs, identity.ErrAgentExists)
	if got, ok, err := st.Agent(ctx, "racer"); err != nil || !ok || got.Agent.Owner != fmt.Sprint("owner-", w) {
		t.Errorf("Agent(racer) after the race = %+v, %v, %v; want the winner's, owner-%d", got, ok, err, w)
	}
}

func ctTaskCases() []ctCase {
	return []ctCase{
		{"PutEndRead", ctTasks},
		{"EndRace", ctTasksEndRace},
	}
}

func ctTasks(t *testing.T, st store.Store) {
	ctx := t.Context()
	if got, err := st.Tasks(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Tasks() on an empty store = %v, %v; want none", got, err)
	}
	if got, ok, err := st.Task(ctx, "ab"); ok || err != nil {
		t.Fatalf("Task(ab) on an empty store = %+v, %v, %v; want false, nil", got, ok, err)
	}
	open := identity.TaskRecord{ID: "ab", Agent: "mail", User: "carol", Tools: []string{"read_file", "send_email"}, CreatedAt: ctT0, ExpiresAt: ctT0.Add(time.Hour)}
	bare := identity.TaskRecord{ID: "Zed", Agent: "ops", CreatedAt: ctT0, ExpiresAt: ctT0.Add(time.Minute)}
	done := identity.TaskRecord{
		ID: "a-c", Agent: "mail", User: "dana", Tools: []string{"x"}, CreatedAt: ctT0, ExpiresAt: ctT0.Add(time.Hour),
		EndedAt: ctT0.Add(time.Minute), EndedBy: "op", EndReason: "finished early",
	}
	ctAllSet(t, "the ended task", done)
	for _, r := range []identity.TaskRecord{open, bare, done} {
		if err := st.PutTask(ctx, r); err != nil {
			t.Fatalf("PutTask(%q): %v", r.ID, err)
		}
	}
	dup := open
	dup.Agent = "mallory"
	ctCheckErr(t, "PutTask(ab) again", st.PutTask(ctx, dup), identity.ErrTaskExists)
	ctCheckErr(t, "EndTask(nope)", st.EndTask(ctx, "nope", "op", "", ctT0), identity.ErrUnknownTask)
	at := ctT0.Add(time.Minute + 123*time.Microsecond)
	if err := st.EndTask(ctx, open.ID, "op", "done", at); err != nil {
		t.Fatalf("EndTask(%q): %v", open.ID, err)
	}
	ctCheckErr(t, "EndTask(ab) again", st.EndTask(ctx, open.ID, "op2", "again", at.Add(time.Hour)), identity.ErrTaskEnded)
	ctCheckErr(t, "EndTask(a task stored ended)", st.EndTask(ctx, done.ID, "op2", "again", at), identity.ErrTaskEnded)
	ended := open
	ended.EndedAt, ended.EndedBy, ended.EndReason = at, "op", "done"

	want := []identity.TaskRecord{bare, done, ended} // by id, as bytes
	got, err := st.Tasks(ctx)
	if err != nil {
		t.Fatalf("Tasks: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Tasks() (-want +got):\n%s", diff)
	}
	for _, w := range want {
		r, ok, err := st.Task(ctx, w.ID)
		if err != nil || !ok {
			t.Errorf("Task(%q) = _, %v, %v; want the task", w.ID, ok, err)
			continue
		}
		if diff := cmp.Diff(w, r); diff != "" {
			t.Errorf("Task(%q) (-want +got):\n%s", w.ID, diff)
		}
		ctUTC(t, "Task("+w.ID+") times", r.CreatedAt, r.ExpiresAt, r.EndedAt)
	}
}

func ctTasksEndRace(t *testing.T, st store.Store) {
	ctx := t.Context()
	if err := st.PutTask(ctx, identity.TaskRecord{ID: "tsk", Agent: "mail", CreatedAt: ctT0, ExpiresAt: ctT0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	errs := ctRace(ctRaceN, func(i int) error {
		return st.EndTask(ctx, "tsk", fmt.Sprint("op-", i), "race", ctT0.Add(time.Duration(i+1)*time.Second))
	})
	w := ctOneWinner(t, "EndTask of one task", errs, identity.ErrTaskEnded)
	got, ok, err := st.Task(ctx, "tsk")
	if err != nil || !ok || got.EndedBy != fmt.Sprint("op-", w) || !got.EndedAt.Equal(ctT0.Add(time.Duration(w+1)*time.Second)) {
		t.Errorf("Task(tsk) after the race = %+v, %v, %v; want ended by the winner, op-%d", got, ok, err, w)
	}
}

func ctSigningKeyCases() []ctCase {
	return []ctCase{{"PutRetireRead", ctSigningKeys}}
}

func ctSigningKeys(t *testing.T, st store.Store) {
	ctx := t.Context()
	if got, err := st.SigningKeys(ctx); err != nil || len(got) != 0 {
		t.Fatalf("SigningKeys() on an empty store = %v, %v; want none", got, err)
	}
	binary := make([]byte, 256) // every byte value, NUL and invalid UTF-8 included
	for i := range binary {
		binary[i] = byte(i)
	}
	k1 := store.SigningKeyRecord{ID: "k1", Private: []byte("private-1"), Created: ctT0}
	k0 := store.SigningKeyRecord{ID: "k0", Private: binary, Created: ctT0} // same time as k1: by id
	k2 := store.SigningKeyRecord{ID: "k2", Private: []byte("private-2"), Created: ctT0.Add(time.Hour)}
	old := store.SigningKeyRecord{ID: "old", Private: []byte{0}, Created: ctT0.Add(-time.Hour), Retired: ctT0.Add(-time.Minute)}
	ctAllSet(t, "the retired signing key", old)
	for _, k := range []store.SigningKeyRecord{k2, k1, old, k0} {
		if err := st.PutSigningKey(ctx, k); err != nil {
			t.Fatalf("PutSigningKey(%q): %v", k.ID, err)
		}
	}
	for _, tt := range []struct {
		name string
		k    store.SigningKeyRecord
	}{
		{"id taken", store.SigningKeyRecord{ID: "k1", Private: []byte("other"), Created: ctT0}},
		{"no id", store.SigningKeyRecord{Private: []byte{1}, Created: ctT0}},
		{"no private key", store.SigningKeyRecord{ID: "k3", Created: ctT0}},
	} {
		if err := st.PutSigningKey(ctx, tt.k); err == nil {
			t.Errorf("PutSigningKey(%s) succeeded, want an error", tt.name)
		}
	}
	ctCheckErr(t, "RetireSigningKey(k9)", st.RetireSigningKey(ctx, "k9", ctT0), store.ErrUnknownSigningKey)
	retired := ctT0.Add(2*time.Hour + time.Microsecond)
	if err := st.RetireSigningKey(ctx, "k1", retired); err != nil {
		t.Fatalf("RetireSigningKey(k1): %v", err)
	}
	// Retiring again keeps the first time.
	if err := st.RetireSigningKey(ctx, "k1", retired.Add(time.Hour)); err != nil {
		t.Fatalf("RetireSigningKey(k1) again: %v", err)
	}
	if err := st.RetireSigningKey(ctx, "old", retired); err != nil {
		t.Fatalf("RetireSigningKey(old), retired when stored: %v", err)
	}
	k1.Retired = retired
	want := []store.SigningKeyRecord{old, k0, k1, k2} // oldest first, then by id
	got, err := st.SigningKeys(ctx)
	if err != nil {
		t.Fatalf("SigningKeys: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SigningKeys() (-want +got):\n%s", diff)
	}
	for _, k := range got {
		ctUTC(t, "signing key "+k.ID+" times", k.Created, k.Retired)
	}
}

func ctPinCases() []ctCase {
	return []ctCase{{"SetRead", ctPins}}
}

func ctPins(t *testing.T, st store.Store) {
	ctx := t.Context()
	if p, ok, err := st.Pin(ctx, "send_email"); ok || err != nil {
		t.Fatalf("Pin(send_email) on an empty store = %+v, %v, %v; want false, nil", p, ok, err)
	}
	if got, err := st.Pins(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Pins() on an empty store = %v, %v; want none", got, err)
	}
	// Not UTC: the store gives it back in UTC.
	at := time.Date(2026, 3, 1, 10, 0, 0, 123456000, time.FixedZone("CET", 3600))
	mail := registry.Pin{
		Tool: "send_email", Upstream: "mail", Hash: "sha256:aa",
		Definition: []byte(`{"name":"send_email","description":"Sends mail — «vite» <now>"}`), ApprovedBy: "alice", ApprovedAt: at,
	}
	ctAllSet(t, "the full pin", mail)
	search := registry.Pin{Tool: "search", Upstream: "web", Hash: "sha256:bb", ApprovedAt: at}
	upper := registry.Pin{Tool: "Zed", Upstream: "web", Hash: "sha256:cc", ApprovedAt: at.Add(time.Second)}
	for _, p := range []registry.Pin{mail, search, upper} {
		if err := st.SetPin(ctx, p); err != nil {
			t.Fatalf("SetPin(%q): %v", p.Tool, err)
		}
	}
	got, ok, err := st.Pin(ctx, "send_email")
	if err != nil || !ok {
		t.Fatalf("Pin(send_email) = _, %v, %v", ok, err)
	}
	if diff := cmp.Diff(mail, got); diff != "" {
		t.Errorf("Pin(send_email) (-want +got):\n%s", diff)
	}
	ctUTC(t, "Pin(send_email).ApprovedAt", got.ApprovedAt)
	if p, ok, err := st.Pin(ctx, "send"); ok || err != nil {
		t.Errorf("Pin(send), a prefix = %+v, %v, %v; want false, nil", p, ok, err)
	}

	// SetPin replaces the pin of a tool.
	mail.Upstream, mail.Hash, mail.Definition, mail.ApprovedBy, mail.ApprovedAt = "mail2", "sha256:dd", []byte(`{"name":"send_email","v":2}`), "bob", at.Add(time.Hour)
	if err := st.SetPin(ctx, mail); err != nil {
		t.Fatalf("SetPin(send_email) to replace it: %v", err)
	}
	all, err := st.Pins(ctx)
	if err != nil {
		t.Fatalf("Pins: %v", err)
	}
	if diff := cmp.Diff([]registry.Pin{upper, search, mail}, all); diff != "" { // by tool, as bytes
		t.Errorf("Pins() (-want +got):\n%s", diff)
	}
	for _, p := range all {
		ctUTC(t, "Pins() "+p.Tool+".ApprovedAt", p.ApprovedAt)
	}
	for name, p := range map[string]registry.Pin{
		"no hash": {Tool: "x", ApprovedAt: at},
		"no tool": {Hash: "sha256:ee", ApprovedAt: at},
	} {
		if err := st.SetPin(ctx, p); err == nil {
			t.Errorf("SetPin(%s) succeeded, want an error", name)
		}
	}
	if got, err := st.Pins(ctx); err != nil || len(got) != 3 {
		t.Errorf("Pins() after refused pins = %d pins, %v; want 3", len(got), err)
	}
}
