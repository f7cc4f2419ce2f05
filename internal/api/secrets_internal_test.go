package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// FuzzDecodeSecretBody checks that whatever a PUT body holds, decoding it never panics
// and its error is one of the kinds secretBadBody answers without quoting the body: the
// body holds a secret. Only a field name the client chose may come back.
func FuzzDecodeSecretBody(f *testing.F) {
	for _, s := range []string{
		`{"value": "sk_live_x", "description": "d", "by": "alice"}`,
		`{"value": "sk_live_x", "valeu": 1}`,
		`{"value": "sk_live_x`,
		`{"value": 42}`,
		`{"value": "a"} {"value": "b"}`,
		`{"value": "a\u0000b"}`,
		``, `[]`, `null`, `"sk_live_x"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var body struct {
			Value       *string `json:"value"`
			Description string  `json:"description"`
			By          string  `json:"by"`
		}
		w := httptest.NewRecorder()
		r := io.NopCloser(bytes.NewReader(data))
		err := decodeSecretBody(http.MaxBytesReader(w, r, 1<<10), &body)
		var (
			mbe *http.MaxBytesError
			ute *json.UnmarshalTypeError
			ufe unknownFieldError
		)
		switch {
		case err == nil, errors.Is(err, io.EOF), errors.Is(err, errSecretSyntax), errors.Is(err, errSecretTrailing), errors.As(err, &mbe):
		case errors.As(err, &ute):
			if strings.Contains(err.Error(), "sk_live") && !strings.Contains(ute.Field, "sk_live") {
				t.Fatalf("type error %q quotes the body", err)
			}
		case errors.As(err, &ufe):
			name, ok := strings.CutPrefix(string(ufe), "unknown field ")
			if !ok {
				t.Fatalf("unknown field error %q has an unexpected form", ufe)
			}
			if _, err := strconv.Unquote(name); err != nil {
				t.Fatalf("unknown field error %q does not quote a field name", ufe)
			}
		default:
			t.Fatalf("decodeSecretBody(%q) = %T %v, an error secretBadBody would not answer safely", data, err, err)
		}
	})
}

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		method, path string
		want         int64
	}{
		{"PUT", "/v1/secrets/crm", maxSecretBody},
		{"GET", "/v1/secrets/crm", maxAdminBody},
		{"POST", "/v1/secrets/crm", maxAdminBody},
		{"PUT", "/v1/secrets", maxAdminBody},
		{"POST", "/v1/agents", maxAdminBody},
		{"POST", "/v1/secret-keys/rotate", maxAdminBody},
	} {
		r := httptest.NewRequest(tt.method, tt.path, nil)
		if got := bodyLimit(r); got != tt.want {
			t.Errorf("bodyLimit(%s %s) = %d, want %d", tt.method, tt.path, got, tt.want)
		}
	}
}
