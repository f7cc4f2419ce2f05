package approval_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/approval"
)

func mustHash(tb testing.TB, tool, args, agent, user, task string) string {
	tb.Helper()
	h, err := approval.Hash(tool, json.RawMessage(args), agent, user, task)
	if err != nil {
		tb.Fatalf("Hash(%q, %s, %q, %q, %q): %v", tool, args, agent, user, task, err)
	}
	return h
}

// TestHashStable pins the hash of one call: stored approvals are bound to hashes, so
// a change of the encoding would strand every pending approval across an upgrade.
func TestHashStable(t *testing.T) {
	t.Parallel()
	got := mustHash(t, "send_money", `{"to":"ACME","amount":80,"memo":["rent",null,true,{"b":1.50,"a":"<é>"}]}`,
		"finance-assistant", "dana@example.com", "tsk_1")
	const want = "sha256:325ce35e4f1a3deb10960231cb2074ff8a865067eb61c7b578c8f2d1b6d3a2dc"
	if got != want {
		t.Errorf("Hash(pinned call) = %s, want %s", got, want)
	}
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(got) {
		t.Errorf("Hash = %q, want sha256: and 64 hex digits", got)
	}
}

func TestHash(t *testing.T) {
	t.Parallel()
	const base = `{"to":"ACME","amount":80,"opts":{"fast":true,"tags":["a","b"]}}`
	h := mustHash(t, "send_money", base, "agent", "user", "task")

	same := map[string]string{
		"keys reordered":      `{"opts":{"tags":["a","b"],"fast":true},"amount":80,"to":"ACME"}`,
		"whitespace":          "{\n  \"to\" : \"ACME\",\t\"amount\": 80,\r\n \"opts\": { \"fast\": true, \"tags\": [ \"a\" , \"b\" ] } }",
		"string escapes":      `{"to":"\u0041C\u004dE","amount":80,"opts":{"fast":true,"tags":["\u0061","b"]}}`,
		"escaped key":         `{"\u0074o":"ACME","amount":80,"opts":{"fast":true,"tags":["a","b"]}}`,
		"escaped solidus":     `{"to":"ACME","amount":80,"opts":{"fast":true,"tags":["a","b"]}}`,
		"surrounding spaces ": "  " + base + "\n",
	}
	for name, args := range same {
		if got := mustHash(t, "send_money", args, "agent", "user", "task"); got != h {
			t.Errorf("Hash(%s) = %s, want %s as for the original", name, got, h)
		}
	}
	if a, b := mustHash(t, "t", `{"p":"a/b"}`, "", "", ""), mustHash(t, "t", `{"p":"a\/b"}`, "", "", ""); a != b {
		t.Errorf(`Hash("a/b") = %s, Hash("a\/b") = %s; want equal`, a, b)
	}
	if a, b := mustHash(t, "t", `{"e":"😀"}`, "", "", ""), mustHash(t, "t", `{"e":"\ud83d\ude00"}`, "", "", ""); a != b {
		t.Errorf("Hash of a literal emoji = %s, of its surrogate pair escape = %s; want equal", a, b)
	}
	if a, b := mustHash(t, "t", ``, "", "", ""), mustHash(t, "t", `{}`, "", "", ""); a != b {
		t.Errorf("Hash of empty arguments = %s, of {} = %s; want equal", a, b)
	}

	different := []struct {
		name                          string
		tool, args, agent, user, task string
	}{
		{"amount", "send_money", strings.Replace(base, "80", "800", 1), "agent", "user", "task"},
		{"number text", "send_money", strings.Replace(base, "80", "80.0", 1), "agent", "user", "task"},
		{"number as string", "send_money", strings.Replace(base, "80", `"80"`, 1), "agent", "user", "task"},
		{"nested value", "send_money", strings.Replace(base, "true", "false", 1), "agent", "user", "task"},
		{"array order", "send_money", strings.Replace(base, `["a","b"]`, `["b","a"]`, 1), "agent", "user", "task"},
		{"key name", "send_money", strings.Replace(base, `"to"`, `"To"`, 1), "agent", "user", "task"},
		{"extra key", "send_money", strings.Replace(base, `{"to"`, `{"cc":null,"to"`, 1), "agent", "user", "task"},
		{"tool", "send_mone", base, "agent", "user", "task"},
		{"agent", "send_money", base, "agent2", "user", "task"},
		{"user", "send_money", base, "agent", "", "task"},
		{"task", "send_money", base, "agent", "user", "task2"},
		{"field boundary", "send_money", base, "agen", "tuser", "task"},
		{"fields swapped", "send_money", base, "user", "agent", "task"},
	}
	seen := map[string]string{h: "original"}
	for _, d := range different {
		got := mustHash(t, d.tool, d.args, d.agent, d.user, d.task)
		if prev, ok := seen[got]; ok {
			t.Errorf("Hash(%s) = %s, the same as for %s", d.name, got, prev)
		}
		seen[got] = d.name
	}

	for _, bad := range []struct{ name, args string }{
		{"array", `[1]`},
		{"string", `"x"`},
		{"null", `null`},
		{"number", `1`},
		{"invalid", `{"a":`},
		{"trailing data", `{} {}`},
		{"repeated key", `{"a":1,"a":1}`},
		{"repeated nested key", `{"a":{"b":1,"b":2}}`},
		{"repeated key by escape", `{"a":1,"\u0061":2}`},
		{"invalid UTF-8", "{\"a\":\"\xff\"}"},
		{"lone high surrogate", `{"a":"\ud800"}`},
		{"lone high surrogate at end", `{"a":"x\ud800"}`},
		{"lone low surrogate", `{"a":"\udc00"}`},
		{"reversed pair", `{"a":"\ude00\ud83d"}`},
		{"high surrogate then letter escape", `{"a":"\ud83d\u0041"}`},
		{"surrogate in key", `{"\ud800":1}`},
	} {
		if _, err := approval.Hash("t", json.RawMessage(bad.args), "", "", ""); !errors.Is(err, approval.ErrInvalid) {
			t.Errorf("Hash(%s: %s) = %v, want ErrInvalid", bad.name, bad.args, err)
		}
	}
	// An escaped backslash before "u" is not an escape.
	mustHash(t, "t", `{"a":"\\ud800"}`, "", "", "")
}

// hashSeeds are the arguments FuzzHash starts from.
var hashSeeds = []string{
	`{}`, ``, `{"to":"ACME","amount":80}`, `{"a":[1,2,{"b":null}],"c":"<&>"}`, `{"n":-0.0e+1}`,
	`{"e":"\ud83d\ude00","k":"\u0000"}`, `{"a":{"a":{"a":{}}}}`, `{"x":[[],{}],"y":true}`, `[1]`, `{"a":1,"a":2}`,
}

func FuzzHash(f *testing.F) {
	for _, s := range hashSeeds {
		f.Add("send_money", []byte(s), "agent", "user", "task")
	}
	f.Add("", []byte(`{"":""}`), "", "", "")
	f.Fuzz(func(t *testing.T, tool string, args []byte, agent, user, task string) {
		h, err := approval.Hash(tool, args, agent, user, task)
		if err != nil {
			return
		}
		if h2, err := approval.Hash(tool, args, agent, user, task); err != nil || h2 != h {
			t.Fatalf("Hash not deterministic: %s, then %s, %v", h, h2, err)
		}
		v := decodeArgs(t, args)

		// Another key order, other string escapes, other whitespace: the same hash.
		var re bytes.Buffer
		encodeReversed(&re, v)
		var indented bytes.Buffer
		if err := json.Indent(&indented, re.Bytes(), " ", "\t"); err != nil {
			t.Fatalf("re-encoding %s is not JSON: %v", re.Bytes(), err)
		}
		if got, err := approval.Hash(tool, indented.Bytes(), agent, user, task); err != nil || got != h {
			t.Fatalf("Hash(%s) = %s, %v; want %s as for %s", indented.Bytes(), got, err, h, args)
		}

		// Any change of a value, or of a key: another hash.
		for _, changed := range mutations(v) {
			var b bytes.Buffer
			encodeReversed(&b, changed)
			got, err := approval.Hash(tool, b.Bytes(), agent, user, task)
			if err != nil {
				t.Fatalf("Hash(%s) of a changed value: %v", b.Bytes(), err)
			}
			if got == h {
				t.Fatalf("Hash(%s) = Hash(%s) = %s, want different", b.Bytes(), args, h)
			}
		}
		for _, other := range [][4]string{
			{tool + "x", agent, user, task}, {tool, agent + "x", user, task},
			{tool, agent, user + "x", task}, {tool, agent, user, task + "x"},
		} {
			if got, _ := approval.Hash(other[0], args, other[1], other[2], other[3]); got == h {
				t.Fatalf("Hash(%q) unchanged by a changed identity field", other)
			}
		}
	})
}

func decodeArgs(tb testing.TB, args []byte) map[string]any {
	tb.Helper()
	v := map[string]any{}
	if len(bytes.TrimSpace(args)) == 0 {
		return v
	}
	dec := json.NewDecoder(bytes.NewReader(args))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		tb.Fatalf("Hash accepted %q, which does not decode: %v", args, err)
	}
	return v
}

// encodeReversed writes v as JSON with object keys in reverse order and strings
// escaped by encoding/json (HTML characters as \u003c and so on).
func encodeReversed(b *bytes.Buffer, v any) {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Sort(sort.Reverse(sort.StringSlice(keys)))
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			b.Write(kb)
			b.WriteByte(':')
			encodeReversed(b, v[k])
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			encodeReversed(b, e)
		}
		b.WriteByte(']')
	default:
		vb, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		b.Write(vb)
	}
}

// mutations returns copies of v each with one change: the first leaf (in sorted key
// order) changed, the first key renamed, a key added.
func mutations(v map[string]any) []map[string]any {
	var out []map[string]any
	if c, ok := changeLeaf(deepCopy(v)); ok {
		out = append(out, c.(map[string]any))
	}
	if len(v) > 0 {
		c := deepCopy(v).(map[string]any)
		keys := sortedKeys(c)
		k := keys[0]
		nk := k + "_"
		for c[nk] != nil || slices.Contains(keys, nk) {
			nk += "_"
		}
		c[nk] = c[k]
		delete(c, k)
		out = append(out, c)
	}
	c := deepCopy(v).(map[string]any)
	nk := "added"
	for _, ok := c[nk]; ok; _, ok = c[nk] {
		nk += "_"
	}
	c[nk] = json.Number("1")
	out = append(out, c)
	return out
}

func changeLeaf(v any) (any, bool) {
	switch t := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(t) {
			if nv, ok := changeLeaf(t[k]); ok {
				t[k] = nv
				return t, true
			}
		}
		return t, false
	case []any:
		for i := range t {
			if nv, ok := changeLeaf(t[i]); ok {
				t[i] = nv
				return t, true
			}
		}
		return t, false
	case string:
		return t + "x", true
	case json.Number:
		if s, ok := strings.CutPrefix(string(t), "-"); ok {
			return json.Number(s), true
		}
		return json.Number("-" + string(t)), true
	case bool:
		return !t, true
	case nil:
		return false, true
	}
	return v, false
}

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		c := make(map[string]any, len(t))
		for k, e := range t {
			c[k] = deepCopy(e)
		}
		return c
	case []any:
		c := make([]any, len(t))
		for i, e := range t {
			c[i] = deepCopy(e)
		}
		return c
	}
	return v
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
