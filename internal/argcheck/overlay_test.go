package argcheck

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

const escapesMsg = "escapes the allowed directories [/srv/data /tmp/work]"

// pathCases run against the "path" argument of testSchema, allowed under
// /srv/data and /tmp/work. want is "" for an accepted path. They also seed
// FuzzValidate.
var pathCases = []struct {
	name string
	path string
	want string
}{
	{"prefix_itself", "/srv/data", ""},
	{"prefix_trailing_slash", "/srv/data/", ""},
	{"file_under_prefix", "/srv/data/a/b.txt", ""},
	{"second_prefix", "/tmp/work/x", ""},
	{"dot_segment", "/srv/data/./a", ""},
	{"double_slash", "/srv//data//a", ""},
	{"literal_percent", "/srv/data/100%", ""},
	{"other_percent_escape", "/srv/data/%41", ""},
	{"unicode_name", "/srv/data/résumé.pdf", ""},

	{"relative_dotdot", "../../etc/passwd", msgPathNotAbs},
	{"relative", "srv/data/x", msgPathNotAbs},
	{"empty", "", msgPathNotAbs},
	{"dot", ".", msgPathNotAbs},
	{"dotdot_escape", "/srv/data/../../etc/passwd", escapesMsg},
	{"dot_and_dotdot_escape", "/srv/data/./a/../../x", escapesMsg},
	{"sibling_with_prefix_name", "/srv/data-evil/x", escapesMsg},
	{"sibling_prefix_exact", "/srv/data-evil", escapesMsg},
	{"parent_of_prefix", "/srv", escapesMsg},
	{"partial_segment", "/srv/dat", escapesMsg},
	{"root", "/", escapesMsg},
	{"outside", "/etc/passwd", escapesMsg},
	{"dotdot_inside", "/srv/data/a/../b", msgPathDotDot},
	{"dotdot_to_prefix", "/srv/data/a/..", msgPathDotDot},
	{"nul", "/srv/data/\x00", msgPathControl},
	{"nul_middle", "/srv/data/a\x00/../../etc", msgPathControl},
	{"newline", "/srv/data/a\nb", msgPathControl},
	{"del", "/srv/data/a\x7f", msgPathControl},
	{"c1_control", "/srv/data/a\u0085", msgPathControl},
	{"invalid_utf8", "/srv/data/\xff", msgPathUTF8},
	{"windows_drive", `C:\..\x`, msgPathBackslash},
	{"backslash_dotdot", `/srv/data\..\..\etc`, msgPathBackslash},
	{"encoded_dots", "/srv/data/%2e%2e/%2e%2e/etc", msgPathEncoded},
	{"encoded_dots_upper", "/srv/data/%2E%2E/etc", msgPathEncoded},
	{"encoded_slash", "/srv/data/..%2F..%2Fetc", msgPathEncoded},
	{"encoded_backslash", "/srv/data/..%5c..%5Cetc", msgPathEncoded},
	{"double_encoded", "/srv/data/%252e%252e", msgPathEncoded},
}

func TestValidatePath(t *testing.T) {
	t.Parallel()
	v := mustCompile(t, testSchema, testOverlay())
	for _, tc := range pathCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var want []Problem
			if tc.want != "" {
				want = []Problem{{"path", tc.want}}
			}
			got := problems(t, v.Validate(map[string]any{"path": tc.path}))
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Validate(path=%q) problems mismatch (-want +got):\n%s", tc.path, diff)
			}
		})
	}
}

func TestPathRuleRootPrefix(t *testing.T) {
	t.Parallel()
	r, errs := newPathRule([]string{"/"})
	if len(errs) != 0 {
		t.Fatalf("newPathRule(/) = %v", errs)
	}
	tests := []struct {
		path string
		want string
	}{
		{"/", ""},
		{"/etc/passwd", ""},
		{"//x", ""},
		{"x", msgPathNotAbs},
		{"/a/../b", msgPathDotDot},
	}
	for _, tc := range tests {
		if got := r.check(tc.path); got != tc.want {
			t.Errorf("check(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

const deniedMsg = "host is not one of the allowed hosts [good.com *.example.com 127.0.0.1 ::1]"

// urlCases run against the "url" argument of testSchema, allowed for
// good.com, *.example.com, 127.0.0.1 and ::1. want is "" for an accepted URL.
// They also seed FuzzValidate.
var urlCases = []struct {
	name string
	url  string
	want string
}{
	{"plain", "https://good.com", ""},
	{"http_with_path_query_fragment", "http://good.com/a?b=c#d", ""},
	{"upper_case", "HTTPS://GOOD.COM", ""},
	{"mixed_case_host", "https://Good.Com/x", ""},
	{"default_port", "https://good.com:443/x", ""},
	{"other_port", "http://good.com:8080/x", ""},
	{"empty_port", "https://good.com:/x", ""},
	{"trailing_dot", "https://good.com./x", ""},
	{"subdomain", "https://api.example.com/v1", ""},
	{"deep_subdomain", "https://a.b.example.com", ""},
	{"ipv4_listed", "http://127.0.0.1:8080/", ""},
	{"ipv6_listed", "http://[::1]/", ""},
	{"ipv6_listed_long_form", "http://[0:0::1]/", ""},

	{"userinfo_trick", "https://good.com@evil.com", msgURLUserinfo},
	{"userinfo_password", "https://user:pw@good.com/", msgURLUserinfo},
	{"userinfo_empty", "https://@good.com/", msgURLUserinfo},
	{"encoded_slash_userinfo", "https://good.com%2f@evil.com", msgURLUserinfo},
	{"suffix_trick", "https://good.com.evil.com", deniedMsg},
	{"prefix_trick", "https://evilgood.com", deniedMsg},
	{"path_trick", "https://evil.com/good.com", deniedMsg},
	{"fragment_trick", "https://evil.com#@good.com", deniedMsg},
	{"apex_of_wildcard", "https://example.com", deniedMsg},
	{"apex_of_wildcard_trailing_dot", "https://example.com.", deniedMsg},
	{"wildcard_lookalike", "https://evilexample.com", deniedMsg},
	{"ipv4_unlisted", "http://127.0.0.2/", deniedMsg},
	{"ipv4_decimal", "http://2130706433/", deniedMsg},
	{"ipv4_short", "http://127.1/", deniedMsg},
	{"ipv6_unlisted", "http://[::2]/", deniedMsg},
	{"ipv4_mapped_ipv6", "http://[::ffff:127.0.0.1]/", deniedMsg},
	{"punycode_unlisted", "https://xn--gd-eka.com/", deniedMsg},
	{"empty_label", "https://.example.com/", msgURLHostName},
	{"double_dot", "https://a..example.com/", msgURLHostName},
	{"semicolon_in_host", "https://evil.com;.example.com/", msgURLHostName},
	{"bang_in_host", "https://evil!.example.com/", msgURLHostName},
	{"ipv6_zone", "http://[::1%25eth0]/", msgURLZone},
	{"unicode_host", "https://gööd.com/", msgURLUnicode},
	{"unicode_subdomain", "https://ä.example.com/", msgURLUnicode},
	{"javascript", "javascript:alert(1)", msgURLScheme},
	{"ftp", "ftp://good.com/x", msgURLScheme},
	{"file", "file:///etc/passwd", msgURLScheme},
	{"data", "data:text/html,hi", msgURLScheme},
	{"scheme_relative", "//good.com/x", msgURLScheme},
	{"no_scheme", "good.com", msgURLScheme},
	{"empty", "", msgURLScheme},
	{"opaque", "https:good.com", msgURLAbs},
	{"no_host", "https:///x", msgURLAbs},
	{"bare_scheme", "https://", msgURLAbs},
	{"bad_port", "https://good.com:abc/", msgURLParse},
	{"bad_escape_in_host", "https://%67ood.com/", msgURLParse},
	{"leading_space", " https://good.com", msgURLChars},
	{"tab_in_host", "https://go\tod.com", msgURLChars},
	{"backslash_trick", `https://evil.com\@good.com`, msgURLChars},
	{"backslash_path", `https://good.com\..\x`, msgURLChars},
}

func TestValidateURL(t *testing.T) {
	t.Parallel()
	v := mustCompile(t, testSchema, testOverlay())
	for _, tc := range urlCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var want []Problem
			if tc.want != "" {
				want = []Problem{{"url", tc.want}}
			}
			got := problems(t, v.Validate(map[string]any{"path": "/srv/data", "url": tc.url}))
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Validate(url=%q) problems mismatch (-want +got):\n%s", tc.url, diff)
			}
		})
	}
}

func TestIsDNSName(t *testing.T) {
	t.Parallel()
	long := "a"
	for len(long) < 63 {
		long += "a"
	}
	tests := []struct {
		in   string
		want bool
	}{
		{"good.com", true},
		{"a-b_c.d9", true},
		{long + ".com", true},
		{long + "a.com", false},
		{"", false},
		{".", false},
		{"a.", false},
		{".a", false},
		{"a..b", false},
		{"A.com", false},
		{"a b", false},
		{"a;b", false},
	}
	for _, tc := range tests {
		if got := isDNSName(tc.in); got != tc.want {
			t.Errorf("isDNSName(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
