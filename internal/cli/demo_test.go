package cli

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
)

// demoRecording is the recorded output of `chaperone demo` in the docs; `make demo-record`
// regenerates it.
const demoRecording = "../../docs/demo.txt"

// TestDemo tells the demo against an in-process demo gateway and checks that each scene
// ends as the story says — from what the gateway answered — and that the recording in
// the docs is what the demo prints now.
func TestDemo(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	if code := Run(t.Context(), []string{"demo", "--color", "never"}, &out, &errOut); code != exitOK {
		t.Fatalf("chaperone demo: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	story := out.String()
	for _, want := range []string{
		// 1: the inbox is read, and the injection found.
		"→ read_inbox {}\n     ✔ allowed",
		"! the content sensors read the mail on its way back: injection:",
		// 2: forwarding outside is refused.
		"to: archive@examp1e-support.net}\n     ✘ refused denied_by_policy",
		// 3: the redirected payment is held, with where the account came from, and declined.
		"recipient_iban: GB33BUKB20201555555555, reference: NE-2024-031877}\n     ⏸ held for a person approval_pending  (rules: payments-need-a-person, untrusted-target, rule-of-two)",
		"why: recipient_iban GB33…5555 first appeared in the result of read_inbox(), which is untrusted",
		"information flow  recipient_iban GB33…5555 first appeared in the result of read_inbox()",
		": denied",
		// 4: the user's payment is held, approved, runs once.
		"recipient_iban: DE89370400440532013000, reference: NE-2024-031877}\n     ⏸ held for a person approval_pending  (rules: payments-need-a-person)\n",
		": approved; the agent's call runs when it retries (once)",
		"✔ allowed TXN-",
		// 5: the kill switch stops the agent; its held approval is voided.
		"1 held approvals voided",
		"✘ refused killed",
		// 6: the audit chain verifies.
		"events, chain intact",
		"1 approved, 1 declined",
	} {
		if !strings.Contains(story, want) {
			t.Errorf("the demo lacks %q\n--- output:\n%s", want, story)
		}
	}
	if strings.Contains(story, "\x1b[") {
		t.Error("--color never printed an escape sequence")
	}

	recorded, err := os.ReadFile(demoRecording)
	if err != nil {
		t.Fatalf("read the recording: %v (make demo-record writes it)", err)
	}
	if got, want := normalizeDemo(story), normalizeDemo(string(recorded)); got != want {
		t.Errorf("docs/demo.txt is not what the demo prints now: run make demo-record\n--- now:\n%s\n--- recorded:\n%s", got, want)
	}
}

// normalizeDemo replaces what differs between two tellings: ids, hashes, times, ports,
// durations.
func normalizeDemo(s string) string {
	for _, r := range []struct {
		re  *regexp.Regexp
		put string
	}{
		{regexp.MustCompile(`apr_[A-Za-z0-9_-]+`), "apr_ID"},
		{regexp.MustCompile(`sha256:[0-9a-f]{64}`), "sha256:HASH"},
		{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`), "TIME"},
		{regexp.MustCompile(`127\.0\.0\.1:\d+`), "127.0.0.1:PORT"},
		{regexp.MustCompile(`\(id [0-9a-f]{16}\)`), "(id ID)"},
		{regexp.MustCompile(`[0-9.]+(µs|ms|s)\b`), "DURATION"},
		{regexp.MustCompile(`in [0-9.]+ s\.`), "in DURATION."},
		{regexp.MustCompile(`\d+ events, chain intact`), "N events, chain intact"},
		{regexp.MustCompile(`risk +\d+/100`), "risk N/100"},
	} {
		s = r.re.ReplaceAllString(s, r.put)
	}
	return s
}
