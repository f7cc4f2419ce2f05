package auditexport_test

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/auditexport"
)

// ocsfWant is what one event maps to.
type ocsfWant struct {
	class, activity, severity int
	disposition               int // API Activity only
	status                    int
}

// ocsfMapping is the mapping table of docs/export.md, by kind (and, for kinds that occur
// twice in the fixture, by seq).
var ocsfMapping = map[string]ocsfWant{
	audit.KindPolicyLoaded:      {3004, 3, 1, 0, 1},
	audit.KindConfigReloaded:    {3004, 3, 1, 0, 1},
	audit.KindAgentRegistered:   {3001, 1, 1, 0, 1},
	audit.KindTaskStarted:       {3004, 1, 1, 0, 1},
	audit.KindTokenIssued:       {3002, 1, 1, 0, 1},
	"6":                         {6003, 99, 1, 1, 1}, // call.intent allow
	"7":                         {6003, 99, 1, 1, 1}, // call.outcome
	"8":                         {6003, 99, 3, 2, 2}, // call.refused deny
	"9":                         {6003, 99, 3, 2, 2}, // call.refused refused
	"10":                        {6003, 99, 2, 8, 1}, // call.intent approve
	"11":                        {6003, 99, 1, 1, 2}, // call.outcome isError
	audit.KindCallSuggested:     {6003, 99, 2, 17, 99},
	audit.KindCallDeduplicated:  {6003, 99, 1, 1, 1},
	audit.KindAuthFailed:        {3002, 1, 3, 0, 2},
	audit.KindTokenRefused:      {3002, 1, 3, 0, 2},
	audit.KindDelegationRefused: {3002, 1, 3, 0, 2},
	audit.KindToolPinned:        {3004, 1, 1, 0, 1},
	audit.KindToolDrift:         {2004, 1, 3, 0, 1},
	audit.KindToolFlagged:       {2004, 1, 4, 0, 1},
	audit.KindToolApproved:      {3004, 3, 2, 0, 1},
	audit.KindPolicyRejected:    {3004, 3, 3, 0, 2},
	"approval.requested":        {3004, 1, 2, 0, 1},
	"approval.approved":         {3004, 3, 2, 0, 1},
	"approval.denied":           {3004, 3, 2, 0, 1},
	"approval.expired":          {3004, 3, 2, 0, 1},
	audit.KindAgentSuspended:    {3001, 5, 3, 0, 1},
	audit.KindAgentResumed:      {3001, 2, 1, 0, 1},
	audit.KindAgentPromoted:     {3001, 99, 2, 0, 1},
	audit.KindAgentDemoted:      {3001, 99, 4, 0, 1},
	audit.KindAgentRevoked:      {3001, 6, 3, 0, 1},
	audit.KindKillEngaged:       {3004, 1, 4, 0, 1},
	audit.KindKillLifted:        {3004, 4, 4, 0, 1},
	audit.KindBreakerChanged:    {3004, 3, 4, 0, 1},
	audit.KindTaskEnded:         {3004, 4, 1, 0, 1},
	"future.kind":               {0, 99, 0, 0, 0},
}

func TestWriteOCSF(t *testing.T) {
	t.Parallel()
	src := fixture(t)
	var out bytes.Buffer
	st, err := auditexport.WriteOCSF(t.Context(), src, &out, auditexport.Filter{})
	if err != nil {
		t.Fatalf("WriteOCSF: %v", err)
	}
	if st.Written != len(src)-1 || st.Tombstones != 1 || st.Redacted != 3 {
		t.Errorf("WriteOCSF stats = %+v; want %d written, 1 tombstone, 3 redacted", st, len(src)-1)
	}
	noSecrets(t, "the ocsf export", out.Bytes())
	evs := lines(t, out.Bytes())
	if len(evs) != st.Written {
		t.Fatalf("WriteOCSF wrote %d lines, stats say %d", len(evs), st.Written)
	}
	for i, o := range evs {
		e := &src[i]
		t.Run(describe(e), func(t *testing.T) {
			checkOCSFBase(t, o, e)
			want, ok := ocsfMapping[strconv.FormatInt(e.Seq, 10)]
			if !ok {
				want, ok = ocsfMapping[e.Kind]
			}
			if !ok {
				t.Fatalf("no mapping to test for %s", describe(e))
			}
			got := ocsfWant{num(o, "class_uid"), num(o, "activity_id"), num(o, "severity_id"), num(o, "disposition_id"), num(o, "status_id")}
			if diff := cmp.Diff(want, got, cmp.AllowUnexported(ocsfWant{})); diff != "" {
				t.Errorf("mapping (-want +got):\n%s", diff)
			}
			checkOCSFClass(t, o, e)
		})
	}

	var again bytes.Buffer
	if _, err := auditexport.WriteOCSF(t.Context(), src, &again, auditexport.Filter{}); err != nil || !bytes.Equal(out.Bytes(), again.Bytes()) {
		t.Errorf("two WriteOCSF runs of one log differ (%v)", err)
	}
}

// Refusals are more severe than allowed calls, and containment (kill switches,
// breakers, demotions) more severe still.
func TestOCSFSeverityOrder(t *testing.T) {
	t.Parallel()
	sev := map[string]int{}
	for k, w := range ocsfMapping {
		sev[k] = w.severity
	}
	allow, refused := sev["6"], sev["8"]
	if !(allow < refused) || sev["9"] != refused || sev[audit.KindAuthFailed] != refused {
		t.Errorf("severity of an allowed call %d, of refusals %d/%d/%d; want refusals higher", allow, refused, sev["9"], sev[audit.KindAuthFailed])
	}
	for _, k := range []string{audit.KindKillEngaged, audit.KindKillLifted, audit.KindBreakerChanged, audit.KindAgentDemoted} {
		if sev[k] <= refused {
			t.Errorf("severity of %s is %d, want above refusals (%d)", k, sev[k], refused)
		}
	}
}

// checkOCSFBase checks the attributes every OCSF event has.
func checkOCSFBase(t *testing.T, o map[string]any, e *audit.Event) {
	t.Helper()
	for _, k := range []string{"activity_id", "activity_name", "category_uid", "category_name", "class_uid", "class_name",
		"type_uid", "type_name", "severity_id", "severity", "time", "status_id", "metadata", "message", "unmapped"} {
		if _, ok := o[k]; !ok {
			t.Errorf("required attribute %q missing", k)
		}
	}
	if num(o, "type_uid") != num(o, "class_uid")*100+num(o, "activity_id") {
		t.Errorf("type_uid %d is not class_uid*100 + activity_id", num(o, "type_uid"))
	}
	if got := int64(o["time"].(float64)); got != e.Time.UnixMilli() {
		t.Errorf("time = %d, want %d (epoch milliseconds)", got, e.Time.UnixMilli())
	}
	md := o["metadata"].(map[string]any)
	product, _ := md["product"].(map[string]any)
	if md["version"] != auditexport.OCSFVersion || product["name"] != "Chaperone" || product["vendor_name"] != "Chaperone" ||
		md["uid"] != strconv.FormatInt(e.Seq, 10) || md["event_code"] != e.Kind {
		t.Errorf("metadata = %v", md)
	}
	if e.RequestID != "" && md["correlation_uid"] != e.RequestID {
		t.Errorf("metadata.correlation_uid = %v, want the request id %q", md["correlation_uid"], e.RequestID)
	}
	u := o["unmapped"].(map[string]any)
	if u["seq"] != float64(e.Seq) || u["hash"] != e.Hash || u["prev_hash"] != e.PrevHash || u["kind"] != e.Kind {
		t.Errorf("unmapped seq, hash, prev_hash or kind differ from the stored event: %v", u)
	}
}

// checkOCSFClass checks the attributes each class requires.
func checkOCSFClass(t *testing.T, o map[string]any, e *audit.Event) {
	t.Helper()
	obj := func(k string) map[string]any {
		m, ok := o[k].(map[string]any)
		if !ok || len(m) == 0 {
			t.Errorf("class %d: required object %q missing", num(o, "class_uid"), k)
		}
		return m
	}
	switch num(o, "class_uid") {
	case 6003:
		actor, api := obj("actor"), obj("api")
		obj("src_endpoint")
		if actor["app_name"] != e.Agent || api["operation"] != e.Tool {
			t.Errorf("actor.app_name %v, api.operation %v; want the agent %q and the tool %q", actor["app_name"], api["operation"], e.Agent, e.Tool)
		}
		if svc, _ := api["service"].(map[string]any); e.Upstream != "" && svc["name"] != e.Upstream {
			t.Errorf("api.service = %v, want the upstream %q", api["service"], e.Upstream)
		}
		if user, _ := actor["user"].(map[string]any); e.User != "" && user["name"] != e.User {
			t.Errorf("actor.user = %v, want the user %q", actor["user"], e.User)
		}
		if num(o, "action_id") == 0 || o["disposition"] == nil {
			t.Errorf("action_id or disposition missing")
		}
	case 3002:
		obj("user")
		obj("service")
	case 3001:
		if user := obj("user"); user["name"] != e.Agent {
			t.Errorf("user = %v, want the agent %q", user, e.Agent)
		}
	case 3004:
		if ent := obj("entity"); ent["type"] == nil {
			t.Errorf("entity has no type: %v", ent)
		}
	case 2004:
		fi := obj("finding_info")
		if fi["uid"] == nil || fi["title"] == nil {
			t.Errorf("finding_info = %v, want uid and title", fi)
		}
	case 0:
	default:
		t.Errorf("unexpected class %d", num(o, "class_uid"))
	}
}

// num reads an integer attribute, 0 when it is absent.
func num(o map[string]any, k string) int {
	f, _ := o[k].(float64)
	return int(f)
}

func TestWriteOCSFRedactionMark(t *testing.T) {
	t.Parallel()
	src := fixture(t)
	var out bytes.Buffer
	if _, err := auditexport.WriteOCSF(t.Context(), src, &out, auditexport.Filter{Kinds: []string{audit.KindCallRefused}, Agents: []string{"pay-bot"}}); err != nil {
		t.Fatal(err)
	}
	evs := lines(t, out.Bytes())
	if len(evs) != 1 {
		t.Fatalf("WriteOCSF(pay-bot refusals) wrote %d events, want 1", len(evs))
	}
	o := evs[0]
	u := o["unmapped"].(map[string]any)
	if u["export_redacted"] != true || o["message"] != "The key [REDACTED:aws_access_key] may not be mailed out." ||
		o["status_detail"] != "denied_by_policy" || u["shadow_decision"] != "allow" {
		t.Errorf("OCSF event of a redacted refusal = %v", o)
	}
}
