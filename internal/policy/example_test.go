package policy_test

import (
	"fmt"
	"log"
	"time"

	"github.com/chaperone-dev/chaperone/internal/policy"
)

func ExampleCompile() {
	src := []byte(`
rules:
  - id: read-mail
    match:
      agents: [mail-assistant]
      classes: [read]
    effect: allow
  - id: internal-mail
    match:
      tools: [send_email]
    when: 'args.to.endsWith("@example.com")'
    effect: allow
  - id: external-mail
    match:
      tools: [send_email]
    when: '!args.to.endsWith("@example.com")'
    effect: approve
`)
	tools := map[string]policy.ToolInfo{
		"read_inbox": {Class: "read"},
		"send_email": {Class: "external"},
	}
	p, err := policy.Compile([]policy.Source{{Name: "policies/mail.yaml", Data: src}}, tools)
	if err != nil {
		log.Fatal(err)
	}

	for _, to := range []string{"carol@example.com", "mallory@evil.test"} {
		d, err := p.Evaluate(&policy.Facts{
			Agent: policy.Agent{ID: "mail-assistant"},
			Tool:  policy.Tool{Name: "send_email", Class: "external"},
			Args:  map[string]any{"to": to},
			Now:   time.Now(),
		})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s: %s %v (%s)\n", to, d.Effect, d.Rules, d.Reason)
	}
	fmt.Println(p.Visible("mail-assistant", "read_inbox"), p.Visible("other-agent", "read_inbox"))
	// Output:
	// carol@example.com: allow [internal-mail] (allowed by rule "internal-mail")
	// mallory@evil.test: approve [external-mail] (approval required by rule "external-mail")
	// true false
}
