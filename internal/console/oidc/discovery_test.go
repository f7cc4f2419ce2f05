package oidc

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/identity"
)

const testIssuer = "https://idp.example"

// discoveryCases are documents for parseDiscovery with issuer testIssuer; they also seed
// the fuzz target.
var discoveryCases = []struct {
	name string
	doc  string
	want *discoveryDoc
	// wantErr are substrings of the error; nil for success.
	wantErr []string
}{
	{name: "minimal", doc: `{"issuer":"https://idp.example","authorization_endpoint":"https://idp.example/auth",
		"token_endpoint":"https://idp.example/token","jwks_uri":"https://keys.example/jwks"}`,
		want: &discoveryDoc{Issuer: testIssuer, AuthorizationEndpoint: "https://idp.example/auth",
			TokenEndpoint: "https://idp.example/token", JWKSURI: "https://keys.example/jwks"}},
	{name: "with lists and unknown members", doc: `{"issuer":"https://idp.example","authorization_endpoint":"https://idp.example/auth",
		"token_endpoint":"https://idp.example/token","jwks_uri":"https://idp.example/jwks","response_types_supported":["code","id_token"],
		"code_challenge_methods_supported":["S256"],"token_endpoint_auth_methods_supported":[],"id_token_signing_alg_values_supported":null,
		"claims_supported":["sub"],"x":{"nested":[1,2,{}]}}`,
		want: &discoveryDoc{Issuer: testIssuer, AuthorizationEndpoint: "https://idp.example/auth",
			TokenEndpoint: "https://idp.example/token", JWKSURI: "https://idp.example/jwks", ResponseTypes: []string{"code", "id_token"},
			CodeChallengeMethods: []string{"S256"}, AuthMethods: []string{}}},
	{name: "issuer mismatch", doc: `{"issuer":"https://evil.example","authorization_endpoint":"https://idp.example/auth",
		"token_endpoint":"https://idp.example/token","jwks_uri":"https://idp.example/jwks"}`,
		wantErr: []string{`issuer "https://evil.example" is not the configured issuer "https://idp.example"`}},
	{name: "issuer differs by a trailing slash", doc: `{"issuer":"https://idp.example/","authorization_endpoint":"https://idp.example/auth",
		"token_endpoint":"https://idp.example/token","jwks_uri":"https://idp.example/jwks"}`,
		wantErr: []string{"is not the configured issuer"}},
	{name: "second issuer", doc: `{"issuer":"https://idp.example","authorization_endpoint":"https://idp.example/auth",
		"token_endpoint":"https://idp.example/token","jwks_uri":"https://idp.example/jwks","issuer":"https://evil.example"}`,
		wantErr: []string{`member "issuer" appears more than once`}},
	{name: "everything missing", doc: `{}`,
		wantErr: []string{"issuer is missing", "authorization_endpoint is missing", "token_endpoint is missing", "jwks_uri is missing"}},
	{name: "wrong types", doc: `{"issuer":1,"authorization_endpoint":null,"token_endpoint":"","jwks_uri":["https://idp.example/jwks"],
		"response_types_supported":"code"}`,
		wantErr: []string{"issuer must be a non-empty string", "authorization_endpoint must be a non-empty string",
			"token_endpoint must be a non-empty string", "jwks_uri must be a non-empty string", "response_types_supported must be an array of strings"}},
	{name: "endpoints off https", doc: `{"issuer":"https://idp.example","authorization_endpoint":"http://idp.example/auth",
		"token_endpoint":"ftp://idp.example/token","jwks_uri":"/jwks"}`,
		wantErr: []string{`authorization_endpoint: "http://idp.example/auth" must use https`, `token_endpoint: "ftp://idp.example/token" must use https`,
			`jwks_uri: "/jwks" is not an absolute URL`}},
	{name: "endpoint with control characters", doc: `{"issuer":"https://idp.example","authorization_endpoint":"https://idp.example/a\u001b[31m",
		"token_endpoint":"https://idp.example/token","jwks_uri":"https://idp.example/jwks"}`,
		wantErr: []string{"authorization_endpoint: ", `not an absolute URL`}},
	{name: "endpoint too long", doc: `{"issuer":"https://idp.example","authorization_endpoint":"https://idp.example/` + strings.Repeat("a", maxURLBytes) + `",
		"token_endpoint":"https://idp.example/token","jwks_uri":"https://idp.example/jwks"}`,
		wantErr: []string{"authorization_endpoint: longer than 2048 bytes"}},
	{name: "too many list items", doc: `{"issuer":"https://idp.example","authorization_endpoint":"https://idp.example/auth",
		"token_endpoint":"https://idp.example/token","jwks_uri":"https://idp.example/jwks","response_types_supported":[` +
		strings.Repeat(`"code",`, maxListItems) + `"code"]}`,
		wantErr: []string{"response_types_supported has more than 100 items"}},
	{name: "array", doc: `[]`, wantErr: []string{"not a JSON object"}},
	{name: "empty", doc: ``, wantErr: []string{"not a JSON object"}},
	{name: "html", doc: `<html>`, wantErr: []string{"not a JSON object"}},
	{name: "truncated", doc: `{"issuer":"https://idp.example",`, wantErr: []string{"not a JSON object: invalid JSON"}},
	{name: "trailing comma", doc: `{"issuer":"https://idp.example",}`, wantErr: []string{"invalid JSON"}},
	{name: "bad member value", doc: `{"issuer":tru}`, wantErr: []string{`member "issuer": invalid JSON`}},
	{name: "data after the object", doc: `{"issuer":"https://idp.example"} {}`, wantErr: []string{"data after the JSON object"}},
	{name: "garbage after the object", doc: `{"issuer":"https://idp.example"}x`, wantErr: []string{"data after the JSON object"}},
}

func TestParseDiscovery(t *testing.T) {
	t.Parallel()
	for _, tt := range discoveryCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseDiscovery([]byte(tt.doc), testIssuer)
			if (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("parseDiscovery(%s) = %v, want error containing %q", tt.name, err, tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("parseDiscovery(%s) error = %q, want it to contain %q", tt.name, err, w)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseDiscovery(%s) mismatch (-want +got):\n%s", tt.name, diff)
			}
		})
	}
}

func TestParseDiscoveryMemberLimit(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("{")
	for i := range maxDiscoveryMembers + 1 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"m%d":0`, i)
	}
	b.WriteString("}")
	_, err := parseDiscovery([]byte(b.String()), testIssuer)
	if err == nil || !strings.Contains(err.Error(), "more than 1000 members") {
		t.Fatalf("parseDiscovery(1001 members) = %v, want an error naming the member limit", err)
	}
}

func TestDiscoverySupports(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		d            discoveryDoc
		confidential bool
		want         string // "" for success
	}{
		{name: "lists absent", d: discoveryDoc{}, confidential: true},
		{name: "all supported", d: discoveryDoc{ResponseTypes: []string{"code"}, CodeChallengeMethods: []string{"plain", "S256"},
			AuthMethods: []string{"client_secret_basic"}, SigningAlgs: []string{"RS256"}}, confidential: true},
		{name: "no code flow", d: discoveryDoc{ResponseTypes: []string{"id_token"}}, want: `response_types_supported does not include "code"`},
		{name: "plain PKCE only", d: discoveryDoc{CodeChallengeMethods: []string{"plain"}}, want: `does not include "S256"`},
		{name: "empty PKCE list", d: discoveryDoc{CodeChallengeMethods: []string{}}, want: `does not include "S256"`},
		{name: "post only, confidential", d: discoveryDoc{AuthMethods: []string{"client_secret_post"}}, confidential: true,
			want: `does not include "client_secret_basic"`},
		{name: "post only, public", d: discoveryDoc{AuthMethods: []string{"client_secret_post"}}},
		{name: "HS256 only", d: discoveryDoc{SigningAlgs: []string{"HS256", "none"}}, want: "has none of RS256, ES256, EdDSA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.d.supports(tt.confidential)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("supports(%s) = %v, want nil", tt.name, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("supports(%s) = %v, want error containing %q", tt.name, err, tt.want)
			}
		})
	}
}

func TestDiscoveryErrorIs(t *testing.T) {
	t.Parallel()
	cause := errors.New("status 500")
	err := discoveryErr("https://idp.example/.well-known/openid-configuration", cause)
	if !errors.Is(err, ErrDiscovery) || !errors.Is(err, cause) {
		t.Errorf("discoveryErr = %v: want errors.Is both ErrDiscovery and its cause", err)
	}
	if got, want := err.Error(), "oidc discovery https://idp.example/.well-known/openid-configuration: status 500"; got != want {
		t.Errorf("discoveryErr.Error() = %q, want %q", got, want)
	}
}

// FuzzParseDiscovery checks that no document makes the decoder panic, and that whatever it
// accepts names the issuer and only usable endpoints.
func FuzzParseDiscovery(f *testing.F) {
	for _, tt := range discoveryCases {
		f.Add([]byte(tt.doc))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseDiscovery(b, testIssuer)
		if err != nil {
			if d != nil {
				t.Fatalf("parseDiscovery(%q) returned a document with error %v", b, err)
			}
			return
		}
		if d.Issuer != testIssuer {
			t.Fatalf("parseDiscovery(%q) accepted issuer %q", b, d.Issuer)
		}
		for _, u := range []string{d.AuthorizationEndpoint, d.TokenEndpoint, d.JWKSURI} {
			if err := identity.CheckIdPURL(u); err != nil {
				t.Fatalf("parseDiscovery(%q) accepted endpoint %q: %v", b, u, err)
			}
		}
		for _, l := range [][]string{d.ResponseTypes, d.CodeChallengeMethods, d.AuthMethods, d.SigningAlgs} {
			if len(l) > maxListItems {
				t.Fatalf("parseDiscovery(%q) accepted a list of %d items", b, len(l))
			}
		}
		_ = d.supports(true) // must not panic either
	})
}
