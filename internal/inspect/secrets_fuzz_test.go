package inspect

import (
	"strings"
	"testing"
)

// FuzzSecretScan checks Scan's invariants on any input: spans in bounds, sorted,
// non-overlapping and on UTF-8 boundaries; Redact leaves no found value behind; and
// redacting twice finds nothing new.
func FuzzSecretScan(f *testing.F) {
	for _, seed := range []string{
		"",
		"export AWS_ACCESS_KEY_ID=AKIALRWFVEALKXWKKXZW\naws_secret_access_key = dBzwqHVVX363HcCF78Y97o/UjYp7RNmxNyHaYV9N",
		"DATABASE_URL=postgres://app:Zx9!qLm2vR7t@db.internal:5432/app",
		`{"Authorization": "Bearer bRoDiP0LGz85BeCpRFFTLqly1XJCfi2v1EDKXNms", "password": "Tq8vLp2Wm5Rz"}`,
		"-----BEGIN RSA PRIVATE KEY-----\nxwq9TK2L5Bk+buSZOHny4fdjNshmtdPSRMXug1zLHR2+cfKLXESxUSNi3RY+hzHK\n-----END RSA PRIVATE KEY-----",
		"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImsxIn0.eyJzdWIiOiJzdmMtaW5nZXN0IiwiaXNzIjoiaHR0cHM6Ly9hdXRoLmFjbWUuaW8iLCJleHAiOjE4OTM0NTYwMDB9.GipJuyeBj4ikc47VeglxlM6LYB1cytNlrzRQ2K",
		"xoxb-700908642506-8140728911597-A5TYt9NGl1iaJdutEnCujAO7 https://hooks.slack.com/services/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",
		"NjE4MjE2MDAzODcwNDcwNzcw.uN_4Fi.8rL_XFEtftFC1KfdxWZ2rWtAGltM5a0Cifso4k 1802035090:AAvT4ZfO_vxD8cX1krEpWfbW_51IbJlXLEZ",
		"curl -u admin:VBTdkpHSy21mrr https://x b223faf529d89039803e154463474c8a-us14 911602140448729|AY-lRJZq9BoDLobvAiP25L7Rc12",
		`if ("Tq8vLp2Wm5Rz!" == user_pass) { $config['db_password'] = 'Tq8vLp2Wm5Rz'; }`,
		"<password>Tq8vLp2Wm5Rz</password> <add key=\"ApiKey\" value=\"p7Gv2Lq9Xs4Rk8Wn3Zt6Yb1Hc5Jd0Mf2\" />",
		"password: [REDACTED:generic_secret] token=\"[REDACTED:github_token]\"",
		"golang.org/x/crypto v0.31.0 h1:Ln0sA6lQeuJl7PW1NWiFpTOTogKdJBOUmXJloaJa78Y=",
		"pässwörd=Tq8vLp2Wm5Rz€ token: ключ\xff\xfe",
	} {
		f.Add(seed)
	}
	s := NewSecretScanner()
	f.Fuzz(func(t *testing.T, text string) {
		fs := s.Scan(text)
		secretCheckFindings(t, text, fs)
		red, n := s.Redact(text)
		if n < len(fs) {
			t.Fatalf("Redact counted %d secrets, Scan found %d", n, len(fs))
		}
		// No found value survives, apart from text inside the markers themselves.
		stripped := secretStripMarkers(red)
		for _, f := range fs {
			if v := text[f.Span.Start:f.Span.End]; strings.Contains(stripped, v) {
				t.Fatalf("Redact(%q) = %q still holds %s %q", text, red, f.Kind, v)
			}
		}
		if again, n := s.Redact(red); n != 0 || again != red {
			t.Fatalf("Redact is not idempotent: Redact(%q) = %q, %d", red, again, n)
		}
	})
}

// secretStripMarkers removes the "[REDACTED:kind]" markers from s, leaving a separator
// in their place.
func secretStripMarkers(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "[REDACTED:")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		j := strings.IndexByte(s[i:], ']')
		if j < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		b.WriteByte(0)
		s = s[i+j+1:]
	}
}
