package secrets_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/secrets"
	"github.com/chaperone-dev/chaperone/internal/store"
	"github.com/chaperone-dev/chaperone/internal/store/pgtest"
	"github.com/chaperone-dev/chaperone/internal/store/postgres"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite/sqlitetest"
	"github.com/chaperone-dev/chaperone/internal/testclock"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 7, 123456000, time.UTC)

// recorder is an audit log's Append.
type recorder = func(ctx context.Context, e *audit.Event) error

// backend opens a fresh store and its audit log.
type backend struct {
	name string
	open func(t testing.TB) (store.Store, recorder)
}

// backends are SQLite, always, and PostgreSQL when CHAPERONE_TEST_POSTGRES is set.
func backends() []backend {
	bs := []backend{{"sqlite", func(t testing.TB) (store.Store, recorder) {
		db, log := sqlitetest.Open(t)
		return db, log.Append
	}}}
	if os.Getenv(pgtest.EnvDSN) != "" || os.Getenv(pgtest.EnvRequire) == "1" {
		bs = append(bs, backend{"postgres", func(t testing.TB) (store.Store, recorder) {
			db, err := postgres.Open(t.Context(), pgtest.DSN(t), postgres.Options{})
			if err != nil {
				t.Fatalf("postgres.Open: %v", err)
			}
			log, err := audit.NewLog(t.Context(), db, audit.LogOptions{})
			if err != nil {
				db.Close()
				t.Fatalf("audit.NewLog: %v", err)
			}
			t.Cleanup(func() {
				if err := log.Close(context.Background()); err != nil {
					t.Errorf("audit Log.Close: %v", err)
				}
				db.Close()
			})
			return db, log.Append
		}})
	}
	return bs
}

// forEachBackend runs f, in parallel, against a fresh store of every backend.
func forEachBackend(t *testing.T, f func(t *testing.T, st store.Store, rec recorder)) {
	t.Helper()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			st, rec := b.open(t)
			f(t, st, rec)
		})
	}
}

// keyrings holds the keyring in force, as a reloading gateway does.
type keyrings struct {
	p atomic.Pointer[secrets.Keyring]
}

func newKeyrings(k *secrets.Keyring) *keyrings {
	r := &keyrings{}
	r.p.Store(k)
	return r
}

func (r *keyrings) load() *secrets.Keyring { return r.p.Load() }
func (r *keyrings) set(k *secrets.Keyring) { r.p.Store(k) }

func newVault(tb testing.TB, o secrets.VaultOptions) *secrets.Vault {
	tb.Helper()
	v, err := secrets.NewVault(o)
	if err != nil {
		tb.Fatalf("NewVault: %v", err)
	}
	return v
}

// events returns the audit events of kinds that start with "secret".
func secretEvents(tb testing.TB, st store.Store) []audit.Event {
	tb.Helper()
	es, err := st.TailEvents(tb.Context(), 1000)
	if err != nil {
		tb.Fatalf("TailEvents: %v", err)
	}
	var out []audit.Event
	for _, e := range es {
		if strings.HasPrefix(e.Kind, "secret") {
			out = append(out, e)
		}
	}
	return out
}

func reveal(tb testing.TB, v *secrets.Vault, name string) string {
	tb.Helper()
	val, err := v.Reveal(tb.Context(), name)
	if err != nil {
		tb.Fatalf("Reveal(%q): %v", name, err)
	}
	return string(val.Bytes())
}

func TestVault(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, st store.Store, rec recorder) {
		ctx := t.Context()
		clock := testclock.New(t0)
		kr := newKeyrings(mustKeyring(t, "k1 "+std(key1)))
		v := newVault(t, secrets.VaultOptions{Store: st, Keyring: kr.load, Audit: rec, Now: clock.Now})

		m, err := v.Set(ctx, "crm-key", []byte(plaintext), "CRM production key", "cli:alice")
		if err != nil {
			t.Fatalf("Set(crm-key): %v", err)
		}
		want := secrets.Meta{Name: "crm-key", Description: "CRM production key", KeyID: "k1", Version: 1, Created: t0, Updated: t0, UpdatedBy: "cli:alice"}
		if diff := cmp.Diff(want, m); diff != "" {
			t.Errorf("Set(crm-key) (-want +got):\n%s", diff)
		}
		if got := reveal(t, v, "crm-key"); got != plaintext {
			t.Errorf("Reveal(crm-key) = %q, want the value set", got)
		}
		// The store holds ciphertext only.
		r, _, _ := st.Secret(ctx, "crm-key")
		if strings.Contains(string(r.Ciphertext), plaintext) || strings.Contains(string(r.Ciphertext), "hunter2") {
			t.Error("the stored ciphertext holds the plaintext")
		}

		// Replaced: a new version, a new time and author, Created kept; a fresh vault
		// (another replica, empty cache) reads it too.
		clock.Advance(time.Minute)
		m, err = v.Set(ctx, "crm-key", []byte("second-value"), "", "admin-api")
		want.Version, want.Updated, want.UpdatedBy, want.Description = 2, t0.Add(time.Minute), "admin-api", ""
		if err != nil || !cmp.Equal(want, m) {
			t.Errorf("Set(crm-key) again = %+v, %v; want %+v", m, err, want)
		}
		if got := reveal(t, v, "crm-key"); got != "second-value" {
			t.Errorf("Reveal(crm-key) after the replace = %q, want second-value", got)
		}
		other := newVault(t, secrets.VaultOptions{Store: st, Keyring: kr.load, Audit: rec})
		if got := reveal(t, other, "crm-key"); got != "second-value" {
			t.Errorf("another vault's Reveal(crm-key) = %q, want second-value", got)
		}
		if _, err := v.Set(ctx, "billing", []byte("b"), "", "admin-api"); err != nil {
			t.Fatal(err)
		}
		list, err := v.List(ctx)
		if err != nil || len(list) != 2 || list[0].Name != "billing" || !cmp.Equal(list[1], want) {
			t.Errorf("List() = %+v, %v; want billing, then %+v", list, err, want)
		}
		if got, err := v.Meta(ctx, "crm-key"); err != nil || !cmp.Equal(got, want) {
			t.Errorf("Meta(crm-key) = %+v, %v; want %+v", got, err, want)
		}

		if err := v.Delete(ctx, "crm-key", "cli:bob"); err != nil {
			t.Fatalf("Delete(crm-key): %v", err)
		}
		for call, err := range map[string]error{
			"Reveal(crm-key) after Delete": func() error { _, err := v.Reveal(ctx, "crm-key"); return err }(),
			"Meta(crm-key) after Delete":   func() error { _, err := v.Meta(ctx, "crm-key"); return err }(),
			"Delete(crm-key) again":        v.Delete(ctx, "crm-key", "cli:bob"),
			"Reveal(nobody)":               func() error { _, err := v.Reveal(ctx, "nobody"); return err }(),
		} {
			if !errors.Is(err, secrets.ErrUnknownSecret) {
				t.Errorf("%s = %v, want ErrUnknownSecret", call, err)
			}
		}

		// The audit log names secrets, versions, keys and people, never a value.
		es := secretEvents(t, st)
		type ev struct{ Kind, Message, Detail string }
		var got []ev
		for _, e := range es {
			got = append(got, ev{e.Kind, e.Message, e.Detail})
			if e.User != "" || e.Agent != "" {
				t.Errorf("event %d (%s) has user %q, agent %q; want neither", e.Seq, e.Kind, e.User, e.Agent)
			}
			b, _ := json.Marshal(e)
			for _, val := range []string{plaintext, "hunter2", "second-value"} {
				if strings.Contains(string(b), val) {
					t.Errorf("event %d holds a value: %s", e.Seq, b)
				}
			}
		}
		wantEvents := []ev{
			{audit.KindSecretSet, "secret crm-key set by cli:alice", "secret=crm-key version=1 key=k1"},
			{audit.KindSecretSet, "secret crm-key set by admin-api", "secret=crm-key version=2 key=k1"},
			{audit.KindSecretSet, "secret billing set by admin-api", "secret=billing version=1 key=k1"},
			{audit.KindSecretDeleted, "secret crm-key deleted by cli:bob", "secret=crm-key version=2"},
		}
		if diff := cmp.Diff(wantEvents, got); diff != "" {
			t.Errorf("audit events (-want +got):\n%s", diff)
		}
	})
}

// TestVaultLeavesNoPlaintext searches every file of a SQLite gateway's data directory,
// write-ahead log included, for the value after it was set, revealed and audited.
func TestVaultLeavesNoPlaintext(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db, err := sqlite.Open(t.Context(), filepath.Join(dir, "chaperone.db"))
	if err != nil {
		t.Fatal(err)
	}
	log, err := audit.NewLog(t.Context(), db, audit.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v := newVault(t, secrets.VaultOptions{Store: db, Keyring: newKeyrings(mustKeyring(t, "k1 "+std(key1))).load, Audit: log.Append})
	for i := range 20 {
		name := fmt.Sprintf("s%d", i)
		if _, err := v.Set(t.Context(), name, []byte(plaintext), "a key", "admin-api"); err != nil {
			t.Fatal(err)
		}
		reveal(t, v, name)
	}
	log.Close(t.Context())
	db.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) == 0 {
		t.Fatal("no database files")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "hunter2") {
			t.Errorf("%s holds the plaintext", filepath.Base(f))
		}
	}
}

func TestVaultRefusesBadInput(t *testing.T) {
	t.Parallel()
	st, rec := backends()[0].open(t)
	v := newVault(t, secrets.VaultOptions{Store: st, Keyring: newKeyrings(mustKeyring(t, "k1 "+std(key1))).load, Audit: rec})
	ctx := t.Context()
	for _, tt := range []struct {
		name, sname, value, desc, by, wantErr string
	}{
		{"empty name", "", "v", "", "op", "secret name must be 1 to 64 bytes, got 0"},
		{"bad name", "CRM", "v", "", "op", "byte 0 is not allowed"},
		{"65-byte name", strings.Repeat("a", 65), "v", "", "op", "got 65"},
		{"empty value", "crm", "", "", "op", "value must be 1 to 65536 bytes, got 0"},
		{"oversized value", "crm", strings.Repeat("v", secrets.MaxValue+1), "", "op", "got 65537"},
		{"long description", "crm", "v", strings.Repeat("d", 201), "op", "description is 201 bytes, more than 200"},
		{"newline in description", "crm", "v", "a\nb", "op", "description holds a control character (U+000A) at byte 1"},
		{"no one", "crm", "v", "", "", "updated by is empty"},
		{"129-byte by", "crm", "v", "", strings.Repeat("b", 129), "updated by is 129 bytes"},
		{"by not UTF-8", "crm", "v", "", "\xff", "updated by is not valid UTF-8"},
	} {
		_, err := v.Set(ctx, tt.sname, []byte(tt.value), tt.desc, tt.by)
		if !errors.Is(err, secrets.ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: Set = %v, want an ErrInvalid containing %q", tt.name, err, tt.wantErr)
		}
	}
	if _, err := v.Set(ctx, "crm", make([]byte, secrets.MaxValue), "", "op"); err != nil {
		t.Errorf("Set(64 KiB) = %v, want success", err)
	}
	for call, err := range map[string]error{
		"Delete(bad name)": v.Delete(ctx, "a/b", "op"),
		"Delete(no one)":   v.Delete(ctx, "crm", ""),
		"Rotate(no one)":   func() error { _, err := v.Rotate(ctx, ""); return err }(),
		"Reveal(bad name)": func() error { _, err := v.Reveal(ctx, "A"); return err }(),
		"Meta(bad name)":   func() error { _, err := v.Meta(ctx, ""); return err }(),
	} {
		if !errors.Is(err, secrets.ErrInvalid) {
			t.Errorf("%s = %v, want ErrInvalid", call, err)
		}
	}
	if es := secretEvents(t, st); len(es) != 1 {
		t.Errorf("refused calls recorded events: %+v; want the one set", es)
	}
	if list, _ := v.List(ctx); len(list) != 1 {
		t.Errorf("List() = %+v, want the one secret set", list)
	}
}

func TestNewVault(t *testing.T) {
	t.Parallel()
	st, rec := backends()[0].open(t)
	kr := func() *secrets.Keyring { return nil }
	for _, tt := range []struct {
		name    string
		o       secrets.VaultOptions
		wantErr string
	}{
		{"no store", secrets.VaultOptions{Keyring: kr, Audit: rec}, "Store is required"},
		{"no keyring", secrets.VaultOptions{Store: st, Audit: rec}, "Keyring is required"},
		{"no audit", secrets.VaultOptions{Store: st, Keyring: kr}, "Audit is required"},
		{"long TTL", secrets.VaultOptions{Store: st, Keyring: kr, Audit: rec, CacheTTL: 2 * time.Hour}, "cache TTL 2h0m0s is more than 1h0m0s"},
		{"negative entries", secrets.VaultOptions{Store: st, Keyring: kr, Audit: rec, CacheEntries: -1}, "cache entries must be 0"},
		{"too many entries", secrets.VaultOptions{Store: st, Keyring: kr, Audit: rec, CacheEntries: 1<<20 + 1}, "got 1048577"},
	} {
		if v, err := secrets.NewVault(tt.o); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: NewVault = %v, %v; want an error containing %q", tt.name, v, err, tt.wantErr)
		}
	}
	// Without a keyring, nothing seals, opens or rotates, and nothing is recorded.
	v := newVault(t, secrets.VaultOptions{Store: st, Keyring: kr, Audit: rec})
	if _, err := v.Set(t.Context(), "crm", []byte("v"), "", "op"); !errors.Is(err, secrets.ErrNoKeyring) {
		t.Errorf("Set without a keyring = %v, want ErrNoKeyring", err)
	}
	if _, err := v.Rotate(t.Context(), "op"); !errors.Is(err, secrets.ErrNoKeyring) {
		t.Errorf("Rotate without a keyring = %v, want ErrNoKeyring", err)
	}
	if es := secretEvents(t, st); len(es) != 0 {
		t.Errorf("calls without a keyring recorded %+v", es)
	}
}

// TestVaultAuditFailure checks that no change is made unless its event is recorded.
func TestVaultAuditFailure(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, st store.Store, rec recorder) {
		ctx := t.Context()
		var fail atomic.Bool
		errAudit := errors.New("audit disk full")
		flaky := func(ctx context.Context, e *audit.Event) error {
			if fail.Load() {
				return errAudit
			}
			return rec(ctx, e)
		}
		kr := newKeyrings(mustKeyring(t, "k1 "+std(key1)))
		v := newVault(t, secrets.VaultOptions{Store: st, Keyring: kr.load, Audit: flaky})
		if _, err := v.Set(ctx, "crm", []byte("old"), "", "op"); err != nil {
			t.Fatal(err)
		}
		before, _, _ := st.Secret(ctx, "crm")

		fail.Store(true)
		for call, err := range map[string]error{
			"Set(new)":    func() error { _, err := v.Set(ctx, "new", []byte("v"), "", "op"); return err }(),
			"Set(crm)":    func() error { _, err := v.Set(ctx, "crm", []byte("changed"), "", "op"); return err }(),
			"Delete(crm)": v.Delete(ctx, "crm", "op"),
			"Rotate": func() error {
				kr.set(mustKeyring(t, "k2 "+std(key2), "k1 "+std(key1)))
				_, err := v.Rotate(ctx, "op")
				return err
			}(),
		} {
			if !errors.Is(err, secrets.ErrNotAudited) || !errors.Is(err, errAudit) {
				t.Errorf("%s with a failing audit log = %v, want ErrNotAudited wrapping the log's error", call, err)
			}
		}
		if _, ok, _ := st.Secret(ctx, "new"); ok {
			t.Error("Set(new) stored the secret though its event was not recorded")
		}
		if after, ok, _ := st.Secret(ctx, "crm"); !ok || !cmp.Equal(before, after) {
			t.Errorf("crm after refused changes = %+v, %v; want it untouched: %+v", after, ok, before)
		}
		if got := reveal(t, v, "crm"); got != "old" {
			t.Errorf("Reveal(crm) = %q, want old", got)
		}
		fail.Store(false)
		if res, err := v.Rotate(ctx, "op"); err != nil || res.Reencrypted != 1 {
			t.Errorf("Rotate once the log works = %+v, %v; want 1 re-encrypted", res, err)
		}
	})
}

// countingStore counts the reads that reach the store.
type countingStore struct {
	secrets.Store
	reads atomic.Int64
}

func (c *countingStore) Secret(ctx context.Context, name string) (secrets.Record, bool, error) {
	c.reads.Add(1)
	return c.Store.Secret(ctx, name)
}

func TestVaultCache(t *testing.T) {
	t.Parallel()
	st, rec := backends()[0].open(t)
	ctx := t.Context()
	clock := testclock.New(t0)
	kr := newKeyrings(mustKeyring(t, "k1 "+std(key1)))
	a := &countingStore{Store: st}
	b := &countingStore{Store: st}
	va := newVault(t, secrets.VaultOptions{Store: a, Keyring: kr.load, Audit: rec, Now: clock.Now, CacheTTL: time.Minute})
	vb := newVault(t, secrets.VaultOptions{Store: b, Keyring: kr.load, Audit: rec, Now: clock.Now, CacheTTL: time.Minute})
	wantReads := func(what string, c *countingStore, n int64) {
		t.Helper()
		if got := c.reads.Swap(0); got != n {
			t.Errorf("%s: %d store reads, want %d", what, got, n)
		}
	}

	if _, err := va.Set(ctx, "crm", []byte("one"), "", "op"); err != nil {
		t.Fatal(err)
	}
	a.reads.Store(0)
	// The vault that set it knows it; the other reads it once, then answers from memory.
	for range 3 {
		if reveal(t, va, "crm") != "one" || reveal(t, vb, "crm") != "one" {
			t.Fatal("Reveal(crm) != one")
		}
	}
	wantReads("va after its own Set", a, 0)
	wantReads("vb, three reveals", b, 1)

	// A change through va is seen by va at once, and by vb once its entry expires.
	if _, err := va.Set(ctx, "crm", []byte("two"), "", "op"); err != nil {
		t.Fatal(err)
	}
	if got := reveal(t, va, "crm"); got != "two" {
		t.Errorf("va.Reveal after va.Set = %q, want two", got)
	}
	if got := reveal(t, vb, "crm"); got != "one" {
		t.Errorf("vb.Reveal within the TTL = %q, want the cached one", got)
	}
	clock.Advance(time.Minute)
	if got := reveal(t, vb, "crm"); got != "two" {
		t.Errorf("vb.Reveal after the TTL = %q, want two", got)
	}
	wantReads("vb after the TTL", b, 1)
	// An expired entry whose version still matches is revalidated by one read, not
	// reopened; the same version and nonce mean the same seal.
	clock.Advance(time.Minute)
	if got := reveal(t, vb, "crm"); got != "two" {
		t.Errorf("vb.Reveal revalidated = %q, want two", got)
	}
	wantReads("vb revalidating", b, 1)

	// Deleted and set again, the secret starts over at version 1 with another value: a
	// vault that cached version 1 must not take the old value for the new one.
	if _, err := va.Set(ctx, "fresh", []byte("first"), "", "op"); err != nil {
		t.Fatal(err)
	}
	reveal(t, vb, "fresh")
	if err := va.Delete(ctx, "fresh", "op"); err != nil {
		t.Fatal(err)
	}
	if _, err := va.Reveal(ctx, "fresh"); !errors.Is(err, secrets.ErrUnknownSecret) {
		t.Errorf("va.Reveal(fresh) after va.Delete = %v, want ErrUnknownSecret at once", err)
	}
	if m, err := va.Set(ctx, "fresh", []byte("second"), "", "op"); err != nil || m.Version != 1 {
		t.Fatalf("Set(fresh) after delete = %+v, %v; want version 1", m, err)
	}
	clock.Advance(time.Minute)
	if got := reveal(t, vb, "fresh"); got != "second" {
		t.Errorf("vb.Reveal(fresh) after delete and set = %q, want second", got)
	}
	// A deleted secret is forgotten once its entry expires.
	if err := va.Delete(ctx, "fresh", "op"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	if _, err := vb.Reveal(ctx, "fresh"); !errors.Is(err, secrets.ErrUnknownSecret) {
		t.Errorf("vb.Reveal(fresh) after delete and TTL = %v, want ErrUnknownSecret", err)
	}

	// With the cache off, every Reveal reads.
	vc := newVault(t, secrets.VaultOptions{Store: b, Keyring: kr.load, Audit: rec, Now: clock.Now, CacheTTL: -1})
	b.reads.Store(0)
	for range 3 {
		reveal(t, vc, "crm")
	}
	wantReads("no cache, three reveals", b, 3)
}

func TestVaultCacheBound(t *testing.T) {
	t.Parallel()
	st, rec := backends()[0].open(t)
	kr := newKeyrings(mustKeyring(t, "k1 "+std(key1)))
	setter := newVault(t, secrets.VaultOptions{Store: st, Keyring: kr.load, Audit: rec})
	for i := range 4 {
		if _, err := setter.Set(t.Context(), fmt.Sprintf("s%d", i), []byte{byte('a' + i)}, "", "op"); err != nil {
			t.Fatal(err)
		}
	}
	c := &countingStore{Store: st}
	v := newVault(t, secrets.VaultOptions{Store: c, Keyring: kr.load, Audit: rec, CacheEntries: 2})
	// With room for two, cycling through four reads every time: the entry evicted is
	// always the oldest, which is the next one asked for.
	for range 3 {
		for i := range 4 {
			if got := reveal(t, v, fmt.Sprintf("s%d", i)); got != string(rune('a'+i)) {
				t.Fatalf("Reveal(s%d) = %q", i, got)
			}
		}
	}
	if n := c.reads.Load(); n != 3*4 {
		t.Errorf("%d store reads for 12 reveals of 4 secrets with 2 cache entries, want 12: the cache is not bounded or does not evict the oldest", n)
	}
	// Revealing the two cached last reads nothing.
	before := c.reads.Load()
	for _, name := range []string{"s2", "s3"} {
		reveal(t, v, name)
	}
	if n := c.reads.Load() - before; n != 0 {
		t.Errorf("%d store reads revealing the two secrets cached last, want 0", n)
	}
}

// TestVaultRotateWhileServing rotates while 8 goroutines reveal and 1 sets: no reveal
// fails or sees a wrong value, and afterwards every secret is under the new key, so the
// old one can be dropped.
func TestVaultRotateWhileServing(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, st store.Store, rec recorder) {
		ctx := t.Context()
		kr := newKeyrings(mustKeyring(t, "k1 "+std(key1)))
		// The cache is off, so that every reveal opens a row as it is at that moment.
		v := newVault(t, secrets.VaultOptions{Store: st, Keyring: kr.load, Audit: rec, CacheTTL: -1})
		const n = 24
		want := map[string]string{}
		for i := range n {
			name := fmt.Sprintf("s%02d", i)
			want[name] = fmt.Sprintf("value-%02d-%s", i, plaintext)
			if _, err := v.Set(ctx, name, []byte(want[name]), "", "op"); err != nil {
				t.Fatal(err)
			}
		}
		const hot = "s00"                                        // the secret the setter changes
		kr.set(mustKeyring(t, "k2 "+std(key2), "k1 "+std(key1))) // the key file reloaded: k2 is primary

		var (
			wg      sync.WaitGroup
			started sync.WaitGroup
			stop    = make(chan struct{})
			failed  atomic.Int64
			reveals atomic.Int64
			lastSet atomic.Pointer[string]
		)
		report := func(format string, args ...any) {
			if failed.Add(1) <= 5 {
				t.Errorf(format, args...)
			}
		}
		for g := range 8 {
			started.Add(1)
			wg.Go(func() {
				for i := 0; ; i++ {
					name := fmt.Sprintf("s%02d", (g*7+i)%n)
					val, err := v.Reveal(ctx, name)
					switch {
					case err != nil:
						report("Reveal(%s) during rotation: %v", name, err)
					case name == hot && !strings.HasPrefix(string(val.Bytes()), "value-00-") && !strings.HasPrefix(string(val.Bytes()), "set-"):
						report("Reveal(%s) during rotation = %q, not a value it was set to", name, val.Bytes())
					case name != hot && string(val.Bytes()) != want[name]:
						report("Reveal(%s) during rotation = %q, want %q", name, val.Bytes(), want[name])
					}
					reveals.Add(1)
					if i == 0 {
						started.Done()
					}
					select {
					case <-stop:
						return
					default:
					}
				}
			})
		}
		started.Add(1)
		wg.Go(func() {
			for j := 0; ; j++ {
				s := fmt.Sprintf("set-%d", j)
				if _, err := v.Set(ctx, hot, []byte(s), "", "cli:setter"); err != nil {
					report("Set(%s) during rotation: %v", hot, err)
				} else {
					lastSet.Store(&s)
				}
				if j == 0 {
					started.Done()
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		})
		started.Wait() // every goroutine is at work
		res, err := v.Rotate(ctx, "cli:alice")
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatalf("Rotate: %v", err)
		}
		// The setter had set the hot secret under k2 before the rotation began.
		if want := (secrets.RotateResult{Primary: "k2", Reencrypted: n - 1, Current: 1}); res != want {
			t.Errorf("Rotate = %+v, want %+v", res, want)
		}
		if reveals.Load() < 8 {
			t.Errorf("only %d reveals ran", reveals.Load())
		}
		want[hot] = *lastSet.Load()

		recs, err := st.Secrets(ctx)
		if err != nil || len(recs) != n {
			t.Fatalf("Secrets() = %d records, %v; want %d", len(recs), err, n)
		}
		for _, r := range recs {
			if r.KeyID != "k2" {
				t.Errorf("secret %s is under %q after the rotation, want k2", r.Name, r.KeyID)
			}
		}
		// The old key can go: a vault with the new key alone opens everything, and one
		// with the old key alone opens nothing.
		newOnly := newVault(t, secrets.VaultOptions{Store: st, Keyring: newKeyrings(mustKeyring(t, "k2 "+std(key2))).load, Audit: rec})
		oldOnly := newVault(t, secrets.VaultOptions{Store: st, Keyring: newKeyrings(mustKeyring(t, "k1 "+std(key1))).load, Audit: rec})
		for name, w := range want {
			if got := reveal(t, newOnly, name); got != w {
				t.Errorf("Reveal(%s) with k2 alone = %q, want %q", name, got, w)
			}
			if _, err := oldOnly.Reveal(ctx, name); !errors.Is(err, secrets.ErrUnknownKey) {
				t.Errorf("Reveal(%s) with k1 alone = %v, want ErrUnknownKey", name, err)
			}
		}
		// The rotation is on record, with its counts.
		var rotated []audit.Event
		for _, e := range secretEvents(t, st) {
			if e.Kind == audit.KindSecretsRotated {
				rotated = append(rotated, e)
			}
		}
		wantDetail := fmt.Sprintf("primary=k2 to_reencrypt=%d already_current=1", n-1)
		if len(rotated) != 1 || rotated[0].Detail != wantDetail || rotated[0].Message != "secrets re-encrypted under key k2 by cli:alice" {
			t.Errorf("rotation events = %+v, want one with detail %q", rotated, wantDetail)
		}
		if again, err := v.Rotate(ctx, "cli:alice"); err != nil || again.Reencrypted != 0 || again.Current != n {
			t.Errorf("Rotate again = %+v, %v; want all %d current", again, err, n)
		}
	})
}

// TestVaultRotateReplicas rotates on two replicas at once: every secret is re-encrypted
// by exactly one of them.
func TestVaultRotateReplicas(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, st store.Store, rec recorder) {
		ctx := t.Context()
		kr := newKeyrings(mustKeyring(t, "k1 "+std(key1)))
		seed := newVault(t, secrets.VaultOptions{Store: st, Keyring: kr.load, Audit: rec})
		const n = 30
		for i := range n {
			if _, err := seed.Set(ctx, fmt.Sprintf("s%02d", i), []byte(fmt.Sprint("v", i)), "", "op"); err != nil {
				t.Fatal(err)
			}
		}
		kr.set(mustKeyring(t, "k2 "+std(key2), "k1 "+std(key1)))
		var results [2]secrets.RotateResult
		var errs [2]error
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range 2 {
			v := newVault(t, secrets.VaultOptions{Store: st, Keyring: kr.load, Audit: rec})
			wg.Go(func() {
				<-start
				results[i], errs[i] = v.Rotate(ctx, fmt.Sprintf("replica-%d", i))
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("replica %d: Rotate: %v", i, err)
			}
			if r := results[i]; r.Reencrypted+r.Current != n || r.Skipped != 0 {
				t.Errorf("replica %d: Rotate = %+v; want %d re-encrypted or current", i, r, n)
			}
		}
		if got := results[0].Reencrypted + results[1].Reencrypted; got != n {
			t.Errorf("the replicas re-encrypted %d + %d secrets, want %d in all: each exactly once", results[0].Reencrypted, results[1].Reencrypted, n)
		}
		recs, _ := st.Secrets(ctx)
		for _, r := range recs {
			if r.KeyID != "k2" || r.Version != 2 {
				t.Errorf("secret %s: key %q version %d, want k2 and version 2", r.Name, r.KeyID, r.Version)
			}
		}
	})
}

// TestVaultRotateUnopenable rotates with a secret whose key is gone: it is named in the
// error, left as it is, and the others are re-encrypted.
func TestVaultRotateUnopenable(t *testing.T) {
	t.Parallel()
	st, rec := backends()[0].open(t)
	ctx := t.Context()
	kr := newKeyrings(mustKeyring(t, "k0 "+std(key3)))
	v := newVault(t, secrets.VaultOptions{Store: st, Keyring: kr.load, Audit: rec})
	if _, err := v.Set(ctx, "orphan", []byte("o"), "", "op"); err != nil {
		t.Fatal(err)
	}
	kr.set(mustKeyring(t, "k1 "+std(key1)))
	for _, name := range []string{"a", "b"} {
		if _, err := v.Set(ctx, name, []byte(name), "", "op"); err != nil {
			t.Fatal(err)
		}
	}
	kr.set(mustKeyring(t, "k2 "+std(key2), "k1 "+std(key1))) // k0 was dropped too early
	res, err := v.Rotate(ctx, "op")
	if !errors.Is(err, secrets.ErrUnknownKey) || !strings.Contains(err.Error(), `1 of 3 secrets could not be re-encrypted under "k2"`) ||
		!strings.Contains(err.Error(), `open "orphan": key "k0": key is not in the keyring (it has k2, k1)`) {
		t.Errorf("Rotate = %v, want ErrUnknownKey naming orphan and k0", err)
	}
	if res.Reencrypted != 2 || res.Primary != "k2" {
		t.Errorf("Rotate = %+v, want the 2 others re-encrypted under k2", res)
	}
	if r, _, _ := st.Secret(ctx, "orphan"); r.KeyID != "k0" || r.Version != 1 {
		t.Errorf("orphan = key %q version %d, want it untouched", r.KeyID, r.Version)
	}
	// Cancelled, a rotation stops and says so.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := v.Rotate(cctx, "op"); err == nil {
		t.Error("Rotate with a cancelled context succeeded")
	}
}

// TestReadOnlyStores checks that a store opened read-only refuses every secret write.
func TestReadOnlyStores(t *testing.T) {
	t.Parallel()
	nonce, ct := make([]byte, secrets.NonceSize), make([]byte, 20)
	rec := secrets.Record{Name: "crm", KeyID: "k1", Nonce: nonce, Ciphertext: ct, Created: t0, Updated: t0, UpdatedBy: "op"}
	check := func(t *testing.T, st secrets.Store) {
		t.Helper()
		_, putErr := st.PutSecret(t.Context(), rec)
		_, swapErr := st.ReencryptSecret(t.Context(), "crm", 1, "k2", nonce, ct, t0)
		for call, err := range map[string]error{
			"PutSecret": putErr, "DeleteSecret": st.DeleteSecret(t.Context(), "crm"), "ReencryptSecret": swapErr,
		} {
			if !errors.Is(err, store.ErrReadOnly) {
				t.Errorf("%s on a read-only store = %v, want ErrReadOnly", call, err)
			}
		}
		if r, ok, err := st.Secret(t.Context(), "crm"); !ok || err != nil || r.Version != 1 {
			t.Errorf("Secret(crm) read-only = %+v, %v, %v; want the stored secret", r, ok, err)
		}
	}
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "chaperone.db")
		db, err := sqlite.Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.PutSecret(t.Context(), rec); err != nil {
			t.Fatal(err)
		}
		db.Close()
		ro, err := sqlite.OpenReadOnly(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		defer ro.Close()
		check(t, ro)
	})
	if os.Getenv(pgtest.EnvDSN) == "" {
		return
	}
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		dsn := pgtest.DSN(t)
		db, err := postgres.Open(t.Context(), dsn, postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.PutSecret(t.Context(), rec); err != nil {
			t.Fatal(err)
		}
		ro, err := postgres.OpenReadOnly(t.Context(), dsn, postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer ro.Close()
		check(t, ro)
	})
}

func BenchmarkVaultReveal(b *testing.B) {
	for _, bc := range []struct {
		name string
		ttl  time.Duration
	}{{"cached", time.Hour}, {"uncached", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			st, rec := backends()[0].open(b)
			kr := newKeyrings(mustKeyring(b, "k1 "+std(key1)))
			v := newVault(b, secrets.VaultOptions{Store: st, Keyring: kr.load, Audit: rec, CacheTTL: bc.ttl})
			if _, err := v.Set(b.Context(), "crm-key", []byte(plaintext), "", "op"); err != nil {
				b.Fatal(err)
			}
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Reveal(ctx, "crm-key"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
