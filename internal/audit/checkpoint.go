package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/internal/sign"
)

// Checkpoint is a signed statement of the chain's head at a point in time: the log held
// Seq events and the last one's hash was Head. The gateway signs one periodically with its
// own Ed25519 key and publishes it outside the store, so that a log cut short at its end,
// or rewritten as a whole, no longer passes [VerifyChain]: the events a checkpoint covers
// must still be there, with the same head.
//
// Its JSON form (one object, keys in this order, no whitespace) is what [MarshalJSON]
// writes, what the publishers send and what [ParseCheckpoint] reads.
type Checkpoint struct {
	Seq  int64     `json:"seq"`  // events covered: 1 to Seq
	Head string    `json:"head"` // the Hash of event Seq
	Time time.Time `json:"time"` // when it was signed (UTC, to the microsecond)
	Key  string    `json:"key"`  // the signing key's id; see [sign.KeyID]
	Sig  string    `json:"sig"`  // base64 (standard, padded) Ed25519 signature of [Checkpoint.SignedBytes]
}

// Bounds of a checkpoint record.
const (
	// MaxCheckpointBytes bounds one encoded checkpoint.
	MaxCheckpointBytes = 1024
	checkpointDomain   = "chaperone audit checkpoint v1"
)

// SignedBytes is the message a checkpoint's signature covers:
//
//	chaperone audit checkpoint v1\nseq=<Seq>\nhead=<Head>\ntime=<RFC 3339, nanoseconds>\nkey=<Key>\n
//
// A text form, so that anyone can check a checkpoint with any Ed25519 implementation.
func (c *Checkpoint) SignedBytes() []byte {
	return fmt.Appendf(nil, "%s\nseq=%d\nhead=%s\ntime=%s\nkey=%s\n",
		checkpointDomain, c.Seq, c.Head, c.Time.UTC().Format(time.RFC3339Nano), c.Key)
}

// SignCheckpoint returns the checkpoint of a chain whose event seq has hash head, signed
// with key at the time at.
func SignCheckpoint(key ed25519.PrivateKey, seq int64, head string, at time.Time) (Checkpoint, error) {
	if len(key) != ed25519.PrivateKeySize {
		return Checkpoint{}, fmt.Errorf("audit: sign checkpoint: key of %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if seq < 1 || !validHash(head) {
		return Checkpoint{}, fmt.Errorf("audit: sign checkpoint: seq %d head %q: want a seq of at least 1 and a sha256 hash", seq, head)
	}
	c := Checkpoint{Seq: seq, Head: head, Time: at.UTC().Truncate(time.Microsecond), Key: sign.KeyID(key.Public().(ed25519.PublicKey))}
	c.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(key, c.SignedBytes()))
	return c, nil
}

// ErrBadSignature is returned, wrapped, by [Checkpoint.Check] for a checkpoint that was not
// signed by any of the keys given, or was changed after it was signed.
var ErrBadSignature = errors.New("checkpoint signature does not verify")

// Check verifies c's signature with the key among keys whose id c names.
func (c *Checkpoint) Check(keys []ed25519.PublicKey) error {
	sig, err := base64.StdEncoding.DecodeString(c.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("audit: checkpoint at event %d: signature is not %d bytes of base64: %w", c.Seq, ed25519.SignatureSize, ErrBadSignature)
	}
	for _, k := range keys {
		if sign.KeyID(k) != c.Key {
			continue
		}
		if ed25519.Verify(k, c.SignedBytes(), sig) {
			return nil
		}
		return fmt.Errorf("audit: checkpoint at event %d signed %s: %w (key %s)", c.Seq, c.Time.Format(time.RFC3339), ErrBadSignature, c.Key)
	}
	return fmt.Errorf("audit: checkpoint at event %d: signed by key %s, which is not a trusted key: %w", c.Seq, c.Key, ErrBadSignature)
}

// MarshalJSON writes the checkpoint's one canonical JSON form.
func (c Checkpoint) MarshalJSON() ([]byte, error) {
	type plain Checkpoint
	p := plain(c)
	p.Time = p.Time.UTC()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// ParseCheckpoint decodes one checkpoint record. It refuses records longer than
// [MaxCheckpointBytes], unknown fields, trailing data, a seq below 1, a head that is not a
// sha256 hash and a missing key, signature or time; it does not check the signature (see
// [Checkpoint.Check]).
func ParseCheckpoint(raw []byte) (Checkpoint, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > MaxCheckpointBytes {
		return Checkpoint{}, fmt.Errorf("audit: checkpoint of %d bytes, at most %d", len(raw), MaxCheckpointBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var c Checkpoint
	if err := dec.Decode(&c); err != nil {
		return Checkpoint{}, fmt.Errorf("audit: decode checkpoint: %w", err)
	}
	if dec.More() {
		return Checkpoint{}, errors.New("audit: decode checkpoint: data after the object")
	}
	switch {
	case c.Seq < 1:
		return Checkpoint{}, fmt.Errorf("audit: checkpoint seq %d, want at least 1", c.Seq)
	case !validHash(c.Head):
		return Checkpoint{}, fmt.Errorf("audit: checkpoint head %.80q is not sha256:<64 hex digits>", c.Head)
	case c.Time.IsZero():
		return Checkpoint{}, errors.New("audit: checkpoint has no time")
	case c.Key == "" || c.Sig == "":
		return Checkpoint{}, errors.New("audit: checkpoint has no key or signature")
	}
	c.Time = c.Time.UTC()
	return c, nil
}

// validHash reports whether h has the form of an event hash.
func validHash(h string) bool {
	rest, ok := strings.CutPrefix(h, hashPrefix)
	if !ok || len(rest) != 64 {
		return false
	}
	_, err := hex.DecodeString(rest)
	return err == nil && strings.ToLower(rest) == rest
}
