package egress

import (
	"bytes"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/chaperone-dev/chaperone/internal/credential"
)

// minSecretLen is the shortest injected value the proxy looks for in responses: shorter
// ones would match ordinary text (the credential broker's redactor draws the same line).
const minSecretLen = credential.MinRedactLen

// injectedValues returns what to look for in the response to a request that carried
// injected headers h: each value, and each value's credential after its scheme ("Bearer
// <token>" → also "<token>"), when long enough to be told from ordinary text.
func injectedValues(h http.Header) [][]byte {
	var out [][]byte
	add := func(v string) {
		if len(v) >= minSecretLen {
			out = append(out, []byte(v))
		}
	}
	for _, vv := range h {
		for _, v := range vv {
			add(v)
			if _, cred, ok := strings.Cut(v, " "); ok {
				add(cred)
			}
		}
	}
	// Longest first, so that a value is replaced whole before a part of it is looked for.
	slices.SortStableFunc(out, func(a, b []byte) int { return len(b) - len(a) })
	return out
}

// redactHeader replaces the values in every response header.
func redactHeader(h http.Header, values [][]byte) {
	for k, vv := range h {
		for i, v := range vv {
			vv[i] = string(redactAll([]byte(v), values))
		}
		h[k] = vv
	}
}

func redactAll(b []byte, values [][]byte) []byte {
	for _, v := range values {
		if bytes.Contains(b, v) {
			b = bytes.ReplaceAll(b, v, []byte(credential.Redaction))
		}
	}
	return b
}

// redactReader streams r with every occurrence of the values replaced. It holds back the
// last longest-value-minus-one bytes of what it has read, so that a value split across
// reads is still found whole: any occurrence that starts before the held-back tail ends
// within what has been read, and has been replaced.
type redactReader struct {
	r      io.Reader
	values [][]byte
	keep   int
	chunk  []byte // the read buffer, reused
	buf    []byte // read and redacted, held back until more has been read
	ready  []byte // redacted and safe to return
	eof    bool
	err    error
}

func newRedactReader(r io.Reader, values [][]byte) *redactReader {
	keep := 0
	for _, v := range values {
		keep = max(keep, len(v)-1)
	}
	return &redactReader{r: r, values: values, keep: keep, chunk: make([]byte, 32<<10)}
}

func (rr *redactReader) Read(p []byte) (int, error) {
	for len(rr.ready) == 0 {
		if rr.eof {
			if len(rr.buf) > 0 {
				rr.ready, rr.buf = rr.buf, nil
				break
			}
			return 0, rr.err
		}
		n, err := rr.r.Read(rr.chunk)
		rr.buf = redactAll(append(rr.buf, rr.chunk[:n]...), rr.values)
		if err != nil {
			rr.eof, rr.err = true, err // io.EOF included: returned once everything is
			continue
		}
		if cut := len(rr.buf) - rr.keep; cut > 0 {
			rr.ready = rr.buf[:cut:cut]
			rr.buf = append([]byte(nil), rr.buf[cut:]...)
		}
	}
	n := copy(p, rr.ready)
	rr.ready = rr.ready[n:]
	return n, nil
}
