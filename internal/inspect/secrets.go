package inspect

import (
	"math"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"
)

// MaxSecretScanBytes is the size of the window the secret scanner works on. A text up to
// this size is scanned in one piece. A longer text is scanned whole, in consecutive
// windows of this size that overlap by secretWindowOverlap bytes, so a secret shorter
// than the overlap that straddles a window edge is still found in one piece. The work is
// linear in the length of the text: the keyword prefilter reads each byte once, and every
// rule looks at a bounded neighbourhood of each keyword hit.
const MaxSecretScanBytes = 1 << 20

// secretWindowOverlap is how far consecutive scan windows overlap; it bounds the length of
// a secret that is guaranteed to be found whole when it crosses a window edge.
const secretWindowOverlap = 32 << 10

// Bounds of the work done per scan window.
const (
	// secretMaxFindings caps the candidates collected in one window.
	secretMaxFindings = 4096
	// secretMaxRepeats caps the distinct secret values whose other occurrences are
	// looked for in the window, which bounds that search to secretMaxRepeats passes.
	// The occurrences themselves are bounded by the window: values are at least four
	// bytes long.
	secretMaxRepeats = 64
)

// SecretScanner finds credentials in text. Safe for concurrent use.
//
// It runs an embedded ruleset: exact formats of the tokens of well-known services
// (literal prefixes, lengths, alphabets and internal structure), structural
// detectors (private-key blocks, JWTs, URLs with passwords, HTTP authorization headers,
// curl credentials), and a generic detector of values assigned to, or compared with,
// keys that name a secret ("password", "api_key", "client_secret", ...), judged by the
// value's entropy, character classes and length. A keyword prefilter (one pass of an
// Aho-Corasick automaton over the text) decides which rules look at which part of the
// text, so ordinary prose costs a single linear pass.
//
// A value found once is reported wherever else it occurs in the same window (for the
// first 64 distinct values of a window), so Redact does not leave a copy of a secret
// next to its redacted twin.
type SecretScanner struct {
	match    *secretMatcher
	keywords []secretKeyword
	// prefixes are the literal prefixes of the format rules, indexed by first byte, whose
	// values the generic detector leaves to those rules.
	prefixes [256][]string
}

// NewSecretScanner compiles the embedded ruleset.
func NewSecretScanner() *SecretScanner {
	kws := secretKeywords()
	words := make([]string, len(kws))
	for i, k := range kws {
		words[i] = k.word
	}
	s := &SecretScanner{match: secretNewMatcher(words), keywords: kws}
	for _, r := range secretPrefixRules {
		s.prefixes[r.prefix[0]] = append(s.prefixes[r.prefix[0]], r.prefix)
	}
	for _, p := range secretVetoPrefixes {
		s.prefixes[p[0]] = append(s.prefixes[p[0]], p)
	}
	return s
}

// SecretKinds lists the rule ids, sorted.
func SecretKinds() []string {
	seen := map[string]bool{}
	for _, k := range secretStructuralKinds {
		seen[k] = true
	}
	for _, r := range secretPrefixRules {
		seen[r.kind] = true
	}
	kinds := make([]string, 0, len(seen))
	for k := range seen {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return kinds
}

// Scan returns the secrets in text, sorted by position, non-overlapping. Each Finding has
// Sensor=SensorSecret, Kind=the rule id (snake_case, e.g. "aws_access_key", "github_token",
// "private_key", "jwt", "connection_string", "generic_secret"), Span = the byte range of the
// secret value itself (not the key name or the "password=" prefix), Score in (0,1].
func (s *SecretScanner) Scan(text string) []Finding {
	var cands []secretCand
	windows := 0
	for off := 0; off < len(text); {
		end := secretRuneEnd(text, off+MaxSecretScanBytes)
		w := &secretScan{s: s, text: text[off:end]}
		w.run()
		for _, c := range w.resolve() {
			c.start += off
			c.end += off
			cands = append(cands, c)
		}
		windows++
		if end == len(text) {
			break
		}
		next := secretRuneEnd(text, end-secretWindowOverlap)
		if next <= off {
			next = end
		}
		off = next
	}
	if len(cands) == 0 {
		return nil
	}
	if windows > 1 {
		// Each window's list is sorted and free of overlaps; only the overlapping
		// stretches of neighbouring windows can disagree.
		sort.SliceStable(cands, func(i, j int) bool { return cands[i].start < cands[j].start })
		cands = secretSweep(cands)
	}
	out := make([]Finding, len(cands))
	for i, c := range cands {
		out[i] = Finding{Sensor: SensorSecret, Kind: c.kind, Span: Span{c.start, c.end}, Score: c.score}
	}
	return out
}

// Redact returns text with every secret replaced by "[REDACTED:<kind>]" and the count.
//
// A replacement can change what surrounds another value (a key now followed by a
// marker, say), so Redact scans its own output again, at most three times in all, and
// redacts what the later passes find too; the count includes them.
func (s *SecretScanner) Redact(text string) (string, int) {
	total := 0
	for range 3 {
		fs := s.Scan(text)
		if len(fs) == 0 {
			break
		}
		var b strings.Builder
		b.Grow(len(text))
		last := 0
		for _, f := range fs {
			b.WriteString(text[last:f.Span.Start])
			b.WriteString("[REDACTED:")
			b.WriteString(f.Kind)
			b.WriteByte(']')
			last = f.Span.End
		}
		b.WriteString(text[last:])
		text = b.String()
		total += len(fs)
	}
	return text, total
}

// secretRuneEnd returns i clamped to len(s) and moved back to the start of a rune.
func secretRuneEnd(s string, i int) int {
	if i >= len(s) {
		return len(s)
	}
	if i < 0 {
		return 0
	}
	for j := i; j > i-utf8.UTFMax && j > 0; j-- {
		if utf8.RuneStart(s[j]) {
			return j
		}
	}
	return i
}

// Candidate priorities: when two candidates overlap, the higher priority wins.
const (
	secretPrioRepeat  = 0 // another occurrence of a value found elsewhere
	secretPrioGeneric = 1 // a value judged by its key and its entropy
	secretPrioShape   = 2 // a structural detector (URL, header, key block)
	secretPrioFormat  = 3 // an exact token format
)

// secretCand is a finding before overlaps are resolved; offsets are into the window.
type secretCand struct {
	start, end int
	kind       string
	score      float64
	prio       int
}

// secretScan is the state of one scan of one window.
type secretScan struct {
	s     *SecretScanner
	text  string
	cands []secretCand
	// Progress marks that keep the work linear when keyword hits crowd together: a
	// detector skips a hit inside text it has already examined.
	genericDone int
	pemEnd      int // position of the next "-----END" at or after pemFrom, or -1
	pemFrom     int
	dotDone     int
	npmDone     int
	sasDone     int
}

func (w *secretScan) add(start, end int, kind string, score float64, prio int) {
	if start < 0 || end > len(w.text) || start >= end || len(w.cands) >= secretMaxFindings {
		return
	}
	if !secretBoundary(w.text, start) || !secretBoundary(w.text, end) {
		return
	}
	w.cands = append(w.cands, secretCand{start: start, end: end, kind: kind, score: min(max(score, 0.05), 1), prio: prio})
}

// secretBoundary reports whether i is a valid span edge in s: not inside the encoding of
// a rune, as ranging over s decodes it (a stray continuation byte is a rune of its own).
func secretBoundary(s string, i int) bool {
	if i <= 0 || i >= len(s) || utf8.RuneStart(s[i]) {
		return true
	}
	for j := i - 1; j >= max(0, i-utf8.UTFMax+1); j-- {
		if utf8.RuneStart(s[j]) {
			_, size := utf8.DecodeRuneInString(s[j:])
			return j+size <= i
		}
	}
	return true
}

// run feeds every keyword hit of the window to its detector.
func (w *secretScan) run() {
	m := w.s.match
	t := w.text
	w.pemEnd, w.pemFrom = -1, -1
	// Locals, so the loop keeps them in registers across the detector calls.
	next, hasOut, class := m.next, m.hasOut, &m.class
	row := int32(0) // the current state times the number of classes
	for i := 0; i < len(t); i++ {
		row = next[row+int32(class[t[i]])]
		if hasOut[row] {
			for _, k := range m.out[row/int32(m.nclass)] {
				kw := &w.s.keywords[k]
				kw.detect(w, i+1-len(kw.word))
			}
		}
	}
}

// resolve keeps the best non-overlapping candidates of the window, then adds the other
// occurrences of the values found.
func (w *secretScan) resolve() []secretCand {
	if len(w.cands) == 0 {
		return nil
	}
	kept := secretResolve(w.cands)
	seen := map[string]bool{}
	var repeats []secretCand
	for _, c := range kept {
		v := w.text[c.start:c.end]
		if seen[v] || len(seen) >= secretMaxRepeats {
			continue
		}
		seen[v] = true
		for from := 0; from < len(w.text); {
			i := strings.Index(w.text[from:], v)
			if i < 0 {
				break
			}
			a, b := from+i, from+i+len(v)
			from = b
			if !secretBoundary(w.text, a) || !secretBoundary(w.text, b) || secretOverlaps(kept, a, b) {
				continue
			}
			repeats = append(repeats, secretCand{start: a, end: b, kind: c.kind, score: c.score * 0.9, prio: secretPrioRepeat})
		}
	}
	if len(repeats) == 0 {
		return kept
	}
	// The repeats overlap no kept candidate, only each other: keep the earliest.
	sort.SliceStable(repeats, func(i, j int) bool { return repeats[i].start < repeats[j].start })
	all := append(repeats[:0:0], kept...)
	last := -1
	for _, r := range repeats {
		if r.start >= last {
			all = append(all, r)
			last = r.end
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].start < all[j].start })
	return all
}

// secretOverlaps reports whether [a, b) overlaps a candidate of kept, which is sorted
// and free of overlaps.
func secretOverlaps(kept []secretCand, a, b int) bool {
	i := sort.Search(len(kept), func(i int) bool { return kept[i].end > a })
	return i < len(kept) && kept[i].start < b
}

// secretSweep resolves the overlaps of candidates sorted by start, where each overlap is
// between neighbours: of two overlapping candidates it keeps the better.
func secretSweep(cands []secretCand) []secretCand {
	out := cands[:0]
	for _, c := range cands {
		if n := len(out); n > 0 && c.start < out[n-1].end {
			if secretBetter(c, out[n-1]) {
				out[n-1] = c
			}
			continue
		}
		out = append(out, c)
	}
	return out
}

// secretBetter orders candidates: higher priority, then the longer span, then the higher
// score, then the earlier start.
func secretBetter(a, b secretCand) bool {
	if a.prio != b.prio {
		return a.prio > b.prio
	}
	if la, lb := a.end-a.start, b.end-b.start; la != lb {
		return la > lb
	}
	if a.score != b.score {
		return a.score > b.score
	}
	return a.start < b.start
}

// secretResolve picks non-overlapping candidates, preferring higher priority, then the
// longer span, then the higher score, then the earlier start; it returns them sorted by
// position.
func secretResolve(cands []secretCand) []secretCand {
	order := slices.Clone(cands)
	sort.SliceStable(order, func(i, j int) bool { return secretBetter(order[i], order[j]) })
	var kept []secretCand // sorted by start, non-overlapping
	for _, c := range order {
		i := sort.Search(len(kept), func(i int) bool { return kept[i].end > c.start })
		if i < len(kept) && kept[i].start < c.end {
			continue
		}
		kept = slices.Insert(kept, i, c)
	}
	return kept
}

// secretMatcher is an Aho-Corasick automaton over ASCII-lowercased bytes, compiled to a
// dense transition table over the byte classes that occur in keywords.
type secretMatcher struct {
	class  [256]uint8
	nclass int
	// next maps a row (state times nclass) plus a byte class to the next row.
	next []int32
	// hasOut is indexed by row: whether the state ends a keyword.
	hasOut []bool
	out    [][]int // keyword indexes ending at each state, suffix outputs included
}

func secretNewMatcher(words []string) *secretMatcher {
	m := &secretMatcher{nclass: 1}
	for _, w := range words {
		for i := 0; i < len(w); i++ {
			c := w[i]
			if m.class[c] == 0 {
				m.class[c] = uint8(m.nclass)
				m.nclass++
			}
		}
	}
	for c := 'A'; c <= 'Z'; c++ {
		m.class[c] = m.class[c+'a'-'A']
	}
	// Trie.
	type node struct {
		child map[uint8]int32
		out   []int
	}
	nodes := []node{{child: map[uint8]int32{}}}
	for k, w := range words {
		cur := int32(0)
		for i := 0; i < len(w); i++ {
			c := m.class[w[i]]
			nx, ok := nodes[cur].child[c]
			if !ok {
				nodes = append(nodes, node{child: map[uint8]int32{}})
				nx = int32(len(nodes) - 1)
				nodes[cur].child[c] = nx
			}
			cur = nx
		}
		nodes[cur].out = append(nodes[cur].out, k)
	}
	// Breadth-first failure links, folded into a full transition table.
	n := len(nodes)
	m.next = make([]int32, n*m.nclass)
	m.out = make([][]int, n)
	fail := make([]int32, n)
	queue := []int32{0}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		m.out[u] = append(slices.Clone(nodes[u].out), m.out[fail[u]]...)
		if u == 0 {
			m.out[u] = slices.Clone(nodes[u].out)
		}
		for c := 0; c < m.nclass; c++ {
			v, ok := nodes[u].child[uint8(c)]
			switch {
			case ok:
				if u == 0 {
					fail[v] = 0
				} else {
					fail[v] = m.next[int(fail[u])*m.nclass+c]
				}
				m.next[int(u)*m.nclass+c] = v
				queue = append(queue, v)
			case u == 0:
				m.next[c] = 0
			default:
				m.next[int(u)*m.nclass+c] = m.next[int(fail[u])*m.nclass+c]
			}
		}
	}
	// Store rows rather than states, so the scan loop needs no multiplication.
	for i, v := range m.next {
		m.next[i] = v * int32(m.nclass)
	}
	m.hasOut = make([]bool, n*m.nclass)
	for st := range n {
		m.hasOut[st*m.nclass] = len(m.out[st]) > 0
	}
	return m
}

// Character tests.

func secretIsAlnum(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}

func secretIsWord(b byte) bool { return secretIsAlnum(b) || b == '_' }

func secretIsHex(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F'
}

func secretIsDigit(b byte) bool { return b >= '0' && b <= '9' }

func secretIsSpace(b byte) bool { return b == ' ' || b == '\t' }

// secretRun returns the end of the run of bytes satisfying ok that starts at i, looking at
// no more than limit bytes.
func secretRun(s string, i, limit int, ok func(byte) bool) int {
	end := min(len(s), i+limit)
	j := i
	for j < end && ok(s[j]) {
		j++
	}
	return j
}

// secretRunBack returns the start of the run of bytes satisfying ok that ends at i.
func secretRunBack(s string, i, limit int, ok func(byte) bool) int {
	stop := max(0, i-limit)
	j := i
	for j > stop && ok(s[j-1]) {
		j--
	}
	return j
}

// secretEntropy is the Shannon entropy of s in bits per byte.
func secretEntropy(s string) float64 {
	if len(s) == 0 {
		return 0
	}
	var counts [256]int
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	n := float64(len(s))
	h := 0.0
	for i := 0; i < len(s); i++ {
		if c := counts[s[i]]; c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
			counts[s[i]] = 0
		}
	}
	return h
}

// secretClasses counts lower-case letters, upper-case letters, digits and other bytes.
func secretClasses(s string) (lower, upper, digit, other int) {
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b >= 'a' && b <= 'z':
			lower++
		case b >= 'A' && b <= 'Z':
			upper++
		case b >= '0' && b <= '9':
			digit++
		default:
			other++
		}
	}
	return
}

// secretSequential is the share of adjacent alphanumeric pairs in s that step up by one
// ("abcd", "1234", "ABCD"), ignoring separators and case. It is 1 for an alphabet.
func secretSequential(s string) float64 {
	pairs, steps := 0, 0
	prev := -1
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !secretIsAlnum(b) {
			continue
		}
		if b >= 'A' && b <= 'Z' {
			b += 'a' - 'A'
		}
		if prev >= 0 {
			pairs++
			if int(b) == prev+1 {
				steps++
			}
		}
		prev = int(b)
	}
	if pairs == 0 {
		return 0
	}
	return float64(steps) / float64(pairs)
}

// secretLongestRun is the length of the longest run of one repeated byte in s.
func secretLongestRun(s string) int {
	best, run := 0, 0
	for i := 0; i < len(s); i++ {
		if i > 0 && s[i] == s[i-1] {
			run++
		} else {
			run = 1
		}
		best = max(best, run)
	}
	return best
}

// secretPeriodic reports whether s (at least 6 bytes) is a unit of up to 4 bytes
// repeated, as in "abcabcabc" or "12121212".
func secretPeriodic(s string) bool {
	if len(s) < 6 {
		return false
	}
	for p := 1; p <= 4; p++ {
		ok := true
		for i := p; i < len(s); i++ {
			if s[i] != s[i-p] {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// secretMasked reports whether a token body is explicitly masked: runs of "x", "*",
// "." or "#", angle-bracket placeholders, or the "EXAMPLE" suffix of cloud documentation.
func secretMasked(body string) bool {
	lower := strings.ToLower(body)
	return strings.Contains(lower, "xxxx") || strings.Contains(body, "****") || strings.Contains(body, "....") ||
		strings.Contains(body, "####") || strings.ContainsAny(body, "<>") ||
		strings.HasSuffix(body, "EXAMPLE") || strings.HasSuffix(body, "EXAMPLEKEY")
}

// secretFiller reports whether the random part of a token is a placeholder: runs of
// "x", masks, a single repeated character, a repeated short unit, an alphabet, the
// "EXAMPLE" suffix of cloud documentation, or too little entropy to be random.
func secretFiller(body string) bool {
	if body == "" {
		return true
	}
	switch {
	case secretMasked(body), secretContainsFold(body, "example"):
		return true
	case secretLongestRun(body) >= 6, secretPeriodic(body):
		return true
	case len(body) >= 8 && secretSequential(body) >= 0.85:
		return true
	case len(body) >= 16 && secretEntropy(body) < 2.5:
		return true
	}
	return false
}

// The generic detector: a value assigned to, or compared with, a key that names a
// secret ("entropy with context").

// secretKeyClass is what a key name says about its value, weakest first.
type secretKeyClass uint8

const (
	secretKeyNone     secretKeyClass = iota
	secretKeyWeak                    // an UPPER_SNAKE name ending in _KEY
	secretKeyAPI                     // api_key, access_key, license_key, ...
	secretKeyToken                   // token, auth, bearer, pat
	secretKeySecret                  // secret, client_secret, private_key, credential
	secretKeyPassword                // password, passwd, pwd, passphrase
)

// secretKeyInfo is the analysis of a key name.
type secretKeyInfo struct {
	class  secretKeyClass
	aws    bool   // an AWS secret access key
	vendor string // a service whose credential format is known
}

// Last words of a key name that make it describe something other than the secret
// itself: token_url, secret_name, password_length, key_id.
var secretDenyLast = secretSet(`name names id ids identifier uuid guid arn length len size count num number
	type types kind version ver url uri urls endpoint host hostname domain port path file filename filepath
	dir folder location prefix suffix field fields column param params parameter header format pattern regex
	regexp policy hint label text title description desc help msg message error err errors prompt placeholder
	example sample env var variable ref reference mode method algorithm alg algo enabled enable disabled
	required optional expiry expires expiration expire ttl lifetime timeout time timestamp date at index idx
	hash hashed digest checksum min max rule rules scope scopes source src store vault provider manager
	selector class config configuration settings setting option options mapping map list pair pairs bits
	strength validator validation check checker input button link view page screen dialog form template
	schema module plugin service client generator factory handler helper util utils cache status state flag
	flags reset rotation limit attempts retries secrets tokens keys passwords credentials patterns regexes
	in on by from to for of sha md crc fingerprint thumbprint`)

// Words anywhere in a key name that make its value not a credential.
var secretDenyAny = secretSet(`public pub publishable csrf xsrf authenticity not no fake dummy example sample
	mock placeholder is has use show hide toggle forgot forgotten hashed encrypted page next continuation
	pagination cursor sync cancellation idempotency`)

// Words that make a key a password, secret, token or API key.
var (
	secretPasswordWords = secretSet(`password passwd passphrase passcode pwd pswd pass`)
	secretSecretWords   = secretSet(`secret credential cred privatekey secretkey signingkey encryptionkey masterkey`)
	secretTokenWords    = secretSet(`token bearer`)
	secretAPIKeyWords   = secretSet(`apikey accesskey authkey licensekey accountkey appkey subscriptionkey servicekey adminkey clientkey deploykey writekey`)
	// Qualifiers that make "<qualifier> key" a secret key or an API key.
	secretSecretKeyQualifiers = secretSet(`private secret signing encryption decryption master hmac jwt session cookie crypto`)
	secretAPIKeyQualifiers    = secretSet(`api access auth license account app subscription service admin client deploy write storage shared sas primary secondary root`)
	secretVendorWords         = secretSet(`sourcegraph heroku twilio`)
)

// secretTokenCompound reports whether w is a one-word compound naming a token, such as
// "accesstoken" or "authtoken"; a free suffix match would take "jsonwebtoken" too.
func secretTokenCompound(w string) bool {
	q, ok := strings.CutSuffix(w, "token")
	return ok && secretTokenQualifiers[q]
}

var secretTokenQualifiers = secretSet(`access auth api refresh session bot user app id bearer security client
	private deploy personal oauth github gitlab slack discord telegram npm service admin master`)

func secretSet(words string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(words) {
		m[w] = true
	}
	return m
}

// secretSplitWords splits an identifier into lower-case words at separators, case
// changes (apiKey, APIKey) and letter-digit changes (token3).
func secretSplitWords(key string) []string {
	lowered := strings.ToLower(key)
	words := make([]string, 0, 8)
	start := -1
	flush := func(end int) {
		if start >= 0 && end > start {
			words = append(words, lowered[start:end])
		}
		start = -1
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !secretIsAlnum(c) {
			flush(i)
			continue
		}
		if start < 0 {
			start = i
			continue
		}
		p := key[i-1]
		isUpper := c >= 'A' && c <= 'Z'
		switch {
		case isUpper && p >= 'a' && p <= 'z',
			secretIsDigit(c) != secretIsDigit(p),
			isUpper && p >= 'A' && p <= 'Z' && i+1 < len(key) && key[i+1] >= 'a' && key[i+1] <= 'z':
			flush(i)
			start = i
		}
	}
	flush(len(key))
	return words
}

// secretClassifyKey says what a key name promises about its value.
func secretClassifyKey(key string) secretKeyInfo {
	words := secretSplitWords(key)
	for len(words) > 0 && secretAllDigits(words[len(words)-1]) {
		words = words[:len(words)-1]
	}
	if len(words) == 0 || len(words) > 12 || secretDenyLast[words[len(words)-1]] {
		return secretKeyInfo{}
	}
	var info secretKeyInfo
	hasAWS := false
	for i, w := range words {
		if secretDenyAny[w] || strings.HasPrefix(w, "csrf") || strings.HasPrefix(w, "xsrf") {
			return secretKeyInfo{}
		}
		if w == "aws" {
			hasAWS = true
		}
		if secretVendorWords[w] {
			info.vendor = w
		}
		prev := ""
		if i > 0 {
			prev = words[i-1]
		}
		last := i == len(words)-1
		c := secretKeyNone
		switch {
		case secretPasswordWords[w] && (w != "pass" || len(words) > 1), strings.HasSuffix(w, "password"),
			strings.HasSuffix(w, "passwd"), strings.HasSuffix(w, "passphrase"), w == "pw" && last && len(words) > 1:
			c = secretKeyPassword
		case secretSecretWords[w], strings.HasSuffix(w, "secret"), w == "key" && secretSecretKeyQualifiers[prev]:
			c = secretKeySecret
		case secretTokenWords[w], secretTokenCompound(w), (w == "auth" || w == "pat") && last:
			c = secretKeyToken
		case secretAPIKeyWords[w], w == "key" && secretAPIKeyQualifiers[prev]:
			c = secretKeyAPI
		}
		info.class = max(info.class, c)
	}
	if info.class == secretKeyNone && words[len(words)-1] == "key" && secretIsUpperSnake(key) && len(words) > 1 {
		info.class = secretKeyWeak
	}
	if hasAWS && info.class == secretKeySecret {
		info.aws = true
	}
	if info.class == secretKeyNone && info.vendor == "" {
		return secretKeyInfo{}
	}
	return info
}

func secretIsUpperSnake(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'A' && c <= 'Z' || secretIsDigit(c) || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// secretIsKeyByte reports whether b can be part of a key name.
func secretIsKeyByte(b byte) bool { return secretIsWord(b) || b == '-' || b == '.' }

// generic examines the key name around a keyword hit, then the value assigned to it or
// compared with it.
func (w *secretScan) generic(at int) {
	t := w.text
	ks := at
	for ks > max(0, at-64) && secretIsKeyByte(t[ks-1]) {
		ks--
	}
	ke := at
	for ke < min(len(t), at+96) && secretIsKeyByte(t[ke]) {
		ke++
	}
	if ks < w.genericDone {
		return
	}
	w.genericDone = ke
	for ke > ks && (t[ke-1] == '.' || t[ke-1] == '-') {
		ke--
	}
	if ke-ks > 80 {
		return
	}
	// Find a bound value first: most keyword hits are words in prose, with none.
	vs, ve, literal, phrase, ok := w.genericValue(ks, ke)
	if !ok {
		if vs, ve, ok = w.genericReversed(ks); !ok {
			return
		}
		literal, phrase = true, true
	}
	info := secretClassifyKey(t[ks:ke])
	if info.class == secretKeyNone && info.vendor == "" {
		return
	}
	w.genericJudge(info, vs, ve, literal, phrase)
}

// genericJudge adds the value at [vs, ve) if it looks like a secret for its key.
func (w *secretScan) genericJudge(info secretKeyInfo, vs, ve int, literal, phrase bool) {
	v := w.text[vs:ve]
	for _, p := range w.s.prefixes[v[0]] {
		if strings.HasPrefix(v, p) {
			return // a format rule owns this value
		}
	}
	if info.vendor != "" {
		if kind, ok := secretVendorValue(info.vendor, v); ok {
			w.add(vs, ve, kind, 0.85, secretPrioGeneric)
			return
		}
		if info.class == secretKeyNone {
			return
		}
	}
	score, ok := secretJudgeValue(v, info.class, literal, phrase)
	if !ok {
		return
	}
	kind := "generic_secret"
	if info.aws && len(v) == 40 && secretAllIn(v, func(b byte) bool { return secretInCharset(secretCharBase64, b) }) {
		kind, score = "aws_secret_key", 0.9
	}
	w.add(vs, ve, kind, score, secretPrioGeneric)
}

func secretAllIn(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

// secretVendorValue recognises the credential formats of services named in a key:
// Sourcegraph (40 hex digits), Heroku (a UUID) and Twilio (32 hex digits).
func secretVendorValue(vendor, v string) (string, bool) {
	switch vendor {
	case "sourcegraph":
		if len(v) == 40 && secretAllIn(v, secretIsHex) && !secretFiller(v) {
			return "sourcegraph_token", true
		}
	case "heroku":
		if secretIsUUID(v) && !secretFiller(strings.ReplaceAll(v, "-", "")) {
			return "heroku_api_key", true
		}
	case "twilio":
		if len(v) == 32 && secretAllIn(v, secretIsHex) && !secretFiller(v) {
			return "twilio_api_key", true
		}
	}
	return "", false
}

// Operators that bind a key to a value, longest first.
var secretOperators = []string{":::=", "::=", "===", "!==", "??=", "||=", ":=", "=>", "==", "!=", "?=", "+=", ".=", "<-", "=", ":"}

// genericValue finds the value bound to the key at [ks, ke): after an assignment or a
// comparison operator, as an XML element's text, or as the value attribute next to a
// name attribute. It reports whether the value is a literal (quoted) and whether a
// phrase with spaces may count as a passphrase.
func (w *secretScan) genericValue(ks, ke int) (vs, ve int, literal, phrase, ok bool) {
	t := w.text
	i := ke
	var quote byte
	switch {
	case ks > 1 && t[ks-1] == '"' && t[ks-2] == '\\':
		// An escaped JSON key, \"password\": inside a JSON string.
		if !strings.HasPrefix(t[i:], `\"`) {
			return 0, 0, false, false, false
		}
		i += 2
	case ks > 0 && (t[ks-1] == '"' || t[ks-1] == '\''):
		quote = t[ks-1]
		if i >= len(t) || t[i] != quote {
			return 0, 0, false, false, false // the keyword is inside a longer string
		}
		i++
	}
	// XML element: <password>value</password>.
	if ks > 0 && t[ks-1] == '<' && i < len(t) && t[i] == '>' {
		j := strings.IndexByte(t[i+1:min(len(t), i+513)], '<')
		if j < 0 || !strings.HasPrefix(t[i+1+j:], "</"+t[ks:ke]+">") {
			return 0, 0, false, false, false
		}
		vs, ve = secretTrimSpan(t, i+1, i+1+j)
		return vs, ve, true, false, ve > vs
	}
	if i < len(t) && t[i] == ']' {
		i++
	}
	i = secretSkipSpaces(t, i)
	// Attribute pair: name="password" value="...".
	if quote != 0 && strings.HasPrefix(t[i:], "value=") {
		vs, ve, ok = secretQuoted(t, i+len("value="))
		return vs, ve, true, false, ok
	}
	// Arguments of a call: setProperty("API_KEY", "value"), setToken("value").
	if i < len(t) && (t[i] == ',' && quote != 0 || t[i] == '(' && quote == 0 && secretSetter(t[ks:ke])) {
		vs, ve, ok = secretQuoted(t, secretSkipSpaces(t, i+1))
		return vs, ve, true, false, ok
	}
	// A typed declaration: var token string = "...", val token: String = "...".
	if j := secretTypedDecl(t, i, i > ke && secretIsSpace(t[i-1])); j > i {
		i = j - 1 // at the "=" of the declaration
	}
	op := ""
	for _, o := range secretOperators {
		if strings.HasPrefix(t[i:], o) {
			op = o
			break
		}
	}
	switch {
	case op == ":" && (strings.HasPrefix(t[i:], "::") || strings.HasPrefix(t[i:], ":/")):
		return 0, 0, false, false, false
	case op == "" && t[ks] == '-' && i > ke && i < len(t):
		// A command-line flag: --password value.
	case op == "":
		return 0, 0, false, false, false
	}
	i = secretSkipSpaces(t, i+len(op))
	if i >= len(t) {
		return 0, 0, false, false, false
	}
	comparison := op == "==" || op == "!=" || op == "===" || op == "!=="
	if t[i] == '@' && i+1 < len(t) && t[i+1] == '"' {
		i++ // a C# verbatim string
	}
	if vs, ve, ok := secretQuoted(t, i); ok {
		return vs, ve, true, true, true
	}
	if comparison || t[i] == '"' || t[i] == '\'' || t[i] == '`' {
		return 0, 0, false, false, false
	}
	// A YAML block scalar: the value is the indented line that follows "|" or ">".
	if op == ":" && secretLineStart(t, ks) {
		if j := secretRun(t, i, 3, func(b byte) bool { return b == '|' || b == '>' || b == '-' || b == '+' }); j > i && (j == len(t) || t[j] == '\n' || t[j] == '\r') {
			k := j
			for k < len(t) && (t[k] == '\n' || t[k] == '\r') {
				k++
			}
			if ind := secretSkipSpaces(t, k); ind > k && ind < len(t) {
				le := secretRun(t, ind, 1025, func(b byte) bool { return b != '\n' && b != '\r' })
				vs, ve = secretTrimSpan(t, ind, le)
				return vs, ve, true, false, ve > vs && ve-vs <= 1024
			}
			return 0, 0, false, false, false
		}
	}
	// Unquoted: a YAML scalar may be a phrase, if its key is a multi-word identifier
	// (a label in prose, "Password: ...", is not); anything else ends at white space.
	if op == ":" && secretLineStart(t, ks) && strings.ContainsAny(t[ks:ke], "_-.") {
		le := i + secretRun(t, i, 256, func(b byte) bool { return b != '\n' && b != '\r' }) - i
		line := t[i : i+secretCutEscapes(t[i:le])]
		if j := strings.Index(line, " #"); j >= 0 {
			line = line[:j]
		}
		line = strings.TrimRight(line, " \t")
		if strings.ContainsAny(line, " \t") {
			return i, i + len(line), false, true, true
		}
	}
	ve = secretRun(t, i, 257, func(b byte) bool {
		return b > ' ' && b != '"' && b != '\'' && b != '`' && b != '&' && b != '<'
	})
	if ve-i > 256 {
		return 0, 0, false, false, false
	}
	ve = i + secretCutEscapes(t[i:ve])
	if strings.Contains(t[i:ve], "](") {
		ve = i + secretCutUnbalanced(t[i:ve]) // a value inside a Markdown link or image
	}
	ve = secretTrimClosers(t, i, ve)
	if ve > i && t[ve-1] == ';' {
		return 0, 0, false, false, false // a statement: the value is an expression
	}
	for ve > i && t[ve-1] == ',' {
		ve--
	}
	return i, ve, false, false, ve > i
}

// secretSetter reports whether a function name sets or passes a credential:
// setToken, with_password, useApiKey.
func secretSetter(name string) bool {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	words := secretSplitWords(name)
	return len(words) > 1 && secretSetterVerbs[words[0]]
}

var secretSetterVerbs = secretSet(`set with use put add login auth authenticate`)

// secretTypedDecl recognises a type between a key and "=" (Go "token string = ",
// Kotlin "token: String = ") and returns the position just after the "=", or i. The
// type follows a colon, or white space when spaced is set.
func secretTypedDecl(t string, i int, spaced bool) int {
	j := i
	switch {
	case j < len(t) && t[j] == ':':
		j = secretSkipSpaces(t, j+1)
	case !spaced:
		return i
	}
	ts := j
	for j < len(t) && j-ts < 48 && (secretIsWord(t[j]) || strings.IndexByte(".[]*<>?", t[j]) >= 0) {
		j++
	}
	if j == ts || !secretIsAlpha(t[ts]) && t[ts] != '[' && t[ts] != '*' {
		return i
	}
	j = secretSkipSpaces(t, j)
	if j < len(t) && t[j] == '=' && (j+1 == len(t) || t[j+1] != '=' && t[j+1] != '>') {
		return j + 1
	}
	return i
}

// secretCutUnbalanced returns the length of the part of v before its first closing
// bracket that has no opener.
func secretCutUnbalanced(v string) int {
	var depth [3]int
	for i := 0; i < len(v); i++ {
		if k := strings.IndexByte("([{", v[i]); k >= 0 {
			depth[k]++
		} else if k := strings.IndexByte(")]}", v[i]); k >= 0 {
			if depth[k] == 0 {
				return i
			}
			depth[k]--
		}
	}
	return len(v)
}

// secretCutEscapes returns the length of the part of v before an escaped line break or
// tab ("\n", "\r", "\t" as two characters), which ends a value in JSON-encoded text.
func secretCutEscapes(v string) int {
	for i := 0; i+1 < len(v); i++ {
		if v[i] == '\\' && (v[i+1] == 'n' || v[i+1] == 'r' || v[i+1] == 't') {
			return i
		}
	}
	return len(v)
}

// genericReversed finds a literal compared with the key from the left: "value" == key.
func (w *secretScan) genericReversed(ks int) (vs, ve int, ok bool) {
	t := w.text
	i := ks
	for i > 0 && secretIsSpace(t[i-1]) {
		i--
	}
	op := 0
	for _, o := range []string{"===", "!==", "==", "!="} {
		if i >= len(o) && t[i-len(o):i] == o {
			op = len(o)
			break
		}
	}
	if op == 0 {
		return 0, 0, false
	}
	i -= op
	for i > 0 && secretIsSpace(t[i-1]) {
		i--
	}
	if i == 0 {
		return 0, 0, false
	}
	q := t[i-1]
	if q != '"' && q != '\'' && q != '`' {
		return 0, 0, false
	}
	ve = i - 1
	for j := ve - 1; j >= max(0, ve-512); j-- {
		if t[j] == '\n' {
			return 0, 0, false
		}
		if t[j] == q && (j == 0 || t[j-1] != '\\') {
			return j + 1, ve, ve > j+1
		}
	}
	return 0, 0, false
}

// secretQuoted reads a quoted string starting at i ("...", '...', `...` or \"...\"),
// returning the span of its contents.
func secretQuoted(t string, i int) (vs, ve int, ok bool) {
	if i >= len(t) {
		return 0, 0, false
	}
	if t[i] == '\\' && i+1 < len(t) && t[i+1] == '"' {
		j := strings.Index(t[i+2:min(len(t), i+2+1024)], `\"`)
		if j < 0 || strings.IndexByte(t[i+2:i+2+j], '\n') >= 0 {
			return 0, 0, false
		}
		return i + 2, i + 2 + j, j > 0
	}
	q := t[i]
	if q != '"' && q != '\'' && q != '`' {
		return 0, 0, false
	}
	limit := min(len(t), i+1+1024)
	for j := i + 1; j < limit; j++ {
		c := t[j]
		switch {
		case c == '\\' && q != '`':
			j++
		case c == '\n' && q != '`':
			return 0, 0, false
		case c == q:
			return i + 1, j, j > i+1
		}
	}
	return 0, 0, false
}

// secretLineStart reports whether only indentation (or a YAML list dash) precedes i on
// its line, looking back no further than 128 bytes.
func secretLineStart(t string, i int) bool {
	for j := i - 1; j >= max(0, i-128); j-- {
		switch t[j] {
		case '\n':
			return true
		case ' ', '\t', '-':
		default:
			return false
		}
	}
	return i <= 128
}

// secretTrimSpan trims white space from both ends of [s, e).
func secretTrimSpan(t string, s, e int) (int, int) {
	for s < e && t[s] <= ' ' {
		s++
	}
	for e > s && t[e-1] <= ' ' {
		e--
	}
	return s, e
}

// secretTrimClosers drops closing brackets at the end of [s, e) that have no opener in
// it, as in (token: abc123).
func secretTrimClosers(t string, s, e int) int {
	for e > s {
		var open byte
		switch t[e-1] {
		case ')':
			open = '('
		case ']':
			open = '['
		case '}':
			open = '{'
		default:
			return e
		}
		v := t[s:e]
		if strings.Count(v, string(open)) >= strings.Count(v, string(t[e-1])) {
			return e
		}
		e--
	}
	return e
}

// Words that make a value a placeholder rather than a secret.
var (
	secretStopSubstrings = []string{"example", "sample", "dummy", "fake", "placeholder", "changeme",
		"change_me", "change-me", "changeit", "redacted", "xxx", "***", "•••", "your_", "your-", "yourpass",
		"yourkey", "yourtoken", "yoursecret", "insert", "replace", "notreal", "not_real", "not-real", "todo",
		"fixme", "secret", "password", "passwd", "token", "apikey", "api_key", "api-key", "credential",
		"privatekey", "private_key", "private-key", "accesskey", "access_key", "lorem", "ipsum", "here"}
	secretStopWords = secretSet(`key pass pwd user username admin root none null nil undefined true false
		empty default foo bar baz qux abc xyz asdf qwerty letmein test demo my your string str text tbd na
		value values`)
)

// secretProseWords are words of instructions and prose that a passphrase does not hold.
var secretProseWords = secretSet(`the you your must should enter see use please at least is are be will can
	here same above below required characters`)

// secretIsPlaceholder reports whether a value is a stand-in: a documentation word, a
// mask, a single repeated character, a repeated short unit or an alphabet.
func secretIsPlaceholder(v string) bool {
	lower := strings.ToLower(v)
	for _, s := range secretStopSubstrings {
		if strings.Contains(lower, s) {
			return true
		}
	}
	if i := strings.IndexByte(v, '<'); i >= 0 && strings.IndexByte(v[i:], '>') > 1 {
		return true
	}
	if len(v) >= 2 && v[0] == '[' && v[len(v)-1] == ']' {
		return true
	}
	// Words of letters, camelCase split.
	words := secretSplitWords(v)
	if len(words) <= 4 {
		for _, word := range words {
			if secretStopWords[word] && len(v) <= 24 {
				return true
			}
		}
	}
	compact := strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r == '.' || r == ' ' {
			return -1
		}
		return r
	}, v)
	return secretLongestRun(compact) == len(compact) || secretPeriodic(compact) ||
		len(compact) >= 6 && secretSequential(compact) >= 0.85
}

// secretIsReference reports whether a value refers to a secret instead of holding one:
// a variable ($VAR, ${VAR}, %VAR%), a template ({{ x }}, <%= x %>, #{x}, %(x)s, %s), an
// environment lookup, or, unquoted, a code expression (a.b.c, call(...), x[...]).
func secretIsReference(v string, literal bool) bool {
	if v == "" {
		return true
	}
	if !strings.ContainsAny(v, "${}%<#\\[(.*+:?") {
		// None of the syntax that variables, templates, lookups, expressions,
		// patterns and URIs need.
		return false
	}
	if v[0] == '$' && len(v) > 1 && (secretIsWord(v[1]) || v[1] == '{' || v[1] == '(') {
		return true
	}
	if secretTemplate(v, "${", "}") || secretTemplate(v, "{{", "}}") || secretTemplate(v, "#{", "}") ||
		secretTemplate(v, "<%", "%>") || secretTemplate(v, "{%", "%}") || secretTemplate(v, "%(", ")") {
		return true
	}
	if strings.Contains(v, "%s") || strings.Contains(v, "%d") || strings.Contains(v, "%v") {
		return true
	}
	if secretHasByteEscapes(v) {
		return true // a string of escaped bytes in source code
	}
	if len(v) > 2 && (v[0] == '%' && v[len(v)-1] == '%' || v[0] == '{' && v[len(v)-1] == '}' && secretAllIn(v[1:len(v)-1], secretIsKeyByte)) {
		return true
	}
	lower := strings.ToLower(v)
	for _, s := range []string{"process.env", "os.environ", "getenv", "env[", "env(", "env.", "secrets.", "vault("} {
		if strings.Contains(lower, s) {
			return true
		}
	}
	if secretLooksRegex(v) || secretLooksURI(lower) {
		return true
	}
	if literal {
		return false
	}
	// Unquoted code: syntax, an identifier path, a call, an index or a composite
	// literal (a type name of two characters or more and a brace).
	if strings.IndexByte("[{(|)]},;=:<>*&", v[0]) >= 0 {
		return true
	}
	j := 0
	for j < len(v) && (secretIsWord(v[j]) || v[j] == '$' || v[j] == '.') {
		j++
	}
	if j > 0 && !secretIsDigit(v[0]) {
		if j == len(v) && strings.Contains(v, ".") && secretIdentPath(v) {
			return true
		}
		if j < len(v) && (v[j] == '(' || v[j] == '[' || v[j] == '{' && j >= 2) {
			return true
		}
	}
	return false
}

// secretLooksRegex reports whether v holds regular-expression syntax: character classes
// of ranges, escapes such as \d, groups, or counted repetitions.
func secretLooksRegex(v string) bool {
	for _, s := range []string{"[0-9", "[a-z", "[A-Z", "[a-f", "[A-F", `\d`, `\w`, `\s`, `\b`, ".*", ".+", "(?:", "(?i", "(?P"} {
		if strings.Contains(v, s) {
			return true
		}
	}
	// A counted repetition: {n}, {n,} or {n,m}.
	for i := strings.IndexByte(v, '{'); i >= 0 && i+2 < len(v); {
		j := i + 1
		for j < len(v) && (secretIsDigit(v[j]) || v[j] == ',') {
			j++
		}
		if j > i+1 && j < len(v) && v[j] == '}' && secretIsDigit(v[i+1]) {
			return true
		}
		k := strings.IndexByte(v[i+1:], '{')
		if k < 0 {
			break
		}
		i += 1 + k
	}
	return false
}

// secretLooksURI reports whether a (lower-cased) value is a URI or a typed digest: a
// URL (whose password the URL detector judges), a URN, "sha256:...", "mailto:...".
func secretLooksURI(lower string) bool {
	if i := strings.Index(lower, "://"); i > 0 && secretAllIn(lower[:i], func(b byte) bool {
		return b >= 'a' && b <= 'z' || secretIsDigit(b) || b == '+' || b == '.' || b == '-'
	}) {
		return true
	}
	for _, p := range []string{"urn:", "sha1:", "sha256:", "sha384:", "sha512:", "md5:", "mailto:", "data:", "file:"} {
		if strings.HasPrefix(lower, p) {
			return true
		}
	}
	return false
}

// secretHasByteEscapes reports whether v holds escapes of bytes or code points, \xNN
// or \uNNNN.
func secretHasByteEscapes(v string) bool {
	for i := 0; i+3 < len(v); i++ {
		if v[i] != '\\' {
			continue
		}
		switch {
		case v[i+1] == 'x' && secretIsHex(v[i+2]) && secretIsHex(v[i+3]):
			return true
		case v[i+1] == 'u' && i+5 < len(v) && secretAllIn(v[i+2:i+6], secretIsHex):
			return true
		}
	}
	return false
}

// secretTemplate reports whether v holds open, an identifier-like expression, and close.
func secretTemplate(v, open, close string) bool {
	i := strings.Index(v, open)
	if i < 0 {
		return false
	}
	rest := v[i+len(open):]
	j := strings.Index(rest, close)
	if j < 0 {
		return false
	}
	return secretAllIn(rest[:j], func(b byte) bool {
		return secretIsKeyByte(b) || b == ' ' || b == '$' || b == '|' || b == ':' || b == '=' || b == '"' || b == '\'' || b == '?'
	})
}

// secretIdentPath reports whether v is a dotted path of identifiers, a.b.c.
func secretIdentPath(v string) bool {
	for _, p := range strings.Split(v, ".") {
		if p == "" || secretIsDigit(p[0]) {
			return false
		}
	}
	return true
}

// secretRandomLetters reports whether a letters-only string mixes cases like random
// text rather than like an identifier: split at case changes, random letters fall into
// many words of one or two letters ("yqDVtkqPE" is yq, d, vtkq, pe), at least a third
// of them, an identifier into words ("jwtTestRSAPrivateKey" is jwt, test, rsa, private,
// key).
func secretRandomLetters(v string) bool {
	lower, upper, _, _ := secretClasses(v)
	if lower < 3 || upper < 3 || len(v) < 16 || secretEntropy(v) < 3.5 {
		return false
	}
	words := secretSplitWords(v)
	short := 0
	for _, w := range words {
		if len(w) <= 2 {
			short++
		}
	}
	return 3*short >= len(words)
}

// secretIsPath reports whether v is a file-system path.
func secretIsPath(v string) bool {
	return strings.HasPrefix(v, "/") || strings.HasPrefix(v, "./") || strings.HasPrefix(v, "../") ||
		strings.HasPrefix(v, "~/") || len(v) > 2 && secretIsAlpha(v[0]) && v[1] == ':' && (v[2] == '\\' || v[2] == '/')
}

// secretIsNumber reports whether v is a numeric literal: an integer, a decimal, a
// number in scientific notation or a hexadecimal constant.
func secretIsNumber(v string) bool {
	if strings.HasPrefix(v, "0x") || strings.HasPrefix(v, "0X") {
		return len(v) > 2 && secretAllIn(v[2:], secretIsHex)
	}
	i := 0
	if i < len(v) && (v[i] == '+' || v[i] == '-') {
		i++
	}
	digits := 0
	for i < len(v) && (secretIsDigit(v[i]) || v[i] == '.' || v[i] == '_') {
		if secretIsDigit(v[i]) {
			digits++
		}
		i++
	}
	if digits == 0 {
		return false
	}
	if i < len(v) && (v[i] == 'e' || v[i] == 'E') {
		i++
		if i < len(v) && (v[i] == '+' || v[i] == '-') {
			i++
		}
		j := i
		for i < len(v) && secretIsDigit(v[i]) {
			i++
		}
		if i == j {
			return false
		}
	}
	return i == len(v) && strings.Count(v, ".") <= 1
}

// secretIsUUID reports whether v has the 8-4-4-4-12 hex shape of a UUID.
func secretIsUUID(v string) bool {
	if len(v) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		switch i {
		case 8, 13, 18, 23:
			if v[i] != '-' {
				return false
			}
		default:
			if !secretIsHex(v[i]) {
				return false
			}
		}
	}
	return true
}

// secretMinLen is the shortest value each key class accepts: machine-made tokens and
// keys are long, passwords may be short.
var secretMinLen = [...]int{secretKeyNone: 16, secretKeyWeak: 16, secretKeyAPI: 16, secretKeyToken: 16, secretKeySecret: 8, secretKeyPassword: 6}

// secretJudgeValue decides whether a value bound to a key of the given class is a
// secret, and with what confidence.
func secretJudgeValue(v string, class secretKeyClass, literal, phraseOK bool) (float64, bool) {
	if len(v) < max(4, secretMinLen[class]) || len(v) > 1024 {
		return 0, false
	}
	lower, upper, digit, other := secretClasses(v)
	alnum := lower + upper + digit
	if alnum < 4 || secretIsReference(v, literal) || secretIsPlaceholder(v) || secretIsNumber(v) || secretIsPath(v) ||
		lower+upper == 0 && secretAllIn(v, func(b byte) bool { return secretIsDigit(b) || strings.IndexByte(".-_:/ ", b) >= 0 }) {
		return 0, false // numbers, versions, dates, addresses and paths
	}
	h := secretEntropy(v)
	if strings.ContainsAny(v, " \t") {
		// A passphrase, under a key that names a password or a secret.
		if !phraseOK || class < secretKeySecret || len(v) > 128 || lower+upper < len(v)/2 {
			return 0, false
		}
		for _, word := range strings.Fields(strings.ToLower(v)) {
			if secretProseWords[strings.Trim(word, ".,;:!?()")] {
				return 0, false
			}
		}
		return 0.4, true
	}
	if secretIsUUID(v) {
		switch v[14] {
		case '1', '2', '3', '5', '6', '7':
			return 0, false // time- or name-based: an identifier, never random
		}
		if class < secretKeyAPI {
			return 0, false
		}
		return 0.6, true
	}
	if digit == len(v) {
		if len(v) < 20 || h < 3.0 {
			return 0, false
		}
		return 0.5, true
	}
	if digit == 0 && secretAllIn(v, func(b byte) bool { return secretIsAlpha(b) || strings.IndexByte("_-.:/", b) >= 0 }) {
		// Words and identifiers, unless the letters are random.
		if other > 0 || !secretRandomLetters(v) {
			return 0, false
		}
	}
	classes := 0
	for _, n := range []int{lower, upper, digit, other} {
		if n > 0 {
			classes++
		}
	}
	thr := min(3.0, 0.75*math.Log2(float64(len(v))))
	if class == secretKeyWeak {
		thr += 0.3
	}
	if h < thr || classes < 2 && len(v) < 24 {
		return 0, false
	}
	return min(0.85, 0.55+0.1*(h-thr)+0.05*float64(classes)), true
}
