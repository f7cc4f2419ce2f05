package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// appendRecord appends e's canonical form (see the package documentation) to b. It writes
// the bytes encoding/json writes for the [Event] struct through an Encoder with
// SetEscapeHTML(false), without its newline, and fails where that fails; it exists
// because it is several times faster and every event is encoded at least once on its
// way to the log. FuzzRecordMatchesEncodingJSON holds the two to the same output.
// A field added to Event must be added here, in struct order.
func appendRecord(b []byte, e *Event) ([]byte, error) {
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, e.Seq, 10)
	b = append(b, `,"time":"`...)
	var err error
	if b, err = e.Time.AppendText(b); err != nil {
		return nil, fmt.Errorf("time: %w", err)
	}
	b = append(b, '"')
	b = appendMember(b, "kind", e.Kind, true)
	b = appendMember(b, "request_id", e.RequestID, false)
	b = appendMember(b, "session_id", e.SessionID, false)
	b = appendMember(b, "agent", e.Agent, false)
	b = appendMember(b, "user", e.User, false)
	b = appendMember(b, "tool", e.Tool, false)
	b = appendMember(b, "upstream", e.Upstream, false)
	b = appendMember(b, "args_hash", e.ArgsHash, false)
	b = appendMember(b, "args_summary", e.ArgsSummary, false)
	b = appendMember(b, "decision", e.Decision, false)
	b = appendMember(b, "reason", e.Reason, false)
	b = appendMember(b, "message", e.Message, false)
	b = appendList(b, "rules", e.Rules)
	b = appendMember(b, "policy_version", e.PolicyVersion, false)
	b = appendInt(b, "latency_us", e.LatencyMicros)
	b = appendInt(b, "result_bytes", e.ResultBytes)
	b = appendBool(b, "result_error", e.ResultError)
	b = appendMember(b, "detail", e.Detail, false)
	b = appendMember(b, "task", e.Task, false)
	b = appendList(b, "chain", e.Chain)
	b = appendMember(b, "token_id", e.TokenID, false)
	b = appendMember(b, "shadow_decision", e.ShadowDecision, false)
	b = appendList(b, "shadow_rules", e.ShadowRules)
	if b, err = appendRaw(b, "arguments", e.Arguments); err != nil {
		return nil, err
	}
	if b, err = appendRaw(b, "result", e.Result); err != nil {
		return nil, err
	}
	b = appendMember(b, "captured", e.Captured, false)
	b = appendMember(b, "prompt", e.Prompt, false)
	b = appendMember(b, "explanation", e.Explanation, false)
	b = appendInt(b, "risk", int64(e.Risk))
	b = appendList(b, "risk_factors", e.RiskFactors)
	b = appendMember(b, "approval", e.Approval, false)
	if e.Spend != 0 {
		b = appendKey(b, "spend")
		if b, err = appendFloat(b, "spend", e.Spend); err != nil {
			return nil, err
		}
	}
	b = appendInt(b, "tokens", e.Tokens)
	if len(e.Charges) > 0 {
		if b, err = appendCharges(b, e.Charges); err != nil {
			return nil, err
		}
	}
	b = appendInt(b, "steps", e.Steps)
	b = appendList(b, "deviations", e.Deviations)
	b = appendMember(b, "idempotency_key", e.IdempotencyKey, false)
	b = appendList(b, "sensors", e.Sensors)
	b = appendMember(b, "scope", e.Scope, false)
	b = appendList(b, "credentials", e.Credentials)
	b = appendMember(b, "policy_signer", e.PolicySigner, false)
	b = appendBool(b, "pruned", e.Pruned)
	b = appendMember(b, "prev_hash", e.PrevHash, true)
	b = appendMember(b, "hash", e.Hash, true)
	return append(b, '}'), nil
}

// appendKey appends a comma and the quoted key with its colon. Keys are plain ASCII.
func appendKey(b []byte, key string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

// appendMember appends key and the string s, unless s is empty and may be omitted.
func appendMember(b []byte, key, s string, always bool) []byte {
	if s == "" && !always {
		return b
	}
	return appendString(appendKey(b, key), s)
}

func appendInt(b []byte, key string, n int64) []byte {
	if n == 0 {
		return b
	}
	return strconv.AppendInt(appendKey(b, key), n, 10)
}

func appendBool(b []byte, key string, v bool) []byte {
	if !v {
		return b
	}
	return append(appendKey(b, key), "true"...)
}

func appendList(b []byte, key string, l []string) []byte {
	if len(l) == 0 {
		return b
	}
	b = append(appendKey(b, key), '[')
	for i, s := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// appendRaw appends key and raw compacted, as encoding/json writes a json.RawMessage; raw
// that is not valid JSON is an error.
func appendRaw(b []byte, key string, raw json.RawMessage) ([]byte, error) {
	if len(raw) == 0 {
		return b, nil
	}
	b = appendKey(b, key)
	buf := bytes.NewBuffer(b) // appends after b's contents, in b's spare room if it fits
	if err := json.Compact(buf, raw); err != nil {
		return nil, fmt.Errorf("%s: not valid JSON: %w", key, err)
	}
	return buf.Bytes(), nil
}

// appendCharges appends the charges member: keys in sorted order, as encoding/json
// writes a map.
func appendCharges(b []byte, m map[string]float64) ([]byte, error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(appendKey(b, "charges"), '{')
	var err error
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(appendString(b, k), ':')
		if b, err = appendFloat(b, "charges", m[k]); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// appendFloat appends f as encoding/json writes a float64: the shortest decimal that
// reads back as f, in exponent form below 1e-6 and from 1e21, with a one-digit negative
// exponent not zero-padded.
func appendFloat(b []byte, key string, f float64) ([]byte, error) {
	if !finite(f) {
		return nil, fmt.Errorf("%s: %v is not a number JSON can hold", key, f)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

const hexDigits = "0123456789abcdef"

// appendString appends s quoted as encoding/json quotes it without HTML escaping: `"`
// and `\` escaped, \b \f \n \r \t and other bytes below 0x20 as escapes, invalid UTF-8
// as \ufffd, U+2028 and U+2029 escaped, everything else as it is.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
