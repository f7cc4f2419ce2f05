package api

// The secrets routes. A secret's value is write-only: it travels in the body of a PUT
// and no route ever answers with it, nor logs it. The rotation route lives apart from
// /v1/secrets/ so that it cannot collide with a secret named "rotate":
//
//	GET    /v1/secrets               {"secrets": [Meta, ...]}, by name
//	GET    /v1/secrets/{name}        Meta
//	PUT    /v1/secrets/{name}        {"value": "...", "description": "...", "by": "alice"} → Meta
//	DELETE /v1/secrets/{name}[?by=alice]
//	POST   /v1/secret-keys/rotate    {"by": "alice"} (body optional) → RotateResult
//
// Who acts is recorded as "admin-api", or "admin-api:<by>" when the request names
// someone; the admin token is one credential, so the name is the caller's word.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/chaperone-dev/chaperone/internal/secrets"
)

// SecretsAdmin is what the API needs of the secret vault; *secrets.Vault has it.
type SecretsAdmin interface {
	Set(ctx context.Context, name string, value []byte, description, by string) (secrets.Meta, error)
	Delete(ctx context.Context, name, by string) error
	List(ctx context.Context) ([]secrets.Meta, error)
	Meta(ctx context.Context, name string) (secrets.Meta, error)
	Rotate(ctx context.Context, by string) (secrets.RotateResult, error)
}

var _ SecretsAdmin = (*secrets.Vault)(nil)

// Bounds of the secrets routes.
const (
	// maxSecretBody bounds a PUT body: a 64 KiB value with room for JSON escapes, a
	// description and who acts.
	maxSecretBody = 128 << 10
	// maxAdminBody bounds every other request body.
	maxAdminBody = 64 << 10
	// maxSecretBy bounds the name of who acts, so that "admin-api:<by>" fits the 128
	// bytes a secret's author may have.
	maxSecretBy = secrets.MaxUpdatedBy - len(secretsBy) - 1
	// secretsBy is who acts on secrets through this API.
	secretsBy = "admin-api"
)

// bodyLimit is how many bytes the body of r may have.
func bodyLimit(r *http.Request) int64 {
	if r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/secrets/") {
		return maxSecretBody
	}
	return maxAdminBody
}

// SecretList is the answer of GET /v1/secrets.
type SecretList struct {
	Secrets []secrets.Meta `json:"secrets"`
}

// SecretDeleted is the answer of DELETE /v1/secrets/{name}.
type SecretDeleted struct {
	Name    string `json:"name"`
	Deleted bool   `json:"deleted"`
}

func (a *server) secretRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/secrets", a.needSecrets(a.secretList))
	mux.HandleFunc("GET /v1/secrets/{name}", a.needSecrets(a.secretMeta))
	mux.HandleFunc("PUT /v1/secrets/{name}", a.needSecrets(a.secretSet))
	mux.HandleFunc("DELETE /v1/secrets/{name}", a.needSecrets(a.secretDelete))
	mux.HandleFunc("POST /v1/secret-keys/rotate", a.needSecrets(a.secretRotate))
}

func (a *server) needSecrets(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.opts.Secrets == nil {
			a.fail(w, r, http.StatusNotImplemented, "the secret vault is not wired in this gateway (secrets.key_file)", nil)
			return
		}
		h(w, r)
	}
}

// secretError answers an error of the vault. Messages of input errors, unknown secrets
// and keys are safe: they name secrets, key ids and bounds, never a value.
func (a *server) secretError(w http.ResponseWriter, r *http.Request, what string, err error) {
	switch {
	case errors.Is(err, secrets.ErrInvalid):
		a.fail(w, r, http.StatusBadRequest, "invalid: "+strings.TrimPrefix(err.Error(), "secrets: "), nil)
	case errors.Is(err, secrets.ErrUnknownSecret):
		a.fail(w, r, http.StatusNotFound, "no secret has that name", nil)
	case errors.Is(err, secrets.ErrNotAudited):
		a.fail(w, r, http.StatusServiceUnavailable, "refused: the audit log could not record the change, so it was not made", err)
	case errors.Is(err, secrets.ErrNoKeyring):
		a.fail(w, r, http.StatusServiceUnavailable, "no secrets keyring is loaded (secrets.key_file)", err)
	case errors.Is(err, secrets.ErrUnknownKey), errors.Is(err, secrets.ErrDecrypt):
		// Rotation: which secrets did not open, and under which key ids.
		a.fail(w, r, http.StatusConflict, strings.TrimPrefix(err.Error(), "secrets: "), err)
	default:
		a.fail(w, r, http.StatusInternalServerError, what+" failed", err)
	}
}

// secretBy is who acts: "admin-api", or "admin-api:<by>".
func secretBy(by string) (string, error) {
	switch {
	case by == "":
		return secretsBy, nil
	case len(by) > maxSecretBy:
		return "", fmt.Errorf("by is %d bytes, more than %d", len(by), maxSecretBy)
	}
	return secretsBy + ":" + by, nil
}

func (a *server) secretList(w http.ResponseWriter, r *http.Request) {
	ms, err := a.opts.Secrets.List(r.Context())
	if err != nil {
		a.secretError(w, r, "listing the secrets", err)
		return
	}
	if ms == nil {
		ms = []secrets.Meta{}
	}
	writeJSON(w, http.StatusOK, SecretList{Secrets: ms})
}

func (a *server) secretMeta(w http.ResponseWriter, r *http.Request) {
	m, err := a.opts.Secrets.Meta(r.Context(), r.PathValue("name"))
	if err != nil {
		a.secretError(w, r, "reading the secret", err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

// secretSetShape is what a PUT body must be, for errors.
const secretSetShape = `{"value": "<1 byte to 64 KiB>", "description": "<optional, at most 200 bytes>", "by": "<optional: who sets it>"}`

func (a *server) secretSet(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Value       *string `json:"value"`
		Description string  `json:"description"`
		By          string  `json:"by"`
	}
	if err := decodeSecretBody(r.Body, &body); err != nil {
		a.secretBadBody(w, r, secretSetShape, err)
		return
	}
	if body.Value == nil {
		a.fail(w, r, http.StatusBadRequest, "body must be "+secretSetShape+": value is missing", nil)
		return
	}
	by, err := secretBy(body.By)
	if err != nil {
		a.fail(w, r, http.StatusBadRequest, "invalid: "+err.Error(), nil)
		return
	}
	value := []byte(*body.Value)
	m, err := a.opts.Secrets.Set(r.Context(), r.PathValue("name"), value, body.Description, by)
	clear(value)
	if err != nil {
		a.secretError(w, r, "storing the secret", err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (a *server) secretDelete(w http.ResponseWriter, r *http.Request) {
	by, err := secretBy(r.URL.Query().Get("by"))
	if err != nil {
		a.fail(w, r, http.StatusBadRequest, "invalid: "+err.Error(), nil)
		return
	}
	name := r.PathValue("name")
	if err := a.opts.Secrets.Delete(r.Context(), name, by); err != nil {
		a.secretError(w, r, "deleting the secret", err)
		return
	}
	writeJSON(w, http.StatusOK, SecretDeleted{Name: name, Deleted: true})
}

func (a *server) secretRotate(w http.ResponseWriter, r *http.Request) {
	var body struct {
		By string `json:"by"`
	}
	// The body is optional: an empty one names no one.
	if err := decodeSecretBody(r.Body, &body); err != nil && !errors.Is(err, io.EOF) {
		a.secretBadBody(w, r, `{"by": "<optional: who rotates>"} or nothing`, err)
		return
	}
	by, err := secretBy(body.By)
	if err != nil {
		a.fail(w, r, http.StatusBadRequest, "invalid: "+err.Error(), nil)
		return
	}
	res, err := a.opts.Secrets.Rotate(r.Context(), by)
	if err != nil {
		a.secretError(w, r, "the rotation", err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// decodeSecretBody decodes one JSON object, refusing unknown fields and trailing data.
// Unlike decodeBody's, its errors never quote the body, which holds a secret: they are
// errSecretSyntax, io.EOF for an empty body, an *http.MaxBytesError, or a
// *json.UnmarshalTypeError or unknownFieldError that name a field.
func decodeSecretBody(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = errSecretTrailing
		}
	}
	var (
		mbe *http.MaxBytesError
		ute *json.UnmarshalTypeError
	)
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.As(err, &mbe), errors.Is(err, errSecretTrailing):
		return err
	case errors.As(err, &ute):
		return &json.UnmarshalTypeError{Field: ute.Field, Value: ute.Value, Type: ute.Type}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// The field's name, which the client chose; quoted by encoding/json.
		return unknownFieldError(strings.TrimPrefix(err.Error(), "json: "))
	}
	return errSecretSyntax
}

var (
	errSecretSyntax   = errors.New("body is not valid JSON")
	errSecretTrailing = errors.New("trailing data after the JSON object")
)

// unknownFieldError is encoding/json's "unknown field" error, which names the field.
type unknownFieldError string

func (e unknownFieldError) Error() string { return string(e) }

// secretBadBody answers a body that is not the JSON expected, without quoting it.
func (a *server) secretBadBody(w http.ResponseWriter, r *http.Request, shape string, err error) {
	var (
		mbe *http.MaxBytesError
		ute *json.UnmarshalTypeError
		ufe unknownFieldError
	)
	msg := "body must be " + shape
	switch {
	case errors.As(err, &mbe):
		a.fail(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("body exceeds %d bytes", mbe.Limit), nil)
		return
	case errors.As(err, &ute) && ute.Field != "":
		msg = fmt.Sprintf("%s: wrong type for %q", msg, ute.Field)
	case errors.As(err, &ufe):
		msg = fmt.Sprintf("%s: %s", msg, string(ufe))
	case errors.Is(err, io.EOF):
		msg += ": the body is empty"
	case err != nil:
		msg = fmt.Sprintf("%s: %v", msg, err)
	}
	a.fail(w, r, http.StatusBadRequest, msg, nil)
}
