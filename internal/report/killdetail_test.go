package report

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseKillDetail(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want killDetail
		ok   bool
	}{
		{"by alice; 2 calls in flight cancelled, 1 held approvals voided, contained in 3ms", killDetail{"alice", 2, 1}, true},
		{"by ops; bob; 0 calls in flight cancelled, 0 held approvals voided, contained in 1s; 1 cancelled calls still running after 5s", killDetail{"ops; bob", 0, 0}, true},
		{"by ; 7 calls in flight cancelled, 3 held approvals voided", killDetail{"", 7, 3}, true},
		{"", killDetail{}, false},
		{"by alice", killDetail{}, false},
		{"cancelled by alice", killDetail{}, false},
		{"by alice; 02 calls in flight cancelled, 1 held approvals voided", killDetail{}, false},
		{"by alice; -1 calls in flight cancelled, 1 held approvals voided", killDetail{}, false},
		{"by alice; 99999999999999999999 calls in flight cancelled, 1 held approvals voided", killDetail{}, false},
		{"by alice; 2 calls in flight cancelled, 1 held approvals voided" + strings.Repeat("x", maxDetail), killDetail{}, false},
	} {
		got, ok := parseKillDetail(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseKillDetail(%.80q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzParseKillDetail(f *testing.F) {
	f.Add("by alice; 2 calls in flight cancelled, 1 held approvals voided, contained in 3ms")
	f.Add("by ; 0 calls in flight cancelled, 0 held approvals voided")
	f.Add("by a; b; 1 calls in flight cancelled, 2 held approvals voided; 3 calls in flight cancelled, 4 held approvals voided")
	f.Add("by x; 007 calls in flight cancelled, 0 held approvals voided")
	f.Add("by \xff; 1 calls in flight cancelled, 2 held approvals voided")
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := parseKillDetail(s)
		if !ok {
			if d != (killDetail{}) {
				t.Errorf("parseKillDetail(%q) = %+v, false: want the zero value when it fails", s, d)
			}
			return
		}
		prefix := fmt.Sprintf("by %s; %d calls in flight cancelled, %d held approvals voided", d.by, d.cancelled, d.voided)
		if d.cancelled < 0 || d.voided < 0 || len(s) > maxDetail || !strings.HasPrefix(s, prefix) {
			t.Errorf("parseKillDetail(%q) = %+v, which does not restate the detail", s, d)
		}
	})
}
