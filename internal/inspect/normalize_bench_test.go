package inspect

import "testing"

func BenchmarkNormalize10KBPlain(b *testing.B) {
	s := normPlainText(10 << 10)
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	for b.Loop() {
		Normalize(s)
	}
}

func BenchmarkNormalize10KBHTML(b *testing.B) {
	s := normHTMLText(10 << 10)
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	for b.Loop() {
		Normalize(s)
	}
}

// BenchmarkNormalize10KBRussian is text in another script, full of look-alike letters
// that must not be folded: the slow path that changes nothing.
func BenchmarkNormalize10KBRussian(b *testing.B) {
	const para = "Он сказал: «Привет, как дела?» — и ушёл. Это было в Москве, в сентябре, когда шёл дождь.\n"
	s := ""
	for len(s) < 10<<10 {
		s += para
	}
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	for b.Loop() {
		Normalize(s)
	}
}

func BenchmarkSanitize10KB(b *testing.B) {
	s := normHTMLText(10 << 10)
	for _, mode := range []string{SanitizeText, SanitizeMarkup} {
		b.Run(mode, func(b *testing.B) {
			b.SetBytes(int64(len(s)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := Sanitize(s, mode); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
