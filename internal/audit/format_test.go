package audit_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

func TestFormat(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 1, 10, 0, 7, 123456789, time.FixedZone("CET", 3600))
	tests := []struct {
		name string
		e    audit.Event
		want string
	}{
		{
			name: "refused",
			e: audit.Event{
				Seq: 42, Time: at, Kind: audit.KindCallRefused, RequestID: "req-1", Agent: "mail-assistant",
				Tool: "send_email", Decision: "deny", Reason: "denied_by_policy", Rules: []string{"no-external"},
				Message: "denied by rule no-external",
			},
			want: `2026-03-01T09:00:07.123Z  #42  call.refused  agent=mail-assistant tool=send_email decision=deny reason=denied_by_policy rules=no-external request=req-1  "denied by rule no-external"`,
		},
		{
			name: "outcome",
			e: audit.Event{
				Seq: 43, Time: at, Kind: audit.KindCallOutcome, Agent: "a", User: "alice", Tool: "t", Upstream: "mail",
				ArgsSummary: "{to:string(3)}", Rules: []string{"r1", "r2"}, PolicyVersion: "v7",
				LatencyMicros: 12345, ResultBytes: 678, ResultError: true, RequestID: "req-1", SessionID: "s-1",
			},
			want: `2026-03-01T09:00:07.123Z  #43  call.outcome  agent=a user=alice tool=t upstream=mail args={to:string(3)} rules=r1,r2 policy=v7 latency=12.345ms result_bytes=678 result_error=true request=req-1 session=s-1`,
		},
		{
			name: "bare",
			e:    audit.Event{Seq: 1, Time: at, Kind: audit.KindPolicyLoaded},
			want: `2026-03-01T09:00:07.123Z  #1  policy.loaded`,
		},
		{
			name: "hostile values are quoted",
			e: audit.Event{
				Seq: 2, Time: at, Kind: audit.KindToolDrift, Tool: "evil\n2026-01-01T00:00:00.000Z  #1  fake",
				Upstream: "\x1b[2Jclear", Agent: "a b", Detail: "old sha256:aa new sha256:bb", Message: "line\nbreak \u202e",
			},
			want: `2026-03-01T09:00:07.123Z  #2  tool.drift  agent="a b" tool="evil\n2026-01-01T00:00:00.000Z  #1  fake" upstream="\x1b[2Jclear" detail="old sha256:aa new sha256:bb"  "line\nbreak \u202e"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var b strings.Builder
			audit.Format(&b, tt.e)
			if got := b.String(); got != tt.want+"\n" {
				t.Errorf("Format(%+v):\n got %q\nwant %q", tt.e, got, tt.want+"\n")
			}
		})
	}
}
