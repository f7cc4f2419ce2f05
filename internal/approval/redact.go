package approval

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

const (
	// Redacted replaces a secret in a preview.
	Redacted = "[redacted]"
	// maxPreviewString bounds each string (and object key) in a preview, in bytes.
	maxPreviewString = 2000
)

// unparseable is the preview of arguments that are not JSON.
var unparseable = json.RawMessage(`"[unparseable arguments]"`)

// secretKeyParts mark an object key whose value is a secret: a key whose lower-cased
// name contains one of them.
var secretKeyParts = []string{
	"password", "passwd", "passphrase", "secret", "token", "api_key", "api-key", "apikey",
	"authorization", "credential", "private_key", "private-key", "privatekey",
	"access_key", "access-key", "cookie", "session",
}

// credentialPatterns match strings that look like credentials wherever they appear.
var credentialPatterns = []*regexp.Regexp{
	regexp.MustCompile(`\b[sr]k_(?:live|test)_[A-Za-z0-9]{8,}`),                  // Stripe
	regexp.MustCompile(`\bsk-[A-Za-z0-9_-]{16,}`),                                // OpenAI, Anthropic
	regexp.MustCompile(`\bgh[pousr]_[A-Za-z0-9]{20,}`),                           // GitHub tokens
	regexp.MustCompile(`\bgithub_pat_[A-Za-z0-9_]{20,}`),                         // GitHub fine-grained tokens
	regexp.MustCompile(`\bxox[abposr]-[A-Za-z0-9-]{10,}`),                        // Slack
	regexp.MustCompile(`\b(?:AKIA|ASIA)[0-9A-Z]{16}\b`),                          // AWS access key ids
	regexp.MustCompile(`\beyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*`), // JWTs
	regexp.MustCompile(`(?i)\bbearer\s+[A-Za-z0-9._~+/-]{16,}=*`),                // bearer tokens
	// PEM private keys, to their end or the end of the string.
	regexp.MustCompile(`(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)`),
}

// userinfoPattern matches the password of a URL's userinfo (scheme://user:password@).
var userinfoPattern = regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^/\s@]+@`)

// Preview returns args for display, as JSON: the values of object keys that name a
// secret (password, token, api_key, authorization, cookie, session and the like,
// matched case-insensitively anywhere in the key), whatever their type, are replaced
// by "[redacted]"; credentials in any string or key (API keys with well-known
// prefixes, AWS key ids, JWTs, bearer tokens, PEM private keys, URL passwords) are
// replaced by "[redacted]" where they appear; strings and keys longer than 2,000 bytes
// are cut and end with "…(N more bytes)". Object keys keep their order, repeated ones
// included. Empty args preview as {}; args that are not JSON as the JSON string
// "[unparseable arguments]". The result is always valid JSON.
//
// Redaction is a courtesy to the people who see previews, not a security boundary: a
// secret that looks like none of these passes through.
func Preview(args json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(args)) == 0 {
		return json.RawMessage("{}")
	}
	if !json.Valid(args) {
		return bytes.Clone(unparseable)
	}
	dec := json.NewDecoder(bytes.NewReader(args))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return bytes.Clone(unparseable)
	}
	var b bytes.Buffer
	if err := writePreview(&b, dec, tok); err != nil {
		return bytes.Clone(unparseable)
	}
	return b.Bytes()
}

var errBadJSON = errors.New("invalid JSON")

// writePreview writes the preview of the value starting with tok.
func writePreview(b *bytes.Buffer, dec *json.Decoder, tok json.Token) error {
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			b.WriteByte('{')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					b.WriteByte(',')
				}
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				key, ok := kt.(string)
				if !ok {
					return errBadJSON
				}
				writeString(b, previewString(key))
				b.WriteByte(':')
				vt, err := dec.Token()
				if err != nil {
					return err
				}
				if secretKey(key) {
					if err := skipValue(dec, vt); err != nil {
						return err
					}
					writeString(b, Redacted)
					continue
				}
				if err := writePreview(b, dec, vt); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil {
				return err
			}
			b.WriteByte('}')
		case '[':
			b.WriteByte('[')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					b.WriteByte(',')
				}
				et, err := dec.Token()
				if err != nil {
					return err
				}
				if err := writePreview(b, dec, et); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil {
				return err
			}
			b.WriteByte(']')
		default:
			return errBadJSON
		}
	case string:
		writeString(b, previewString(t))
	case json.Number:
		b.WriteString(t.String())
	case bool:
		b.WriteString(strconv.FormatBool(t))
	case nil:
		b.WriteString("null")
	default:
		return errBadJSON
	}
	return nil
}

// skipValue reads the rest of the value starting with tok.
func skipValue(dec *json.Decoder, tok json.Token) error {
	if d, ok := tok.(json.Delim); !ok || (d != '{' && d != '[') {
		return nil
	}
	for depth := 1; depth > 0; {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		if d, ok := t.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
			} else {
				depth--
			}
		}
	}
	return nil
}

// secretKey reports whether an object key names a secret.
func secretKey(key string) bool {
	l := strings.ToLower(key)
	for _, p := range secretKeyParts {
		if strings.Contains(l, p) {
			return true
		}
	}
	return false
}

// RedactText returns s with the credentials it contains replaced by "[redacted]",
// for free text (an agent's reason, a deny text) shown to people.
func RedactText(s string) string {
	for _, re := range credentialPatterns {
		s = re.ReplaceAllLiteralString(s, Redacted)
	}
	return userinfoPattern.ReplaceAllString(s, "${1}:"+Redacted+"@")
}

// previewString redacts s and cuts it to maxPreviewString bytes.
func previewString(s string) string {
	s = RedactText(s)
	if len(s) <= maxPreviewString {
		return s
	}
	n := maxPreviewString
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + fmt.Sprintf("…(%d more bytes)", len(s)-n)
}
