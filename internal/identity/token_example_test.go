package identity_test

import (
	"fmt"
	"time"

	"github.com/chaperone-dev/chaperone/internal/identity"
)

// An agent acting for a user gets a task-scoped token, then delegates a narrower one to a
// sub-agent; the sub-agent's token verifies with the whole chain.
func ExampleDelegate() {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	key, err := identity.GenerateSigningKey(now)
	if err != nil {
		panic(err)
	}
	keys, err := identity.NewKeySet([]identity.SigningKey{key}, time.Hour)
	if err != nil {
		panic(err)
	}
	issuer, err := identity.NewIssuer(identity.IssuerOptions{
		Issuer: "https://gateway.example", Audience: "chaperone",
		Keys: func() *identity.KeySet { return keys }, Now: func() time.Time { return now },
	})
	if err != nil {
		panic(err)
	}

	raw, err := issuer.Mint(identity.Claims{
		User: "alice", Agent: "mail-assistant", Task: "triage-inbox",
		Tools: []string{"mail.search", "mail.read", "mail.send"}, MaxCalls: 20,
		Expiry: now.Add(10 * time.Minute),
	})
	if err != nil {
		panic(err)
	}
	parent, err := issuer.Verify(raw)
	if err != nil {
		panic(err)
	}

	child, err := identity.Delegate(parent, 15, identity.DelegationRequest{
		Agent: "summariser", Capabilities: []string{"mail.read", "docs.search"},
	}, 3, now)
	if err != nil {
		panic(err)
	}
	raw, err = issuer.Mint(child)
	if err != nil {
		panic(err)
	}
	got, err := issuer.Verify(raw)
	if err != nil {
		panic(err)
	}
	fmt.Println(got.User, got.Chain, got.Tools, got.MaxCalls, got.Parent == parent.ID)

	_, err = identity.Delegate(parent, 15, identity.DelegationRequest{
		Agent: "summariser", Capabilities: []string{"*"}, Tools: []string{"mail.delete"},
	}, 3, now)
	fmt.Println(err)
	// Output:
	// alice [mail-assistant summariser] [mail.read] 15 true
	// delegation would widen tools: tool "mail.delete" is not granted to the parent token
}
