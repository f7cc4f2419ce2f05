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
	for _, raw := range equivalenceSeeds() {
		// Larger inputs make the fuzzer crawl; TestSummarizeArgsMatchesRef
		// covers them.
		if len(raw) < 1000 {
			f.Add([]byte(raw))
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got := audit.SummarizeArgs(raw)
		if want := audit.SummarizeArgsRef(raw); got != want {
			t.Fatalf("SummarizeArgs(%q) = %q, want %q as the Decoder-based reference", raw, got, want)
		}
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

func TestSummarizeArgsMatchesRef(t *testing.T) {
	t.Parallel()
	inputs := equivalenceSeeds()
	for _, tt := range summarizeTests {
		inputs = append(inputs, tt.raw)
	}
	for _, raw := range inputs {
		got, want := audit.SummarizeArgs([]byte(raw)), audit.SummarizeArgsRef([]byte(raw))
		if got != want {
			t.Errorf("SummarizeArgs(%q) = %q, want %q as the Decoder-based reference", raw, got, want)
		}
	}
}

// equivalenceSeeds returns inputs on which the single-pass SummarizeArgs and
// the Decoder-based reference are most likely to disagree.
func equivalenceSeeds() []string {
	seeds := []string{
		// Escapes in values: every kind, surrogate pairs, lone and reversed
		// surrogates, a high surrogate before an escaped backslash and "u".
		`{"s":"\"\\\/\b\f\n\r\t\u0041\u00e9\u20ac"}`,
		`{"pair":"\ud83d\ude00","lone_hi":"\ud83d","lone_lo":"\ude00","rev":"\ude00\ud83d"}`,
		`{"hi_hi_lo":"\ud83d\ud83d\ude00","hi_x":"\ud83dx","hi_bs":"\ud83d\\u0041","upper":"\uD83D\uDE00"}`,
		`{"hi_end":"a\udbff","max":"\udbff\udfff","min":"\ud800\udc00","nul":"\u0000"}`,
		`"\ud83d\ude00\ud83d"`,
		`["\\", "\"", "\\\"", "a\\\\"]`,
		`{"s":"\\\\\\\\\\\\\\\\"}`,
		// Invalid UTF-8 in values and names: stray continuation bytes,
		// truncated and overlong sequences, encoded surrogates.
		"{\"s\":\"\xff\xfe\x80\",\"t\":\"\xe2\x82\",\"u\":\"\xc0\xaf\",\"v\":\"\xed\xa0\x80\"}",
		"{\"s\":\"\xe2\x82\\n\xe2\x82\xac\"}",
		"{\"\xff\":1,\"a\xe2\x82\":2,\"\xed\xa0\x80\":3,\"\xf0\x9f\x98\x80\":4}",
		"\"\xff\xff\\u00e9\"",
		// Escaped names, some of which decode to plain ones.
		`{"\u0061":1,"a\u0062":2,"\"":3,"\\":4,"\ud83d":5,"\ud83d\ude00":6,"\/":7}`,
		`{"a":1,"\u0061":2,"a":3}`,
		// Nesting, empty containers, strings that look like structure.
		`{"a":[],"o":{},"aa":[[]],"oo":{"":{}},"ao":[{}],"s":"[{,}]"}`,
		`{"a":[1,"x,y",[2,3],{"k":",","l":[","]}],"o":{"k":"}","l":{"m":"]"}}}`,
		`{"a":[ ],"o":{ } , "n" : [ 1 , 2 ] }`,
		strings.Repeat(`{"a":`, 100) + `1` + strings.Repeat(`}`, 100),
		`{"d":` + strings.Repeat(`[{"":`, 60) + `[]` + strings.Repeat(`}]`, 60) + `,"e":1}`,
		`{"d":` + strings.Repeat(`[`, 9999) + strings.Repeat(`]`, 9999) + `}`,
		strings.Repeat(`[`, 10000) + strings.Repeat(`]`, 10000),
		strings.Repeat(`[`, 10001) + strings.Repeat(`]`, 10001),
		// Numbers of every form.
		`{"a":0,"b":-0,"c":1.5,"d":-1.5e10,"e":1E+2,"f":1e-2,"g":123456789012345678901234567890}`,
		`-0.0e-0`, `1E+999`, `[0,-1,2.5,3e3]`,
		// Whitespace everywhere, including where only TrimSpace accepts it.
		" \t\r\n{ \t\r\n\"a\" \t\r\n: \t\r\n[ \t\r\n1 \t\r\n, \t\r\n{ \t\r\n} \t\r\n] \t\r\n, \"b\":\"\" \t\r\n} \t\r\n",
		"\v{}", "\f", "\u00a0", "\u00a0{}\u00a0", "\u0085", "\u3000",
		// Literals, alone and everywhere.
		`true`, `false`, `null`, `""`, `[]`, `{}`, `{"t":true,"f":false,"n":null}`,
		// Names around the 64-byte cut: ASCII, multi-byte at the boundary,
		// quoted, escaped.
		`{"` + strings.Repeat("k", 64) + `":1,"` + strings.Repeat("k", 65) + `":2}`,
		`{"` + strings.Repeat("k", 63) + `é":1,"` + strings.Repeat("k", 62) + `é":2,"` + strings.Repeat("k", 63) + `😀":3}`,
		`{"` + strings.Repeat(" ", 70) + `":1,"` + strings.Repeat(`\u001b`, 70) + `":2}`,
		`{"` + strings.Repeat("k", 60) + `\ud83d\ude00\ud83d":1}`,
		`{"` + strings.Repeat("é", 40) + `":1,"` + strings.Repeat("\xff", 70) + `":2}`,
		// Odd but plain names, and names that sort oddly.
		`{"$ref":1,"@id":2,"a/b":3,"a.b":4,"a-b":5,"A":6,"_":7,"é":8,"Z":9,"~":10}`,
	}
	// Many names, some shown and some counted, with the 512-byte bound hit
	// at different places.
	for _, n := range []int{15, 16, 17, 40, 41, 500} {
		var b strings.Builder
		b.WriteString("{")
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `"n%d":%d`, n-i, i)
		}
		b.WriteString("}")
		seeds = append(seeds, b.String())
	}
	for _, width := range []int{5, 10, 50, 63, 64, 65, 100} {
		var b strings.Builder
		b.WriteString("{")
		for i := range 12 {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `"%s%02d":[%s]`, strings.Repeat("x", width), i, strings.Repeat("1,", i)+"1")
		}
		b.WriteString("}")
		seeds = append(seeds, b.String())
	}
	return seeds
}
