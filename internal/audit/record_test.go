package audit_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// encodingJSONRecord is the canonical form by its definition: what encoding/json writes
// for the event without HTML escaping, without the newline.
func encodingJSONRecord(e *audit.Event) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// checkRecord requires MarshalRecord to write what encoding/json writes, and to fail
// where it fails.
func checkRecord(t *testing.T, e *audit.Event) {
	t.Helper()
	want, wantErr := encodingJSONRecord(e)
	got, err := e.MarshalRecord()
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("MarshalRecord error %v, encoding/json error %v, for %+v", err, wantErr, e)
	}
	if err == nil && !bytes.Equal(got, want) {
		t.Fatalf("MarshalRecord\n%s\nencoding/json\n%s", got, want)
	}
}

// filler sets struct fields from fuzz bytes: each kind of field takes what it needs from
// the front, and zero once the bytes run out.
type filler struct{ data []byte }

func (f *filler) take(n int) []byte {
	n = min(n, len(f.data))
	b := f.data[:n]
	f.data = f.data[n:]
	return b
}

func (f *filler) byte() byte {
	if b := f.take(1); len(b) == 1 {
		return b[0]
	}
	return 0
}

func (f *filler) uint64() uint64 {
	var b [8]byte
	copy(b[:], f.take(8))
	return binary.LittleEndian.Uint64(b[:])
}

// validJSON are values a filled json.RawMessage is sometimes made of, so that the
// compacting path is reached and not only its refusals.
var validJSON = []string{`{"a": [1, 2.50, "x\u003c"], "b" : null}`, ` "s" `, `[ ]`, `-0.0e+1`, `{"k":{"n":true}}`}

func (f *filler) string() string {
	n := int(f.byte())
	if n >= 0xf0 { // one of the strings that reach every escape
		return [...]string{"\u2028\u2029", "\x00\x1f\x7f", "\"\\<>&", "\xff\xfe\xc3", "\b\f\n\r\t", "é\U0001F600", "\xe2\x80", "\xed\xa0\x80", "z", "", "\u00a0", "\ufffd", "a\x80b", "\x1b[0m", "/", "\u2027"}[n-0xf0]
	}
	return string(f.take(n % 48))
}

func (f *filler) float() float64 {
	switch f.byte() % 4 {
	case 0:
		return math.Float64frombits(f.uint64()) // anything: NaN, infinities, subnormals
	case 1:
		return float64(int8(f.byte())) / 8
	case 2:
		return math.Pow(10, float64(int8(f.byte())%40)) * float64(f.byte()) // around the exponent switches
	default:
		return 0
	}
}

func (f *filler) fill(v reflect.Value) {
	switch v.Interface().(type) {
	case time.Time:
		sec := int64(f.uint64()%(400*366*86400)) - 100*366*86400 + 1_700_000_000 // years ~1600 to ~2300
		if f.byte()%16 == 0 {
			sec = int64(f.uint64()) // anywhere, including outside years 0 to 9999
		}
		t := time.Unix(sec, int64(f.uint64()%1e9))
		switch f.byte() % 4 {
		case 0:
			t = t.UTC()
		case 1:
			t = t.In(time.FixedZone("", int(int16(f.uint64()))*60)) // offsets up to ±546h
		case 2:
			t = t.Truncate(time.Microsecond).UTC()
		}
		v.Set(reflect.ValueOf(t))
		return
	case json.RawMessage:
		switch c := f.byte(); {
		case c < 64:
		case c < 160:
			v.SetBytes([]byte(validJSON[int(c)%len(validJSON)]))
		default:
			v.SetBytes([]byte(f.string()))
		}
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(f.string())
	case reflect.Int, reflect.Int64:
		if f.byte()%2 == 0 {
			v.SetInt(int64(f.uint64()))
		}
	case reflect.Bool:
		v.SetBool(f.byte()%2 == 1)
	case reflect.Float64:
		v.SetFloat(f.float())
	case reflect.Slice:
		n := int(f.byte() % 4)
		if n == 3 {
			v.Set(reflect.MakeSlice(v.Type(), 0, 0)) // empty, not nil
			return
		}
		if n == 0 {
			return
		}
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			f.fill(s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		n := int(f.byte() % 5)
		m := reflect.MakeMap(v.Type())
		for range n {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			f.fill(k)
			f.fill(e)
			m.SetMapIndex(k, e)
		}
		if n > 0 {
			v.Set(m)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			f.fill(v.Field(i))
		}
	default:
		panic("record_test: no filler for " + v.Type().String())
	}
}

// FuzzRecordMatchesEncodingJSON holds the hand-written encoder to the canonical form's
// definition, over every field of Event.
func FuzzRecordMatchesEncodingJSON(f *testing.F) {
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xf1, 0xf3, 0x05, 'a', 'b', 'c', 'd', 'e', 0x81, 0x02, 0x77}, 40))
	f.Add(bytes.Repeat([]byte{0xff, 0x00, 0xf7, 0x62, 0x01, 0x02, 0x0e, 0xfa, 0x03}, 60))
	f.Add(bytes.Repeat([]byte{0x02, 0xe9, 0x07, 0xfb, 0x90, 0xf0, 0x01}, 80))
	f.Fuzz(func(t *testing.T, data []byte) {
		var e audit.Event
		(&filler{data: data}).fill(reflect.ValueOf(&e).Elem())
		checkRecord(t, &e)
	})
}

// TestRecordEveryField sets every field of Event and requires the record to name each
// and to match encoding/json: a field added to Event and not to the encoder fails here.
func TestRecordEveryField(t *testing.T) {
	t.Parallel()
	var e audit.Event
	v := reflect.ValueOf(&e).Elem()
	for i := range v.NumField() {
		fv := v.Field(i)
		switch fv.Interface().(type) {
		case time.Time:
			fv.Set(reflect.ValueOf(time.Date(2026, 3, 1, 9, 0, 7, 123400000, time.UTC)))
			continue
		case json.RawMessage:
			fv.SetBytes([]byte(`{ "k" : [1, "\u003c"] }`))
			continue
		}
		switch fv.Kind() {
		case reflect.String:
			fv.SetString("v\u2028\u2029\"\x01\x7f\xff<" + v.Type().Field(i).Name)
		case reflect.Int, reflect.Int64:
			fv.SetInt(int64(-7 - i))
		case reflect.Bool:
			fv.SetBool(true)
		case reflect.Float64:
			fv.SetFloat(1e-7)
		case reflect.Slice:
			fv.Set(reflect.ValueOf([]string{"a", "<b>"}))
		case reflect.Map:
			fv.Set(reflect.ValueOf(map[string]float64{"z": 2.5, "a": 1e20, "b": 1e21, "m": -0.125, "s": 1e-6, "t": 9e-7}))
		default:
			t.Fatalf("field %s: no value for kind %s", v.Type().Field(i).Name, fv.Kind())
		}
	}
	checkRecord(t, &e)
	rec, err := e.MarshalRecord()
	if err != nil {
		t.Fatal(err)
	}
	for i := range v.NumField() {
		key, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		if !bytes.Contains(rec, []byte(`"`+key+`":`)) {
			t.Errorf("the record has no %q member: %s", key, rec)
		}
	}
}

// TestRecordRefuses checks the encoder fails, naming the field, where encoding/json
// fails: numbers JSON cannot hold, content that is not JSON, times it cannot write.
func TestRecordRefuses(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 3, 1, 9, 0, 7, 0, time.UTC)
	for _, tc := range []struct {
		e    audit.Event
		want string
	}{
		{audit.Event{Time: t0, Spend: math.NaN()}, "spend"},
		{audit.Event{Time: t0, Charges: map[string]float64{"a": 1, "b": math.Inf(-1)}}, "charges"},
		{audit.Event{Time: t0, Arguments: json.RawMessage(`{"a":`)}, "arguments: not valid JSON"},
		{audit.Event{Time: t0, Result: json.RawMessage(`[1] [2]`)}, "result: not valid JSON"},
		{audit.Event{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, "time"},
		{audit.Event{Time: t0.In(time.FixedZone("", 24*3600))}, "time"},
	} {
		checkRecord(t, &tc.e)
		if _, err := tc.e.MarshalRecord(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("MarshalRecord(%+v) = %v, want an error naming %q", tc.e, err, tc.want)
		}
	}
}

// BenchmarkMarshalRecord encodes a call's intent with the encoder the log uses and, in
// the same run, with encoding/json, which defines the canonical form.
func BenchmarkMarshalRecord(b *testing.B) {
	e := benchEvent()
	e.Seq, e.PrevHash = 12345, "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	b.Run("chaperone", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e.MarshalRecord(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := encodingJSONRecord(&e); err != nil {
				b.Fatal(err)
			}
		}
	})
}
