package filters

import (
	"regexp/syntax"
	"slices"
	"strings"
	"unicode/utf8"
)

// requiredLiterals returns the runs of literal text that every match of expr must contain,
// longest first, or none if expr does not parse. Case-folded text is never returned, since
// bytes.Index could not find it.
func requiredLiterals(expr string) []string {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil
	}
	lits := literals(re.Simplify())
	slices.SortStableFunc(lits, func(a, b string) int { return len(b) - len(a) })
	return slices.Compact(lits)
}

// literals returns runs of text each of which appears in every match of re.
func literals(re *syntax.Regexp) []string {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return nil
		}
		return []string{string(re.Rune)}
	case syntax.OpCapture:
		return literals(re.Sub[0])
	case syntax.OpPlus:
		return literals(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return literals(re.Sub[0])
		}
	case syntax.OpConcat:
		var out []string
		var run strings.Builder
		flush := func() {
			if run.Len() > 0 {
				out = append(out, run.String())
				run.Reset()
			}
		}
		for _, sub := range re.Sub {
			if s, ok := exactText(sub); ok {
				run.WriteString(s)
				continue
			}
			flush()
			out = append(out, literals(sub)...)
		}
		flush()
		return out
	}
	return nil
}

// exactText reports the text re matches if it matches exactly one case-sensitive string.
func exactText(re *syntax.Regexp) (string, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return "", false
		}
		return string(re.Rune), true
	case syntax.OpCapture:
		return exactText(re.Sub[0])
	case syntax.OpEmptyMatch:
		return "", true
	case syntax.OpConcat:
		var b strings.Builder
		for _, sub := range re.Sub {
			s, ok := exactText(sub)
			if !ok {
				return "", false
			}
			b.WriteString(s)
		}
		return b.String(), true
	}
	return "", false
}

// commonSubstring returns the longest string contained in every one of ss, or "".
func commonSubstring(ss []string) string {
	if len(ss) == 0 {
		return ""
	}
	first := ss[0]
	for n := len(first); n > 0; n-- {
		for i := 0; i+n <= len(first); i++ {
			if !utf8.RuneStart(first[i]) || (i+n < len(first) && !utf8.RuneStart(first[i+n])) {
				continue
			}
			cand := first[i : i+n]
			all := true
			for _, s := range ss[1:] {
				if !strings.Contains(s, cand) {
					all = false
					break
				}
			}
			if all {
				return cand
			}
		}
	}
	return ""
}
