package console

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestPasswordHashRoundTrip(t *testing.T) {
	h, err := HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q", h)
	}
	h2, _ := HashPassword("correct horse battery")
	if h == h2 {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	for pass, want := range map[string]bool{"correct horse battery": true, "correct horse batterY": false, "": false, strings.Repeat("x", 300): false} {
		ok, err := VerifyPassword(h, pass)
		if err != nil || ok != want {
			t.Errorf("VerifyPassword(%q) = %v, %v; want %v", truncate(pass, 20), ok, err, want)
		}
	}
}

func TestParsePHCRefusesBadAndCostlyHashes(t *testing.T) {
	good, _ := HashPassword("correct horse battery")
	parts := strings.Split(good, "$")
	salt, key := parts[4], parts[5]
	for name, s := range map[string]string{
		"empty":        "",
		"bcrypt":       "$2a$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234",
		"argon2i":      "$argon2i$v=19$m=19456,t=2,p=1$" + salt + "$" + key,
		"old version":  "$argon2id$v=16$m=19456,t=2,p=1$" + salt + "$" + key,
		"huge memory":  "$argon2id$v=19$m=4194304,t=2,p=1$" + salt + "$" + key,
		"many passes":  "$argon2id$v=19$m=19456,t=1000,p=1$" + salt + "$" + key,
		"zero time":    "$argon2id$v=19$m=19456,t=0,p=1$" + salt + "$" + key,
		"leading zero": "$argon2id$v=19$m=019456,t=2,p=1$" + salt + "$" + key,
		"order":        "$argon2id$v=19$t=2,m=19456,p=1$" + salt + "$" + key,
		"short salt":   "$argon2id$v=19$m=19456,t=2,p=1$YWJj$" + key,
		"bad base64":   "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$!!!!",
		"padded":       "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "==$" + key,
		"extra field":  good + "$x",
		"too long":     good + strings.Repeat("A", 300),
	} {
		if _, err := parsePHC(s); !errors.Is(err, ErrBadHash) {
			t.Errorf("%s: parsePHC(%q) err = %v, want ErrBadHash", name, truncate(s, 60), err)
		}
		if ok, err := VerifyPassword(s, "correct horse battery"); ok || err == nil {
			t.Errorf("%s: VerifyPassword = %v, %v; want false and an error", name, ok, err)
		}
	}
}

func TestCheckPasswordAndUserName(t *testing.T) {
	for p, ok := range map[string]bool{"elevenchars": false, "twelve chars": true, "\xff\xfe twelve chars": false, strings.Repeat("é", 129): false} {
		if got := CheckPassword(p) == nil; got != ok {
			t.Errorf("CheckPassword(%q) ok = %v, want %v", truncate(p, 20), got, ok)
		}
	}
	for n, ok := range map[string]bool{"alice": true, "a.b-c_d@x": true, "": false, "Alice": false, "-a": false, "a b": false, strings.Repeat("a", 65): false, "a\x00": false} {
		if got := CheckName(n) == nil; got != ok {
			t.Errorf("CheckName(%q) ok = %v, want %v", n, got, ok)
		}
	}
}

func TestRolesAreOrdered(t *testing.T) {
	order := []Role{RoleViewer, RoleApprover, RoleOperator, RoleAdmin}
	for i, have := range order {
		for j, need := range order {
			if have.Can(need) != (i >= j) {
				t.Errorf("%s.Can(%s) = %v", have, need, have.Can(need))
			}
		}
		if have.Can("root") || Role("root").Can(RoleViewer) || Role("").Can(RoleViewer) {
			t.Error("an unknown role grants or is granted something")
		}
	}
	if _, err := ParseRole("superuser"); err == nil {
		t.Error("ParseRole accepted an unknown role")
	}
}

func TestParseAuditQuery(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	q, err := parseAuditQuery(url.Values{"from": {"2h"}, "agent": {"a1"}, "decision": {"deny"}, "before": {"42"}}, now, "24h")
	if err != nil || !q.From.Equal(now.Add(-2*time.Hour)) || q.Agent != "a1" || q.Before != 42 {
		t.Fatalf("q = %+v, %v", q, err)
	}
	if q, _ := parseAuditQuery(url.Values{}, now, "24h"); !q.From.Equal(now.Add(-24 * time.Hour)) {
		t.Fatalf("default from = %v", q.From)
	}
	for name, v := range map[string]url.Values{
		"bad from":   {"from": {"yesterday"}},
		"from>to":    {"from": {"2026-11-21"}, "to": {"2026-11-20"}},
		"long agent": {"agent": {strings.Repeat("a", 300)}},
		"bad before": {"before": {"-1"}},
	} {
		if _, err := parseAuditQuery(v, now, "24h"); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func FuzzParsePHC(f *testing.F) {
	good, _ := HashPassword("seed password!")
	f.Add(good)
	f.Add("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
	f.Add("$argon2id$v=19$m=1,t=1,p=16$$")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parsePHC(s)
		if err != nil {
			if !errors.Is(err, ErrBadHash) {
				t.Fatalf("error %v is not ErrBadHash", err)
			}
			return
		}
		if h.memory > maxArgonMemoryKiB || h.time > maxArgonTime || h.threads > maxArgonThreads || h.memory < 8*uint32(h.threads) {
			t.Fatalf("accepted out-of-bounds parameters %+v", h)
		}
	})
}

func FuzzParseAuditQuery(f *testing.F) {
	f.Add("from=24h&agent=a&before=10")
	f.Add("from=2026-11-01T00:00:00Z&to=7d&kind=call.*")
	f.Add("before=0&decision=%00")
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := parseAuditQuery(v, now, "24h")
		if err != nil {
			return
		}
		if !q.From.Before(q.To) || q.Before < 0 || len(q.Agent) > maxFilterLen {
			t.Fatalf("accepted an impossible query %+v", q)
		}
	})
}
