package auditexport

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// OCSFVersion is the version of the Open Cybersecurity Schema Framework that
// [WriteOCSF] maps to; every event carries it as metadata.version.
const OCSFVersion = "1.3.0"

// productName names Chaperone in metadata.product.
const productName = "Chaperone"

// WriteOCSF writes the events of src that f selects to w as OCSF events, one JSON
// object per line, in log order, for a SIEM, and returns what it wrote. The mapping of
// each kind to an OCSF class, activity, status, disposition and severity is the table
// in docs/export.md; Chaperone fields without an OCSF attribute are kept under
// "unmapped" (seq, hash and prev_hash among them, to find the event in the chain).
//
// Events are redacted as [WriteJSONL] redacts them; a redacted event carries
// unmapped.export_redacted = true. Tombstones are skipped and counted. The output
// depends only on the events and f: the same log gives the same bytes.
func WriteOCSF(ctx context.Context, src audit.Source, w io.Writer, f Filter) (Stats, error) {
	return export(ctx, src, w, f, "ocsf", ocsfLine)
}

// ocsfLine renders e as one OCSF event.
func ocsfLine(buf []byte, e *audit.Event, redacted bool) ([]byte, error) {
	o := mapOCSF(e, redacted)
	b := bytes.NewBuffer(buf)
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(o); err != nil {
		return buf, err
	}
	out := b.Bytes()
	return out[:len(out)-1], nil // Encode appends a newline; the caller adds its own
}

// OCSF classes and categories Chaperone's events map to.
const (
	ocsfClassBase      = 0    // Base Event, for kinds this version of Chaperone does not know
	ocsfClassAccount   = 3001 // Account Change
	ocsfClassAuth      = 3002 // Authentication
	ocsfClassEntity    = 3004 // Entity Management
	ocsfClassDetection = 2004 // Detection Finding
	ocsfClassAPI       = 6003 // API Activity
)

// ocsfClass is a class's identity: its uid and name, and its category's.
type ocsfClass struct {
	uid         int
	name        string
	categoryUID int
	category    string
}

var ocsfClasses = map[int]ocsfClass{
	ocsfClassBase:      {ocsfClassBase, "Base Event", 0, "Uncategorized"},
	ocsfClassAccount:   {ocsfClassAccount, "Account Change", 3, "Identity & Access Management"},
	ocsfClassAuth:      {ocsfClassAuth, "Authentication", 3, "Identity & Access Management"},
	ocsfClassEntity:    {ocsfClassEntity, "Entity Management", 3, "Identity & Access Management"},
	ocsfClassDetection: {ocsfClassDetection, "Detection Finding", 2, "Findings"},
	ocsfClassAPI:       {ocsfClassAPI, "API Activity", 6, "Application Activity"},
}

// Activity ids used across classes. Other (99) carries the Chaperone kind as
// activity_name.
const (
	activityOther = 99
)

// Enumerations shared by the classes: severity_id, status_id, action_id and
// disposition_id, with their captions.
const (
	severityUnknown = 0
	severityInfo    = 1
	severityLow     = 2
	severityMedium  = 3
	severityHigh    = 4

	statusUnknown = 0
	statusSuccess = 1
	statusFailure = 2
	statusOther   = 99

	findingStatusNew = 1

	actionAllowed = 1
	actionDenied  = 2

	dispositionAllowed  = 1
	dispositionBlocked  = 2
	dispositionApproved = 8
	dispositionLogged   = 17

	userTypeUnknown = 0
	userTypeUser    = 1
	userTypeOther   = 99

	authProtocolOAuth2 = 6
	authProtocolOther  = 99
)

var (
	severityNames    = map[int]string{0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical", 6: "Fatal"}
	statusNames      = map[int]string{statusUnknown: "Unknown", statusSuccess: "Success", statusFailure: "Failure"}
	dispositionNames = map[int]string{dispositionAllowed: "Allowed", dispositionBlocked: "Blocked", dispositionApproved: "Approved", dispositionLogged: "Logged"}
	actionNames      = map[int]string{actionAllowed: "Allowed", actionDenied: "Denied"}
)

// ocsfEvent is one OCSF event. Fields are in a fixed order and optional ones are
// omitted when empty, so equal events encode to equal bytes.
type ocsfEvent struct {
	ActivityID     int              `json:"activity_id"`
	ActivityName   string           `json:"activity_name"`
	CategoryUID    int              `json:"category_uid"`
	CategoryName   string           `json:"category_name"`
	ClassUID       int              `json:"class_uid"`
	ClassName      string           `json:"class_name"`
	TypeUID        int              `json:"type_uid"`
	TypeName       string           `json:"type_name"`
	SeverityID     int              `json:"severity_id"`
	Severity       string           `json:"severity"`
	Time           int64            `json:"time"`
	Duration       int64            `json:"duration,omitempty"`
	Message        string           `json:"message,omitempty"`
	StatusID       int              `json:"status_id"`
	Status         string           `json:"status,omitempty"`
	StatusDetail   string           `json:"status_detail,omitempty"`
	ActionID       int              `json:"action_id,omitempty"`
	Action         string           `json:"action,omitempty"`
	DispositionID  int              `json:"disposition_id,omitempty"`
	Disposition    string           `json:"disposition,omitempty"`
	IsAlert        bool             `json:"is_alert,omitempty"`
	Metadata       ocsfMetadata     `json:"metadata"`
	Actor          *ocsfActor       `json:"actor,omitempty"`
	API            *ocsfAPI         `json:"api,omitempty"`
	SrcEndpoint    *ocsfEndpoint    `json:"src_endpoint,omitempty"`
	User           *ocsfUser        `json:"user,omitempty"`
	Service        *ocsfService     `json:"service,omitempty"`
	AuthProtocolID int              `json:"auth_protocol_id,omitempty"`
	AuthProtocol   string           `json:"auth_protocol,omitempty"`
	Entity         *ocsfEntity      `json:"entity,omitempty"`
	Comment        string           `json:"comment,omitempty"`
	FindingInfo    *ocsfFindingInfo `json:"finding_info,omitempty"`
	Resources      []ocsfResource   `json:"resources,omitempty"`
	Unmapped       ocsfUnmapped     `json:"unmapped"`
}

type ocsfMetadata struct {
	Version        string      `json:"version"`
	Product        ocsfProduct `json:"product"`
	UID            string      `json:"uid"`
	CorrelationUID string      `json:"correlation_uid,omitempty"`
	EventCode      string      `json:"event_code"`
	LogName        string      `json:"log_name"`
	OriginalTime   string      `json:"original_time"`
}

type ocsfProduct struct {
	Name       string `json:"name"`
	VendorName string `json:"vendor_name"`
}

type ocsfActor struct {
	AppName string       `json:"app_name,omitempty"`
	User    *ocsfUser    `json:"user,omitempty"`
	Session *ocsfSession `json:"session,omitempty"`
}

type ocsfUser struct {
	Name   string `json:"name,omitempty"`
	UID    string `json:"uid,omitempty"`
	TypeID int    `json:"type_id"`
	Type   string `json:"type,omitempty"`
}

type ocsfSession struct {
	UID string `json:"uid"`
}

type ocsfAPI struct {
	Operation string       `json:"operation"`
	Service   *ocsfService `json:"service,omitempty"`
	Request   *ocsfRequest `json:"request,omitempty"`
}

type ocsfService struct {
	Name string `json:"name"`
}

type ocsfRequest struct {
	UID string `json:"uid"`
}

type ocsfEndpoint struct {
	Name string `json:"name"`
}

type ocsfEntity struct {
	Name string `json:"name,omitempty"`
	UID  string `json:"uid,omitempty"`
	Type string `json:"type"`
}

type ocsfFindingInfo struct {
	UID   string   `json:"uid"`
	Title string   `json:"title"`
	Desc  string   `json:"desc,omitempty"`
	Types []string `json:"types,omitempty"`
}

type ocsfResource struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// ocsfUnmapped holds the Chaperone fields that have no OCSF attribute in the event's
// class. Seq, kind, hash and prev_hash are always present.
type ocsfUnmapped struct {
	Seq            int64              `json:"seq"`
	Kind           string             `json:"kind"`
	Hash           string             `json:"hash"`
	PrevHash       string             `json:"prev_hash"`
	ExportRedacted bool               `json:"export_redacted,omitempty"`
	Agent          string             `json:"agent,omitempty"`
	User           string             `json:"user,omitempty"`
	Chain          []string           `json:"chain,omitempty"`
	Task           string             `json:"task,omitempty"`
	SessionID      string             `json:"session_id,omitempty"`
	TokenID        string             `json:"token_id,omitempty"`
	Tool           string             `json:"tool,omitempty"`
	Upstream       string             `json:"upstream,omitempty"`
	Decision       string             `json:"decision,omitempty"`
	Reason         string             `json:"reason,omitempty"`
	Rules          []string           `json:"rules,omitempty"`
	PolicyVersion  string             `json:"policy_version,omitempty"`
	ShadowDecision string             `json:"shadow_decision,omitempty"`
	ShadowRules    []string           `json:"shadow_rules,omitempty"`
	Risk           int                `json:"risk,omitempty"`
	RiskFactors    []string           `json:"risk_factors,omitempty"`
	Sensors        []string           `json:"sensors,omitempty"`
	Deviations     []string           `json:"deviations,omitempty"`
	Approval       string             `json:"approval,omitempty"`
	Scope          string             `json:"scope,omitempty"`
	Detail         string             `json:"detail,omitempty"`
	Explanation    string             `json:"explanation,omitempty"`
	ArgsHash       string             `json:"args_hash,omitempty"`
	ArgsSummary    string             `json:"args_summary,omitempty"`
	Captured       string             `json:"captured,omitempty"`
	Arguments      json.RawMessage    `json:"arguments,omitempty"`
	Result         json.RawMessage    `json:"result,omitempty"`
	Prompt         string             `json:"prompt,omitempty"`
	LatencyMicros  int64              `json:"latency_us,omitempty"`
	ResultBytes    int64              `json:"result_bytes,omitempty"`
	ResultError    bool               `json:"result_error,omitempty"`
	Spend          float64            `json:"spend,omitempty"`
	Tokens         int64              `json:"tokens,omitempty"`
	Charges        map[string]float64 `json:"charges,omitempty"`
	Steps          int64              `json:"steps,omitempty"`
	IdempotencyKey string             `json:"idempotency_key,omitempty"`
}

// mapOCSF maps e, already redacted, to its OCSF event.
func mapOCSF(e *audit.Event, redacted bool) *ocsfEvent {
	o := &ocsfEvent{
		Time:     e.Time.UnixMilli(),
		Message:  e.Message,
		StatusID: statusSuccess,
		Metadata: ocsfMetadata{
			Version:        OCSFVersion,
			Product:        ocsfProduct{Name: productName, VendorName: productName},
			UID:            strconv.FormatInt(e.Seq, 10),
			CorrelationUID: e.RequestID,
			EventCode:      e.Kind,
			LogName:        "audit",
			OriginalTime:   e.Time.UTC().Format(time.RFC3339Nano),
		},
		Unmapped: unmappedOf(e, redacted),
	}
	if o.Message == "" {
		o.Message = defaultMessage(e)
	}
	class, activity, activityName := ocsfClassBase, activityOther, e.Kind
	switch {
	case strings.HasPrefix(e.Kind, "call."):
		class, activity = ocsfClassAPI, activityOther
		mapCall(o, e)
	case e.Kind == audit.KindAuthFailed || strings.HasPrefix(e.Kind, "token."):
		class, activity, activityName = ocsfClassAuth, 1, "Logon"
		mapAuth(o, e)
	case strings.HasPrefix(e.Kind, "agent."):
		class = ocsfClassAccount
		activity, activityName = mapAgent(o, e)
	case e.Kind == audit.KindToolFlagged || e.Kind == audit.KindToolDrift:
		class, activity, activityName = ocsfClassDetection, 1, "Create"
		mapFinding(o, e)
	default:
		if act, ok := mapEntity(o, e); ok {
			class = ocsfClassEntity
			activity, activityName = act, entityActivities[act]
		} else {
			o.StatusID, o.SeverityID = statusUnknown, severityUnknown
		}
	}
	c := ocsfClasses[class]
	o.ActivityID, o.ActivityName = activity, activityName
	o.ClassUID, o.ClassName = c.uid, c.name
	o.CategoryUID, o.CategoryName = c.categoryUID, c.category
	o.TypeUID = c.uid*100 + activity
	caption := activityName
	if activity == activityOther {
		caption = "Other"
	}
	o.TypeName = c.name + ": " + caption
	o.Severity = severityNames[o.SeverityID]
	if o.Status == "" {
		o.Status = statusNames[o.StatusID]
	}
	return o
}

// unmappedOf copies every Chaperone field of e that may lack an OCSF attribute; the
// class mappers clear those they place elsewhere.
func unmappedOf(e *audit.Event, redacted bool) ocsfUnmapped {
	return ocsfUnmapped{
		Seq: e.Seq, Kind: e.Kind, Hash: e.Hash, PrevHash: e.PrevHash, ExportRedacted: redacted,
		Agent: e.Agent, User: e.User, Chain: e.Chain, Task: e.Task, SessionID: e.SessionID, TokenID: e.TokenID,
		Tool: e.Tool, Upstream: e.Upstream, Decision: e.Decision, Reason: e.Reason, Rules: e.Rules,
		PolicyVersion: e.PolicyVersion, ShadowDecision: e.ShadowDecision, ShadowRules: e.ShadowRules,
		Risk: e.Risk, RiskFactors: e.RiskFactors, Sensors: e.Sensors, Deviations: e.Deviations,
		Approval: e.Approval, Scope: e.Scope, Detail: e.Detail, Explanation: e.Explanation,
		ArgsHash: e.ArgsHash, ArgsSummary: e.ArgsSummary, Captured: e.Captured,
		Arguments: e.Arguments, Result: e.Result, Prompt: e.Prompt,
		LatencyMicros: e.LatencyMicros, ResultBytes: e.ResultBytes, ResultError: e.ResultError,
		Spend: e.Spend, Tokens: e.Tokens, Charges: e.Charges, Steps: e.Steps, IdempotencyKey: e.IdempotencyKey,
	}
}

// defaultMessage describes an event that has no Message of its own.
func defaultMessage(e *audit.Event) string {
	parts := []string{e.Kind}
	for _, kv := range [][2]string{
		{"tool", e.Tool}, {"agent", e.Agent}, {"user", e.User}, {"task", e.Task},
		{"decision", e.Decision}, {"reason", e.Reason}, {"scope", e.Scope},
	} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	return strings.Join(parts, " ")
}

// mapCall fills the API Activity of a call event: the agent as actor, the tool as
// api.operation, the upstream as api.service, and what was decided as action,
// disposition, status and severity.
func mapCall(o *ocsfEvent, e *audit.Event) {
	u := &o.Unmapped
	agent := e.Agent
	if agent == "" {
		agent = "unknown"
	}
	o.Actor = &ocsfActor{AppName: agent}
	if e.User != "" {
		o.Actor.User = &ocsfUser{Name: e.User, UID: e.User, TypeID: userTypeUser, Type: "User"}
	}
	if e.SessionID != "" {
		o.Actor.Session = &ocsfSession{UID: e.SessionID}
	}
	o.SrcEndpoint = &ocsfEndpoint{Name: agent}
	o.API = &ocsfAPI{Operation: e.Tool}
	if e.Upstream != "" {
		o.API.Service = &ocsfService{Name: e.Upstream}
	}
	if e.RequestID != "" {
		o.API.Request = &ocsfRequest{UID: e.RequestID}
	}
	u.Agent, u.User, u.SessionID, u.Tool, u.Upstream = "", "", "", "", ""
	if e.LatencyMicros > 0 {
		o.Duration = e.LatencyMicros / 1000
	}

	action, disposition := actionAllowed, dispositionAllowed
	o.SeverityID = severityInfo
	switch e.Kind {
	case audit.KindCallIntent:
		if e.Decision == "approve" {
			disposition, o.SeverityID = dispositionApproved, severityLow
		}
	case audit.KindCallOutcome:
		if e.ResultError {
			o.StatusID, o.StatusDetail = statusFailure, "result_error"
		}
	case audit.KindCallRefused:
		action, disposition = actionDenied, dispositionBlocked
		o.StatusID, o.StatusDetail, u.Reason = statusFailure, e.Reason, ""
		o.SeverityID = severityMedium
	case audit.KindCallSuggested:
		// Recorded, not executed: the agent may only suggest.
		action, disposition = actionDenied, dispositionLogged
		o.StatusID, o.Status = statusOther, "Suggested"
		if e.Decision == "deny" {
			o.SeverityID = severityLow
		}
	case audit.KindCallDeduplicated:
		o.StatusDetail = "deduplicated"
	default:
		o.StatusID, o.SeverityID = statusUnknown, severityUnknown
		return
	}
	o.ActionID, o.Action = action, actionNames[action]
	o.DispositionID, o.Disposition = disposition, dispositionNames[disposition]
}

// mapAuth fills the Authentication (Logon) of auth.failed and token.* events: the agent
// is the user authenticating (unknown for a failed authentication, whose credentials
// named nobody Chaperone knows).
func mapAuth(o *ocsfEvent, e *audit.Event) {
	u := &o.Unmapped
	if e.Agent != "" {
		o.User = &ocsfUser{Name: e.Agent, UID: e.Agent, TypeID: userTypeOther, Type: "Agent"}
		u.Agent = ""
	} else {
		o.User = &ocsfUser{Name: "unknown", TypeID: userTypeUnknown, Type: "Unknown"}
	}
	if e.Kind == audit.KindAuthFailed {
		o.Service = &ocsfService{Name: "Chaperone MCP gateway"}
		o.AuthProtocolID, o.AuthProtocol = authProtocolOther, "Bearer token"
	} else {
		o.Service = &ocsfService{Name: "Chaperone token endpoint"}
		o.AuthProtocolID, o.AuthProtocol = authProtocolOAuth2, "OAUTH 2.0"
	}
	o.SeverityID = severityInfo
	if e.Kind != audit.KindTokenIssued {
		o.StatusID, o.StatusDetail, u.Reason = statusFailure, e.Reason, ""
		o.SeverityID = severityMedium
	}
}

// Account Change activities.
var agentActivities = map[string]struct {
	id       int
	name     string
	severity int
}{
	audit.KindAgentRegistered: {1, "Create", severityInfo},
	audit.KindAgentResumed:    {2, "Enable", severityInfo},
	audit.KindAgentSuspended:  {5, "Disable", severityMedium},
	audit.KindAgentRevoked:    {6, "Delete", severityMedium},
	audit.KindAgentPromoted:   {activityOther, audit.KindAgentPromoted, severityLow},
	audit.KindAgentDemoted:    {activityOther, audit.KindAgentDemoted, severityHigh},
}

// mapAgent fills the Account Change of an agent.* event: the agent is the account
// changed.
func mapAgent(o *ocsfEvent, e *audit.Event) (int, string) {
	o.User = &ocsfUser{Name: e.Agent, UID: e.Agent, TypeID: userTypeOther, Type: "Agent"}
	o.Unmapped.Agent = ""
	a, ok := agentActivities[e.Kind]
	if !ok {
		o.SeverityID = severityUnknown
		return activityOther, e.Kind
	}
	o.SeverityID = a.severity
	return a.id, a.name
}

// mapFinding fills the Detection Finding of a tool definition held for review
// (tool.flagged) or changed behind its pin (tool.drift).
func mapFinding(o *ocsfEvent, e *audit.Event) {
	title, sev := "Pinned tool definition changed by its upstream", severityMedium
	if e.Kind == audit.KindToolFlagged {
		title, sev = "Tool definition reads as a prompt injection; held for review", severityHigh
	}
	if e.Tool != "" {
		title += ": " + e.Tool
	}
	o.FindingInfo = &ocsfFindingInfo{UID: e.Kind + ":" + strconv.FormatInt(e.Seq, 10), Title: title, Desc: e.Detail, Types: []string{e.Kind}}
	o.Unmapped.Detail = ""
	if e.Tool != "" {
		o.Resources = []ocsfResource{{Name: e.Tool, Type: "MCP tool"}}
		o.Unmapped.Tool = ""
	}
	o.StatusID, o.Status = findingStatusNew, "New"
	o.SeverityID, o.IsAlert = sev, true
}

// Entity Management activities.
const (
	entityCreate = 1
	entityUpdate = 3
	entityDelete = 4
)

var entityActivities = map[int]string{entityCreate: "Create", entityUpdate: "Update", entityDelete: "Delete"}

// mapEntity fills the Entity Management of an event that changed something Chaperone
// manages — a tool pin, the policy, the configuration, a kill switch, a circuit
// breaker, an approval request, a task — and returns its activity; false for a kind
// it does not know.
func mapEntity(o *ocsfEvent, e *audit.Event) (int, bool) {
	u := &o.Unmapped
	act, sev := entityUpdate, severityInfo
	switch e.Kind {
	case audit.KindToolPinned, audit.KindToolApproved:
		o.Entity = &ocsfEntity{Name: e.Tool, Type: "tool"}
		u.Tool = ""
		if e.Kind == audit.KindToolPinned {
			act = entityCreate
		} else {
			sev = severityLow
		}
	case audit.KindPolicyLoaded, audit.KindPolicyRejected:
		o.Entity = &ocsfEntity{Name: "policy", UID: e.PolicyVersion, Type: "policy"}
		if e.Kind == audit.KindPolicyRejected {
			o.StatusID, sev = statusFailure, severityMedium
		}
	case audit.KindConfigReloaded:
		o.Entity = &ocsfEntity{Name: "configuration", Type: "configuration"}
	case audit.KindKillEngaged, audit.KindKillLifted:
		o.Entity = &ocsfEntity{Name: e.Scope, Type: "kill_switch"}
		u.Scope = ""
		act, sev = entityCreate, severityHigh
		if e.Kind == audit.KindKillLifted {
			act = entityDelete
		}
	case audit.KindBreakerChanged:
		o.Entity = &ocsfEntity{Name: e.Agent, Type: "circuit_breaker"}
		sev = severityHigh
	case audit.KindApprovalRequested, audit.KindApprovalApproved, audit.KindApprovalDenied, audit.KindApprovalExpired:
		o.Entity = &ocsfEntity{Name: e.Tool, UID: e.Approval, Type: "approval_request"}
		u.Approval = ""
		sev = severityLow
		if e.Kind == audit.KindApprovalRequested {
			act = entityCreate
		}
	case audit.KindTaskStarted, audit.KindTaskEnded:
		o.Entity = &ocsfEntity{Name: e.Task, UID: e.Task, Type: "task"}
		u.Task = ""
		act = entityCreate
		if e.Kind == audit.KindTaskEnded {
			act = entityDelete
		}
	default:
		return 0, false
	}
	if e.Reason != "" {
		o.Comment, u.Reason = e.Reason, ""
	}
	o.SeverityID = sev
	return act, true
}
