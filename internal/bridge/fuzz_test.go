package bridge

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// The readers' table tests; their inputs seed the fuzz targets below.

type readLine struct {
	Line      string
	Oversized bool
}

var lineCases = []struct {
	name  string
	input string
	max   int
	want  []readLine
}{
	{"empty input", "", 8, nil},
	{"one line", "abc\n", 8, []readLine{{"abc", false}}},
	{"last line without newline", "abc\nde", 8, []readLine{{"abc", false}, {"de", false}}},
	{"blank lines kept", "\n\nx\n", 8, []readLine{{"", false}, {"", false}, {"x", false}}},
	{"carriage return kept", "a\r\n", 8, []readLine{{"a\r", false}}},
	{"exactly the bound", "12345678\nx\n", 8, []readLine{{"12345678", false}, {"x", false}}},
	{"one over the bound", "123456789\nx\n", 8, []readLine{{"12345678", true}, {"x", false}}},
	{"far over the bound, past the buffer", strings.Repeat("y", 100) + "\nok\n", 8, []readLine{{"yyyyyyyy", true}, {"ok", false}}},
	{"oversized last line", "ok\n" + strings.Repeat("z", 40), 8, []readLine{{"ok", false}, {"zzzzzzzz", true}}},
}

// readAllLines reads input with a 16-byte buffer (bufio's least), so that lines span
// several reads.
func readAllLines(t testing.TB, input []byte, limit int) []readLine {
	t.Helper()
	lr := &lineReader{r: bufio.NewReaderSize(bytes.NewReader(input), 16), max: limit}
	var got []readLine
	for {
		line, oversized, err := lr.next()
		if errors.Is(err, io.EOF) {
			return got
		}
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		got = append(got, readLine{string(line), oversized})
		if len(got) > len(input)+1 {
			t.Fatalf("more lines than bytes in %q", input)
		}
	}
}

func TestLineReader(t *testing.T) {
	for _, c := range lineCases {
		t.Run(c.name, func(t *testing.T) {
			if diff := cmp.Diff(c.want, readAllLines(t, []byte(c.input), c.max)); diff != "" {
				t.Errorf("lines of %q (-want +got):\n%s", c.input, diff)
			}
		})
	}
}

// FuzzLineReader: the reader splits exactly as strings.Split on "\n" would, cutting each
// line to the bound and flagging the cut ones.
func FuzzLineReader(f *testing.F) {
	for _, c := range lineCases {
		f.Add([]byte(c.input), uint8(c.max))
	}
	f.Fuzz(func(t *testing.T, input []byte, bound uint8) {
		limit := int(bound%64) + 1
		var want []readLine
		if len(input) > 0 {
			parts := strings.Split(string(input), "\n")
			if parts[len(parts)-1] == "" {
				parts = parts[:len(parts)-1]
			}
			for _, p := range parts {
				if len(p) > limit {
					want = append(want, readLine{p[:limit], true})
				} else {
					want = append(want, readLine{p, false})
				}
			}
		}
		if diff := cmp.Diff(want, readAllLines(t, input, limit)); diff != "" {
			t.Errorf("lines of %q, bound %d (-want +got):\n%s", input, limit, diff)
		}
	})
}

type event struct {
	Name, ID string
	HasID    bool
	Data     string
}

var sseCases = []struct {
	name  string
	input string
	want  []event
	err   string // the error that ends the stream, "" for io.EOF
}{
	{"one message", "data: {}\n\n", []event{{Data: "{}"}}, ""},
	{"named, with id", "event: message\nid: 7\ndata: {\"a\":1}\n\n", []event{{Name: "message", ID: "7", HasID: true, Data: `{"a":1}`}}, ""},
	{"data lines joined", "data: {\ndata:\"a\":1}\n\n", []event{{Data: "{\n\"a\":1}"}}, ""},
	{"only one space removed", "data:  x\n\n", []event{{Data: " x"}}, ""},
	{"CRLF and CR line ends", "data: a\r\n\r\ndata: b\r\rdata: c\n\n", []event{{Data: "a"}, {Data: "b"}, {Data: "c"}}, ""},
	{"comments and unknown fields ignored", ": hi\nretry: 10\nfoo: bar\ndata: x\n\n", []event{{Data: "x"}}, ""},
	{"blank lines alone ignored", "\n\n\ndata: x\n\n", []event{{Data: "x"}}, ""},
	{"priming event: id, no data", "id: e0\ndata:\n\n", []event{{ID: "e0", HasID: true}}, ""},
	{"field without colon", "data\n\n", []event{{}}, ""},
	{"id with NUL ignored", "id: a\x00b\ndata: x\n\n", []event{{Data: "x"}}, ""},
	{"unterminated event dropped", "data: x\n\ndata: y", []event{{Data: "x"}}, ""},
	{"data over the bound", "data: " + strings.Repeat("a", 40) + "\n\n", nil, "larger than 32 bytes"},
	{"data lines over the bound together", "data: " + strings.Repeat("a", 20) + "\ndata: " + strings.Repeat("b", 20) + "\n\n", nil, "larger than 32 bytes"},
	{"a line over the bound", "data: x\n\n: " + strings.Repeat("c", 100) + "\n\n", []event{{Data: "x"}}, "larger than 32 bytes"},
}

func readAllEvents(input []byte, limit int) ([]event, error) {
	sr := newSSEReader(bytes.NewReader(input), limit)
	var got []event
	for {
		ev, err := sr.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return got, err
		}
		got = append(got, event{ev.name, ev.id, ev.hasID, string(ev.data)})
	}
}

func TestSSEReader(t *testing.T) {
	for _, c := range sseCases {
		t.Run(c.name, func(t *testing.T) {
			got, err := readAllEvents([]byte(c.input), 32)
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("events of %q (-want +got):\n%s", c.input, diff)
			}
			if (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
				t.Errorf("end of %q: %v, want %q", c.input, err, c.err)
			}
		})
	}
}

// FuzzSSEReader: any stream is read to its end without a panic and no event's data
// exceeds the bound; and any text written as "data:" lines reads back as it was.
func FuzzSSEReader(f *testing.F) {
	for _, c := range sseCases {
		f.Add([]byte(c.input), len(c.want) > 0)
	}
	f.Add([]byte("{\"jsonrpc\":\"2.0\"}\n{}"), true)
	f.Fuzz(func(t *testing.T, input []byte, asData bool) {
		const limit = 64
		events, err := readAllEvents(input, limit)
		for _, ev := range events {
			if len(ev.Data) > limit {
				t.Errorf("event data of %d bytes, bound %d", len(ev.Data), limit)
			}
		}
		_ = err
		if !asData || bytes.IndexByte(input, '\r') >= 0 {
			return
		}
		var stream bytes.Buffer
		for _, l := range strings.Split(string(input), "\n") {
			stream.WriteString("data: " + l + "\n")
		}
		stream.WriteString("\n")
		events, err = readAllEvents(stream.Bytes(), len(input)+1)
		if err != nil || len(events) != 1 || events[0].Data != string(input) {
			t.Errorf("%q as data lines read back as %+v, %v", input, events, err)
		}
	})
}

var answerSeeds = []string{
	`{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25"}}`,
	`{"jsonrpc":"2.0","id":"a","error":{"code":-32600,"message":"bad"}}`,
	`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1}}`,
	`{"jsonrpc":"2.0","id":1.0,"result":null}`,
	`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse"}}`,
	`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
	`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"x"}}`,
	`[1,2]`, `"hi"`, `{`, `{"id":`, ``,
}

func TestDecodeAnswer(t *testing.T) {
	cases := []struct {
		in   string
		want answer
	}{
		{answerSeeds[0], answer{id: json.RawMessage("1"), isResponse: true, isResult: true, protocolVersion: "2025-11-25"}},
		{answerSeeds[1], answer{id: json.RawMessage(`"a"`), isResponse: true, isError: true, errorMessage: "bad"}},
		{answerSeeds[2], answer{}},
		{answerSeeds[3], answer{id: json.RawMessage("1.0"), isResponse: true, isResult: true}},
		{`{"jsonrpc":"2.0","id":1}`, answer{id: json.RawMessage("1")}},
		{`[1]`, answer{}},
		{`{"id":1,`, answer{}},
	}
	for _, c := range cases {
		if got := decodeAnswer([]byte(c.in)); !cmp.Equal(c.want, got, cmp.AllowUnexported(answer{})) {
			t.Errorf("decodeAnswer(%s) = %+v, want %+v", c.in, got, c.want)
		}
	}
	if !decodeAnswer([]byte(answerSeeds[3])).answers(json.RawMessage("1")) {
		t.Error("id 1.0 does not answer id 1")
	}
	if decodeAnswer([]byte(answerSeeds[0])).answers(json.RawMessage(`"1"`)) {
		t.Error(`id 1 answers id "1"`)
	}
}

func TestParseMessage(t *testing.T) {
	cases := []struct {
		in   string
		want *message
		err  error
	}{
		{answerSeeds[5], &message{id: json.RawMessage("2"), method: "tools/call", hasMethod: true, metaVersion: "2026-07-28", name: "t"}, nil},
		{answerSeeds[6], &message{method: "notifications/cancelled", hasMethod: true, cancels: `sx`}, nil},
		{`{"jsonrpc":"2.0","id":null,"method":"ping"}`, &message{method: "ping", hasMethod: true}, nil},
		{`{"jsonrpc":"2.0","id":3,"method":7}`, &message{id: json.RawMessage("3"), hasMethod: true}, nil},
		{`{"jsonrpc":"2.0","id":4,"result":{}}`, &message{id: json.RawMessage("4")}, nil},
		{`{"jsonrpc":"2.0","id":5,"method":"resources/read","params":{"uri":"file:///x","name":"no"}}`, &message{id: json.RawMessage("5"), method: "resources/read", hasMethod: true, name: "file:///x"}, nil},
		{`[{"id":1}]`, nil, errNotObject},
		{` "x" `, nil, errNotObject},
		{`{"id":1,`, nil, errNotJSON},
		{``, nil, errNotJSON},
	}
	for _, c := range cases {
		got, err := parseMessage([]byte(c.in))
		if !errors.Is(err, c.err) {
			t.Errorf("parseMessage(%s) error %v, want %v", c.in, err, c.err)
			continue
		}
		if got != nil {
			got.body = nil
		}
		if !cmp.Equal(c.want, got, cmp.AllowUnexported(message{})) {
			t.Errorf("parseMessage(%s) = %+v, want %+v", c.in, got, c.want)
		}
	}
}

// FuzzAnswer: reading a message from either side never panics; a parsed request has an
// id that answers itself; an id found in a broken message is a JSON string or number.
func FuzzAnswer(f *testing.F) {
	for _, s := range answerSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"params":{"a":[1,{"id":2}]},"id":"x\u0041"`))
	f.Add([]byte(`{"id":12`))
	f.Fuzz(func(t *testing.T, in []byte) {
		a := decodeAnswer(in)
		if a.isResponse && idKey(a.id) != "" && !a.answers(a.id) {
			t.Errorf("decodeAnswer(%q): id %s does not answer itself", in, a.id)
		}
		if a.isResult && a.isError {
			t.Errorf("decodeAnswer(%q): both result and error", in)
		}
		if m, err := parseMessage(in); err == nil {
			if !json.Valid(m.body) {
				t.Errorf("parseMessage(%q) accepted invalid JSON", in)
			}
			if m.isRequest() && idKey(m.id) == "" {
				t.Errorf("parseMessage(%q): a request without an id", in)
			}
		}
		if id := scanID(in); id != nil {
			var v any
			if err := json.Unmarshal(id, &v); err != nil {
				t.Fatalf("scanID(%q) = %s, not JSON", in, id)
			}
			switch v.(type) {
			case string, float64:
			default:
				t.Errorf("scanID(%q) = %s, not a string or number", in, id)
			}
		}
	})
}

func TestScanID(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{"jsonrpc":"2.0","id":7,"method":`, `7`},
		{`{"id":"x\u0041","method":}`, `"xA"`},
		{`{"params":{"id":1,"a":[{"id":2}]},"id":3,`, `3`},
		{`{"id":12`, ``}, // the number may have been cut short
		{`{"id":null,`, ``},
		{`{"id":{"a":1},`, ``},
		{`{"method":"x"`, ``},
		{`[{"id":1}]`, ``},
		{`not json`, ``},
		{``, ``},
	}
	for _, c := range cases {
		if got := string(scanID([]byte(c.in))); got != c.want {
			t.Errorf("scanID(%s) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestIDKey(t *testing.T) {
	same := [][2]string{{`1`, `1.0`}, {`"A"`, `"\u0041"`}, {` 2 `, `2`}, {`-0`, `0`}, {`1e2`, `100`}}
	for _, p := range same {
		if idKey(json.RawMessage(p[0])) != idKey(json.RawMessage(p[1])) {
			t.Errorf("idKey(%s) != idKey(%s)", p[0], p[1])
		}
	}
	differ := [][2]string{{`1`, `"1"`}, {`1`, `2`}, {`"a"`, `"b"`}}
	for _, p := range differ {
		if idKey(json.RawMessage(p[0])) == idKey(json.RawMessage(p[1])) {
			t.Errorf("idKey(%s) == idKey(%s)", p[0], p[1])
		}
	}
	for _, none := range []string{``, `null`, ` null `} {
		if k := idKey(json.RawMessage(none)); k != "" {
			t.Errorf("idKey(%q) = %q, want none", none, k)
		}
	}
}

// FuzzIDKey: a string id keeps its identity however it is escaped.
func FuzzIDKey(f *testing.F) {
	for _, s := range []string{"a", "", "1", "é\u2028", "<&>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		raw, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := idKey(raw); got != "s"+s {
			t.Errorf("idKey(%s) = %q, want %q", raw, got, "s"+s)
		}
	})
}
