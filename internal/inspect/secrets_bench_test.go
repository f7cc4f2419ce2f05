package inspect

import (
	"strings"
	"testing"
)

// secretBenchClean is ordinary tool traffic: prose that talks about tokens, keys and
// passwords, JSON, code, a lock file and a go.sum excerpt, with no credential in it.
const secretBenchClean = `The deployment guide explains how the service authenticates. Each client sends a token
in the Authorization header; the gateway checks it, looks up the key that signed it and
rejects expired tokens. Passwords are never stored in plain text: the password hash uses
argon2id with a per-user salt. Rotate keys every ninety days and keep the key ring small.
{"id": "8f14e45f-ceea-467f-a0b5-1d0e4c1f2a3b", "name": "build-42", "status": "passed",
 "commit": "9701bf1724d822c0d5bbb7627535dd639a37bf56", "duration_ms": 18342, "tags": ["ci", "linux"],
 "artifact": {"digest": "sha256:eaaa7b11777babe28e6133a8b19ff71cea687e0d7f05158dee95a71f76ce3d00", "size": 1048576}}
func (c *Client) refreshToken(ctx context.Context) error {
	tok, err := c.source.Token()
	if err != nil {
		return fmt.Errorf("refresh token: %w", err)
	}
	c.token = tok.AccessToken
	return nil
}
golang.org/x/net v0.0.0-20190603091049-60506f45cf65/go.mod h1:HSz+uSET+XFnRR8LxR5pz3Of3rY3CfYBVs4xY44aLks=
"node_modules/lodash": {"version": "4.17.21", "resolved": "https://registry.npmjs.org/lodash/-/lodash-4.17.21.tgz",
  "integrity": "sha512-v2kDEe57lecTulaDIuNTPy3Ry4gLGJ6Z1O3vE1krgXZNrsQ+LFTGHVxVjcXPs17LhbZVGedAJv8XZ1tvj5FvSg=="}
Sessions expire after an hour. To reset your password, open Settings, choose Security and follow the link.
`

// secretBenchSecrets are a few credentials to sprinkle into the clean text.
var secretBenchSecrets = []string{
	"export AWS_ACCESS_KEY_ID=AKIAQYLPMN5HFIQR7XYA\n",
	`{"db_url": "postgres://app:Zx9!qLm2vR7t@db.internal:5432/app"}` + "\n",
	"Authorization: Bearer ghp_R2d9kLq8XvB4nT7mWc1ZpY6sJf3HaG0eUoIi\n",
	`client_secret = "p7Gv2Lq9Xs4Rk8Wn3Zt6Yb1Hc5Jd0Mf2"` + "\n",
}

func secretBenchText(withSecrets bool) string {
	var b strings.Builder
	i := 0
	for b.Len() < 10<<10 {
		b.WriteString(secretBenchClean)
		if withSecrets && i < len(secretBenchSecrets) {
			b.WriteString(secretBenchSecrets[i])
			i++
		}
	}
	return b.String()[:10<<10]
}

func BenchmarkSecretScan10KBClean(b *testing.B) {
	s := NewSecretScanner()
	text := secretBenchText(false)
	if fs := s.Scan(text); len(fs) != 0 {
		b.Fatalf("Scan(clean text) found %v, want nothing", fs)
	}
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		s.Scan(text)
	}
}

func BenchmarkSecretScan10KBWithSecrets(b *testing.B) {
	s := NewSecretScanner()
	text := secretBenchText(true)
	if fs := s.Scan(text); len(fs) < len(secretBenchSecrets) {
		b.Fatalf("Scan(text with %d secrets) found %d", len(secretBenchSecrets), len(fs))
	}
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		s.Scan(text)
	}
}

func BenchmarkSecretRedact10KBWithSecrets(b *testing.B) {
	s := NewSecretScanner()
	text := secretBenchText(true)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		s.Redact(text)
	}
}

func BenchmarkNewSecretScanner(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		NewSecretScanner()
	}
}
