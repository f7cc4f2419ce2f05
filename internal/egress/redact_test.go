package egress

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/chaperone-dev/chaperone/internal/credential"
)

func TestRedactReaderFindsValuesAcrossReads(t *testing.T) {
	values := injectedValues(http.Header{"Authorization": {"Bearer tok-0123456789"}, "X-Short": {"abc"}})
	if len(values) != 2 || string(values[0]) != "Bearer tok-0123456789" || string(values[1]) != "tok-0123456789" {
		t.Fatalf("injectedValues = %q, want the header value and its token, longest first, short ones left out", values)
	}
	body := "start tok-0123456789 middle Bearer tok-0123456789 abc end tok-0123456789"
	want := "start " + credential.Redaction + " middle " + credential.Redaction + " abc end " + credential.Redaction
	// Every way of cutting the body into reads: one byte at a time, and halves at every
	// position.
	readers := map[string]io.Reader{"one byte": iotest.OneByteReader(strings.NewReader(body))}
	for i := 0; i <= len(body); i++ {
		readers["split "+string(rune('0'+i%10))+strings.Repeat("'", i/10)] = io.MultiReader(strings.NewReader(body[:i]), strings.NewReader(body[i:]))
	}
	for name, r := range readers {
		got, err := io.ReadAll(newRedactReader(r, values))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
}

func TestRedactReaderPassesErrors(t *testing.T) {
	boom := io.ErrUnexpectedEOF
	r := newRedactReader(io.MultiReader(strings.NewReader("data tok-0123456789"), iotest.ErrReader(boom)), [][]byte{[]byte("tok-0123456789")})
	got, err := io.ReadAll(r)
	if err != boom || !bytes.Equal(got, []byte("data "+credential.Redaction)) {
		t.Errorf("ReadAll = %q, %v; want the redacted data and %v", got, err, boom)
	}
}

func FuzzRedactReader(f *testing.F) {
	f.Add("xx secret-value-1 yy", 3)
	f.Add("secret-value-1secret-value-1", 1)
	f.Fuzz(func(t *testing.T, body string, chunk int) {
		if chunk < 1 || chunk > 64 {
			return
		}
		values := [][]byte{[]byte("secret-value-1")}
		got, err := io.ReadAll(newRedactReader(&chunkReader{s: body, n: chunk}, values))
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.ReplaceAll(body, "secret-value-1", credential.Redaction); string(got) != want {
			t.Errorf("streamed %q, want %q", got, want)
		}
	})
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	s string
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.s == "" {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), c.n)], c.s)
	c.s = c.s[k:]
	return k, nil
}
