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

// skipLiteral returns the text every pattern requires that bytes.Index finds or rules out
// fastest, or "" if the patterns share none. lits holds each pattern's required literals.
//
// bytes.Index jumps between occurrences of its needle's first byte with one vectorised
// IndexByte each, so a needle that starts with a byte log lines rarely hold skips a line
// in one such jump: "SASL " rules out a Postfix line far sooner than
// "postfix/submission/smtpd[", whose "p" every Postfix line holds a dozen times. Among the
// substrings of the literals every pattern shares, the one whose first byte is rarest in
// log text wins, then the longer; but a short one (under four bytes) only where there is
// nothing longer, the longest such, since it would find more lines that then fail the regex.
func skipLiteral(lits [][]string) string {
	if len(lits) == 0 {
		return ""
	}
	var best string
	bestScore := [3]int{}
	for _, l := range lits[0] {
		for i := 0; i < len(l); i++ {
			if !utf8.RuneStart(l[i]) {
				continue
			}
			cand := sharedPrefix(l[i:], lits[1:])
			if cand == "" {
				continue
			}
			score := [3]int{min(len(cand), 4), int(byteRarity[cand[0]]), len(cand)}
			if slices.Compare(score[:], bestScore[:]) > 0 {
				best, bestScore = cand, score
			}
		}
	}
	return best
}

// sharedPrefix returns the longest prefix of s that some literal of every other pattern
// contains, cut at a rune boundary.
func sharedPrefix(s string, others [][]string) string {
	for n := len(s); n > 0; n-- {
		if n < len(s) && !utf8.RuneStart(s[n]) {
			continue
		}
		cand := s[:n]
		if !slices.ContainsFunc(others, func(lits []string) bool {
			return !slices.ContainsFunc(lits, func(l string) bool { return strings.Contains(l, cand) })
		}) {
			return cand
		}
	}
	return ""
}

// commonInLogs lists bytes from the most to the least common in log lines: English text,
// numbers, addresses and syslog punctuation first, upper case (hex queue IDs first) after.
// Bytes not listed are rarer than any listed. q is no rare letter here: Jetty names its
// threads qtp..., and nearly every line of mailbox.log names one.
const commonInLogs = " etaoinsrlcdum0123456789.:hpx-/=[]_,gfbwyvkq\t\"'ABCDEFINOTSRLMPUGHWKVYXJQZ;()<>@+jz"

// byteRarity ranks each byte by how rarely log lines hold it: higher is rarer.
var byteRarity = func() (r [256]uint8) {
	for i := range r {
		r[i] = uint8(len(commonInLogs))
	}
	for i := len(commonInLogs) - 1; i >= 0; i-- {
		r[commonInLogs[i]] = uint8(i)
	}
	return r
}()
