package bridge

// Framing: reading and writing the messages themselves — lines on stdio, JSON and event
// streams from the gateway, JSON-RPC ids — with every size bounded.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
)

// answer is what the bridge reads of a message from the gateway.
type answer struct {
	id              json.RawMessage
	isResponse      bool // no method: a response (result or error)
	isResult        bool
	isError         bool
	errorMessage    string
	protocolVersion string // result.protocolVersion, for initialize
}

// answers reports whether a is the response to the request with this id.
func (a answer) answers(id json.RawMessage) bool {
	return a.isResponse && id != nil && idKey(a.id) == idKey(id)
}

// decodeAnswer reads what the bridge needs of a message from the gateway; input that is
// not a JSON object gives the zero answer.
func decodeAnswer(data []byte) answer {
	var raw struct {
		ID     json.RawMessage `json:"id"`
		Method json.RawMessage `json:"method"`
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' || json.Unmarshal(data, &raw) != nil {
		return answer{}
	}
	a := answer{id: raw.ID, isResponse: raw.Method == nil && (raw.Result != nil || raw.Error != nil)}
	if raw.Error != nil {
		a.isError, a.errorMessage = true, raw.Error.Message
	} else {
		a.isResult = raw.Result != nil
	}
	if len(raw.Result) > 0 && raw.Result[0] == '{' {
		var r struct {
			ProtocolVersion string `json:"protocolVersion"`
		}
		if json.Unmarshal(raw.Result, &r) == nil {
			a.protocolVersion = r.ProtocolVersion
		}
	}
	return a
}

// idKey maps a JSON-RPC id to a comparable key: equal ids, however written ("1", "1.0";
// "\u0041", "A"), get equal keys. Null or no id gives "".
func idKey(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return "s" + s
		}
	case c == '-' || (c >= '0' && c <= '9'):
		if i, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
			return "n" + strconv.FormatInt(i, 10)
		}
		if f, err := strconv.ParseFloat(string(raw), 64); err == nil {
			return "n" + strconv.FormatFloat(f, 'g', -1, 64)
		}
	}
	return "r" + string(raw)
}

// scanID finds the top-level "id" of a message that could not be parsed whole (not JSON,
// or cut short at the size bound), so that its error can be addressed to it. It returns
// nil when the prefix holds no string or number id before the input goes wrong.
func scanID(b []byte) json.RawMessage {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	for {
		key, err := dec.Token()
		if err != nil {
			return nil
		}
		k, ok := key.(string)
		if !ok {
			return nil // the object ended
		}
		v, err := dec.Token()
		if err != nil {
			return nil
		}
		if k == "id" {
			switch v := v.(type) {
			case string:
				raw, err := json.Marshal(v)
				if err != nil {
					return nil
				}
				return raw
			case json.Number:
				// A number at the very end may have been cut short.
				if dec.InputOffset() >= int64(len(b)) {
					return nil
				}
				return json.RawMessage(v.String())
			default:
				return nil
			}
		}
		if d, ok := v.(json.Delim); ok && (d == '{' || d == '[') {
			for depth := 1; depth > 0; {
				t, err := dec.Token()
				if err != nil {
					return nil
				}
				switch t {
				case json.Delim('{'), json.Delim('['):
					depth++
				case json.Delim('}'), json.Delim(']'):
					depth--
				}
			}
		}
	}
}

// validSessionID reports whether a session id can be sent back: visible ASCII, as MCP
// requires, and bounded.
func validSessionID(s string) bool { return visibleASCII(s, maxSessionIDBytes) }

// validVersion reports whether a protocol revision can go in a header.
func validVersion(s string) bool { return visibleASCII(s, maxVersionBytes) }

// visibleASCII reports whether s is 1 to limit bytes of visible ASCII (0x21-0x7E).
func visibleASCII(s string, limit int) bool {
	if s == "" || len(s) > limit {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether net/http will send s as a header value: no control
// characters but tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// lineWriter writes messages to stdout, one per line. It is stdout's only writer; its
// mutex serialises the writes themselves, so it is held across the write on purpose.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
	// err is the first write error (guarded by mu): the client is gone.
	err error
}

// write writes msg compacted onto one line. It returns errNotJSON for msg that is not
// JSON, and the first write error once stdout has failed.
func (lw *lineWriter) write(msg []byte) error {
	var buf bytes.Buffer
	buf.Grow(len(msg) + 1)
	if err := json.Compact(&buf, msg); err != nil {
		return errNotJSON
	}
	buf.WriteByte('\n')
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if lw.err != nil {
		return lw.err
	}
	if _, err := lw.w.Write(buf.Bytes()); err != nil {
		lw.err = err
		return err
	}
	return nil
}

// lineReader reads newline-delimited messages, each bounded.
type lineReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

// next returns the next line without its "\n". A line longer than max is returned as
// its first max bytes with oversized set, the rest of it skipped. A last line without
// "\n" is returned too; then io.EOF. The line is valid until the next call.
func (lr *lineReader) next() (line []byte, oversized bool, err error) {
	lr.buf = lr.buf[:0]
	read := false
	for {
		frag, err := lr.r.ReadSlice('\n')
		read = read || len(frag) > 0
		if n := len(frag); n > 0 && frag[n-1] == '\n' {
			frag = frag[:n-1]
		}
		if !oversized {
			if room := lr.max - len(lr.buf); len(frag) > room {
				lr.buf = append(lr.buf, frag[:room]...)
				oversized = true
			} else {
				lr.buf = append(lr.buf, frag...)
			}
		}
		switch {
		case err == nil:
			return lr.buf, oversized, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && read:
			return lr.buf, oversized, nil
		default:
			return nil, false, err
		}
	}
}

// tooLargeError is an answer or event larger than the bound.
type tooLargeError struct{ limit int }

func (e tooLargeError) Error() string { return fmt.Sprintf("larger than %d bytes", e.limit) }

// readBounded reads r to its end, refusing more than limit bytes.
func readBounded(r io.Reader, limit int) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, tooLargeError{limit}
	}
	return b, nil
}

// sseEvent is one server-sent event.
type sseEvent struct {
	name  string
	id    string
	hasID bool
	data  []byte
}

// isMessage reports whether the event carries a JSON-RPC message: the default or
// "message" event type, with data.
func (e sseEvent) isMessage() bool {
	return (e.name == "" || e.name == "message") && len(e.data) > 0
}

// sseReader reads a text/event-stream (the WHATWG server-sent events format): lines end
// with CRLF, LF or CR; "data" lines join with "\n"; a blank line ends an event.
type sseReader struct {
	sc  *bufio.Scanner
	max int
}

func newSSEReader(r io.Reader, maxData int) *sseReader {
	sc := bufio.NewScanner(r)
	// A line holds one field: its name, a colon, a space and at most maxData of data.
	// (The initial buffer must not be larger: its capacity would raise the bound.)
	sc.Buffer(make([]byte, 0, min(4096, maxData+16)), maxData+16)
	sc.Split(scanSSELines)
	return &sseReader{sc: sc, max: maxData}
}

// next returns the next event that set a field, or io.EOF at the end of the stream (an
// event the stream cut short is dropped, as the format says).
func (s *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	seen, hasData := false, false
	for s.sc.Scan() {
		line := s.sc.Bytes()
		if len(line) == 0 {
			if seen {
				return ev, nil
			}
			continue
		}
		if line[0] == ':' {
			continue // a comment, often a keep-alive
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			value = bytes.TrimPrefix(value, []byte(" "))
		}
		switch string(field) {
		case "data":
			if hasData {
				ev.data = append(ev.data, '\n')
			}
			if len(ev.data)+len(value) > s.max {
				return sseEvent{}, tooLargeError{s.max}
			}
			ev.data = append(ev.data, value...)
			hasData, seen = true, true
		case "event":
			ev.name, seen = string(value), true
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				ev.id, ev.hasID, seen = string(value), true, true
			}
		}
	}
	if err := s.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return sseEvent{}, tooLargeError{s.max}
		}
		return sseEvent{}, err
	}
	return sseEvent{}, io.EOF
}

// scanSSELines is a bufio.SplitFunc for the line ends of server-sent events.
func scanSSELines(data []byte, atEOF bool) (advance int, token []byte, err error) {
	if atEOF && len(data) == 0 {
		return 0, nil, nil
	}
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		if data[i] == '\n' {
			return i + 1, data[:i], nil
		}
		if i+1 < len(data) {
			if data[i+1] == '\n' {
				return i + 2, data[:i], nil
			}
			return i + 1, data[:i], nil
		}
		if atEOF {
			return i + 1, data[:i], nil
		}
		return 0, nil, nil // a CR last: an LF may follow
	}
	if atEOF {
		return len(data), data, nil
	}
	return 0, nil, nil
}
