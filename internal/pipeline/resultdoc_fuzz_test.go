package pipeline

import (
	"encoding/json"
	"slices"
	"testing"
)

// FuzzResultDocReadsAsEveryClient holds the result sensors to the clients a result may
// reach: every text that a client matching member names exactly (JSON, JavaScript, Python)
// or regardless of case (Go's encoding/json) shows the model, from content items, embedded
// resources or structured content, is among the texts the sensors scan.
func FuzzResultDocReadsAsEveryClient(f *testing.F) {
	f.Add([]byte(`{"content":[{"type":"text","text":"a","TEXT":"b"}]}`))
	f.Add([]byte(`{"content":[{"type":"text","text":"a"}],"Content":[{"type":"text","text":"b"}]}`))
	f.Add([]byte(`{"content":[{"type":"resource","resource":{"uri":"u","text":"a","Text":"b"}}]}`))
	f.Add([]byte(`{"content":[{"type":"text","te\u0078t":"a","text":"b"}],"structuredContent":{"k":["v",{"w":"x"}]}}`))
	f.Add([]byte(`{"structuredContent":"s","ſtructuredContent":{"k":"v"}}`))
	f.Fuzz(func(t *testing.T, res []byte) {
		d, err := parseResultDoc(res)
		if err != nil {
			return // withheld, or passed as unreadable: neither shows the model unscanned text
		}
		scanned := make([]string, len(d.fields))
		for i, fl := range d.fields {
			scanned[i] = fl.text
		}
		if len(d.fields) >= maxSenseStrings {
			return // bounded: the rest is not read, by design
		}
		check := func(client, text string) {
			if text != "" && !slices.Contains(scanned, text) {
				t.Fatalf("result %q: %s client shows %q, which the sensors did not scan (they scanned %q)", res, client, text, scanned)
			}
		}

		var folded struct {
			Content []struct {
				Text     string `json:"text"`
				Resource *struct {
					Text string `json:"text"`
				} `json:"resource"`
			} `json:"content"`
			StructuredContent any `json:"structuredContent"`
		}
		if json.Unmarshal(res, &folded) == nil {
			for _, c := range folded.Content {
				check("a case-folding", c.Text)
				if c.Resource != nil {
					check("a case-folding", c.Resource.Text)
				}
			}
			for _, s := range allStrings(folded.StructuredContent) {
				check("a case-folding", s)
			}
		}

		var exact map[string]any
		if json.Unmarshal(res, &exact) == nil {
			items, _ := exact["content"].([]any)
			for _, it := range items {
				m, _ := it.(map[string]any)
				text, _ := m["text"].(string)
				check("an exact", text)
				if r, ok := m["resource"].(map[string]any); ok {
					rt, _ := r["text"].(string)
					check("an exact", rt)
				}
			}
			for _, s := range allStrings(exact["structuredContent"]) {
				check("an exact", s)
			}
		}
	})
}

// allStrings returns the strings in a decoded JSON value, object keys aside.
func allStrings(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, allStrings(e)...)
		}
		return out
	case map[string]any:
		var out []string
		for _, e := range x {
			out = append(out, allStrings(e)...)
		}
		return out
	}
	return nil
}
