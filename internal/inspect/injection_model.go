package inspect

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"unicode"
	"unicode/utf8"
)

// The injection model is logistic regression over hashed features of a window of tokens:
// each token (words lower-cased; all numbers share a bucket that carries no weight),
// each pair of adjacent tokens, hashed into injModelDim buckets, and each rule signal
// found in the window. A window's score is
//
//	z = bias + Σ w[f] / √n + Σ w[signal s] · v_s
//
// over its n token and pair occurrences f and the signals s it overlaps, v_s being the
// strongest hit of s (its damped weight); the 1/√n keeps one sentence and a paragraph on
// one scale. Punctuation runs are tokens too, so "<|", "###" and the bracket soup of an
// adversarial suffix carry weight, and Han, kana and Hangul characters are tokens of
// their own, so texts without spaces still have words.
//
// The model is shipped as data (model/injection.json, embedded): the quantised non-zero
// weights (weight = q × scale, q a small integer), their bucket indices delta-encoded,
// the bias, the calibration, the recommended threshold and a digest of every training
// text. At about 12,000 weights the file is about 120 KB.

// Model is a trained injection model. It is immutable and safe for concurrent use.
type Model struct {
	// calA and calB calibrate the combined score s of rules and model:
	// σ(calA·logit(s) + calB).
	calA, calB float64
	bias       float64
	scale      float64
	threshold  float64
	// index holds the buckets with a non-zero weight, increasing; quant their weights.
	index []int32
	quant []int16
	// weights is the dense form of index and quant, for scoring.
	weights []float32
	// trained holds the first 8 bytes of the SHA-256 of each training text, sorted.
	trained []uint64
}

// Bounds and format of a serialized model.
const (
	// injModelFormat names the file format and the features; a model of another
	// featurisation must not be loaded into this code.
	injModelFormat = "chaperone-injection-model/v1 words+pairs+signals fnv1a-splitmix 2^18"
	// injModelDim is the number of hashed feature buckets.
	injModelDim = 1 << 18
	// MaxModelBytes is the largest serialized model LoadModel accepts.
	MaxModelBytes = 8 << 20
	// injMaxQuant bounds a quantised weight.
	injMaxQuant = 32767
	// injMaxBias bounds the bias.
	injMaxBias = 100
)

// Seeds separating the feature families in the hash space.
const (
	injSeedUni  = 0x5a17c3e1d2b4f607
	injSeedPair = 0x1f0e2d3c4b5a6978
)

// injUni returns the bucket of the word with hash h (never the null bucket).
func injUni(h uint64) int32 { return injNonNull(injMix(h ^ injSeedUni)) }

// injPair returns the bucket of the adjacent pair (h1, h2) (never the null bucket).
func injPair(h1, h2 uint64) int32 { return injNonNull(injMix(injMix(h1^injSeedPair) + h2)) }

// injNonNull maps a hash to a bucket other than injNullFeature.
func injNonNull(x uint64) int32 {
	b := int32(x & (injModelDim - 1))
	if b == injNullFeature {
		b = int32(x>>32&(injModelDim-2)) + 1
	}
	return b
}

//go:embed model/injection.json
var injModelJSON []byte

// injDefault decodes the embedded model once; the result is immutable.
var injDefault = sync.OnceValues(func() (*Model, error) { return LoadModel(injModelJSON) })

// DefaultModel returns the model embedded in the package (model/injection.json), decoded
// on first use. Every call returns the same immutable *Model.
func DefaultModel() (*Model, error) { return injDefault() }

// calibrate maps a combined score of rules and model to the calibrated score.
func (m *Model) calibrate(s float64) float64 {
	if m.calA == 1 && m.calB == 0 {
		return s
	}
	return injSigmoid(float64(m.calA*injLogit(s)) + m.calB)
}

// Threshold returns the detection threshold chosen at training (see [TrainOptions]).
func (m *Model) Threshold() float64 { return m.threshold }

// Features returns the number of non-zero weights.
func (m *Model) Features() int { return len(m.index) }

// TrainedOn reports whether text was one of the training rows (by an 8-byte digest of
// its SHA-256, so a false "true" has odds of about 2^-64 per training row).
func (m *Model) TrainedOn(text string) bool {
	_, ok := slices.BinarySearch(m.trained, injDigest(text))
	return ok
}

// injDigest is the first 8 bytes of the SHA-256 of text.
func injDigest(text string) uint64 {
	sum := sha256.Sum256([]byte(text))
	return binary.BigEndian.Uint64(sum[:8])
}

// injModelFile is the JSON form of a Model.
type injModelFile struct {
	Format    string   `json:"format"`
	Dim       int      `json:"dim"`
	Bias      float64  `json:"bias"`
	Scale     float64  `json:"scale"`
	CalA      float64  `json:"calibration_a"`
	CalB      float64  `json:"calibration_b"`
	Threshold float64  `json:"threshold"`
	Gaps      []int64  `json:"index_gaps"`
	Weights   []int64  `json:"weights"`
	TrainedOn []string `json:"trained_on"`
}

// LoadModel decodes a serialized model strictly: one JSON object of the known format,
// no unknown fields, at most MaxModelBytes, finite numbers, indices increasing within the
// model's dimension, weights and bias within bounds, a threshold in (0, 1], and training
// digests of 16 hex digits, sorted and unique.
func LoadModel(data []byte) (*Model, error) {
	if len(data) > MaxModelBytes {
		return nil, fmt.Errorf("load injection model: %d bytes, more than %d", len(data), MaxModelBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f injModelFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("load injection model: %v", err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("load injection model: more than one JSON value")
	}
	m, err := f.model()
	if err != nil {
		return nil, fmt.Errorf("load injection model: %v", err)
	}
	return m, nil
}

// model validates f and builds the Model.
func (f *injModelFile) model() (*Model, error) {
	switch {
	case f.Format != injModelFormat:
		return nil, fmt.Errorf("format %q, want %q", f.Format, injModelFormat)
	case f.Dim != injModelDim:
		return nil, fmt.Errorf("dim %d, want %d", f.Dim, injModelDim)
	case !injFinite(f.Bias) || math.Abs(f.Bias) > injMaxBias:
		return nil, fmt.Errorf("bias %v outside [-%d, %d]", f.Bias, injMaxBias, injMaxBias)
	case !injFinite(f.Scale) || f.Scale <= 0 || f.Scale > 1:
		return nil, fmt.Errorf("scale %v outside (0, 1]", f.Scale)
	case !injFinite(f.CalA) || f.CalA < injMinCalA || f.CalA > injMaxCalA:
		return nil, fmt.Errorf("calibration_a %v outside [%v, %v]", f.CalA, injMinCalA, injMaxCalA)
	case !injFinite(f.CalB) || math.Abs(f.CalB) > injMaxBias:
		return nil, fmt.Errorf("calibration_b %v outside [-%d, %d]", f.CalB, injMaxBias, injMaxBias)
	case !injFinite(f.Threshold) || f.Threshold <= 0 || f.Threshold > 1:
		return nil, fmt.Errorf("threshold %v outside (0, 1]", f.Threshold)
	case len(f.Gaps) != len(f.Weights):
		return nil, fmt.Errorf("%d index gaps but %d weights", len(f.Gaps), len(f.Weights))
	case len(f.Gaps) > injModelDim:
		return nil, fmt.Errorf("%d weights, more than the dimension %d", len(f.Gaps), injModelDim)
	}
	m := &Model{
		calA:      f.CalA,
		calB:      f.CalB,
		bias:      f.Bias,
		scale:     f.Scale,
		threshold: f.Threshold,
		index:     make([]int32, len(f.Gaps)),
		quant:     make([]int16, len(f.Weights)),
		weights:   make([]float32, injModelDim),
		trained:   make([]uint64, len(f.TrainedOn)),
	}
	at := int64(-1)
	for i, g := range f.Gaps {
		if g < 1 || g > injModelDim || (i == 0 && g > injModelDim) {
			return nil, fmt.Errorf("index_gaps[%d] = %d outside [1, %d]", i, g, injModelDim)
		}
		if i == 0 {
			at = g - 1
		} else {
			at += g
		}
		if at >= injModelDim {
			return nil, fmt.Errorf("index_gaps[%d]: index %d beyond the dimension %d", i, at, injModelDim)
		}
		if at == injNullFeature {
			return nil, fmt.Errorf("index_gaps[%d]: a weight for the null bucket %d", i, injNullFeature)
		}
		q := f.Weights[i]
		if q == 0 || q < -injMaxQuant || q > injMaxQuant {
			return nil, fmt.Errorf("weights[%d] = %d outside [-%d, %d] or zero", i, q, injMaxQuant, injMaxQuant)
		}
		m.index[i] = int32(at)
		m.quant[i] = int16(q)
		m.weights[at] = float32(float64(q) * f.Scale)
	}
	for i, s := range f.TrainedOn {
		if len(s) != 16 {
			return nil, fmt.Errorf("trained_on[%d]: %d characters, want 16 hex digits", i, len(s))
		}
		var b [8]byte
		if _, err := hex.Decode(b[:], []byte(s)); err != nil || hex.EncodeToString(b[:]) != s {
			return nil, fmt.Errorf("trained_on[%d]: not 16 lower-case hex digits", i)
		}
		m.trained[i] = binary.BigEndian.Uint64(b[:])
		if i > 0 && m.trained[i] <= m.trained[i-1] {
			return nil, fmt.Errorf("trained_on[%d]: not sorted and unique", i)
		}
	}
	return m, nil
}

func injFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// Marshal encodes the model as newline-terminated JSON. The bytes depend only on the
// model: the same model always gives the same bytes, and LoadModel(Marshal()) gives the
// same model back. Long arrays are wrapped at a fixed number of items per line so the
// shipped file diffs readably.
func (m *Model) Marshal() ([]byte, error) {
	if m == nil {
		return nil, errors.New("marshal injection model: nil model")
	}
	if !injFinite(m.bias) || !injFinite(m.scale) || !injFinite(m.threshold) || !injFinite(m.calA) || !injFinite(m.calB) {
		return nil, errors.New("marshal injection model: non-finite bias, scale, calibration or threshold")
	}
	var b bytes.Buffer
	field := func(name string, v any) {
		j, _ := json.Marshal(v) // strings, ints and finite floats always encode
		fmt.Fprintf(&b, "%q: %s,\n", name, j)
	}
	b.WriteString("{\n")
	field("format", injModelFormat)
	field("dim", injModelDim)
	field("bias", m.bias)
	field("scale", m.scale)
	field("calibration_a", m.calA)
	field("calibration_b", m.calB)
	field("threshold", m.threshold)
	gaps := make([]string, len(m.index))
	prev := int32(-1)
	for i, ix := range m.index {
		gaps[i] = strconv.Itoa(int(ix - prev))
		prev = ix
	}
	injWriteArray(&b, "index_gaps", gaps, 32)
	b.WriteString(",\n")
	ws := make([]string, len(m.quant))
	for i, q := range m.quant {
		ws[i] = strconv.Itoa(int(q))
	}
	injWriteArray(&b, "weights", ws, 24)
	b.WriteString(",\n")
	ds := make([]string, len(m.trained))
	for i, d := range m.trained {
		ds[i] = fmt.Sprintf("%q", fmt.Sprintf("%016x", d))
	}
	injWriteArray(&b, "trained_on", ds, 6)
	b.WriteString("\n}\n")
	return b.Bytes(), nil
}

// injWriteArray writes "name": [items] with perLine items on each line.
func injWriteArray(b *bytes.Buffer, name string, items []string, perLine int) {
	fmt.Fprintf(b, "%q: [", name)
	for i, it := range items {
		switch {
		case i == 0:
			b.WriteString("\n")
		case i%perLine == 0:
			b.WriteString(",\n")
		default:
			b.WriteString(", ")
		}
		b.WriteString(it)
	}
	if len(items) > 0 {
		b.WriteString("\n")
	}
	b.WriteString("]")
}

// injFeatures lists the feature buckets of each token: uni[i] is token i's word bucket,
// pair[i] the bucket of tokens i-1 and i (pair[0] is unused).
func injFeatures(toks []injTok, uni, pair []int32) ([]int32, []int32) {
	for i, t := range toks {
		uni = append(uni, injUniOf(t.hash))
		if i == 0 {
			pair = append(pair, injNullFeature)
		} else {
			pair = append(pair, injPairOf(toks[i-1].hash, t.hash))
		}
	}
	return uni, pair
}

// injNullFeature is the bucket of features that carry no weight: numbers and pairs with
// a number. A table of figures is neither benign nor an attack, and a window of forty
// numbers must not multiply whatever weight a number would get. Train never learns
// this bucket, so its weight stays 0.
const injNullFeature = 0

// injUniOf is injUni, with numbers in the null bucket; injUni never returns the null
// bucket for anything else (it is skipped).
func injUniOf(h uint64) int32 {
	if h == injHashNum {
		return injNullFeature
	}
	return injUni(h)
}

// injPairOf is injPair, with pairs involving a number in the null bucket.
func injPairOf(h1, h2 uint64) int32 {
	if h1 == injHashNum || h2 == injHashNum {
		return injNullFeature
	}
	return injPair(h1, h2)
}

// injWindowCount is the number of feature occurrences of window w: its words and the
// pairs inside it.
func injWindowCount(w injWin) int32 { return 2*(w.b-w.a) - 1 }

// scoreWindows scores every window of toks (a part of the normalized text at byte base,
// with rule hits ordered by start) and records the maximum and the evidence.
func (m *Model) scoreWindows(st *injScan, toks []injTok, hits []injHit, base int, sc *injScratch) {
	n := len(toks)
	// Prefix sums of the word and pair weights: U[i] = Σ_{k<i} w[uni k], likewise P.
	sc.pre = slices.Grow(sc.pre[:0], 2*(n+1))[:2*(n+1)]
	u, p := sc.pre[:n+1], sc.pre[n+1:]
	u[0], p[0] = 0, 0
	for i, t := range toks {
		u[i+1] = u[i] + float64(m.weights[injUniOf(t.hash)])
		pw := 0.0
		if i > 0 {
			pw = float64(m.weights[injPairOf(toks[i-1].hash, t.hash)])
		}
		p[i+1] = p[i] + pw
	}
	sc.wins = injWindows(toks, sc.wins[:0])
	wins := sc.wins
	sc.vals = slices.Grow(sc.vals[:0], len(injSignals))[:len(injSignals)]
	vals := sc.vals
	maxSpan := injMaxSpan(hits)
	// The sigmoid is monotonic: find the best windows by their logits, and take the
	// sigmoid of those two only.
	zAll, zPart := math.Inf(-1), math.Inf(-1)
	var atAll, atPart injWin
	found, foundPart := false, false
	for _, w := range wins {
		z := m.bias + (u[w.b]-u[w.a]+p[w.b]-p[w.a+1])/math.Sqrt(float64(injWindowCount(w)))
		if len(hits) > 0 && injWindowSignals(vals, hits, maxSpan, base+int(toks[w.a].start), base+int(toks[w.b-1].end)) > 0 {
			for s, v := range vals {
				if v > 0 {
					z += float64(float64(m.weights[injSignalFeature[s]]) * v)
				}
			}
		}
		if !found || z > zAll {
			zAll, atAll, found = z, w, true
		}
		if w.kind != injWinWhole && (!foundPart || z > zPart) {
			zPart, atPart, foundPart = z, w, true
		}
	}
	if !found {
		return
	}
	bestAll, bestPart := injSigmoid(zAll), injSigmoid(zPart)
	st.model = max(st.model, bestAll)
	span := func(w injWin) Span {
		return Span{base + int(toks[w.a].start), base + int(toks[w.b-1].end)}
	}
	if bestAll < injModelEvidenceMin {
		return // nothing worth pointing at
	}
	st.evidence = append(st.evidence, Evidence{Signal: "model", Span: span(atAll), Score: bestAll})
	// When the whole text is the strongest window, also point at its strongest part,
	// which is where a reader should look.
	if atAll.kind == injWinWhole && foundPart && bestPart >= 0.5*bestAll && bestPart >= 0.25 {
		st.evidence = append(st.evidence, Evidence{Signal: "model", Span: span(atPart), Score: bestPart})
	}
}

// injModelEvidenceMin is the least probability of a window reported as evidence.
const injModelEvidenceMin = 0.1

// injSigmoid is the logistic function, computed with injExp so training gives the same
// bits on every platform.
func injSigmoid(z float64) float64 {
	switch {
	case math.IsNaN(z):
		return 0.5
	case z >= 0:
		return 1 / (1 + injExp(-z))
	default:
		e := injExp(z)
		return e / (1 + e)
	}
}

// injLog is the natural logarithm of x > 0, like injExp made of + and × only: x = f·2^e
// with f in [√½, √2), and log f = 2·atanh(s), s = (f-1)/(f+1), |s| < 0.172, by its series.
func injLog(x float64) float64 {
	if !(x > 0) || math.IsInf(x, 1) {
		return math.NaN()
	}
	f, e := math.Frexp(x) // x = f·2^e, f in [½, 1)
	if f < math.Sqrt2/2 {
		f *= 2
		e--
	}
	s := float64(f-1) / float64(f+1)
	s2 := float64(s * s)
	sum := 0.0
	for k := 21; k >= 1; k -= 2 {
		sum = float64(sum*s2) + 1/float64(k)
	}
	const ln2 = 0.6931471805599453
	return float64(float64(2*s)*sum) + float64(float64(e)*ln2)
}

// injExp is exp(x) for x <= 0, by range reduction to exp(r), |r| <= ln2/2, and a
// degree-11 Taylor polynomial. It uses only + and × with explicit float64 conversions
// (which forbid fused multiply-add, as the Go spec allows), so it is bit-for-bit the
// same on every architecture, unlike math.Exp, which is assembly on some of them.
func injExp(x float64) float64 {
	if x < -700 {
		return 0
	}
	if x > 0 {
		x = 0
	}
	const ln2 = 0.6931471805599453
	k := math.Floor(float64(x/ln2) + 0.5)
	r := float64(x - float64(k*ln2))
	// Horner: 1 + r(1 + r/2(1 + r/3(...))).
	s := 1.0
	for i := 11; i >= 1; i-- {
		s = 1 + float64(float64(r*s)/float64(i))
	}
	return math.Ldexp(s, int(k))
}

// injLowerASCII lower-cases the ASCII letters of s, leaving every other byte in place,
// so offsets into the result are offsets into s.
func injLowerASCII(s string) string {
	i := 0
	for i < len(s) && !('A' <= s[i] && s[i] <= 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if 'A' <= b[i] && b[i] <= 'Z' {
			b[i] += 'a' - 'A'
		}
	}
	return string(b)
}

// Token kinds.
const (
	injKindWord  = 1 // letters, digits, underscores and inner apostrophes
	injKindCJK   = 2 // one Han, kana or Hangul character (those scripts have no spaces)
	injKindPunct = 3 // a run of other visible characters: punctuation, symbols, emoji
)

// injTok is one token of a text.
type injTok struct {
	start, end int32
	// hash identifies the lower-cased token (FNV-1a); all-digit words share one hash,
	// so numbers do not spread over thousands of features.
	hash uint64
	kind uint8
	// nl reports a line break between the previous token and this one.
	nl bool
	// stop reports a punctuation run ending a sentence ('.', '!', '?', ...).
	stop bool
}

// FNV-1a, 64 bit.
const (
	injFNVOffset = 14695981039346656037
	injFNVPrime  = 1099511628211
)

// injHashNum is the hash of every all-digit word.
const injHashNum = 0x6e756d6e756d6e75

// injMaxPunctHash is how many bytes of a punctuation run its hash covers.
const injMaxPunctHash = 8

// injTokenize splits s into tokens, appending to dst. Offsets fit in int32 because a
// scanned part is at most MaxInjectionScanBytes.
func injTokenize(s string, dst []injTok) []injTok {
	nl := true
	i := 0
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			switch injClass[c] {
			case injClassBreak:
				nl = true
				i++
				continue
			case injClassSpace:
				i++
				continue
			case injClassLetter, injClassDigit:
				dst = append(dst, injTok{nl: nl})
				i = injScanWord(s, i, &dst[len(dst)-1])
				nl = false
				continue
			}
		} else {
			r, size := utf8.DecodeRuneInString(s[i:])
			switch {
			case r == '\u2028' || r == '\u2029' || r == '\u0085':
				nl = true
				i += size
				continue
			case unicode.IsSpace(r) || unicode.Is(unicode.Cf, r):
				i += size
				continue
			case injCJK(r):
				h := uint64(injFNVOffset)
				h = injHashRune(h, r)
				dst = append(dst, injTok{start: int32(i), end: int32(i + size), hash: h, kind: injKindCJK, nl: nl})
				nl = false
				i += size
				continue
			case injRuneWord(r):
				dst = append(dst, injTok{nl: nl})
				i = injScanWord(s, i, &dst[len(dst)-1])
				nl = false
				continue
			}
		}
		dst = append(dst, injTok{nl: nl})
		i = injScanPunct(s, i, &dst[len(dst)-1])
		nl = false
	}
	return dst
}

func injASCIIWord(c byte) bool {
	return c < utf8.RuneSelf && (injClass[c] == injClassLetter || injClass[c] == injClassDigit)
}

// Classes of ASCII bytes for the tokenizer.
const (
	injClassPunct  = iota // punctuation and symbols
	injClassSpace         // blanks and other control characters
	injClassBreak         // line breaks
	injClassLetter        // letters and '_'
	injClassDigit
)

// injClass classifies ASCII bytes; injLowerByte lower-cases them.
var injClass, injLowerByte = injASCIITables()

func injASCIITables() (class, lower [utf8.RuneSelf]byte) {
	for c := range utf8.RuneSelf {
		b := byte(c)
		lower[c] = b
		switch {
		case b == '\n' || b == '\r' || b == '\v' || b == '\f':
			class[c] = injClassBreak
		case b <= ' ' || b == 0x7f:
			class[c] = injClassSpace
		case 'a' <= b && b <= 'z' || b == '_':
			class[c] = injClassLetter
		case 'A' <= b && b <= 'Z':
			class[c] = injClassLetter
			lower[c] = b + 'a' - 'A'
		case '0' <= b && b <= '9':
			class[c] = injClassDigit
		default:
			class[c] = injClassPunct
		}
	}
	return class, lower
}

func injRuneWord(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r)
}

func injCJK(r rune) bool {
	return unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul)
}

// injHashRune adds the lower-cased r to an FNV-1a hash.
func injHashRune(h uint64, r rune) uint64 {
	if r < utf8.RuneSelf {
		if 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		return (h ^ uint64(r)) * injFNVPrime
	}
	if r == '’' || r == 'ʼ' || r == '‘' {
		return (h ^ '\'') * injFNVPrime
	}
	var buf [utf8.UTFMax]byte
	n := utf8.EncodeRune(buf[:], unicode.ToLower(r))
	for _, b := range buf[:n] {
		h = (h ^ uint64(b)) * injFNVPrime
	}
	return h
}

// injScanWord reads the word starting at s[i] into t and returns where it ends.
func injScanWord(s string, i int, t *injTok) int {
	start := i
	h := uint64(injFNVOffset)
	digits := true
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if k := injClass[c]; k == injClassLetter || k == injClassDigit {
				if k == injClassLetter {
					digits = false
				}
				h = (h ^ uint64(injLowerByte[c])) * injFNVPrime
				i++
				continue
			}
			if c == '\'' && injLetterAt(s, i+1) {
				digits = false
				h = (h ^ '\'') * injFNVPrime
				i++
				continue
			}
			break
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case (r == '’' || r == 'ʼ') && injLetterAt(s, i+size):
			h = (h ^ '\'') * injFNVPrime
		case unicode.Is(unicode.Cf, r):
			// Invisible format characters inside a word do not split it.
		case injRuneWord(r) && !injCJK(r):
			if !unicode.IsDigit(r) {
				digits = false
			}
			h = injHashRune(h, r)
		default:
			injWordTok(t, start, i, h, digits)
			return i
		}
		i += size
	}
	injWordTok(t, start, i, h, digits)
	return i
}

func injWordTok(t *injTok, start, end int, h uint64, digits bool) {
	if digits {
		h = injHashNum
	}
	t.start, t.end, t.hash, t.kind = int32(start), int32(end), h, injKindWord
}

// injLetterAt reports whether a letter starts at s[i].
func injLetterAt(s string, i int) bool {
	if i >= len(s) {
		return false
	}
	if c := s[i]; c < utf8.RuneSelf {
		return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
	}
	r, _ := utf8.DecodeRuneInString(s[i:])
	return unicode.IsLetter(r) && !injCJK(r)
}

// injScanPunct reads the run of punctuation and symbols starting at s[i] into t and
// returns where it ends.
func injScanPunct(s string, i int, t *injTok) int {
	start := i
	h := uint64(injFNVOffset)
	stop := false
	for i < len(s) {
		c := s[i]
		size := 1
		if c < utf8.RuneSelf {
			if c <= ' ' || c == 0x7f || injASCIIWord(c) || c == '\'' && i > start && injLetterAt(s, i+1) {
				break
			}
			if c == '.' || c == '!' || c == '?' {
				stop = true
			}
		} else {
			var r rune
			r, size = utf8.DecodeRuneInString(s[i:])
			if unicode.IsSpace(r) || injRuneWord(r) || injCJK(r) || unicode.Is(unicode.Cf, r) {
				break
			}
			if r == '。' || r == '！' || r == '？' || r == '…' {
				stop = true
			}
		}
		if i-start < injMaxPunctHash {
			for _, b := range []byte(s[i : i+size]) {
				h = (h ^ uint64(b)) * injFNVPrime
			}
		}
		i += size
	}
	if i == start { // cannot happen for a caller that saw a non-word, non-space byte
		i = start + 1
	}
	t.start, t.end, t.hash, t.kind, t.stop = int32(start), int32(i), h, injKindPunct, stop
	return i
}

// injWin is a window of tokens [a, b).
type injWin struct {
	a, b int32
	kind uint8
}

// Window kinds.
const (
	injWinSentence = iota // a sentence or a chunk of a long one
	injWinPair            // two adjacent sentences
	injWinWhole           // the whole text
)

// Window sizes, in tokens. A sentence longer than injWinMax is cut into windows of
// injWinMax tokens overlapping by half; pairs of adjacent sentences are windows when
// together no longer than injPairMax; the whole text is a window when it has at most
// injWholeMax tokens. A prompt is read as a whole (a jailbreak spreads over many
// sentences); a long document is not, because what it is about (an e-mail, a table)
// says nothing about an injection in it, and a model that scored long documents whole
// would learn the genre of the documents attacks were inserted into.
const (
	injWinMin   = 4 // a shorter sentence ("import os", "Thanks,") is only read with a neighbour
	injWinMax   = 40
	injPairMax  = 64
	injWholeMax = 320
)

// injWindows returns the windows of toks: each sentence (long ones in overlapping
// chunks), each pair of adjacent sentences, and the whole text if it is short. A sentence
// ends at a line break or after '.', '!' or '?' followed by a space.
func injWindows(toks []injTok, dst []injWin) []injWin {
	n := int32(len(toks))
	if n == 0 {
		return dst
	}
	first := len(dst)
	var prev injWin
	havePrev := false
	a := int32(0)
	for i := int32(0); i < n; i++ {
		end := i == n-1 || toks[i+1].nl || toks[i].stop && toks[i+1].start > toks[i].end
		if !end {
			continue
		}
		s := injWin{a, i + 1, injWinSentence}
		if s.b-s.a <= injWinMax {
			if s.b-s.a >= injWinMin {
				dst = append(dst, s)
			}
			if havePrev && s.b-prev.a <= injPairMax {
				dst = append(dst, injWin{prev.a, s.b, injWinPair})
			}
			prev, havePrev = s, true
		} else {
			for c := s.a; ; c += injWinMax / 2 {
				e := min(c+injWinMax, s.b)
				dst = append(dst, injWin{c, e, injWinSentence})
				if e == s.b {
					break
				}
			}
			havePrev = false
		}
		a = i + 1
	}
	switch {
	case len(dst)-first == 1 && dst[first].a == 0 && dst[first].b == n:
		dst[first].kind = injWinWhole // one sentence: it is the whole text
	case n <= injWholeMax:
		dst = append(dst, injWin{0, n, injWinWhole})
	}
	return dst
}
