package fail2ban

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/logban/logban/filters"
)

// datePrefix matches the timestamps fail2ban's default date templates find at the start
// of a line, with the brackets around one: fail2ban cuts the date out of a line before
// its regexes see it, and logban's filters see the whole line, so a regex anchored at
// the start of fail2ban's cut line begins with this.
const datePrefix = `(?:\[?(?:` + dateForms + `)\]?)?`

// dateInBrackets stands for fail2ban's "\[\]": the brackets a date was cut out of, in
// the middle of a line (an access log's [05/Jan/2024:16:01:34 +0100]).
const dateInBrackets = `\[(?:` + dateForms + `)\]`

// dateForms are the timestamps fail2ban's default templates find.
const dateForms = "" +
	// syslog, ctime: [Mon ]Jan  5 16:01:34[.123456][ 2024], Jan  5 2024 16:01:34, and
	// monit's with its zone first: PDT Jan  5 16:01:34
	`(?:[A-Z]{3,4} )?(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) )?(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +\d{1,2}(?: \d{4})? \d{1,2}:\d{2}:\d{2}(?:\.\d+)?(?: \d{4})?` +
	// ISO 8601 and kin: 2024-01-05T16:01:34.123+01:00, 2024/01/05 16:01:34, 2024.01.05 16:01:34,123
	`|\d{4}[-/.]\d{2}[-/.]\d{2}(?:T| ?)\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:\s*(?:Z|UTC|[+-]\d{2}(?::?\d{2})?))?` +
	// 05/Jan/2024:16:01:34 +0100 (Apache), 05-Jan-2024 16:01:34
	`|\d{2}[-/](?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[-/]\d{4}[: ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?: ?[+-]\d{4})?` +
	// 05/01/2024 16:01:34, 05-01-2024 16:01:34 +0100, 01/05/24 16:01:34
	`|\d{2}[-/.]\d{2}[-/.]\d{2,4} \d{2}:\d{2}:\d{2}(?: ?[+-]\d{4})?` +
	// an epoch, 1704470494.123
	`|\d{10}(?:\.\d+)?`

// unsupported are the Python regex constructs RE2 cannot run, with what to say of each.
var unsupported = []struct {
	re     *regexp.Regexp
	reason string
}{
	{regexp.MustCompile(`\(\?<[=!]`), "a look-behind (?<= or (?<!: Go's RE2 has none"},
	{regexp.MustCompile(`\(\?[=!]`), "a look-ahead (?= or (?!: Go's RE2 has none"},
	{regexp.MustCompile(`\(\?\(`), "a conditional (?(group)yes|no): Go's RE2 has none"},
	{regexp.MustCompile(`\(\?P=`), "a back-reference (?P=name): Go's RE2 has none"},
	{regexp.MustCompile(`\\[1-9]`), "a back-reference \\N: Go's RE2 has none"},
	{regexp.MustCompile(`\(\?>`), "an atomic group (?>: Go's RE2 has none"},
	{regexp.MustCompile(`[*+?}][+]`), "a possessive quantifier: Go's RE2 has none"},
}

var (
	ftag       = regexp.MustCompile(`</?[\w\-]+/?>`)
	emptyBound = regexp.MustCompile(`\{,(\d+)\}`)
)

// regexError says why a regex could not be turned.
type regexError struct{ reason string }

func (e *regexError) Error() string { return e.reason }

// filterContext is what of its filter a regex is turned with: the filter's prefregex ("" for
// none), and the date its lines start with, as a regex (datePatternPrefix; "" for
// fail2ban's default templates).
type filterContext struct{ pref, date string }

func (f filterContext) datePrefix() string {
	if f.date == "" {
		return datePrefix
	}
	return f.date
}

// convertRegex turns one fail2ban failregex (or ignoreregex) of a filter into logban's
// syntax; ignore says the regex is an ignoreregex, which needs no address. The result
// compiles as logban's filters compile it.
//
// A negative look-ahead outside any group, A(?!X)B, which RE2 cannot run, becomes the
// failregex AB and the ignoreregex AX, returned in ignores: a line where A is followed
// by X is not a failure. That is fail2ban's reading wherever A matches in one place, as
// in the stock filters (postfix's "authentication failed:(?! Connection lost...)",
// recidive's "\[(?!recidive\])").
func convertRegex(regex string, f filterContext, ignore bool) (conv string, ignores []derived, err error) {
	if !ignore {
		if a, x, b, ok := cutLookahead(regex); ok {
			conv, more, err := convertRegex(a+b, f, false)
			if err != nil {
				return "", nil, err
			}
			ign, _, err := convertRegex(a+"(?:"+x+")", f, true)
			if err != nil {
				return "", nil, err
			}
			return conv, append(more, derived{ign, []string{a + "(?:" + x + ")"}}), nil
		}
	}
	if err := screen(regex); err != nil {
		return "", nil, err
	}
	body, err := tags(strings.NewReplacer("<F-NOFAIL>", "(?P<nofail>", "</F-NOFAIL>", ")").Replace(regex))
	if err != nil {
		return "", nil, err
	}
	fails := []string{body}
	var nofails []string
	if strings.Contains(body, "(?P<nofail>") || strings.Contains(body, "(?(") {
		extra := ""
		if strings.Contains(body, "(?P<nofail>") {
			extra = "nofail"
		}
		with, without, err := expand(body, extra)
		if err != nil {
			return "", nil, &regexError{fmt.Sprintf("a conditional (?(group)yes|no) RE2 has none of, on %v", err)}
		}
		fails, nofails = without, with
		if ignore {
			fails, nofails = append(without, with...), nil
		}
		if len(fails) == 0 {
			return "", nil, &regexError{"marks a line that is not a failure by itself (<F-NOFAIL>): fail2ban keeps it to join with another line of the same session; logban reads each line alone"}
		}
	}
	if conv, err = finish(strings.Join(fails, "|"), f, ignore); err != nil {
		return "", nil, err
	}
	if len(nofails) > 0 {
		joined := strings.Join(nofails, "|")
		ign, err := finish(joined, f, true)
		if err != nil {
			return "", nil, err
		}
		var orig []string
		for _, v := range nofails {
			orig = append(orig, namedGroup.ReplaceAllString(v, "(?:"))
		}
		ignores = append(ignores, derived{ign, orig})
	}
	return conv, ignores, nil
}

// derived is an ignoreregex made from a part of a failregex: in logban's syntax, and in
// fail2ban's, as the ignoreregexes fail2ban would match against the line or the
// prefregex's content (one each: fail2ban takes one <HOST> a regex).
type derived struct {
	logban   string
	fail2ban []string
}

// cutLookahead finds a negative look-ahead outside any group of a regex without a
// top-level |, and returns what comes before it, its content, and what comes after.
func cutLookahead(re string) (a, x, b string, ok bool) {
	if len(topLevel(re)) != 1 {
		return "", "", "", false
	}
	walk(re, 0, func(i, depth int) bool {
		if depth == 1 && strings.HasPrefix(re[i:], "(?!") { // a ( outside any other
			if end := groupEnd(re, i); end >= 0 {
				a, x, b, ok = re[:i], re[i+3:end], re[end+1:], true
			}
			return false
		}
		return true
	})
	return a, x, b, ok
}

// groupEnd returns the index of the ) closing the group opened at re[open], or -1.
func groupEnd(re string, open int) int {
	end := -1
	walk(re, open, func(i, depth int) bool {
		if re[i] == ')' && depth == 1 {
			end = i
			return false
		}
		return true
	})
	return end
}

// walk calls fn with each index of re from start that is outside a character class
// and not escaped, and the depth of groups there (a ( counts from its own index on,
// a ) up to its own), until fn returns false.
func walk(re string, start int, fn func(i, depth int) bool) {
	depth := 0
	for i := start; i < len(re); i++ {
		switch re[i] {
		case '\\':
			i++
			continue
		case '[':
			i = classEnd(re, i) - 1
			continue
		case '(':
			depth++
		}
		if !fn(i, depth) {
			return
		}
		if re[i] == ')' {
			depth--
		}
	}
}

// screen refuses what no rewriting makes one line's regex of.
func screen(regex string) error {
	if strings.Contains(regex, "<SKIPLINES>") || hasNewline(regex) {
		return &regexError{"spans several lines (<SKIPLINES>, \\n): logban reads one line at a time"}
	}
	if strings.Contains(regex, "<F-MLFGAINED>") {
		return &regexError{"marks a success (<F-MLFGAINED>), which fail2ban joins with the other lines of the same session; logban reads each line alone"}
	}
	for _, tag := range []string{"CIDR", "SUBNET", "F-CIDR", "F-SUBNET", "DNS", "F-DNS"} {
		if strings.Contains(regex, "<"+tag+">") || strings.Contains(regex, "<"+tag+"/>") {
			return &regexError{fmt.Sprintf("captures <%s>: logban bans addresses only, never a network a line names or a host name", tag)}
		}
	}
	return nil
}

var namedGroup = regexp.MustCompile(`\(\?P<[^>]+>`)

// finish turns a regex whose tags are replaced into logban's: the tempered tokens
// written out, named groups plain, into prefregex's content, the date put back.
func finish(body string, f filterContext, ignore bool) (string, error) {
	body = untemper(body)
	body = namedGroup.ReplaceAllString(body, "(?:")
	if f.pref != "" {
		// The content's tags are kept apart from the others, to find where it stands.
		p, err := tags(strings.NewReplacer("<F-CONTENT>", contentStart, "</F-CONTENT>", contentEnd).Replace(f.pref))
		if err != nil {
			return "", fmt.Errorf("prefregex: %w", err)
		}
		if body, err = intoContent(p, body); err != nil {
			return "", err
		}
	}
	if !ignore && !strings.Contains(body, "<HOST>") {
		return "", &regexError{"has no address (<HOST>, <ADDR>, <IP4>, <IP6>): fail2ban takes it from another line of the same session (F-MLFID, F-ID); logban reads each line alone"}
	}
	// "\[\]" is where fail2ban cut a date out of brackets; the optional one of
	// __prefix_line follows the date datePrefix takes at the start.
	body = strings.ReplaceAll(body, `(?:\[\])?`, "\x00")
	body = strings.ReplaceAll(body, `\[\]`, dateInBrackets)
	body = strings.ReplaceAll(body, "\x00", `(?:\[\])?`)
	alts := topLevel(body)
	for i, alt := range alts {
		if strings.HasPrefix(alt, "^") {
			alts[i] = "^" + f.datePrefix() + strings.TrimLeft(alt, "^") // ^^: a prefix's ^ doubled
		}
	}
	body = strings.Join(alts, "|")
	for _, u := range unsupported {
		if u.re.MatchString(body) {
			return "", &regexError{u.reason}
		}
	}
	body = strings.ReplaceAll(body, `\Z`, `\z`)
	body = emptyBound.ReplaceAllString(body, "{0,$1}")
	def := filters.Definition{FailRegex: []string{body}}
	if ignore {
		def = filters.Definition{FailRegex: []string{"<HOST>"}, IgnoreRegex: []string{body}}
	}
	if _, err := filters.New("import", def, filters.Options{}); err != nil {
		return "", &regexError{fmt.Sprintf("does not compile in Go's RE2: %v", err)}
	}
	return body, nil
}

// tags replaces fail2ban's regex tags: each address tag becomes logban's <HOST> (with the
// brackets fail2ban allows around it), and every <F-NAME>...</F-NAME> capture a plain
// group, since logban does not use them. An unknown tag stays as it is.
func tags(regex string) (string, error) {
	var err error
	open := map[string]bool{}
	out := ftag.ReplaceAllStringFunc(regex, func(tag string) string {
		name := strings.Trim(tag, "</>")
		switch {
		case name == "HOST" || name == "ADDR" || name == "IP4" || name == "IP6":
			return `\[?<HOST>\]?`
		case strings.HasSuffix(tag, "/>") && strings.HasPrefix(name, "F-"):
			switch name {
			case "F-ADDR", "F-IP4", "F-IP6", "F-HOST":
				return `\[?<HOST>\]?`
			case "F-ID":
				return `(?:\S+)`
			case "F-PORT":
				return `(?:\w+)`
			}
			err = &regexError{fmt.Sprintf("the tag %s is not known", tag)}
			return tag
		case strings.HasPrefix(tag, "</") && strings.HasPrefix(name, "F-"):
			if open[name] {
				open[name] = false
				return ")"
			}
			return tag
		case strings.HasPrefix(name, "F-"):
			open[name] = true
			switch name {
			case "F-ADDR", "F-IP4", "F-IP6", "F-HOST":
				err = &regexError{fmt.Sprintf("<%s> with a pattern of its own: logban takes the address only as <HOST>", name)}
			}
			return "(?:"
		}
		return tag
	})
	return out, err
}

// The marks of prefregex's <F-CONTENT> and </F-CONTENT> while its other tags are replaced.
const contentStart, contentEnd = "\x00content\x00", "\x00/content\x00"

// intoContent puts a failregex where prefregex's <F-CONTENT> stands: fail2ban matches
// the failregex against that part of the line alone, so its ^ is the content's start,
// its $ the content's end, and without them it may match anywhere inside.
func intoContent(pref, fail string) (string, error) {
	start := strings.Index(pref, contentStart)
	end := strings.Index(pref, contentEnd)
	if start < 0 || end < start {
		return "", &regexError{"the filter's prefregex has no <F-CONTENT>...</F-CONTENT>"}
	}
	before, after := pref[:start], pref[end+len(contentEnd):]
	var alts []string
	for _, alt := range topLevel(fail) {
		a, anchored := strings.CutPrefix(alt, "^")
		if !anchored {
			a = ".*?" + a
		}
		if strings.HasSuffix(a, "$") && !strings.HasSuffix(a, `\$`) {
			a = strings.TrimSuffix(a, "$")
		} else {
			a += ".*"
		}
		alts = append(alts, a)
	}
	return before + "(?:" + strings.Join(alts, "|") + ")" + after, nil
}

// classEnd returns the index just past the character class that opens at re[open], or
// len(re)+1 if it is not closed. A ] first in the class ([]a], [^]a]) is one of its
// characters, as in Python and RE2.
func classEnd(re string, open int) int {
	i := open + 1
	if i < len(re) && re[i] == '^' {
		i++
	}
	if i < len(re) && re[i] == ']' {
		i++
	}
	for i < len(re) && re[i] != ']' {
		if re[i] == '\\' {
			i++
		}
		i++
	}
	return i + 1
}

// topLevel splits a regex at its top-level |, outside groups and classes.
func topLevel(re string) []string {
	var parts []string
	start := 0
	walk(re, 0, func(i, depth int) bool {
		if re[i] == '|' && depth == 0 {
			parts = append(parts, re[start:i])
			start = i + 1
		}
		return true
	})
	return append(parts, re[start:])
}

// hasNewline reports whether a regex matches a line end: \n not itself escaped.
func hasNewline(re string) bool {
	for i := 0; i < len(re)-1; i++ {
		if re[i] == '\\' {
			if re[i+1] == 'n' {
				return true
			}
			i++
		}
	}
	return false
}

// strftime is the regex of each of fail2ban's date directives (server/strptime.py),
// loose where fail2ban's is exact: the date only has to be stepped over.
var strftime = map[string]string{
	"%a": `[A-Za-z]{3,}`, "%A": `[A-Za-z]+`, "%b": `[A-Za-z]{3,}\.?`, "%B": `[A-Za-z]+`,
	"%d": `\d{1,2}`, "%e": ` ?\d{1,2}`, "%H": `\d{1,2}`, "%k": ` ?\d{1,2}`, "%I": `\d{1,2}`,
	"%l": ` ?\d{1,2}`, "%M": `\d{2}`, "%S": `\d{2}`, "%m": `\d{1,2}`, "%y": `\d{2}`,
	"%Y": `\d{4}`, "%Exy": `\d{2}`, "%ExY": `\d{4}`, "%j": `\d{1,3}`, "%f": `\d{1,6}`,
	"%p": `[AaPp][Mm]`, "%s": `\d{9,11}`, "%Z": `[A-Z]{2,5}`, "%z": `(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)`,
	"%%": "%",
}

var directive = regexp.MustCompile(`%(?:Ex[yY]|[a-zA-Z%])`)

// datePatternPrefix turns a filter's datepattern into the regex of what fail2ban cuts
// from the start of each line: each pattern anchored at the line's start ({^LN-BEG} or
// ^), with {DATE} as fail2ban's default templates and its %-directives as regexes. ok
// is false for a pattern that is not anchored or cuts only a group of its match (the
// date in the middle of a line): the default stands then.
func datePatternPrefix(dp string) (string, bool) {
	var alts []string
	for l := range strings.SplitSeq(dp, "\n") {
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		rest, anchored := strings.CutPrefix(l, "{^LN-BEG}")
		if !anchored {
			rest, anchored = strings.CutPrefix(l, "^")
		}
		group := false
		walk(rest, 0, func(i, _ int) bool {
			group = rest[i] == '(' && !strings.HasPrefix(rest[i:], "(?")
			return !group
		})
		if !anchored || group {
			return "", false
		}
		switch rest {
		case "", "{DATE}":
			alts = append(alts, `\[?(?:`+dateForms+`)\]?`)
			continue
		case "TAI64N":
			alts = append(alts, `@[0-9a-f]{24}`)
			continue
		case "Epoch":
			alts = append(alts, `\d{10}(?:\.\d+)?`)
			continue
		}
		ok := true
		re := directive.ReplaceAllStringFunc(strings.ReplaceAll(rest, "{DATE}", "(?:"+dateForms+")"), func(d string) string {
			r, known := strftime[d]
			if !known {
				ok = false
			}
			return r
		})
		re = namedGroup.ReplaceAllString(re, "(?:") // it may stand in several alternatives
		if _, err := regexp.Compile(re); !ok || err != nil {
			return "", false
		}
		alts = append(alts, re)
	}
	if len(alts) == 0 {
		return "", false
	}
	return "(?:" + strings.Join(alts, "|") + ")?", true
}
