package identity

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// delegationParent is a verified depth-1 token on behalf of a user, with a call budget.
func delegationParent() *Claims {
	return &Claims{
		Issuer: testIssuerURL, Subject: "alice", Audience: []string{testAudience},
		Expiry: jwtT0.Add(10 * time.Minute), NotBefore: jwtT0.Add(-time.Minute), IssuedAt: jwtT0.Add(-time.Minute),
		ID: "parent-jti", Agent: "planner", Chain: []string{"orchestrator", "planner"},
		User: "alice", UserGroups: []string{"support"}, Task: "task-7",
		Tools: []string{"mail.search", "mail.read", "docs.search"}, MaxCalls: 20, Depth: 1, Parent: "root-jti",
	}
}

func TestDelegate(t *testing.T) {
	t.Parallel()
	unbounded := delegationParent()
	unbounded.MaxCalls = 0
	direct := &Claims{Subject: "a1", ID: "p", Agent: "a1", Chain: []string{"a1"}, Task: "t", Tools: []string{"x"}, Expiry: jwtT0.Add(time.Hour), IssuedAt: jwtT0}

	child := func(tools []string, expiry time.Time, maxCalls int64) Claims {
		return Claims{
			Subject: "alice", Expiry: expiry, Agent: "researcher", Chain: []string{"orchestrator", "planner", "researcher"},
			User: "alice", UserGroups: []string{"support"}, Task: "task-7", Tools: tools, MaxCalls: maxCalls, Depth: 2, Parent: "parent-jti",
		}
	}
	parentExp := jwtT0.Add(10 * time.Minute)
	tests := []struct {
		name      string
		parent    *Claims
		remaining int64
		req       DelegationRequest
		maxDepth  int
		want      Claims
		wantWhat  string // WideningError.What; "" for success
	}{
		{
			name: "all the parent's tools the sub-agent may have", parent: delegationParent(), remaining: 12, maxDepth: 3,
			req:  DelegationRequest{Agent: "researcher", Capabilities: []string{"mail.search", "docs.search", "web.fetch"}},
			want: child([]string{"mail.search", "docs.search"}, parentExp, 12),
		},
		{
			name: "explicit narrower tools, ttl and budget", parent: delegationParent(), remaining: 12, maxDepth: 3,
			req:  DelegationRequest{Agent: "researcher", Capabilities: []string{"*"}, Tools: []string{"docs.search", "docs.search"}, TTL: 2 * time.Minute, MaxCalls: 5},
			want: child([]string{"docs.search"}, jwtT0.Add(2*time.Minute), 5),
		},
		{
			name: "ttl exactly to the parent's expiry", parent: delegationParent(), remaining: 12, maxDepth: 3,
			req:  DelegationRequest{Agent: "researcher", Capabilities: []string{"*"}, TTL: 10 * time.Minute, MaxCalls: 12},
			want: child([]string{"mail.search", "mail.read", "docs.search"}, parentExp, 12),
		},
		{
			name: "unbounded parent, no budget requested", parent: unbounded, remaining: 0, maxDepth: 3,
			req:  DelegationRequest{Agent: "researcher", Capabilities: []string{"*"}},
			want: child([]string{"mail.search", "mail.read", "docs.search"}, parentExp, 0),
		},
		{
			name: "unbounded parent, budget requested", parent: unbounded, remaining: 0, maxDepth: 3,
			req:  DelegationRequest{Agent: "researcher", Capabilities: []string{"*"}, MaxCalls: 1000},
			want: child([]string{"mail.search", "mail.read", "docs.search"}, parentExp, 1000),
		},
		{
			name: "remaining above the parent's budget is capped", parent: delegationParent(), remaining: 500, maxDepth: 3,
			req:  DelegationRequest{Agent: "researcher", Capabilities: []string{"*"}},
			want: child([]string{"mail.search", "mail.read", "docs.search"}, parentExp, 20),
		},
		{
			name: "first delegation without a user", parent: direct, maxDepth: 1,
			req:  DelegationRequest{Agent: "a2", Capabilities: []string{"x"}},
			want: Claims{Subject: "a1", Expiry: jwtT0.Add(time.Hour), Agent: "a2", Chain: []string{"a1", "a2"}, Task: "t", Tools: []string{"x"}, Depth: 1, Parent: "p"},
		},
		{name: "tool the parent lacks", parent: delegationParent(), remaining: 12, maxDepth: 3,
			req: DelegationRequest{Agent: "researcher", Capabilities: []string{"*"}, Tools: []string{"mail.send"}}, wantWhat: "tools"},
		{name: "tool outside the sub-agent's capabilities", parent: delegationParent(), remaining: 12, maxDepth: 3,
			req: DelegationRequest{Agent: "researcher", Capabilities: []string{"docs.search"}, Tools: []string{"mail.read"}}, wantWhat: "tools"},
		{name: "wildcard tool request", parent: delegationParent(), remaining: 12, maxDepth: 3,
			req: DelegationRequest{Agent: "researcher", Capabilities: []string{"*"}, Tools: []string{"*"}}, wantWhat: "tools"},
		{name: "ttl beyond the parent's expiry", parent: delegationParent(), remaining: 12, maxDepth: 3,
			req: DelegationRequest{Agent: "researcher", Capabilities: []string{"*"}, TTL: 10*time.Minute + time.Second}, wantWhat: "expiry"},
		{name: "more calls than the parent has left", parent: delegationParent(), remaining: 12, maxDepth: 3,
			req: DelegationRequest{Agent: "researcher", Capabilities: []string{"*"}, MaxCalls: 13}, wantWhat: "max_calls"},
		{name: "more calls than the parent's budget", parent: delegationParent(), remaining: 500, maxDepth: 3,
			req: DelegationRequest{Agent: "researcher", Capabilities: []string{"*"}, MaxCalls: 21}, wantWhat: "max_calls"},
		{name: "parent budget exhausted", parent: delegationParent(), remaining: 0, maxDepth: 3,
			req: DelegationRequest{Agent: "researcher", Capabilities: []string{"*"}}, wantWhat: "max_calls"},
		{name: "depth limit", parent: delegationParent(), remaining: 12, maxDepth: 1,
			req: DelegationRequest{Agent: "researcher", Capabilities: []string{"*"}}, wantWhat: "depth"},
		{name: "delegation disabled", parent: direct, maxDepth: 0,
			req: DelegationRequest{Agent: "a2", Capabilities: []string{"*"}}, wantWhat: "depth"},
		{name: "cycle back to the first agent", parent: delegationParent(), remaining: 12, maxDepth: 5,
			req: DelegationRequest{Agent: "orchestrator", Capabilities: []string{"*"}}, wantWhat: "cycle"},
		{name: "delegation to itself", parent: delegationParent(), remaining: 12, maxDepth: 5,
			req: DelegationRequest{Agent: "planner", Capabilities: []string{"*"}}, wantWhat: "cycle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Delegate(tt.parent, tt.remaining, tt.req, tt.maxDepth, jwtT0)
			if tt.wantWhat != "" {
				var we *WideningError
				if !errors.As(err, &we) || we.What != tt.wantWhat {
					t.Fatalf("Delegate(%s) = %+v, %v; want a WideningError of %q", tt.name, got, err, tt.wantWhat)
				}
				if want := "delegation would widen " + tt.wantWhat + ": " + we.Detail; err.Error() != want {
					t.Errorf("Error() = %q, want %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Delegate(%s): %v", tt.name, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Delegate(%s) mismatch (-want +got):\n%s", tt.name, diff)
			}
		})
	}
}

func TestDelegateInvalid(t *testing.T) {
	t.Parallel()
	expired := delegationParent()
	expired.Expiry = jwtT0
	broken := delegationParent()
	broken.Chain = []string{"orchestrator"}
	tests := []struct {
		name    string
		parent  *Claims
		req     DelegationRequest
		wantErr error // nil: any non-widening error
	}{
		{"no parent", nil, DelegationRequest{Agent: "r", Capabilities: []string{"*"}}, nil},
		{"no sub-agent", delegationParent(), DelegationRequest{Capabilities: []string{"*"}}, nil},
		{"negative ttl", delegationParent(), DelegationRequest{Agent: "r", Capabilities: []string{"*"}, TTL: -time.Second}, nil},
		{"negative max calls", delegationParent(), DelegationRequest{Agent: "r", Capabilities: []string{"*"}, MaxCalls: -1}, nil},
		{"parent expired", expired, DelegationRequest{Agent: "r", Capabilities: []string{"*"}}, nil},
		{"parent chain inconsistent", broken, DelegationRequest{Agent: "r", Capabilities: []string{"*"}}, nil},
		{"sub-agent may use none of the tools", delegationParent(), DelegationRequest{Agent: "r", Capabilities: []string{"web.fetch"}}, ErrNothingToDelegate},
		{"no capabilities", delegationParent(), DelegationRequest{Agent: "r"}, ErrNothingToDelegate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Delegate(tt.parent, 10, tt.req, 3, jwtT0)
			var we *WideningError
			if err == nil || errors.As(err, &we) {
				t.Fatalf("Delegate(%s) = %+v, %v; want a non-widening error", tt.name, got, err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Delegate(%s) = %v, want %v", tt.name, err, tt.wantErr)
			}
		})
	}
}

// TestDelegateMintVerify delegates twice from a user's token and checks that the minted
// children verify with the chain, budget and parent links intact.
func TestDelegateMintVerify(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	iss := issuerAt(t, f.keys, jwtT0)
	root, err := iss.Verify(mustMint(t, iss, Claims{User: "alice", UserGroups: []string{"support"}, Agent: "a1", Task: "t", Tools: []string{"x", "y", "z"}, MaxCalls: 10, Expiry: jwtT0.Add(30 * time.Minute)}))
	if err != nil {
		t.Fatal(err)
	}
	c1, err := Delegate(root, 10, DelegationRequest{Agent: "a2", Capabilities: []string{"x", "y"}, MaxCalls: 4}, 2, jwtT0)
	if err != nil {
		t.Fatalf("Delegate(root): %v", err)
	}
	v1, err := iss.Verify(mustMint(t, iss, c1))
	if err != nil {
		t.Fatalf("Verify(child): %v", err)
	}
	c2, err := Delegate(v1, 3, DelegationRequest{Agent: "a3", Capabilities: []string{"*"}, Tools: []string{"y"}, TTL: 5 * time.Minute}, 2, jwtT0)
	if err != nil {
		t.Fatalf("Delegate(child): %v", err)
	}
	v2, err := iss.Verify(mustMint(t, iss, c2))
	if err != nil {
		t.Fatalf("Verify(grandchild): %v", err)
	}
	want := &Claims{
		Issuer: testIssuerURL, Subject: "alice", Audience: []string{testAudience},
		Expiry: jwtT0.Add(5 * time.Minute), NotBefore: jwtT0, IssuedAt: jwtT0, ID: v2.ID,
		Agent: "a3", Chain: []string{"a1", "a2", "a3"}, User: "alice", UserGroups: []string{"support"},
		Task: "t", Tools: []string{"y"}, MaxCalls: 3, Depth: 2, Parent: v1.ID,
	}
	if diff := cmp.Diff(want, v2); diff != "" {
		t.Errorf("grandchild mismatch (-want +got):\n%s", diff)
	}
	if _, err := Delegate(v2, 3, DelegationRequest{Agent: "a4", Capabilities: []string{"*"}}, 2, jwtT0); err == nil {
		t.Error("Delegate beyond max depth succeeded, want refusal")
	}
}
