package audit_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

var summarizeTests = []struct {
	name string
	raw  string
	want string
}{
	{"typical", `{"to":"bob@example.com","amount":12.5,"cc":[]}`, `{amount:number, cc:array(0), to:string(15)}`},
	{"all types", `{"s":"héllo","n":-1e9,"t":true,"f":false,"z":null,"a":[1,[2,3],{"x":4}],"o":{"k":{"deep":[1]},"j":2}}`,
		`{a:array(3), f:bool, n:number, o:object(2), s:string(5), t:bool, z:null}`},
	{"empty object", `{}`, `{}`},
	{"whitespace", " \n{ \"a\" : 1 }\t", `{a:number}`},
	{"duplicate names", `{"b":1,"a":"x","b":"yy"}`, `{a:string(1), b:number, b:string(2)}`},
	{"odd names", `{"to address":"x","":1,"a:b, c":2,"\u001b[31m":3}`, `{"":number, "\x1b[31m":number, "a:b, c":number, "to address":string(1)}`},
	{"long name", `{"` + strings.Repeat("k", 100) + `":1}`, `{"` + strings.Repeat("k", 64) + `"…:number}`},
	{"escaped string length", `{"s":"a\"b\\c\u00e9"}`, `{s:string(6)}`},
	{"array", `[1,2,"three"]`, `array(3)`},
	{"string", `"secret-value"`, `string(12)`},
	{"number", `42`, `number`},
	{"null", `null`, `null`},
	{"empty", ``, `(none)`},
	{"blank", " \n ", `(none)`},
	{"invalid", `{"a":`, `(invalid json, 5 bytes)`},
	{"trailing data", `{"a":1} {"b":2}`, `(invalid json, 15 bytes)`},
	{"trailing comma", `{"a":1,}`, `(invalid json, 8 bytes)`},
	{"single quotes", `{'a':1}`, `(invalid json, 7 bytes)`},
	{"too deep", strings.Repeat("[", 20000) + strings.Repeat("]", 20000), `(invalid json, 40000 bytes)`},
}

func TestSummarizeArgs(t *testing.T) {
	t.Parallel()
	for _, tt := range summarizeTests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := audit.SummarizeArgs([]byte(tt.raw)); got != tt.want {
				t.Errorf("SummarizeArgs(%q) = %q, want %q", tt.raw, got, tt.want)
			}
		})
	}
}

func TestSummarizeArgsNeverShowsValues(t *testing.T) {
	t.Parallel()
	raw := `{"password":"hunter2-correct-horse","token":"sk-live-abcdef123456","nested":{"k":"inner-secret-value"},"list":["listed-secret-value"]}`
	got := audit.SummarizeArgs([]byte(raw))
	for _, secret := range []string{"hunter2", "sk-live", "inner-secret", "listed-secret", `"k"`} {
		if strings.Contains(got, secret) {
			t.Errorf("SummarizeArgs(%s) = %q, shows %q", raw, got, secret)
		}
	}
}

func TestSummarizeArgsBounded(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("{")
	for i := range 500 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"argument_%03d":"v"`, i)
	}
	b.WriteString("}")
	got := audit.SummarizeArgs([]byte(b.String()))
	if len(got) > 512 {
		t.Errorf("len(SummarizeArgs(500 args)) = %d, want at most 512", len(got))
	}
	if !strings.HasPrefix(got, "{argument_000:string(1), ") || !strings.HasSuffix(got, " more}") {
		t.Errorf("SummarizeArgs(500 args) = %q, want the first names and a count of the rest", got)
	}
	// Every name is either shown or counted.
	var shown, more int
	shown = strings.Count(got, ":string(1)")
	if _, err := fmt.Sscanf(got[strings.LastIndex(got, "+"):], "+%d more}", &more); err != nil {
		t.Fatalf("no count in %q: %v", got, err)
	}
	if shown+more != 500 {
		t.Errorf("SummarizeArgs(500 args) shows %d and counts %d more, want 500 in all", shown, more)
	}
}

func TestHashArgs(t *testing.T) {
	t.Parallel()
	// sha256("") and sha256("{}"), computed independently.
	for raw, want := range map[string]string{
		"":   "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"{}": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
	} {
		if got := audit.HashArgs([]byte(raw)); got != want {
			t.Errorf("HashArgs(%q) = %q, want %q", raw, got, want)
		}
	}
}

// vocabulary holds every character SummarizeArgs writes other than those of
// argument names: type words, counts, punctuation, quoting escapes.
const vocabulary = "abcdefghijklmnopqrstuvwxyzABCDEFU0123456789{}()[],:+ \"\\…\uFFFD"

func FuzzSummarizeArgs(f *testing.F) {
	for _, tt := range summarizeTests {
		if len(tt.raw) < 1000 {
			f.Add([]byte(tt.raw))
		}
	}
	f.Add([]byte(`{"password":"hunter2-correct-horse","n":{"k":"inner-secret-value"}}`))
	f.Add([]byte(`{"a":"ZZZZZZZZ","a":["QQQQQQQQ"]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		got := audit.SummarizeArgs(raw)
		if len(got) > 512 {
			t.Fatalf("len(SummarizeArgs(%q)) = %d, want at most 512", raw, len(got))
		}
		if !json.Valid(raw) {
			return
		}
		names, values := namesAndValues(t, raw)
		// Every character of the output comes from the vocabulary or from a
		// top-level name. A string value holding a character from neither
		// cannot appear in the output unless it leaked.
		allowed := vocabulary + strings.Join(names, "")
		for _, v := range values {
			if len([]rune(v)) < 8 || !strings.ContainsFunc(v, func(r rune) bool { return !strings.ContainsRune(allowed, r) }) {
				continue
			}
			if strings.Contains(got, v) {
				t.Fatalf("SummarizeArgs(%q) = %q, contains the value %q", raw, got, v)
			}
		}
	})
}

// namesAndValues returns the top-level object names of a valid JSON document
// and every string value in it, at any depth (names excluded).
func namesAndValues(t *testing.T, raw []byte) (names, values []string) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	// stack holds, for each open container, whether it is an object and
	// whether its next string token is a name.
	type frame struct{ object, expectName bool }
	var stack []frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return names, values
		}
		top := len(stack) - 1
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if top >= 0 && stack[top].object {
					stack[top].expectName = true
				}
				stack = append(stack, frame{object: d == '{', expectName: d == '{'})
			default:
				stack = stack[:top]
			}
			continue
		}
		if top >= 0 && stack[top].object {
			if stack[top].expectName {
				stack[top].expectName = false
				if s, ok := tok.(string); ok && top == 0 {
					names = append(names, s)
				}
				continue
			}
			stack[top].expectName = true
		}
		if s, ok := tok.(string); ok {
			values = append(values, s)
		}
	}
}
