package identity

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// testRegistry registers two agents with fixed tokens and returns the registry and tokens.
func testRegistry(tb testing.TB) (*Registry, map[string]string) {
	tb.Helper()
	tokens := map[string]string{
		"mail-assistant": "chp_mail-assistant-token-0123456789abcdef",
		"ops-bot":        "chp_ops-bot-token-0123456789abcdef",
	}
	r, err := NewRegistry([]Registration{
		{Agent: Agent{ID: "mail-assistant", Owner: "alice", Purpose: "mail", Environment: "prod", Labels: map[string]string{"team": "support"}}, TokenSHA256: HashToken(tokens["mail-assistant"])},
		{Agent: Agent{ID: "ops-bot", Owner: "bob", Purpose: "ops", Environment: "dev"}, TokenSHA256: HashToken(tokens["ops-bot"])},
	})
	if err != nil {
		tb.Fatalf("NewRegistry: %v", err)
	}
	return r, tokens
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	r, tokens := testRegistry(t)
	mail := tokens["mail-assistant"]
	tests := []struct {
		name        string
		header      string
		wantAgent   string // "" for a failure
		wantFailure Failure
	}{
		{name: "valid", header: "Bearer " + mail, wantAgent: "mail-assistant"},
		{name: "valid second agent", header: "Bearer " + tokens["ops-bot"], wantAgent: "ops-bot"},
		{name: "lower-case scheme", header: "bearer " + mail, wantAgent: "mail-assistant"},
		{name: "upper-case scheme", header: "BEARER " + mail, wantAgent: "mail-assistant"},
		{name: "missing header", header: "", wantFailure: FailureMissing},
		{name: "bearer with empty token", header: "Bearer ", wantFailure: FailureMalformed},
		{name: "scheme only", header: "Bearer", wantFailure: FailureMalformed},
		{name: "token without scheme", header: mail, wantFailure: FailureMalformed},
		{name: "basic scheme", header: "Basic x", wantFailure: FailureMalformed},
		{name: "basic scheme with valid token", header: "Basic " + mail, wantFailure: FailureMalformed},
		{name: "unknown token", header: "Bearer chp_not-a-registered-token", wantFailure: FailureUnknown},
		{name: "token with extra leading space", header: "Bearer  " + mail, wantFailure: FailureUnknown},
		{name: "token with trailing space", header: "Bearer " + mail + " ", wantFailure: FailureUnknown},
		{name: "token prefix", header: "Bearer " + mail[:len(mail)-1], wantFailure: FailureUnknown},
		{name: "hash presented as token", header: "Bearer " + HashToken(mail), wantFailure: FailureUnknown},
		{name: "token at MaxTokenBytes", header: "Bearer " + strings.Repeat("a", MaxTokenBytes), wantFailure: FailureUnknown},
		{name: "token over MaxTokenBytes", header: "Bearer " + strings.Repeat("a", MaxTokenBytes+1), wantFailure: FailureMalformed},
		{name: "valid token padded over MaxTokenBytes", header: "Bearer " + mail + strings.Repeat("=", MaxTokenBytes), wantFailure: FailureMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, f, err := r.Authenticate(tt.header)
			if tt.wantAgent != "" {
				if err != nil || f != "" || a == nil || a.ID != tt.wantAgent {
					t.Fatalf("Authenticate(%.40q) = %v, %q, %v, want agent %q, \"\", nil", tt.header, a, f, err, tt.wantAgent)
				}
				return
			}
			if a != nil || f != tt.wantFailure || !errors.Is(err, ErrUnauthenticated) {
				t.Errorf("Authenticate(%.40q) = %v, %q, %v, want nil, %q, ErrUnauthenticated", tt.header, a, f, err, tt.wantFailure)
			}
		})
	}
}

func TestAuthenticateReturnsRegisteredAgent(t *testing.T) {
	t.Parallel()
	r, tokens := testRegistry(t)
	a, _, err := r.Authenticate("Bearer " + tokens["mail-assistant"])
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if a.Owner != "alice" || a.Purpose != "mail" || a.Environment != "prod" || a.Labels["team"] != "support" {
		t.Errorf("Authenticate(mail-assistant token) = %+v, want owner alice, purpose mail, environment prod, label team=support", a)
	}
	byID, ok := r.Agent("mail-assistant")
	if !ok || byID != a {
		t.Errorf("Agent(%q) = %p, %v, want %p, true (the same agent Authenticate returned)", "mail-assistant", byID, ok, a)
	}
	if got, ok := r.Agent("nobody"); ok || got != nil {
		t.Errorf("Agent(%q) = %v, %v, want nil, false", "nobody", got, ok)
	}
}

func TestNewRegistry(t *testing.T) {
	t.Parallel()
	h1, h2 := HashToken("token-one"), HashToken("token-two")
	tests := []struct {
		name    string
		regs    []Registration
		wantErr string // "" for success
	}{
		{name: "empty", regs: nil},
		{name: "two agents", regs: []Registration{{Agent: Agent{ID: "a"}, TokenSHA256: h1}, {Agent: Agent{ID: "b"}, TokenSHA256: h2}}},
		{name: "upper-case hex", regs: []Registration{{Agent: Agent{ID: "a"}, TokenSHA256: strings.ToUpper(h1)}}},
		{name: "duplicate id", regs: []Registration{{Agent: Agent{ID: "a"}, TokenSHA256: h1}, {Agent: Agent{ID: "a"}, TokenSHA256: h2}}, wantErr: `agent "a": registered twice`},
		{name: "shared token", regs: []Registration{{Agent: Agent{ID: "a"}, TokenSHA256: h1}, {Agent: Agent{ID: "b"}, TokenSHA256: h1}}, wantErr: `agent "b": token is shared with another agent`},
		{name: "shared token in other case", regs: []Registration{{Agent: Agent{ID: "a"}, TokenSHA256: h1}, {Agent: Agent{ID: "b"}, TokenSHA256: strings.ToUpper(h1)}}, wantErr: `agent "b": token is shared with another agent`},
		{name: "empty hash", regs: []Registration{{Agent: Agent{ID: "a"}}}, wantErr: `agent "a": token hash must be 64 hex digits`},
		{name: "not hex", regs: []Registration{{Agent: Agent{ID: "a"}, TokenSHA256: strings.Repeat("zz", 32)}}, wantErr: `agent "a": token hash must be 64 hex digits`},
		{name: "odd length", regs: []Registration{{Agent: Agent{ID: "a"}, TokenSHA256: h1[:63]}}, wantErr: `agent "a": token hash must be 64 hex digits`},
		{name: "too short", regs: []Registration{{Agent: Agent{ID: "a"}, TokenSHA256: h1[:62]}}, wantErr: `agent "a": token hash must be 64 hex digits`},
		{name: "too long", regs: []Registration{{Agent: Agent{ID: "a"}, TokenSHA256: h1 + "00"}}, wantErr: `agent "a": token hash must be 64 hex digits`},
		{name: "sha256 prefix", regs: []Registration{{Agent: Agent{ID: "a"}, TokenSHA256: "sha256:" + h1}}, wantErr: `agent "a": token hash must be 64 hex digits`},
		{name: "plain token instead of hash", regs: []Registration{{Agent: Agent{ID: "a"}, TokenSHA256: "token-one"}}, wantErr: `agent "a": token hash must be 64 hex digits`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := NewRegistry(tt.regs)
			if tt.wantErr == "" {
				if err != nil || r == nil {
					t.Fatalf("NewRegistry(%v) = %v, %v, want a registry, nil", tt.regs, r, err)
				}
				for _, reg := range tt.regs {
					if _, ok := r.Agent(reg.Agent.ID); !ok {
						t.Errorf("NewRegistry(%v).Agent(%q) not found", tt.regs, reg.Agent.ID)
					}
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("NewRegistry(%v) = %v, %v, want error %q", tt.regs, r, err, tt.wantErr)
			}
		})
	}
}

func TestNewToken(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		tok, sha := NewToken()
		if !strings.HasPrefix(tok, "chp_") || len(tok) != len("chp_")+43 {
			t.Fatalf("NewToken() token = %q, want chp_ and 43 base64url characters", tok)
		}
		if strings.ContainsAny(tok, "+/= ") {
			t.Errorf("NewToken() token = %q, want URL-safe characters only", tok)
		}
		if seen[tok] {
			t.Fatalf("NewToken() returned %q twice", tok)
		}
		seen[tok] = true
		sum := sha256.Sum256([]byte(tok))
		if want := hex.EncodeToString(sum[:]); sha != want || HashToken(tok) != want {
			t.Errorf("NewToken() = %q, %q; HashToken = %q, want %q for both", tok, sha, HashToken(tok), want)
		}
	}
}

func TestNewTokenAuthenticates(t *testing.T) {
	t.Parallel()
	tok, sha := NewToken()
	r, err := NewRegistry([]Registration{{Agent: Agent{ID: "fresh"}, TokenSHA256: sha}})
	if err != nil {
		t.Fatalf("NewRegistry: %v", err)
	}
	if a, f, err := r.Authenticate("Bearer " + tok); err != nil || a.ID != "fresh" {
		t.Errorf("Authenticate(Bearer <NewToken>) = %v, %q, %v, want agent fresh", a, f, err)
	}
	if a, f, err := r.Authenticate("Bearer " + sha); err == nil || f != FailureUnknown {
		t.Errorf("Authenticate(Bearer <its hash>) = %v, %q, %v, want nil, %q, ErrUnauthenticated", a, f, err, FailureUnknown)
	}
}

func TestHashToken(t *testing.T) {
	t.Parallel()
	// echo -n abc | sha256sum
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := HashToken("abc"); got != want {
		t.Errorf("HashToken(%q) = %q, want %q", "abc", got, want)
	}
}

func BenchmarkAuthenticate(b *testing.B) {
	regs := make([]Registration, 0, 100)
	var header string
	for i := range 100 {
		tok, sha := NewToken()
		if i == 42 {
			header = "Bearer " + tok
		}
		regs = append(regs, Registration{Agent: Agent{ID: fmt.Sprintf("agent-%d", i)}, TokenSHA256: sha})
	}
	r, err := NewRegistry(regs)
	if err != nil {
		b.Fatalf("NewRegistry: %v", err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := r.Authenticate(header); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCapabilities(t *testing.T) {
	anyTool := &Agent{Capabilities: []string{"*"}}
	some := &Agent{Capabilities: []string{"read_file"}}
	none := &Agent{}
	if !anyTool.MayHave("x") || !some.MayHave("read_file") || some.MayHave("x") || none.MayHave("x") {
		t.Errorf("MayHave: any %v, some(read_file) %v, some(x) %v, none(x) %v",
			anyTool.MayHave("x"), some.MayHave("read_file"), some.MayHave("x"), none.MayHave("x"))
	}
	if anyTool.ToolLimit() != nil {
		t.Errorf("ToolLimit of \"*\" = %v, want nil (no limit)", anyTool.ToolLimit())
	}
	if l := none.ToolLimit(); l == nil || len(l) != 0 {
		t.Errorf("ToolLimit with no capabilities = %#v, want an empty, non-nil limit", l)
	}
	l := some.ToolLimit()
	l[0] = "changed"
	if some.Capabilities[0] != "read_file" {
		t.Errorf("ToolLimit shares the agent's slice")
	}
}
