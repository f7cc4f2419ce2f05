package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// Kinds of events. A Kind names what happened; the fields an event carries
// depend on it.
const (
	KindCallIntent     = "call.intent"     // an allowed call, recorded before the upstream is called
	KindCallOutcome    = "call.outcome"    // what the upstream returned for an allowed call
	KindCallRefused    = "call.refused"    // a call that was not forwarded, and why
	KindCallSuggested  = "call.suggested"  // a suggest-only agent's call, recorded and not executed
	KindAgentDemoted   = "agent.demoted"   // an agent lost an autonomy level after a violation
	KindAgentPromoted  = "agent.promoted"  // an operator raised an agent's autonomy level
	KindAuthFailed     = "auth.failed"     // a request whose credentials were not accepted
	KindToolPinned     = "tool.pinned"     // a tool definition seen for the first time and pinned
	KindToolDrift      = "tool.drift"      // an upstream changed a pinned tool definition
	KindToolApproved   = "tool.approved"   // an operator approved a (changed) tool definition
	KindToolFlagged    = "tool.flagged"    // a tool definition reads as a prompt injection: held for review
	KindPolicyLoaded   = "policy.loaded"   // a policy version took effect
	KindPolicyRejected = "policy.rejected" // a policy version failed to load; the old one stays
	KindConfigReloaded = "config.reloaded" // the configuration's tool registry and policy paths were reloaded

	KindAgentRegistered   = "agent.registered"       // an operator registered an agent
	KindAgentSuspended    = "agent.suspended"        // an operator suspended an agent
	KindAgentResumed      = "agent.resumed"          // an operator made a suspended agent active again
	KindAgentRevoked      = "agent.revoked"          // an operator revoked an agent, for good
	KindTaskStarted       = "task.started"           // a task began; tokens may be bound to it
	KindTaskEnded         = "task.ended"             // a task ended; every token bound to it is void
	KindTokenIssued       = "token.issued"           // an access token was issued
	KindTokenRefused      = "token.refused"          // a token request was refused, and why
	KindDelegationRefused = "token.widening_refused" // a delegation asked for more than its parent holds

	KindKillEngaged      = "kill.engaged"      // an operator pulled a kill switch; Detail names the scope and who
	KindKillLifted       = "kill.lifted"       // an operator lifted a kill switch
	KindBreakerChanged   = "breaker.changed"   // an agent's circuit breaker tripped, went half-open, closed or was reset
	KindCallDeduplicated = "call.deduplicated" // a retried call answered from its idempotency key's record, not executed again

	// The approval manager's events (internal/approval names them for its notifiers).
	KindApprovalRequested = "approval.requested" // a held call was put to people
	KindApprovalApproved  = "approval.approved"  // enough people approved it; LatencyMicros is the time to decide
	KindApprovalDenied    = "approval.denied"    // a person declined it; LatencyMicros is the time to decide
	KindApprovalExpired   = "approval.expired"   // nobody decided in time

	// The credential broker's events. Values never appear in them: names do.
	KindSecretSet      = "secret.set"      // an operator stored or replaced an upstream secret; Detail names it
	KindSecretDeleted  = "secret.deleted"  // an operator deleted an upstream secret
	KindSecretsRotated = "secrets.rotated" // every secret was re-encrypted under the primary key; Detail counts them
)

// Event is one audit record. Field names, their order and their JSON tags are
// part of the on-disk format and of every stored hash: keep them. A field
// added later must be omitempty, so records written before it keep their
// canonical form and their hashes.
type Event struct {
	Seq           int64     `json:"seq"`                      // assigned by the log, 1-based, gapless
	Time          time.Time `json:"time"`                     // set by the caller (UTC, truncated to microseconds by the log)
	Kind          string    `json:"kind"`                     // see the Kind constants
	RequestID     string    `json:"request_id,omitempty"`     // ties a call's intent to its outcome
	SessionID     string    `json:"session_id,omitempty"`     // the agent's MCP session
	Agent         string    `json:"agent,omitempty"`          // the acting agent's id
	User          string    `json:"user,omitempty"`           // the user the agent acts for
	Tool          string    `json:"tool,omitempty"`           // the exposed tool name
	Upstream      string    `json:"upstream,omitempty"`       // where the tool lives
	ArgsHash      string    `json:"args_hash,omitempty"`      // "sha256:<hex>" of the raw argument bytes; see HashArgs
	ArgsSummary   string    `json:"args_summary,omitempty"`   // redacted: names and types/sizes only; see SummarizeArgs
	Decision      string    `json:"decision,omitempty"`       // allow|deny|approve|refused
	Reason        string    `json:"reason,omitempty"`         // stable reason code, e.g. denied_by_policy, unknown_tool
	Message       string    `json:"message,omitempty"`        // one human sentence
	Rules         []string  `json:"rules,omitempty"`          // ids of the rules that decided
	PolicyVersion string    `json:"policy_version,omitempty"` // the policy version that decided
	LatencyMicros int64     `json:"latency_us,omitempty"`     // upstream latency; on kill.engaged the time to contain, on approval.approved and .denied the time to decide
	ResultBytes   int64     `json:"result_bytes,omitempty"`   // size of the upstream result
	ResultError   bool      `json:"result_error,omitempty"`   // the upstream returned isError
	Detail        string    `json:"detail,omitempty"`         // free text for registry events (e.g. old and new definition hash)
	Task          string    `json:"task,omitempty"`           // the task the credential is bound to
	Chain         []string  `json:"chain,omitempty"`          // delegation chain: the agents from the first to Agent
	TokenID       string    `json:"token_id,omitempty"`       // the access token's jti
	// ShadowDecision is what the policy would have decided with its shadow rules enforced
	// (allow, deny, approve), and ShadowRules the rules behind it; empty when no shadow rule
	// names the tool. Never what was enforced: that is Decision.
	ShadowDecision string   `json:"shadow_decision,omitempty"`
	ShadowRules    []string `json:"shadow_rules,omitempty"`
	// Arguments (call.intent, call.refused) and Result (call.outcome) are call content,
	// recorded only when the operator enabled capture (audit.capture): the JSON the agent
	// sent and the CallToolResult the upstream returned, compacted, otherwise as they were.
	// Captured says what became of the capture; see the Captured constants. All three are
	// empty when capture is off.
	Arguments json.RawMessage `json:"arguments,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Captured  string          `json:"captured,omitempty"`
	// Prompt (call.intent, call.refused) is the user's request the agent's host reported
	// with the call, recorded, like Arguments, only when the operator enabled capture.
	Prompt string `json:"prompt,omitempty"`
	// Explanation says, when information flow made a rule fire, which value of the call
	// came from where, in one sentence.
	Explanation string `json:"explanation,omitempty"`
	// Risk is the call's risk score (0 to 100) and RiskFactors what made it.
	Risk        int      `json:"risk,omitempty"`
	RiskFactors []string `json:"risk_factors,omitempty"`
	// Approval is the id of the approval request of a held call.
	Approval string `json:"approval,omitempty"`
	// Spend (call.intent) is what the call charged to its task's budget: the tool's cost
	// plus the spend the agent reported with it; Tokens the model tokens it reported;
	// Charges what it charged to each cap, by cap name.
	Spend   float64            `json:"spend,omitempty"`
	Tokens  int64              `json:"tokens,omitempty"`
	Charges map[string]float64 `json:"charges,omitempty"`
	// Steps (task.ended) is how many calls of the task reached their tool; with Spend and
	// Tokens it is what the task cost.
	Steps int64 `json:"steps,omitempty"`
	// Deviations are the ways the call departed from the agent's learned baseline.
	Deviations []string `json:"deviations,omitempty"`
	// IdempotencyKey is the key the agent sent with the call.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// Sensors are what the content sensors found and did (call.intent, call.refused:
	// in the arguments and prompt; call.outcome: in the result), one entry each:
	// "injection:0.93:instruction_override", "secret:aws_access_key", "pii:EMAIL",
	// "redacted:secret:2", "tokenized:pii:3", "egress:denied:evil.example", ...
	// Never a value.
	Sensors []string `json:"sensors,omitempty"`
	// Scope (kill.engaged, kill.lifted, call.refused with reason killed) is the scope of
	// the kill switch.
	Scope string `json:"scope,omitempty"`
	// Credentials (call.outcome, of tool and egress calls) names the upstream
	// credentials the gateway attached to the call on the agent's behalf, one "<type>:<name>"
	// each ("bearer:crm-key", "oauth_client_credentials:crm", "receipt:billing"); never a
	// value.
	Credentials []string `json:"credentials,omitempty"`
	// PolicySigner names the trusted key that signed the policy bundle of PolicyVersion
	// (as trust.policy_signers names it); empty when that policy was not a signed bundle.
	// Together with PolicyVersion — the bundle's hash — it says on every event which
	// policy was in force and who vouched for it.
	PolicySigner string `json:"policy_signer,omitempty"`
	// Pruned marks a tombstone: an event whose retention ran out and whose content was
	// removed behind a signed checkpoint. A tombstone keeps Seq, Time, Kind, RequestID,
	// PrevHash and Hash, so the chain still links through it; its content cannot be
	// checked any more (see [Verify]). The log never appends one.
	Pruned   bool   `json:"pruned,omitempty"`
	PrevHash string `json:"prev_hash"` // Hash of event Seq-1; "" for Seq 1
	Hash     string `json:"hash"`      // "sha256:<hex>" of the canonical form; see ComputeHash
}

// Values of [Event].Captured: what became of a call's content when capture is on. The
// content is the arguments on call.intent and call.refused, the result on call.outcome.
const (
	// CapturedArguments: Arguments holds the call's arguments. It is absent when the agent
	// sent none (ArgsSummary is "(none)").
	CapturedArguments = "arguments"
	// CapturedResult: Result holds the upstream's result.
	CapturedResult = "result"
	// CapturedTooLarge: the content was larger than the capture bound and is not recorded;
	// ArgsSummary or ResultBytes still describe it.
	CapturedTooLarge = "too_large"
	// CapturedInvalid: the content was not valid JSON in UTF-8 and is not recorded.
	CapturedInvalid = "invalid_json"
)

// hashPrefix starts every hash in the log.
const hashPrefix = "sha256:"

// MarshalRecord returns the canonical JSON encoding of e, described in the
// package documentation, with Hash as it is set. It is the record a [Store]
// persists: ComputeHash hashes the same encoding with Hash empty. It fails, naming
// the field, for a Time outside the years 0 to 9999, a NaN or infinite Spend or
// charge, and Arguments or Result that are not JSON, all of which [Log.Append]
// rejects.
func (e *Event) MarshalRecord() ([]byte, error) {
	bp, b, err := e.encodeScratch()
	if err != nil {
		return nil, err
	}
	rec := bytes.Clone(b)
	putRecordBuf(bp, b)
	return rec, nil
}

// ComputeHash returns "sha256:" and the lower-case hex SHA-256 of e's
// canonical form with Hash set to "" (see the package documentation). It
// ignores e.Hash and does not modify e. Because PrevHash is part of the
// canonical form, the hash covers the whole chain before e. For an event that
// cannot be encoded (a Time outside the years 0 to 9999) it returns "", which
// matches no stored hash.
func (e *Event) ComputeHash() string {
	c := *e
	c.Hash = ""
	bp, b, err := c.encodeScratch()
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	putRecordBuf(bp, b)
	return hashString(&sum)
}

// Seal sets e.Hash to the hash of e's canonical form and returns e's record, the bytes
// [Event.MarshalRecord] returns once Hash is set, encoding the event once where
// ComputeHash followed by MarshalRecord encodes it twice: the record is the hashed form
// with the hash written into its last member. The record is a string because that is
// what a [SealingStore] keeps: it is built in one allocation.
func (e *Event) Seal() (string, error) {
	e.Hash = ""
	bp, b, err := e.encodeScratch()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	e.Hash = hashString(&sum)
	// The record ends in `"hash":""}` (appendRecord writes hash last, always).
	var rec strings.Builder
	rec.Grow(len(b) + len(e.Hash))
	rec.Write(b[:len(b)-2])
	rec.WriteString(e.Hash)
	rec.WriteString(`"}`)
	putRecordBuf(bp, b)
	return rec.String(), nil
}

// hashString formats a SHA-256 sum as the log writes hashes: hashPrefix and lower-case
// hex, in one allocation.
func hashString(sum *[sha256.Size]byte) string {
	var b [len(hashPrefix) + 2*sha256.Size]byte
	copy(b[:], hashPrefix)
	hex.Encode(b[len(hashPrefix):], sum[:])
	return string(b[:])
}

// encodeScratch encodes e's record into a pooled buffer; the caller hands both back to
// putRecordBuf when done with b.
func (e *Event) encodeScratch() (*[]byte, []byte, error) {
	bp := recordBufs.Get().(*[]byte)
	b, err := appendRecord((*bp)[:0], e)
	if err != nil {
		recordBufs.Put(bp)
		return nil, nil, fmt.Errorf("audit: encode event %d: %w", e.Seq, err)
	}
	return bp, b, nil
}

// recordBufs holds buffers records are encoded in before they are copied out or hashed.
var recordBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// putRecordBuf returns bp, now holding b's storage, to the pool, unless b grew past
// what a record without captured content needs.
func putRecordBuf(bp *[]byte, b []byte) {
	if cap(b) > 16<<10 {
		return
	}
	*bp = b
	recordBufs.Put(bp)
}

// ParseRecord decodes a record written by [Event.MarshalRecord]. It accepts
// only the canonical form: unknown or duplicated fields, other spellings of
// keys, whitespace, trailing data, or a time not in UTC or finer than a
// microsecond are errors, so a store that reads records
// through ParseRecord hands out events whose stored bytes are exactly the
// bytes that were hashed.
func ParseRecord(raw []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(raw, &e); err != nil {
		return Event{}, fmt.Errorf("decode record: %w", err)
	}
	canon, err := e.MarshalRecord()
	if err != nil {
		return Event{}, err
	}
	_, offset := e.Time.Zone()
	if !bytes.Equal(canon, raw) || offset != 0 || e.Time.Nanosecond()%1000 != 0 {
		return Event{}, errors.New("record is not in canonical form")
	}
	e.Time = e.Time.UTC()
	return e, nil
}

// CorruptError reports a stored record that cannot be read back as an [Event]:
// it is not canonical JSON, or it sits at a position other than its own Seq.
// A [Source] returns it (possibly wrapped) from ScanEvents for the first such
// record it meets, and [Verify] reports it as the break at Seq. A record can
// only get there by someone writing the store behind the log's back.
type CorruptError struct {
	Seq int64 // the position of the record in the store
	Err error // what is wrong with it
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("audit: event %d unreadable: %v", e.Seq, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// ErrInvalidEvent is returned, wrapped, by [Log.Append] for an event that
// cannot be recorded: it has no Kind, no Time or a Time outside the years 1 to
// 9999, or it is a call intent or outcome without a RequestID. It is a
// programming error in the caller, which must refuse the call it describes.
var ErrInvalidEvent = errors.New("invalid audit event")

// normalize returns a copy of e ready to be chained: Time in UTC truncated to
// microseconds, strings valid UTF-8 (the JSON encoder would replace invalid
// bytes with an escape that does not survive a decode and re-encode), Rules
// copied so the caller keeps its slice.
func normalize(e Event) Event {
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	for _, s := range []*string{
		&e.Kind, &e.RequestID, &e.SessionID, &e.Agent, &e.User, &e.Tool, &e.Upstream,
		&e.ArgsHash, &e.ArgsSummary, &e.Decision, &e.Reason, &e.Message, &e.PolicyVersion, &e.Detail,
		&e.Task, &e.TokenID, &e.ShadowDecision, &e.Captured, &e.Prompt, &e.Explanation, &e.Approval,
		&e.IdempotencyKey, &e.Scope, &e.PolicySigner,
	} {
		*s = strings.ToValidUTF8(*s, "\uFFFD")
	}
	if e.Charges != nil {
		m := make(map[string]float64, len(e.Charges))
		for k, v := range e.Charges {
			m[strings.ToValidUTF8(k, "\uFFFD")] += v
		}
		e.Charges = m
	}
	for _, list := range []*[]string{&e.Rules, &e.Chain, &e.ShadowRules, &e.RiskFactors, &e.Deviations, &e.Sensors, &e.Credentials} {
		if *list != nil {
			*list = slices.Clone(*list)
			for i, r := range *list {
				(*list)[i] = strings.ToValidUTF8(r, "\uFFFD")
			}
		}
	}
	for _, raw := range []*json.RawMessage{&e.Arguments, &e.Result} {
		if len(*raw) > 0 {
			*raw = compactJSON(*raw)
		}
	}
	e.Seq, e.PrevHash, e.Hash = 0, "", ""
	return e
}

// compactJSON returns a copy of raw in the form the canonical encoding gives it: invalid
// UTF-8 replaced with U+FFFD (in valid JSON such bytes can only be inside strings, so the
// JSON stays valid) and insignificant whitespace removed. Anything else — escapes, key
// order, the spelling of numbers — stays as it was. JSON that does not compact is returned
// as it is, for validate to refuse.
func compactJSON(raw json.RawMessage) json.RawMessage {
	b := []byte(strings.ToValidUTF8(string(raw), "\uFFFD"))
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return b
	}
	return buf.Bytes()
}

// validate reports why a normalized event cannot be recorded.
func validate(e *Event) error {
	switch {
	case e.Kind == "":
		return fmt.Errorf("audit: append: event has no kind: %w", ErrInvalidEvent)
	case e.Pruned:
		return fmt.Errorf("audit: append %s: a tombstone cannot be appended: %w", e.Kind, ErrInvalidEvent)
	case e.Time.IsZero():
		return fmt.Errorf("audit: append %s: event has no time: %w", e.Kind, ErrInvalidEvent)
	case e.Time.Year() < 1 || e.Time.Year() > 9999:
		return fmt.Errorf("audit: append %s: time %s out of range: %w", e.Kind, e.Time, ErrInvalidEvent)
	case (e.Kind == KindCallIntent || e.Kind == KindCallOutcome) && e.RequestID == "":
		return fmt.Errorf("audit: append %s: event has no request_id: %w", e.Kind, ErrInvalidEvent)
	case len(e.Arguments) > 0 && !json.Valid(e.Arguments):
		return fmt.Errorf("audit: append %s: arguments are not valid JSON: %w", e.Kind, ErrInvalidEvent)
	case len(e.Result) > 0 && !json.Valid(e.Result):
		return fmt.Errorf("audit: append %s: result is not valid JSON: %w", e.Kind, ErrInvalidEvent)
	case !finite(e.Spend):
		return fmt.Errorf("audit: append %s: spend %v is not a finite number: %w", e.Kind, e.Spend, ErrInvalidEvent)
	}
	for name, v := range e.Charges {
		if !finite(v) {
			return fmt.Errorf("audit: append %s: charge %q of %v is not a finite number: %w", e.Kind, name, v, ErrInvalidEvent)
		}
	}
	return nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
