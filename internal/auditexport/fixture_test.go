package auditexport_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// Secrets the scanner recognises, in the shapes agents and upstreams leak them: an AWS
// access key id and a GitHub personal access token ("ghp_" and 36 letters and digits).
const (
	awsKey      = "AKIAZ3MHQ2L7VXKQ4PJD"
	githubToken = "ghp_R7b2Kx9Qm4Tz8Lw3Vn6Yp1Hs5Jd0Fc2Ga7Ue"
)

// secrets are the values no export may carry.
var secrets = []string{awsKey, githubToken}

// t0 is the time of the fixture's first event; event i is i minutes later.
var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// memSource is an audit.Source over events held in memory, in Seq order from 1.
type memSource []audit.Event

func (m memSource) ScanEvents(ctx context.Context, afterSeq int64, limit int) ([]audit.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if afterSeq < 0 || afterSeq >= int64(len(m)) {
		return nil, nil
	}
	end := min(afterSeq+int64(limit), int64(len(m)))
	return append([]audit.Event(nil), m[afterSeq:end]...), nil
}

// chain numbers events from 1, one minute apart from t0, and links them as the audit
// log does: each event's PrevHash is the Hash of the one before, its Hash its canonical
// form's. Events marked Pruned become tombstones after they are hashed.
func chain(tb testing.TB, evs []audit.Event) memSource {
	tb.Helper()
	prev := ""
	out := make(memSource, len(evs))
	for i, e := range evs {
		e.Seq = int64(i + 1)
		if e.Time.IsZero() {
			e.Time = t0.Add(time.Duration(i) * time.Minute)
		}
		pruned := e.Pruned
		e.Pruned = false
		e.PrevHash = prev
		e.Hash = e.ComputeHash()
		if e.Hash == "" {
			tb.Fatalf("event %d (%s) cannot be hashed", e.Seq, e.Kind)
		}
		prev = e.Hash
		if pruned {
			e = audit.Tombstone(e)
		}
		out[i] = e
	}
	return out
}

// fixtureEvents has one event of every kind Chaperone records (and one it does not know
// yet), with secrets in the message, detail, prompt, arguments and result, and one
// tombstone.
func fixtureEvents() []audit.Event {
	args := func(s string) json.RawMessage { return json.RawMessage(s) }
	return []audit.Event{
		{Kind: audit.KindPolicyLoaded, PolicyVersion: "v1"},
		{Kind: audit.KindConfigReloaded, PolicyVersion: "v1", Detail: "3 tools declared"},
		{Kind: audit.KindAgentRegistered, Agent: "mail-bot", Message: "agent registered", Detail: "owner=ops@example.com by=alice"},
		{Kind: audit.KindTaskStarted, Agent: "mail-bot", User: "alice@example.com", Task: "t-1", Message: "task started"},
		{Kind: audit.KindTokenIssued, Agent: "mail-bot", User: "alice@example.com", Task: "t-1", Decision: "allow", RequestID: "tok-1", TokenID: "jti-1"},
		{Kind: audit.KindCallIntent, RequestID: "r1", SessionID: "s1", Agent: "mail-bot", User: "alice@example.com", Task: "t-1",
			Tool: "read_file", Upstream: "files", Decision: "allow", Rules: []string{"reads"}, PolicyVersion: "v1",
			ArgsSummary: "{key:string(20), path:string(2)}", Captured: audit.CapturedArguments,
			Arguments: args(`{"path":"/x","key":"` + awsKey + `","n":1.50,"nested":[{"token":"` + githubToken + `"}]}`),
			Prompt:    "Use my token " + githubToken + " to read /x", Risk: 12, Sensors: []string{"secret:aws_access_key"}},
		{Kind: audit.KindCallOutcome, RequestID: "r1", SessionID: "s1", Agent: "mail-bot", User: "alice@example.com", Task: "t-1",
			Tool: "read_file", Upstream: "files", LatencyMicros: 2500, ResultBytes: 80, Captured: audit.CapturedResult,
			Result: args(`{"content":[{"type":"text","text":"aws_access_key_id = ` + awsKey + `"}],"isError":false}`)},
		{Kind: audit.KindCallRefused, RequestID: "r2", SessionID: "s2", Agent: "pay-bot", User: "bob@example.com", Task: "t-2",
			Tool: "send_email", Upstream: "mail", Decision: "deny", Reason: "denied_by_policy", Rules: []string{"no-external"},
			Message: "The key " + awsKey + " may not be mailed out.", Detail: "rule no-external: to=" + githubToken,
			ShadowDecision: "allow", ShadowRules: []string{"new-mail"}},
		{Kind: audit.KindCallRefused, RequestID: "r3", Agent: "mail-bot", Task: "t-1", Tool: "wipe_disk", Decision: "refused", Reason: "unknown_tool",
			Message: "There is no tool wipe_disk."},
		{Kind: audit.KindCallIntent, RequestID: "r4", SessionID: "s1", Agent: "mail-bot", User: "alice@example.com", Task: "t-1",
			Tool: "transfer_money", Upstream: "bank", Decision: "approve", Approval: "ap-1", Risk: 80},
		{Kind: audit.KindCallOutcome, RequestID: "r4", SessionID: "s1", Agent: "mail-bot", Tool: "transfer_money", Upstream: "bank", ResultError: true},
		{Kind: audit.KindCallSuggested, RequestID: "r5", Agent: "intern-bot", Tool: "delete_record", Decision: "deny", Reason: "suggested"},
		{Kind: audit.KindCallDeduplicated, RequestID: "r6", Agent: "mail-bot", Tool: "read_file", Decision: "allow", IdempotencyKey: "k-1"},
		{Kind: audit.KindAuthFailed, RequestID: "r7", Decision: "refused", Reason: "unauthenticated", Message: "authentication failed", Detail: "bad token from 10.0.0.1"},
		{Kind: audit.KindTokenRefused, RequestID: "tok-2", Agent: "pay-bot", Decision: "refused", Reason: "invalid_client"},
		{Kind: audit.KindDelegationRefused, RequestID: "tok-3", Agent: "pay-bot", Decision: "refused", Reason: "invalid_scope", Chain: []string{"mail-bot", "pay-bot"}},
		{Kind: audit.KindToolPinned, Tool: "read_file", Upstream: "files", Detail: "pinned sha256:aa by chaperone"},
		{Kind: audit.KindToolDrift, Tool: "read_file", Upstream: "files", Detail: "pinned sha256:aa, offered sha256:bb"},
		{Kind: audit.KindToolFlagged, Tool: "helper", Upstream: "misc", Detail: "offered sha256:cc: injection:0.97:instruction_override"},
		{Kind: audit.KindToolApproved, Tool: "read_file", Upstream: "files", Detail: "pinned sha256:bb by alice"},
		{Kind: audit.KindPolicyRejected, PolicyVersion: "v2", Detail: "rule 3: unknown action"},
		{Kind: "approval.requested", Approval: "ap-1", Agent: "mail-bot", User: "alice@example.com", Tool: "transfer_money", Decision: "pending", Risk: 80},
		{Kind: "approval.approved", Approval: "ap-1", Agent: "mail-bot", Tool: "transfer_money", Decision: "approved", Detail: "approved by carol"},
		{Kind: "approval.denied", Approval: "ap-2", Agent: "mail-bot", Tool: "transfer_money", Decision: "denied", Reason: "too_risky", Message: "no"},
		{Kind: "approval.expired", Approval: "ap-3", Agent: "mail-bot", Tool: "transfer_money", Decision: "expired"},
		{Kind: audit.KindAgentSuspended, Agent: "pay-bot", Reason: "investigation", Message: "agent suspended"},
		{Kind: audit.KindAgentResumed, Agent: "pay-bot", Message: "agent active"},
		{Kind: audit.KindAgentPromoted, Agent: "mail-bot", Decision: "2"},
		{Kind: audit.KindAgentDemoted, Agent: "mail-bot", Decision: "1", Detail: "autonomy 2 → 1: policy denials"},
		{Kind: audit.KindAgentRevoked, Agent: "pay-bot", Reason: "compromised", Message: "agent revoked"},
		{Kind: audit.KindKillEngaged, Scope: "agent:pay-bot", Reason: "incident 7", Detail: "by alice; 1 calls in flight cancelled"},
		{Kind: audit.KindKillLifted, Scope: "agent:pay-bot", Reason: "resolved"},
		{Kind: audit.KindBreakerChanged, Agent: "mail-bot", Decision: "open", Reason: "denials", Message: "breaker closed → open"},
		{Kind: audit.KindTaskEnded, Task: "t-1", Reason: "done", Message: "task ended", Detail: "by=alice"},
		{Kind: "future.kind", Agent: "mail-bot", Message: "something new"},
		{Kind: audit.KindCallIntent, RequestID: "r8", Agent: "mail-bot", Task: "t-1", Tool: "read_file", Decision: "allow",
			Captured: audit.CapturedArguments, Arguments: args(`{"path":"/old"}`), Pruned: true},
	}
}

// fixture is fixtureEvents chained.
func fixture(tb testing.TB) memSource { return chain(tb, fixtureEvents()) }

// noSecrets fails tb if out holds any of the secrets.
func noSecrets(tb testing.TB, what string, out []byte) {
	tb.Helper()
	for _, s := range secrets {
		if strings.Contains(string(out), s) {
			tb.Errorf("%s carries the secret %q", what, s)
		}
	}
}

// lines splits JSON Lines output and decodes each line as a JSON object.
func lines(tb testing.TB, out []byte) []map[string]any {
	tb.Helper()
	var objs []map[string]any
	for i, l := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			tb.Fatalf("line %d is not a JSON object: %v\n%s", i+1, err, l)
		}
		objs = append(objs, m)
	}
	return objs
}

func describe(e *audit.Event) string { return fmt.Sprintf("#%d %s", e.Seq, e.Kind) }
