package argcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"unicode/utf8"
)

// argCheck is one compiled [Constraint].
type argCheck struct {
	name string

	// String checks; wantString is set when any of them is.
	wantString bool
	maxLen     int // -1: no limit
	pattern    *regexp.Regexp
	patternSrc string
	enum       []string
	paths      *pathRule
	urls       *hostRule

	// Number checks; wantNumber is set when either bound is.
	wantNumber bool
	min, max   float64 // ±Inf when unset
}

// compileConstraint validates c and compiles it. It returns every problem
// found; the caller adds the tool and argument name.
func compileConstraint(name string, c Constraint) (argCheck, []error) {
	ch := argCheck{name: name, maxLen: -1, min: math.Inf(-1), max: math.Inf(1)}
	var errs []error

	if c.Pattern == "" && len(c.Enum) == 0 && c.Minimum == nil && c.Maximum == nil &&
		c.MaxLength == nil && len(c.PathPrefixes) == 0 && len(c.URLHosts) == 0 {
		return ch, []error{errors.New("constraint sets no fields")}
	}

	if c.Pattern != "" {
		// Compile the pattern on its own first: a well-formed expression has
		// balanced groups, so wrapping it cannot change what the anchors
		// apply to. (Without this, "a)|(b" would wrap to "^(?:a)|(b)$",
		// which is valid and anchored on one side only.)
		if _, err := regexp.Compile(c.Pattern); err != nil {
			errs = append(errs, fmt.Errorf("pattern: %v", err))
		} else if re, err := regexp.Compile(`^(?:` + c.Pattern + `)$`); err != nil {
			errs = append(errs, fmt.Errorf("pattern: %v", err))
		} else {
			ch.pattern, ch.patternSrc = re, c.Pattern
		}
	}
	if len(c.Enum) > 0 {
		ch.enum = append([]string(nil), c.Enum...)
	}
	if c.MaxLength != nil {
		if *c.MaxLength < 0 {
			errs = append(errs, fmt.Errorf("max_length %d: must not be negative", *c.MaxLength))
		} else {
			ch.maxLen = *c.MaxLength
		}
	}
	if c.Minimum != nil {
		if math.IsNaN(*c.Minimum) {
			errs = append(errs, errors.New("minimum: must be a number, not NaN"))
		} else {
			ch.min = *c.Minimum
		}
	}
	if c.Maximum != nil {
		if math.IsNaN(*c.Maximum) {
			errs = append(errs, errors.New("maximum: must be a number, not NaN"))
		} else {
			ch.max = *c.Maximum
		}
	}
	if c.Minimum != nil && c.Maximum != nil && *c.Minimum > *c.Maximum {
		errs = append(errs, fmt.Errorf("minimum %s is greater than maximum %s", formatFloat(*c.Minimum), formatFloat(*c.Maximum)))
	}
	if len(c.PathPrefixes) > 0 {
		r, perrs := newPathRule(c.PathPrefixes)
		errs = append(errs, perrs...)
		ch.paths = r
	}
	if len(c.URLHosts) > 0 {
		r, herrs := newHostRule(c.URLHosts)
		errs = append(errs, herrs...)
		ch.urls = r
	}

	ch.wantString = c.Pattern != "" || len(c.Enum) > 0 || c.MaxLength != nil ||
		len(c.PathPrefixes) > 0 || len(c.URLHosts) > 0
	ch.wantNumber = c.Minimum != nil || c.Maximum != nil
	// No value is both a string and a number, nor both an absolute path and
	// an absolute URL: such a constraint can only be a configuration mistake.
	if ch.wantString && ch.wantNumber {
		errs = append(errs, errors.New("mixes string bounds (pattern, enum, max_length, path_prefixes, url_hosts) with number bounds (minimum, maximum); no value can satisfy both"))
	}
	if len(c.PathPrefixes) > 0 && len(c.URLHosts) > 0 {
		errs = append(errs, errors.New("sets both path_prefixes and url_hosts; no value can satisfy both"))
	}
	return ch, errs
}

// check applies the constraint to a present argument value and records
// every bound it breaks. Messages name the bound, never the value.
func (ch *argCheck) check(val any, c *collector) {
	if ch.wantNumber {
		f, ok := number(val)
		switch {
		case !ok:
			c.add(ch.name, "must be a number")
		case math.IsNaN(f):
			c.add(ch.name, "must be a finite number")
		default:
			if f < ch.min {
				c.add(ch.name, "is less than the minimum "+formatFloat(ch.min))
			}
			if f > ch.max {
				c.add(ch.name, "is greater than the maximum "+formatFloat(ch.max))
			}
		}
	}
	if !ch.wantString {
		return
	}
	s, ok := val.(string)
	if !ok {
		c.add(ch.name, "must be a string")
		return
	}
	if ch.maxLen >= 0 && utf8.RuneCountInString(s) > ch.maxLen {
		c.add(ch.name, fmt.Sprintf("is longer than the max_length of %d characters", ch.maxLen))
	}
	if ch.pattern != nil && !ch.pattern.MatchString(s) {
		c.add(ch.name, "does not match the pattern "+strconv.Quote(ch.patternSrc))
	}
	if ch.enum != nil && !contains(ch.enum, s) {
		c.add(ch.name, fmt.Sprintf("is not one of the allowed values %q", ch.enum))
	}
	if ch.paths != nil {
		if msg := ch.paths.check(s); msg != "" {
			c.add(ch.name, msg)
		}
	}
	if ch.urls != nil {
		if msg := ch.urls.check(s); msg != "" {
			c.add(ch.name, msg)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// number returns the value of a decoded JSON number.
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	}
	return 0, false
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// hasControl reports whether s holds a C0 or C1 control character or DEL.
func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			return true
		}
	}
	return false
}

// trimList renders an allow list for a message, bounded in length.
func trimList(list []string) string {
	return truncate(fmt.Sprint(list), 4*maxNameBytes)
}
