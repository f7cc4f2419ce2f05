package inspect

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"
)

// Training the injection model.
//
// The shipped model (model/injection.json) is Train(rows, TrainOptions{}) on the corpus
// testdata/corpora/injection.jsonl plus the extra rows embedded with the package
// (InjectionTrainingRows, model/extra.jsonl). Two commands regenerate it:
//
//	chaperone sensors train
//	go test ./internal/inspect -run TestInjectionModelReproducible -update
//
// and TestInjectionModelReproducible checks that the file is exactly what Train gives.
//
// Reproducibility. Train is a pure function of the set of rows and the options: rows are
// deduplicated and put in the order of their text digests (so the input order does not
// matter), the epochs visit them in an order drawn from a seeded splitmix64 generator,
// every sum runs in a fixed order, and the arithmetic avoids anything that may differ
// between platforms (math.Exp is replaced by injExp; products are rounded explicitly so
// no fused multiply-add changes a bit). The weights are quantised before they are
// written, so the file is the same bytes on every machine.
//
// Featurisation. Train featurises a row's text as given, without Normalize: training rows
// are plain text by construction (Detect normalizes what it meets; the rules and the
// hidden_text signal handle hiding tricks), and it keeps the shipped model a function of
// the data and this package's tokenizer alone, unaffected by changes to Normalize.
//
// Multiple-instance learning. A row is labelled as a whole, but an injected e-mail is
// forty benign sentences and one attack, and Detect scores windows. So a row is a bag of
// its windows (injWindows): an injection row needs only its most suspicious window to
// score high, a benign row needs all of its windows to score low. An injection row's
// windows that also occur in a benign row, or lie inside fenced code, are not candidates
// (injPrepare). For the first warm-up epochs an injection row spreads its weight over
// its candidate windows; afterwards it trains its highest-scoring one (which settles on
// the injected sentence as the weights learn that the surrounding e-mail also occurs in
// benign rows), and a benign row trains its few highest-scoring windows (hard
// negatives). The optimiser is AdaGrad with L2 decay on the weights it touches.
//
// Near-duplicates. Public corpora insert one attack into many copies of a few texts, and
// the same text appears clean. injClusters groups such rows; each row weighs 1 over the
// rows of its label in its cluster (so the genre of the carrier texts is not learnt as a
// sign of attack), a word or pair is learnt only if it occurs in MinDocFreq clusters (a
// word only one text and its variants contain is memorisation, not a pattern), and the
// calibration folds keep a cluster together. Rule signals are always learnt.
//
// Calibration and threshold. The raw combined score of rules and model is a noisy-or of
// a regularised model's output, not a probability. Train trains ThresholdFolds models on
// the other folds of the training rows, scores each held-out row as Detect does, and fits
// a Platt scaling σ(a·logit(s) + b) to those out-of-fold scores (classes weighted
// equally), which Detect then applies, so that a score reads as a probability under
// balanced classes. The recommended threshold is 0.5 on that scale (the even-odds
// decision), raised if needed until the out-of-fold false-positive rate is at most
// TargetFPR, and clamped to [injMinThreshold, injMaxThreshold].

// TrainOptions tune Train. The zero value gives the defaults used for the shipped model.
type TrainOptions struct {
	// Seed seeds the order in which epochs visit the rows; 0 means 1.
	Seed int64
	// Epochs is the number of passes over the rows; 0 means 12.
	Epochs int
	// WarmupEpochs is the number of first epochs in which injection rows spread their
	// weight over all their candidate windows; 0 means 2.
	WarmupEpochs int
	// LearningRate is AdaGrad's step; 0 means 0.3.
	LearningRate float64
	// L2 is the weight decay applied to the features a step touches; 0 means 3e-3.
	L2 float64
	// MinDocFreq is the number of clusters of near-duplicate rows (see injClusters) a
	// word or pair must occur in to be learnt; 0 means 2.
	MinDocFreq int
	// NegativeWindows is how many of a benign row's highest-scoring windows each epoch
	// trains; 0 means 3.
	NegativeWindows int
	// MaxFeatures bounds the non-zero weights kept (the largest); 0 means 40000.
	MaxFeatures int
	// ThresholdFolds is the number of folds used to calibrate the score and recommend a
	// threshold; 0 means 3, 1 means none (no calibration, threshold 0.5).
	ThresholdFolds int
	// TargetFPR is the most out-of-fold false-positive rate the recommended threshold
	// may have; 0 means 0.05. The training rows include benign texts written to look
	// like attacks (role-play requests, e-mails that say "in your reply", security
	// write-ups that quote attacks), so their rate is well above that of ordinary text:
	// 0.3% of the corpus's benign rows at the shipped threshold.
	TargetFPR float64
}

// Bounds of the recommended threshold.
const (
	injMinThreshold = 0.3
	injMaxThreshold = 0.9
)

// injQuantLevels is the largest quantised weight magnitude Train writes.
const injQuantLevels = 255

func (o TrainOptions) withDefaults() TrainOptions {
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Epochs <= 0 {
		o.Epochs = 12
	}
	if o.WarmupEpochs <= 0 {
		o.WarmupEpochs = 2
	}
	if !(o.LearningRate > 0) {
		o.LearningRate = 0.3
	}
	if !(o.L2 > 0) {
		o.L2 = 3e-3
	}
	if o.MinDocFreq <= 0 {
		o.MinDocFreq = 2
	}
	if o.NegativeWindows <= 0 {
		o.NegativeWindows = 3
	}
	if o.MaxFeatures <= 0 {
		o.MaxFeatures = 40000
	}
	if o.ThresholdFolds == 0 {
		o.ThresholdFolds = 3
	}
	if !(o.TargetFPR > 0) {
		o.TargetFPR = 0.05
	}
	return o
}

// injTrainRow is a deduplicated training row.
type injTrainRow struct {
	text   string
	digest uint64
	pos    bool
}

// Train fits a model on labelled rows (label "injection" or "benign"); deterministic:
// the same rows (in any order) and options give the same model, byte for byte once
// marshalled. Rows with the same text are one row; the same text with both labels is an
// error, as is a row with another label or without rows of both labels.
func Train(rows []Row, opts TrainOptions) (*Model, error) {
	o := opts.withDefaults()
	if o.Epochs > 1000 || o.WarmupEpochs > 1000 || o.MaxFeatures > injModelDim || o.ThresholdFolds > 20 || o.NegativeWindows > 1000 ||
		!injFinite(o.LearningRate) || o.LearningRate > 10 || !injFinite(o.L2) || o.L2 > 1 || !injFinite(o.TargetFPR) || o.TargetFPR > 1 {
		return nil, errors.New("train injection model: options out of range (epochs and warm-up epochs <= 1000, folds <= 20, negative windows <= 1000, learning rate <= 10, L2 <= 1, target FPR <= 1)")
	}
	trs, err := injTrainRows(rows)
	if err != nil {
		return nil, fmt.Errorf("train injection model: %v", err)
	}
	bags := injFeaturize(trs)
	m := injFit(bags, o)
	m.threshold, m.calA, m.calB = 0.5, 1, 0
	if o.ThresholdFolds >= 2 {
		m.calA, m.calB, m.threshold = injCalibrate(bags, o)
	}
	m.trained = make([]uint64, len(trs))
	for i, r := range trs {
		m.trained[i] = r.digest
	}
	slices.Sort(m.trained)
	return m, nil
}

// injTrainRows validates, deduplicates and orders rows by digest.
func injTrainRows(rows []Row) ([]injTrainRow, error) {
	byDigest := map[uint64]int{}
	var out []injTrainRow
	ids := map[uint64]string{}
	npos, nneg := 0, 0
	for _, r := range rows {
		var pos bool
		switch r.Label {
		case "injection":
			pos = true
		case "benign":
		default:
			return nil, fmt.Errorf("row %q: label %q, want injection or benign", r.ID, r.Label)
		}
		if !utf8.ValidString(r.Text) {
			return nil, fmt.Errorf("row %q: text is not valid UTF-8", r.ID)
		}
		d := injDigest(r.Text)
		if i, ok := byDigest[d]; ok {
			if out[i].pos != pos {
				return nil, fmt.Errorf("row %q: same text as row %q with the other label", r.ID, ids[d])
			}
			continue
		}
		byDigest[d] = len(out)
		ids[d] = r.ID
		out = append(out, injTrainRow{text: r.Text, digest: d, pos: pos})
		if pos {
			npos++
		} else {
			nneg++
		}
	}
	if npos == 0 || nneg == 0 {
		return nil, fmt.Errorf("%d injection and %d benign rows: need both", npos, nneg)
	}
	slices.SortFunc(out, func(a, b injTrainRow) int { return cmp.Compare(a.digest, b.digest) })
	return out, nil
}

// injBag is a featurised training row. Featurising (tokens, windows, rule hits) is the
// expensive part of training; it is done once per row and shared by every fit of a
// Train call (the final one and the calibration folds).
type injBag struct {
	uni, pair []int32
	wins      []injWin
	// keys identify each window's token sequence, to recognise windows of an injection
	// row that also occur in a benign row; sents are the distinct keys of its sentences
	// of injMinSentence tokens or more, to recognise near-duplicate rows.
	keys, sents []uint64
	pos         bool
	// signals lists, per window, the rule signals overlapping it.
	signals [][]injSignalValue
	// code marks the windows of an injection row that lie inside fenced code.
	code []bool
	// decisive holds the strongest hit of each rule that decides alone, as Detect
	// combines them.
	decisive []float64
}

// injFitBag is a bag as one fit sees it: what depends on the other rows of the fit.
type injFitBag struct {
	*injBag
	// eligible lists the windows of an injection row that may carry the injection:
	// those that do not also occur in a benign row of the fit and are not inside code.
	eligible []int
	// cluster groups near-duplicate rows (see injClusters).
	cluster int
	// weight is the row's share of its cluster: 1 over the number of rows with the same
	// label in the cluster, so that an e-mail inserted into twice and kept clean once
	// counts once on each side, and the genre of the texts attacks were inserted into is
	// not learnt as a sign of attack.
	weight float64
}

// injCodeWindows marks the windows that lie entirely inside fenced code blocks (between
// lines that start with three backticks or tildes).
func injCodeWindows(text string, toks []injTok, wins []injWin) []bool {
	var fences [][2]int
	open := -1
	for at := 0; at < len(text); {
		end := strings.IndexByte(text[at:], '\n')
		if end < 0 {
			end = len(text)
		} else {
			end += at
		}
		line := strings.TrimLeft(text[at:end], " \t")
		if strings.HasPrefix(line, "```") || strings.HasPrefix(line, "~~~") {
			if open < 0 {
				open = end
			} else {
				fences = append(fences, [2]int{open, at})
				open = -1
			}
		}
		at = end + 1
	}
	if open >= 0 {
		fences = append(fences, [2]int{open, len(text)})
	}
	out := make([]bool, len(wins))
	for i, w := range wins {
		lo, hi := int(toks[w.a].start), int(toks[w.b-1].end)
		for _, f := range fences {
			if f[0] <= lo && hi <= f[1] {
				out[i] = true
				break
			}
		}
	}
	return out
}

// injSignalValue is one rule signal of a training window: its model bucket and value.
type injSignalValue struct {
	f int32
	v float64
}

// injFeaturize featurises rows, in their order. A row without tokens gets an empty bag.
func injFeaturize(rows []injTrainRow) []injBag {
	bags := make([]injBag, len(rows))
	var toks []injTok
	vals := make([]float64, len(injSignals))
	for ri, r := range rows {
		text := r.text
		if len(text) > MaxInjectionScanBytes {
			text = text[:injCutBack(text, MaxInjectionScanBytes)]
		}
		toks = injTokenize(text, toks[:0])
		b := &bags[ri]
		b.pos = r.pos
		if len(toks) == 0 {
			continue
		}
		b.uni, b.pair = injFeatures(toks, nil, nil)
		b.wins = injWindows(toks, nil)
		hits := injScanRules(text, toks, 0, nil)
		maxSpan := injMaxSpan(hits)
		b.signals = make([][]injSignalValue, len(b.wins))
		for i, w := range b.wins {
			if len(hits) == 0 || injWindowSignals(vals, hits, maxSpan, int(toks[w.a].start), int(toks[w.b-1].end)) == 0 {
				continue
			}
			for s, v := range vals {
				if v > 0 {
					b.signals[i] = append(b.signals[i], injSignalValue{injSignalFeature[s], v})
				}
			}
		}
		b.decisive = injDecisiveHits(hits)
		b.keys = make([]uint64, len(b.wins))
		for i, w := range b.wins {
			b.keys[i] = injWindowKey(toks, w)
			if w.kind == injWinSentence && w.b-w.a >= injMinSentence && !slices.Contains(b.sents, b.keys[i]) {
				b.sents = append(b.sents, b.keys[i])
			}
		}
		if r.pos {
			b.code = injCodeWindows(text, toks, b.wins)
		}
	}
	return bags
}

// injPrepare makes the fit's view of bags (those with windows): a window of an injection
// row that also occurs in a benign row of the fit is not where the injection is
// (BIPIA-style data inserts an attack into a text whose clean version is also a row),
// and neither is a window inside a fenced code block (the payload an attack asks to run
// is code that benign answers also contain; the request to run it is the attack): such
// windows are never trained as positive.
func injPrepare(bags []*injBag) []injFitBag {
	benign := map[uint64]bool{}
	for _, b := range bags {
		if !b.pos {
			for _, k := range b.keys {
				benign[k] = true
			}
		}
	}
	var fit []injFitBag
	for _, b := range bags {
		if len(b.wins) == 0 {
			continue
		}
		fb := injFitBag{injBag: b}
		if b.pos {
			for j, k := range b.keys {
				if !benign[k] && !b.code[j] {
					fb.eligible = append(fb.eligible, j)
				}
			}
			if len(fb.eligible) == 0 {
				fb.eligible = append(fb.eligible, len(b.wins)-1)
			}
		}
		fit = append(fit, fb)
	}
	injClusters(fit)
	return fit
}

// injMinSentence is the fewest tokens a sentence needs to link rows as near-duplicates.
const injMinSentence = 5

// injClusters groups near-duplicate rows: two rows are linked when at least half of the
// distinct sentences (of injMinSentence tokens or more) of the shorter one also occur in
// the other, and clusters are the connected groups. An attack inserted into an e-mail
// and the clean e-mail are one cluster; two e-mails carrying the same attack sentence
// are not. Features are learnt only if they occur in MinDocFreq clusters, so a word
// that only one text (and its variants) contains is never learnt: that is memorising
// the text, not learning what injections look like.
func injClusters(bags []injFitBag) {
	sets := make([][]uint64, len(bags))
	for i, b := range bags {
		sets[i] = b.sents
	}
	cluster := injLinkClusters(sets)
	type key struct {
		cluster int
		pos     bool
	}
	count := map[key]int{}
	for i := range bags {
		bags[i].cluster = cluster[i]
		count[key{cluster[i], bags[i].pos}]++
	}
	for i := range bags {
		bags[i].weight = 1 / float64(count[key{bags[i].cluster, bags[i].pos}])
	}
}

// injWindowKey identifies the token sequence of window w.
func injWindowKey(toks []injTok, w injWin) uint64 {
	k := uint64(injFNVOffset)
	for _, t := range toks[w.a:w.b] {
		k = injMix(k ^ t.hash)
	}
	return k
}

// injTextClusters returns the near-duplicate cluster of each text (see injClusters), as
// the index of its first member.
func injTextClusters(texts []string) []int {
	sets := make([][]uint64, len(texts))
	var toks []injTok
	var wins []injWin
	for i, text := range texts {
		if len(text) > MaxInjectionScanBytes {
			text = text[:injCutBack(text, MaxInjectionScanBytes)]
		}
		toks = injTokenize(text, toks[:0])
		wins = injWindows(toks, wins[:0])
		for _, w := range wins {
			if w.kind == injWinSentence && w.b-w.a >= injMinSentence {
				if k := injWindowKey(toks, w); !slices.Contains(sets[i], k) {
					sets[i] = append(sets[i], k)
				}
			}
		}
	}
	return injLinkClusters(sets)
}

// injLinkClusters links items whose sentence-key sets overlap by at least half of the
// smaller set, and returns each item's cluster as the smallest index in it (so the
// result does not depend on the order in which links are found).
func injLinkClusters(sets [][]uint64) []int {
	index := map[uint64][]int{}
	for i, set := range sets {
		for _, k := range set {
			index[k] = append(index[k], i)
		}
	}
	parent := make([]int, len(sets))
	for i := range parent {
		parent[i] = i
	}
	find := func(x int) int {
		for parent[x] != x {
			parent[x] = parent[parent[x]]
			x = parent[x]
		}
		return x
	}
	shared := map[int]int{}
	for i := range sets {
		clear(shared)
		for _, k := range sets[i] {
			if others := index[k]; len(others) <= injMaxShared {
				for _, j := range others {
					if j > i {
						shared[j]++
					}
				}
			}
		}
		for j, c := range shared {
			if 2*c >= min(len(sets[i]), len(sets[j])) {
				if a, b := find(i), find(j); a != b {
					parent[max(a, b)] = min(a, b)
				}
			}
		}
	}
	out := make([]int, len(sets))
	for i := range out {
		out[i] = find(i)
	}
	return out
}

// injGroupFolds assigns items to k folds, keeping each cluster in one fold and
// balancing the labels: clusters are taken in the order of their first item in order,
// and each goes to the fold where it leaves the folds' shares of positives and negatives
// most even (ties to the lowest fold).
func injGroupFolds(order, cluster []int, pos []bool, k int) []int {
	type counts struct{ p, n int }
	byCluster := map[int]*counts{}
	var clusters []int
	np, nn := 0, 0
	for _, i := range order {
		c := byCluster[cluster[i]]
		if c == nil {
			c = &counts{}
			byCluster[cluster[i]] = c
			clusters = append(clusters, cluster[i])
		}
		if pos[i] {
			c.p++
			np++
		} else {
			c.n++
			nn++
		}
	}
	fp, fn := make([]int, k), make([]int, k)
	foldOf := map[int]int{}
	for _, cl := range clusters {
		c := byCluster[cl]
		best, bestCost := 0, math.Inf(1)
		for f := 0; f < k; f++ {
			cost := float64(fp[f]+c.p)/float64(max(1, np)) + float64(fn[f]+c.n)/float64(max(1, nn))
			if cost < bestCost {
				best, bestCost = f, cost
			}
		}
		foldOf[cl] = best
		fp[best] += c.p
		fn[best] += c.n
	}
	fold := make([]int, len(cluster))
	for i := range fold {
		fold[i] = foldOf[cluster[i]]
	}
	return fold
}

// injMaxShared is the most rows a sentence may occur in and still link rows: a sentence
// in more rows is boilerplate, not evidence that two rows are one text.
const injMaxShared = 64

// injRand is splitmix64: a tiny generator whose sequence is fixed by its definition.
type injRand struct{ s uint64 }

func (r *injRand) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	return injMix(r.s)
}

// shuffle permutes p (Fisher–Yates; the modulo bias is irrelevant here, the determinism
// is what matters).
func (r *injRand) shuffle(p []int) {
	for i := len(p) - 1; i > 0; i-- {
		j := int(r.next() % uint64(i+1))
		p[i], p[j] = p[j], p[i]
	}
}

// injTrainer holds the state of one fit.
type injTrainer struct {
	o            TrainOptions
	w, g         []float64 // weights and AdaGrad accumulators
	learn        []bool    // features seen in at least MinDocFreq rows
	bias, gbias  float64
	cpos, cneg   float64 // class weights
	u, p, scores []float64
	order        []int
}

// injAdaEps keeps AdaGrad's first steps finite.
const injAdaEps = 1e-8

// injFit trains on bags and returns the quantised model (calibration, threshold and
// digests unset).
func injFit(all []injBag, o TrainOptions) *Model {
	ptrs := make([]*injBag, len(all))
	for i := range all {
		ptrs[i] = &all[i]
	}
	return injFitSome(ptrs, o)
}

// injFitSome trains on some of the bags.
func injFitSome(some []*injBag, o TrainOptions) *Model {
	bags := injPrepare(some)
	t := &injTrainer{
		o:     o,
		w:     make([]float64, injModelDim),
		g:     make([]float64, injModelDim),
		learn: make([]bool, injModelDim),
	}
	// Cluster frequencies: visit the bags cluster by cluster, counting a feature once
	// per cluster.
	byCluster := make([]int, len(bags))
	for i := range byCluster {
		byCluster[i] = i
	}
	slices.SortStableFunc(byCluster, func(x, y int) int { return cmp.Compare(bags[x].cluster, bags[y].cluster) })
	df := make([]int32, injModelDim)
	last := make([]int32, injModelDim)
	npos, nneg := 0.0, 0.0
	for _, bi := range byCluster {
		b := bags[bi]
		mark := int32(b.cluster + 1)
		for _, f := range b.uni {
			if last[f] != mark {
				last[f] = mark
				df[f]++
			}
		}
		for _, f := range b.pair[1:] {
			if last[f] != mark {
				last[f] = mark
				df[f]++
			}
		}
		if b.pos {
			npos += b.weight
		} else {
			nneg += b.weight
		}
	}
	for f, c := range df {
		t.learn[f] = int(c) >= o.MinDocFreq
	}
	t.learn[injNullFeature] = false
	for _, f := range injSignalFeature {
		t.learn[f] = true // rule signals are general by construction
	}
	if npos > 0 && nneg > 0 {
		n := npos + nneg
		t.cpos = n / (2 * npos)
		t.cneg = n / (2 * nneg)
	}
	rng := injRand{s: uint64(o.Seed)}
	t.order = make([]int, len(bags))
	for i := range t.order {
		t.order[i] = i
	}
	for epoch := 0; epoch < o.Epochs; epoch++ {
		rng.shuffle(t.order)
		for _, bi := range t.order {
			t.step(&bags[bi], epoch < o.WarmupEpochs)
		}
	}
	return t.quantise()
}

// step trains one bag.
func (t *injTrainer) step(b *injFitBag, warmup bool) {
	n := len(b.uni)
	if cap(t.u) < n+1 {
		t.u = make([]float64, n+1)
		t.p = make([]float64, n+1)
	}
	u, p := t.u[:n+1], t.p[:n+1]
	for i := 0; i < n; i++ {
		u[i+1] = u[i] + t.w[b.uni[i]]
		pw := 0.0
		if i > 0 {
			pw = t.w[b.pair[i]]
		}
		p[i+1] = p[i] + pw
	}
	if cap(t.scores) < len(b.wins) {
		t.scores = make([]float64, len(b.wins))
	}
	z := t.scores[:len(b.wins)]
	for i, w := range b.wins {
		z[i] = t.bias + float64((u[w.b]-u[w.a]+p[w.b]-p[w.a+1])/math.Sqrt(float64(injWindowCount(w))))
		for _, sv := range b.signals[i] {
			z[i] += float64(t.w[sv.f] * sv.v)
		}
	}
	if b.pos {
		if warmup {
			// Spread the row's weight over every window that may hold the injection.
			c := t.cpos * b.weight / float64(len(b.eligible))
			for _, i := range b.eligible {
				t.update(b, i, 1, c)
			}
			return
		}
		best := b.eligible[0]
		for _, i := range b.eligible {
			if z[i] > z[best] {
				best = i
			}
		}
		t.update(b, best, 1, t.cpos*b.weight)
		return
	}
	k := min(t.o.NegativeWindows, len(b.wins))
	idx := make([]int, len(b.wins))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(x, y int) int { return cmp.Compare(z[y], z[x]) })
	for _, i := range idx[:k] {
		t.update(b, i, 0, t.cneg*b.weight)
	}
}

// update takes one AdaGrad step on window wi of bag b toward label y with weight c.
func (t *injTrainer) update(b *injFitBag, wi int, y, c float64) {
	w := b.wins[wi]
	s := 1 / math.Sqrt(float64(injWindowCount(w)))
	sum := 0.0
	for i := w.a; i < w.b; i++ {
		sum += t.w[b.uni[i]]
		if i > w.a {
			sum += t.w[b.pair[i]]
		}
	}
	z := t.bias + float64(sum*s)
	for _, sv := range b.signals[wi] {
		z += float64(t.w[sv.f] * sv.v)
	}
	pr := injSigmoid(z)
	g := float64(c * float64(pr-y))
	lr := t.o.LearningRate
	for i := w.a; i < w.b; i++ {
		t.touch(b.uni[i], float64(g*s), lr)
		if i > w.a {
			t.touch(b.pair[i], float64(g*s), lr)
		}
	}
	for _, sv := range b.signals[wi] {
		t.touch(sv.f, float64(g*sv.v), lr)
	}
	t.gbias += float64(g * g)
	t.bias -= float64(lr*g) / math.Sqrt(t.gbias+injAdaEps)
}

// touch updates one feature.
func (t *injTrainer) touch(f int32, grad, lr float64) {
	if !t.learn[f] {
		return
	}
	grad += float64(t.o.L2 * t.w[f])
	t.g[f] += float64(grad * grad)
	t.w[f] -= float64(lr*grad) / math.Sqrt(t.g[f]+injAdaEps)
}

// quantise turns the trained weights into a Model: weights rounded to multiples of
// max|w|/injQuantLevels, zeros dropped, at most MaxFeatures kept (the largest; ties by
// index).
func (t *injTrainer) quantise() *Model {
	maxAbs := 0.0
	for _, v := range t.w {
		maxAbs = max(maxAbs, math.Abs(v))
	}
	m := &Model{calA: 1, bias: math.Max(-injMaxBias, math.Min(injMaxBias, t.bias)), scale: 1, weights: make([]float32, injModelDim)}
	if maxAbs == 0 || !injFinite(maxAbs) {
		return m
	}
	m.scale = maxAbs / injQuantLevels
	type fq struct {
		f int32
		q int16
	}
	var kept []fq
	for f, v := range t.w {
		q := math.Round(v / m.scale)
		if q != 0 {
			kept = append(kept, fq{int32(f), int16(q)})
		}
	}
	if len(kept) > t.o.MaxFeatures {
		slices.SortStableFunc(kept, func(a, b fq) int {
			return cmp.Compare(math.Abs(float64(b.q)), math.Abs(float64(a.q)))
		})
		kept = kept[:t.o.MaxFeatures]
		slices.SortFunc(kept, func(a, b fq) int { return cmp.Compare(a.f, b.f) })
	}
	m.index = make([]int32, len(kept))
	m.quant = make([]int16, len(kept))
	for i, k := range kept {
		m.index[i], m.quant[i] = k.f, k.q
		m.weights[k.f] = float32(float64(k.q) * m.scale)
	}
	return m
}

// injCalibrate trains o.ThresholdFolds models on the other folds of the rows (grouped:
// near-duplicates stay in one fold), scores each held-out row as Detect would (rules and
// model, uncalibrated), fits the calibration to those out-of-fold scores, and returns it
// with the recommended threshold.
func injCalibrate(bags []injBag, o TrainOptions) (calA, calB, threshold float64) {
	k := o.ThresholdFolds
	sets := make([][]uint64, len(bags))
	pos := make([]bool, len(bags))
	order := make([]int, len(bags))
	for i := range bags {
		sets[i], pos[i], order[i] = bags[i].sents, bags[i].pos, i
	}
	fold := injGroupFolds(order, injLinkClusters(sets), pos, k)
	scores := make([]float64, len(bags))
	for f := 0; f < k; f++ {
		var train []*injBag
		for i := range bags {
			if fold[i] != f {
				train = append(train, &bags[i])
			}
		}
		m := injFitSome(train, o)
		for i := range bags {
			if fold[i] == f {
				scores[i] = m.scoreBag(&bags[i])
			}
		}
	}
	x := make([]float64, len(bags))
	for i := range bags {
		x[i] = injLogit(scores[i])
	}
	calA, calB = injPlatt(x, pos)
	var neg []float64
	for i := range bags {
		if !pos[i] {
			neg = append(neg, injSigmoid(float64(calA*x[i])+calB))
		}
	}
	slices.Sort(neg)
	// 0.5 on the calibrated score, unless that lets more than TargetFPR of the benign
	// rows through: then the lowest threshold that does not, that is just above the
	// (allowed+1)-th highest benign score.
	threshold = 0.5
	if allowed := int(o.TargetFPR * float64(len(neg))); allowed < len(neg) && neg[len(neg)-1-allowed] >= threshold {
		t := math.Nextafter(neg[len(neg)-1-allowed], 2)
		threshold = math.Ceil(float64(t*100)) / 100 // two decimals, for a readable file
	}
	return calA, calB, math.Max(injMinThreshold, math.Min(injMaxThreshold, threshold))
}

// scoreBag is Detect's uncalibrated score of a featurised row: the noisy-or of the
// decisive rule hits and the model's strongest window.
func (m *Model) scoreBag(b *injBag) float64 {
	keep := 1.0
	for _, w := range b.decisive {
		keep *= 1 - w
	}
	best := 0.0
	n := len(b.uni)
	u := make([]float64, n+1)
	p := make([]float64, n+1)
	for i := 0; i < n; i++ {
		u[i+1] = u[i] + float64(m.weights[b.uni[i]])
		pw := 0.0
		if i > 0 {
			pw = float64(m.weights[b.pair[i]])
		}
		p[i+1] = p[i] + pw
	}
	for i, w := range b.wins {
		z := m.bias + (u[w.b]-u[w.a]+p[w.b]-p[w.a+1])/math.Sqrt(float64(injWindowCount(w)))
		for _, sv := range b.signals[i] {
			z += float64(float64(m.weights[sv.f]) * sv.v)
		}
		best = max(best, injSigmoid(z))
	}
	return injClamp01(1 - keep*(1-best))
}

// injLogit is the log-odds of p, clamped to ±injMaxLogit.
func injLogit(p float64) float64 {
	p = math.Max(1e-9, math.Min(1-1e-9, p))
	return math.Max(-injMaxLogit, math.Min(injMaxLogit, injLog(p/(1-p))))
}

// injMaxLogit bounds a logit fed to the calibration.
const injMaxLogit = 20

// injPlatt fits p = σ(a·x + b) to labels y by Newton's method on the logistic loss
// (Platt scaling, with his smoothed targets and the two classes weighted equally). It
// runs a fixed number of steps in a fixed order, so it is deterministic; a is kept in
// (0, injMaxCalA] so calibration never reverses or flattens the order of scores.
func injPlatt(x []float64, y []bool) (float64, float64) {
	npos, nneg := 0, 0
	for _, v := range y {
		if v {
			npos++
		} else {
			nneg++
		}
	}
	if npos == 0 || nneg == 0 {
		return 1, 0
	}
	tpos := float64(npos+1) / float64(npos+2)
	tneg := 1 / float64(nneg+2)
	wpos := float64(npos+nneg) / float64(2*npos)
	wneg := float64(npos+nneg) / float64(2*nneg)
	a, b := 1.0, 0.0
	for it := 0; it < 50; it++ {
		var ga, gb, haa, hab, hbb float64
		for i, xi := range x {
			t, w := tneg, wneg
			if y[i] {
				t, w = tpos, wpos
			}
			p := injSigmoid(float64(a*xi) + b)
			d := float64(w * float64(p-t))
			h := float64(w * float64(p*float64(1-p)))
			ga += float64(d * xi)
			gb += d
			haa += float64(h * float64(xi*xi))
			hab += float64(h * xi)
			hbb += h
		}
		haa += 1e-6
		hbb += 1e-6
		det := float64(haa*hbb) - float64(hab*hab)
		if !(det > 0) {
			break
		}
		da := float64(float64(hbb*ga)-float64(hab*gb)) / det
		db := float64(float64(haa*gb)-float64(hab*ga)) / det
		a -= da
		b -= db
		if !injFinite(a) || !injFinite(b) {
			return 1, 0
		}
	}
	return math.Max(injMinCalA, math.Min(injMaxCalA, a)), math.Max(-injMaxBias, math.Min(injMaxBias, b))
}

// Bounds of the calibration slope.
const (
	injMinCalA = 0.05
	injMaxCalA = 20
)
