package inspect

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// The modes of Sanitize: what it keeps of HTML.
const (
	// SanitizeText reduces HTML to plain text.
	SanitizeText = "text"
	// SanitizeMarkup reduces HTML to an allow-list of harmless elements.
	SanitizeMarkup = "markup"
)

// htmlMaxOpen bounds the elements open at once in markup output; deeper allowed
// elements are unwrapped to their text.
const htmlMaxOpen = 256

// Sanitize reduces untrusted HTML to plain text or to safe markup, and reports what it
// removed.
//
// In mode SanitizeText block elements become line breaks (list items start with "- ",
// table cells are separated by " | "), links become "text (url)" when their address is
// http, https or mailto and differs from their text, images become "[image: alt]", and
// white space is collapsed outside <pre>. In mode SanitizeMarkup only p, br, ul, ol, li,
// b, i, em, strong, code, pre, blockquote, h1-h6, table, thead, tbody, tfoot, tr, th, td,
// caption and a are kept, a only with an http, https or mailto href and no other
// attribute survives; every other element is unwrapped to its text, text is escaped, and
// the elements left open are closed at the end. In both modes scripts, styles,
// templates, frames, objects, embeds, applets, noscript, SVG, meta, link and base
// elements, comments and invisibly styled elements are dropped with their content.
//
// Text that does not look like HTML is returned unchanged, but for invalid UTF-8,
// which is always dropped: for SanitizeMarkup, text without "<" followed by a letter,
// "/", "!" or "?"; for SanitizeText, text without a comment, a doctype or a tag of an
// HTML or custom element (so "<stdin>" or "<name@example.com>" in plain text is left
// alone). The output is valid UTF-8 and never longer than s plus four bytes for each <,
// >, &, " or ' in s, which escaping may need. The report lists, sorted and each once, what was removed: element names
// ("script", "style", "iframe", "svg", ...), "comment", "hidden" (an invisible element),
// "event_handler" (an on* attribute) and "unsafe_url" (a javascript:, vbscript: or data:
// link). Sanitize runs in time linear in the length of s. The error is for an unknown
// mode only.
func Sanitize(s, mode string) (string, []string, error) {
	if mode != SanitizeText && mode != SanitizeMarkup {
		return "", nil, fmt.Errorf("sanitize mode %q: want %q or %q", mode, SanitizeText, SanitizeMarkup)
	}
	s = strings.ToValidUTF8(s, "")
	if !htmlLooksLike(s, mode == SanitizeMarkup) {
		return s, nil, nil
	}
	s = strings.ReplaceAll(s, "\x00", "")
	h := htmlSanitizer{markup: mode == SanitizeMarkup}
	h.out.Grow(len(s))
	h.run(s)
	return h.out.String(), h.removed, nil
}

// htmlLooksLike reports whether s holds markup. For markup output (broad) that is
// anything a browser would take for markup: "<" followed by a letter, "/", "!" or "?".
// For text output it is a comment, a doctype, or a tag of a known HTML element or of a
// custom element (a name with a hyphen), so that plain text mentioning <stdin> or
// <name@example.com> keeps its shape.
func htmlLooksLike(s string, broad bool) bool {
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], '<')
		if j < 0 || i+j+1 >= len(s) {
			return false
		}
		i += j + 1
		c := s[i]
		if broad && (normIsASCIILetter(c) || c == '/' || c == '!' || c == '?') {
			return true
		}
		if c == '!' && (strings.HasPrefix(s[i:], "!--") || len(s)-i >= 8 && strings.EqualFold(s[i:i+8], "!doctype")) {
			return true
		}
		if c == '/' {
			c = s[min(i+1, len(s)-1)]
		}
		if normIsASCIILetter(c) && htmlKnownTagAt(s, i) {
			return true
		}
	}
	return false
}

// htmlKnownTagAt reports whether the tag name after the "<" (or "</") before s[i] is
// an HTML element markup would use, or a custom element, and ends as a tag name ends.
func htmlKnownTagAt(s string, i int) bool {
	if s[i] == '/' {
		i++
	}
	var nb [htmlNameMax]byte
	name, custom := nb[:0], false
	for ; i < len(s); i++ {
		c := s[i]
		if !normIsAlnum(rune(c)) && c != '-' {
			break
		}
		if len(name) == cap(name) {
			return false
		}
		if c == '-' {
			custom = true
		}
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		name = append(name, c)
	}
	if i < len(s) && !htmlSpace(s[i]) && s[i] != '/' && s[i] != '>' {
		return false
	}
	if custom {
		return true
	}
	a := atom.Lookup(name)
	return htmlAllowed(a) || htmlBlock(a) || htmlDropped(a) || htmlVoid(a) || htmlInline(a)
}

// htmlInline are the phrasing elements markup commonly uses, beyond those allowed.
func htmlInline(a atom.Atom) bool {
	switch a {
	case atom.Abbr, atom.Big, atom.Button, atom.Cite, atom.Del, atom.Dfn, atom.Font,
		atom.Head, atom.Ins, atom.Kbd, atom.Label, atom.Mark, atom.Math, atom.Q, atom.S,
		atom.Samp, atom.Select, atom.Small, atom.Span, atom.Sub, atom.Sup, atom.Textarea,
		atom.Time, atom.U, atom.Var:
		return true
	}
	return false
}

// htmlSanitizer is the state of one Sanitize call.
type htmlSanitizer struct {
	markup  bool
	out     strings.Builder
	removed []string

	// skip is the name of the element being dropped with its content, and skipDepth its
	// nesting depth.
	skip      string
	skipDepth int
	// skipHidden says the dropped element is invisible (and may close itself).
	skipHidden bool

	// open are the allowed elements open in markup output.
	open []atom.Atom

	// Text mode: pending separators, written before the next text.
	pendingNL     int
	pendingSpace  bool
	pendingPrefix string
	pre           int
	cells         int
	// link is the open link in text mode: its address, and where its text starts.
	link      string
	linkOpen  bool
	linkStart int
}

func (h *htmlSanitizer) report(what string) {
	i, found := slices.BinarySearch(h.removed, what)
	if !found {
		h.removed = slices.Insert(h.removed, i, what)
	}
}

func (h *htmlSanitizer) run(s string) {
	z := html.NewTokenizer(strings.NewReader(s))
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			h.finish()
			return
		case html.CommentToken:
			if h.skipDepth == 0 {
				h.report("comment")
			}
		case html.DoctypeToken:
		case html.TextToken:
			if h.skipDepth == 0 {
				h.text(z.Text())
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			a := atom.Lookup(name)
			selfClosing := tt == html.SelfClosingTagToken
			if h.skipDepth > 0 {
				h.skipStart(name, a, selfClosing)
				if h.skipDepth > 0 {
					continue
				}
			}
			var info htmlTagInfo
			if hasAttr {
				info = htmlReadAttrs(z, true)
			}
			h.start(name, a, selfClosing, info)
		case html.EndTagToken:
			name, _ := z.TagName()
			if h.skipDepth > 0 {
				if string(name) == h.skip {
					h.skipDepth--
				}
				continue
			}
			h.end(atom.Lookup(name))
		}
	}
}

// skipStart counts a start tag inside a dropped element; a hidden <p> or <li> is closed
// by the next one, as in browsers.
func (h *htmlSanitizer) skipStart(name []byte, a atom.Atom, selfClosing bool) {
	if string(name) != h.skip || htmlVoid(a) || selfClosing && a == atom.Svg {
		return
	}
	if h.skipHidden && h.skipDepth == 1 && htmlClosesItself(h.skip) {
		h.skipDepth = 0
		return
	}
	h.skipDepth++
}

// htmlDropped are the elements dropped with their content.
func htmlDropped(a atom.Atom) bool {
	switch a {
	case atom.Script, atom.Style, atom.Template, atom.Iframe, atom.Object, atom.Embed,
		atom.Applet, atom.Noscript, atom.Noembed, atom.Noframes, atom.Frameset,
		atom.Frame, atom.Svg, atom.Meta, atom.Link, atom.Base:
		return true
	}
	return false
}

// htmlAllowed are the elements markup mode keeps.
func htmlAllowed(a atom.Atom) bool {
	switch a {
	case atom.P, atom.Br, atom.Ul, atom.Ol, atom.Li, atom.B, atom.I, atom.Em,
		atom.Strong, atom.Code, atom.Pre, atom.Blockquote, atom.H1, atom.H2, atom.H3,
		atom.H4, atom.H5, atom.H6, atom.Table, atom.Thead, atom.Tbody, atom.Tfoot,
		atom.Tr, atom.Th, atom.Td, atom.Caption, atom.A:
		return true
	}
	return false
}

// htmlBlock are the elements that start and end a line of text.
func htmlBlock(a atom.Atom) bool {
	switch a {
	case atom.Address, atom.Article, atom.Aside, atom.Blockquote, atom.Body,
		atom.Caption, atom.Center, atom.Dd, atom.Details, atom.Dialog, atom.Div, atom.Dl,
		atom.Dt, atom.Fieldset, atom.Figcaption, atom.Figure, atom.Footer, atom.Form,
		atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6, atom.Header, atom.Hgroup,
		atom.Hr, atom.Html, atom.Legend, atom.Li, atom.Main, atom.Menu, atom.Nav, atom.Ol,
		atom.Option, atom.P, atom.Pre, atom.Section, atom.Summary, atom.Table, atom.Tbody,
		atom.Td, atom.Tfoot, atom.Th, atom.Thead, atom.Title, atom.Tr, atom.Ul:
		return true
	}
	return false
}

// htmlVoid are the elements without content or end tag.
func htmlVoid(a atom.Atom) bool {
	switch a {
	case atom.Area, atom.Base, atom.Br, atom.Col, atom.Embed, atom.Frame, atom.Hr,
		atom.Img, atom.Input, atom.Keygen, atom.Link, atom.Meta, atom.Param,
		atom.Source, atom.Track, atom.Wbr:
		return true
	}
	return false
}

// htmlClosesItself reports whether a start tag of the element closes an open one of the
// same name.
func htmlClosesItself(name string) bool {
	switch name {
	case "p", "li", "dt", "dd", "option", "tr", "td", "th":
		return true
	}
	return false
}

func (h *htmlSanitizer) start(name []byte, a atom.Atom, selfClosing bool, info htmlTagInfo) {
	if info.eventHandler {
		h.report("event_handler")
	}
	void := htmlVoid(a)
	if htmlDropped(a) || info.invisible {
		if info.invisible && !htmlDropped(a) {
			h.report("hidden")
		} else {
			h.report(a.String())
		}
		if !void && !(selfClosing && a == atom.Svg) {
			h.skip, h.skipDepth, h.skipHidden = string(name), 1, info.invisible && !htmlDropped(a)
		}
		return
	}
	url, urlOK := "", false
	if info.hasHref {
		url, urlOK = htmlSafeURL(info.href)
		if !urlOK && htmlDangerousURL(url) {
			h.report("unsafe_url")
		}
	}
	if h.markup {
		h.startMarkup(a, info, url, urlOK)
		return
	}
	h.startText(a, info, url, urlOK)
}

func (h *htmlSanitizer) startText(a atom.Atom, info htmlTagInfo, url string, urlOK bool) {
	switch a {
	case atom.Br:
		h.pendingNL = max(h.pendingNL, 1)
	case atom.Li:
		h.pendingNL = max(h.pendingNL, 1)
		h.pendingPrefix = "- "
	case atom.Tr:
		h.pendingNL = max(h.pendingNL, 1)
		h.cells = 0
	case atom.Td, atom.Th:
		if h.cells > 0 {
			h.pendingPrefix = " | "
		}
		h.cells++
	case atom.Pre:
		h.pendingNL = max(h.pendingNL, 1)
		h.pre++
	case atom.A:
		h.closeLink()
		if urlOK {
			h.link, h.linkOpen = url, true
			h.flushBefore()
			h.linkStart = h.out.Len()
		}
	case atom.Img:
		if alt := normCollapseSpace(info.alt); alt != "" {
			h.flushBefore()
			h.out.WriteString("[image: ")
			h.out.WriteString(alt)
			h.out.WriteByte(']')
		}
	default:
		if htmlBlock(a) {
			h.pendingNL = max(h.pendingNL, 1)
		}
	}
}

func (h *htmlSanitizer) startMarkup(a atom.Atom, info htmlTagInfo, url string, urlOK bool) {
	if a == atom.Img {
		if alt := normCollapseSpace(info.alt); alt != "" {
			h.out.WriteString("[image: ")
			htmlEscape(&h.out, alt, false)
			h.out.WriteByte(']')
		}
		return
	}
	if !htmlAllowed(a) || len(h.open) >= htmlMaxOpen || a == atom.A && !urlOK {
		if htmlBlock(a) && h.out.Len() > 0 {
			h.out.WriteByte('\n')
		}
		return
	}
	if a == atom.Br {
		h.out.WriteString("<br>")
		return
	}
	switch {
	case a == atom.A && slices.Contains(h.open, atom.A):
		h.closeTo(atom.A) // links do not nest
	case len(h.open) > 0 && h.open[len(h.open)-1] == a && htmlClosesItself(a.String()):
		h.closeTo(a) // <li>one<li>two
	}
	h.out.WriteByte('<')
	h.out.WriteString(a.String())
	if a == atom.A {
		h.out.WriteString(` href="`)
		htmlEscape(&h.out, url, true)
		h.out.WriteByte('"')
	}
	h.out.WriteByte('>')
	h.open = append(h.open, a)
}

func (h *htmlSanitizer) end(a atom.Atom) {
	if h.markup {
		if htmlAllowed(a) && slices.Contains(h.open, a) {
			h.closeTo(a)
		} else if htmlBlock(a) && h.out.Len() > 0 {
			h.out.WriteByte('\n')
		}
		return
	}
	switch a {
	case atom.A:
		h.closeLink()
	case atom.Pre:
		h.pre = max(h.pre-1, 0)
		h.pendingNL = max(h.pendingNL, 1)
	case atom.Td, atom.Th:
	default:
		if htmlBlock(a) {
			h.pendingNL = max(h.pendingNL, 1)
		}
	}
}

// closeTo closes the open elements of markup output down to and including the last a.
func (h *htmlSanitizer) closeTo(a atom.Atom) {
	for len(h.open) > 0 {
		top := h.open[len(h.open)-1]
		h.open = h.open[:len(h.open)-1]
		h.out.WriteString("</")
		h.out.WriteString(top.String())
		h.out.WriteByte('>')
		if top == a {
			return
		}
	}
}

// closeLink ends the open link of text mode, adding its address unless its text
// already says it.
func (h *htmlSanitizer) closeLink() {
	if !h.linkOpen {
		return
	}
	h.linkOpen = false
	text := strings.TrimSpace(h.out.String()[h.linkStart:])
	if text == h.link || "mailto:"+text == h.link {
		return
	}
	if text != "" {
		h.out.WriteByte(' ')
	} else {
		h.flushBefore()
	}
	h.out.WriteByte('(')
	h.out.WriteString(h.link)
	h.out.WriteByte(')')
}

func (h *htmlSanitizer) finish() {
	if h.markup {
		for len(h.open) > 0 {
			h.closeTo(h.open[len(h.open)-1])
		}
		return
	}
	h.closeLink()
}

// flushBefore writes the separators pending before text in text mode.
func (h *htmlSanitizer) flushBefore() {
	if h.out.Len() > 0 {
		switch {
		case h.pendingNL > 0:
			h.out.WriteByte('\n')
		case h.pendingSpace:
			h.out.WriteByte(' ')
		}
	}
	if h.pendingPrefix != "" && (h.out.Len() > 0 || h.pendingPrefix == "- ") {
		h.out.WriteString(h.pendingPrefix)
	}
	h.pendingNL, h.pendingSpace, h.pendingPrefix = 0, false, ""
}

func (h *htmlSanitizer) text(t []byte) {
	if h.markup {
		htmlEscape(&h.out, string(t), false)
		return
	}
	if h.pre > 0 {
		if len(t) > 0 {
			h.flushBefore()
			h.out.Write(t)
		}
		return
	}
	for len(t) > 0 {
		i := 0
		for i < len(t) && htmlSpace(t[i]) {
			i++
		}
		if i > 0 {
			h.pendingSpace = true
			t = t[i:]
			continue
		}
		for i < len(t) && !htmlSpace(t[i]) {
			i++
		}
		h.flushBefore()
		h.out.Write(t[:i])
		t = t[i:]
	}
}

func htmlSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'
}

// htmlEscape writes s with the characters markup gives meaning to escaped; quotes too
// inside an attribute value.
func htmlEscape(b *strings.Builder, s string, attr bool) {
	last := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '&':
			esc = "&amp;"
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '"':
			if !attr {
				continue
			}
			esc = "&quot;"
		default:
			continue
		}
		b.WriteString(s[last:i])
		b.WriteString(esc)
		last = i + 1
	}
	b.WriteString(s[last:])
}

// htmlSafeURL returns the address of a link without the white space and control
// characters browsers ignore in it, and whether it is an http, https or mailto address.
func htmlSafeURL(href string) (string, bool) {
	u := strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7F {
			return -1
		}
		return r
	}, href)
	lower := strings.ToLower(u)
	for _, p := range []string{"http://", "https://", "mailto:"} {
		if strings.HasPrefix(lower, p) && len(u) > len(p) {
			return u, true
		}
	}
	return u, false
}

// htmlDangerousURL reports whether a cleaned address runs code or carries a document.
func htmlDangerousURL(u string) bool {
	scheme, _, ok := strings.Cut(u, ":")
	if !ok {
		return false
	}
	switch strings.ToLower(scheme) {
	case "javascript", "vbscript", "data", "livescript":
		return true
	}
	return false
}

// htmlTagInfo is what the attributes of a start tag say.
type htmlTagInfo struct {
	// invisible says a browser would not show the element.
	invisible bool
	// eventHandler says an on* attribute is present.
	eventHandler bool
	// href and alt are the first of those attributes, when wanted.
	href, alt string
	hasHref   bool
}

// htmlReadAttrs reads the attributes of the current start tag; href and alt only if
// want is set.
func htmlReadAttrs(z *html.Tokenizer, want bool) htmlTagInfo {
	var info htmlTagInfo
	for more := true; more; {
		var key, val []byte
		key, val, more = z.TagAttr()
		switch {
		case string(key) == "hidden":
			info.invisible = true
		case string(key) == "style":
			if htmlStyleInvisible(val) {
				info.invisible = true
			}
		case len(key) > 2 && key[0] == 'o' && key[1] == 'n':
			info.eventHandler = true
		case !want:
		case string(key) == "href" && !info.hasHref:
			info.href, info.hasHref = string(val), true
		case string(key) == "alt" && info.alt == "":
			info.alt = string(val)
		}
	}
	return info
}

// Normalize's HTML stage.

// normLooksHTML reports whether s holds a tag or a comment.
func normLooksHTML(s string) bool {
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], '<')
		if j < 0 {
			return false
		}
		i += j + 1
		if i < len(s) && normIsASCIILetter(s[i]) || strings.HasPrefix(s[i:], "!--") {
			return true
		}
	}
	return false
}

// extractHTML removes comments and invisible elements from s and makes pieces of their
// text.
func (st *normState) extractHTML(s string, depth int) string {
	if !normLooksHTML(s) {
		return s
	}
	e := normEdit{src: s}
	z := html.NewTokenizer(strings.NewReader(s))
	var (
		pos      int
		inHidden bool
		hidName  string
		hidDepth int
		hidStart int
		skipRaw  string // a script or style inside the hidden element, whose text is not text
		text     strings.Builder
	)
	finish := func(end int) {
		e.replace(hidStart, end, "")
		if p := normCollapseSpace(text.String()); p != "" {
			st.tricks |= normBitInvisibleStyle
			st.addPiece(p, depth)
		}
		inHidden = false
		text.Reset()
	}
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		start := pos
		pos += len(z.Raw())
		switch tt {
		case html.CommentToken:
			if !strings.HasPrefix(s[start:pos], "<!--") {
				continue
			}
			if !inHidden {
				e.replace(start, pos, "")
			}
			if p := normCollapseSpace(string(z.Text())); p != "" {
				st.tricks |= normBitHTMLComment
				st.addPiece(p, depth)
			}
		case html.TextToken:
			if inHidden && skipRaw == "" {
				text.Write(z.Text())
				text.WriteByte(' ')
			}
		case html.EndTagToken:
			if !inHidden {
				continue
			}
			var nb [htmlNameMax]byte
			name := htmlRawTagName(nb[:0], s[start:pos])
			if string(name) == skipRaw {
				skipRaw = ""
			}
			if string(name) == hidName {
				hidDepth--
				if hidDepth == 0 {
					finish(pos)
				}
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			// The name and attributes are read from the raw tag first: the tokenizer's
			// accessors copy them, which would cost an allocation per tag.
			var nb [htmlNameMax]byte
			raw := s[start:pos]
			name := htmlRawTagName(nb[:0], raw)
			// As in browsers, "/>" does not close an element that is not void.
			void := htmlVoid(atom.Lookup(name))
			if inHidden {
				if string(name) == "script" || string(name) == "style" {
					skipRaw = string(name)
				}
				if string(name) != hidName || void {
					continue
				}
				if hidDepth > 1 || !htmlClosesItself(hidName) {
					hidDepth++
					continue
				}
				// <p hidden>a<p>b: the second p closes the first.
				finish(start)
			}
			if void || !htmlRawMayHide(raw) {
				continue
			}
			if info := htmlReadAttrs(z, false); info.invisible {
				inHidden, hidName, hidDepth, hidStart = true, string(name), 1, start
			}
		}
	}
	if inHidden {
		finish(len(s))
	}
	return e.String()
}

// htmlNameMax bounds the tag names htmlRawTagName reads; longer names are cut (no
// element that matters has one).
const htmlNameMax = 32

// htmlRawTagName appends to dst the lower-cased name of the raw start or end tag raw
// ("<DIV class=x>" gives "div").
func htmlRawTagName(dst []byte, raw string) []byte {
	i := 1
	if i < len(raw) && raw[i] == '/' {
		i++
	}
	for ; i < len(raw) && len(dst) < cap(dst); i++ {
		c := raw[i]
		if htmlSpace(c) || c == '/' || c == '>' {
			break
		}
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// htmlRawMayHide reports whether a raw start tag has an attribute that may make it
// invisible: "hidden" or "style", in any case (possibly a false alarm, never a miss).
func htmlRawMayHide(raw string) bool {
	for i := 0; i+5 <= len(raw); i++ {
		switch raw[i] | 0x20 {
		case 'h':
			if i+6 <= len(raw) && strings.EqualFold(raw[i:i+6], "hidden") {
				return true
			}
		case 's':
			if strings.EqualFold(raw[i:i+5], "style") {
				return true
			}
		}
	}
	return false
}

// htmlCSSMax bounds the declaration name and value htmlStyleInvisible looks at.
const htmlCSSMax = 64

// htmlStyleInvisible reports whether an inline style hides its element: display:none,
// visibility:hidden or collapse, opacity below 0.1, a font size of 0 (or under 2px),
// off-screen positioning (-500 or less), clipping to nothing, a box of at most 1px with
// overflow hidden, scale(0), mso-hide:all, a transparent colour, or a colour equal to
// the background colour.
func htmlStyleInvisible(style []byte) bool {
	var (
		colorBuf, bgBuf [htmlCSSMax]byte
		color, bg       []byte
		tiny, overflow  bool
	)
	for len(style) > 0 {
		decl := style
		if k := bytes.IndexByte(style, ';'); k >= 0 {
			decl, style = style[:k], style[k+1:]
		} else {
			style = nil
		}
		colon := bytes.IndexByte(decl, ':')
		if colon < 0 {
			continue
		}
		var pb, vb [htmlCSSMax]byte
		prop := htmlCSSNorm(pb[:0], decl[:colon])
		val := htmlCSSNorm(vb[:0], decl[colon+1:])
		val = bytes.TrimSuffix(val, []byte("!important"))
		switch string(prop) {
		case "display":
			if string(val) == "none" {
				return true
			}
		case "visibility":
			if string(val) == "hidden" || string(val) == "collapse" {
				return true
			}
		case "opacity":
			if n, unit, ok := htmlCSSNumber(val); ok && (len(unit) == 0 && n < 0.1 || string(unit) == "%" && n < 10) {
				return true
			}
		case "font-size":
			if n, unit, ok := htmlCSSNumber(val); ok && (n <= 0 ||
				(string(unit) == "px" || string(unit) == "pt") && n < 2 ||
				(string(unit) == "em" || string(unit) == "rem") && n < 0.2 ||
				string(unit) == "%" && n < 20) {
				return true
			}
		case "left", "top", "right", "bottom", "margin-left", "margin-top", "text-indent":
			if n, _, ok := htmlCSSNumber(val); ok && n <= -500 {
				return true
			}
		case "clip":
			if bytes.HasPrefix(val, []byte("rect(")) && htmlCSSAllAtMost(val[len("rect("):], 1) {
				return true
			}
		case "clip-path":
			if bytes.HasPrefix(val, []byte("inset(")) && !htmlCSSAllAtMost(val[len("inset("):], 49) ||
				bytes.HasPrefix(val, []byte("circle(0")) {
				return true
			}
		case "width", "height", "max-width", "max-height":
			if n, unit, ok := htmlCSSNumber(val); ok && (n <= 0 || string(unit) == "px" && n <= 1) {
				tiny = true
			}
		case "overflow", "overflow-x", "overflow-y":
			if string(val) == "hidden" || string(val) == "clip" {
				overflow = true
			}
		case "transform":
			if bytes.HasPrefix(val, []byte("scale(0)")) || bytes.HasPrefix(val, []byte("scale(0,")) {
				return true
			}
		case "mso-hide":
			if string(val) == "all" {
				return true
			}
		case "color":
			if string(val) == "transparent" || bytes.HasPrefix(val, []byte("rgba(")) && bytes.HasSuffix(val, []byte(",0)")) {
				return true
			}
			color = append(colorBuf[:0], val...)
		case "background-color", "background":
			bg = append(bgBuf[:0], val...)
		}
	}
	return tiny && overflow || len(color) > 0 && bytes.Equal(color, bg)
}

// htmlCSSNorm appends src to dst lower-cased and without white space, up to dst's
// capacity.
func htmlCSSNorm(dst, src []byte) []byte {
	for _, c := range src {
		if len(dst) == cap(dst) {
			break
		}
		switch {
		case htmlSpace(c):
		case c >= 'A' && c <= 'Z':
			dst = append(dst, c+'a'-'A')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// htmlCSSNumber parses a CSS number and its unit ("-9999px" is -9999, "px").
func htmlCSSNumber(v []byte) (float64, []byte, bool) {
	i, neg := 0, false
	if i < len(v) && (v[i] == '-' || v[i] == '+') {
		neg = v[i] == '-'
		i++
	}
	n, digits, scale := 0.0, 0, 0.0
	for ; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
			if scale == 0 {
				n = n*10 + float64(c-'0')
			} else {
				n += float64(c-'0') * scale
				scale /= 10
			}
			continue
		case c == '.' && scale == 0:
			scale = 0.1
			continue
		}
		break
	}
	if digits == 0 {
		return 0, nil, false
	}
	if neg {
		n = -n
	}
	return n, v[i:], true
}

// htmlCSSAllAtMost reports whether every number in the argument list v is at most max.
func htmlCSSAllAtMost(v []byte, limit float64) bool {
	for i := 0; i < len(v); {
		c := v[i]
		if c >= '0' && c <= '9' || c == '.' || c == '-' {
			j := i
			for j < len(v) && (v[j] >= '0' && v[j] <= '9' || v[j] == '.' || v[j] == '-') {
				j++
			}
			if n, _, ok := htmlCSSNumber(v[i:j]); ok && n > limit {
				return false
			}
			i = j
			continue
		}
		i++
	}
	return true
}
