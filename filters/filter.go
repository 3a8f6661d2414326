package filters

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"strings"
	"time"
)

// hostPattern is what <HOST> expands to: an IPv4 literal, or anything shaped like an IPv6
// literal (including Java's uncompressed 0:0:0:0:0:0:0:1 and IPv4-mapped ::ffff:a.b.c.d).
// The capture is validated by netip.ParseAddr, so the pattern may be loose but never lets a
// hostname through.
const hostPattern = `(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:]*(?:\d{1,3}(?:\.\d{1,3}){3})?)`

// hostTag is the placeholder a failregex uses for the failing client's address.
const hostTag = "<HOST>"

// ErrNoHost reports a failregex without a <HOST> placeholder.
var ErrNoHost = errors.New("failregex has no <HOST>")

// Pattern is one compiled failregex.
type Pattern struct {
	source   string
	re       *regexp.Regexp
	hosts    []int         // indexes of the host groups, in order
	literals [][]byte      // texts every match contains, longest first
	native   nativeMatcher // does what re does, faster; nil for most
}

// CompilePattern compiles a failregex: <HOST> is replaced by an address group and the result
// compiled with Go's regexp (RE2 syntax: no backreferences, linear time on any input).
func CompilePattern(source string) (*Pattern, error) {
	if !strings.Contains(source, hostTag) {
		return nil, ErrNoHost
	}
	n := 0
	expanded := replaceHost(source, func() string {
		n++
		return fmt.Sprintf("(?P<host%d>%s)", n, hostPattern)
	})
	re, err := regexp.Compile(expanded)
	if err != nil {
		return nil, readable(err)
	}
	p := &Pattern{source: source, re: re, native: nativeMatchers[source]}
	for i := 1; i <= n; i++ {
		p.hosts = append(p.hosts, re.SubexpIndex(fmt.Sprintf("host%d", i)))
	}
	for _, lit := range requiredLiterals(re.String()) {
		p.literals = append(p.literals, []byte(lit))
	}
	return p, nil
}

// CompileIgnore compiles an ignoreregex. <HOST> is allowed and expands as in a failregex.
func CompileIgnore(source string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(replaceHost(source, func() string {
		return fmt.Sprintf("(?:%s)", hostPattern)
	}))
	if err != nil {
		return nil, readable(err)
	}
	return re, nil
}

// readable drops the expansion of <HOST> from a regexp syntax error: the user wrote
// <HOST>, and the error should speak of what was written.
func readable(err error) error {
	var se *syntax.Error
	if errors.As(err, &se) && strings.Contains(se.Expr, hostPattern) {
		return errors.New(string(se.Code))
	}
	return err
}

func replaceHost(source string, group func() string) string {
	var b strings.Builder
	for {
		i := strings.Index(source, hostTag)
		if i < 0 {
			b.WriteString(source)
			return b.String()
		}
		b.WriteString(source[:i])
		b.WriteString(group())
		source = source[i+len(hostTag):]
	}
}

// String returns the pattern as written, with <HOST>.
func (p *Pattern) String() string { return p.source }

// Literal returns the longest text that every match of the pattern contains, or "" if none.
func (p *Pattern) Literal() string {
	if len(p.literals) == 0 {
		return ""
	}
	return string(p.literals[0])
}

// match returns the address captured by the pattern in line. ok is false when the pattern
// does not match or the capture is not an IP address.
func (p *Pattern) match(line []byte) (addr netip.Addr, ok bool) {
	for _, lit := range p.literals {
		if bytes.Index(line, lit) < 0 {
			return netip.Addr{}, false
		}
	}
	if p.native != nil {
		return p.native(line)
	}
	m := p.re.FindSubmatchIndex(line) // allocates only when it matches

	if m == nil {
		return netip.Addr{}, false
	}
	for _, g := range p.hosts {
		if m[2*g] < 0 {
			continue
		}
		return ParseAddr(line[m[2*g]:m[2*g+1]])
	}
	return netip.Addr{}, false
}

// ParseAddr parses an IPv4 or IPv6 literal; an IPv4-mapped IPv6 address is returned as IPv4.
func ParseAddr(b []byte) (netip.Addr, bool) {
	a, err := netip.ParseAddr(string(b))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// Filter is a named set of failregex patterns and ignoreregex expressions.
type Filter struct {
	name    string
	fail    []*Pattern
	ignore  []*regexp.Regexp
	literal []byte // common to every failregex; nil when they share none
	times   TimeParser
}

// Match is one failure found in a line.
type Match struct {
	Addr netip.Addr
	// Time is the line's own timestamp, or the time it was read if it has none.
	Time time.Time
	// Timed reports whether Time came from the line.
	Timed bool
	// Pattern is the index of the failregex that matched.
	Pattern int
}

// Result says what a filter made of a line.
type Result uint8

// The outcomes of Filter.Match.
const (
	NoMatch Result = iota // no failregex matched (or the capture was not an address)
	Ignored               // a failregex matched and an ignoreregex dropped the line
	Matched               // a failure
)

// New builds a filter from failregex and ignoreregex sources. The error names the
// offending expression by its index.
func New(name string, failregex, ignoreregex []string) (*Filter, error) {
	if len(failregex) == 0 {
		return nil, fmt.Errorf("filter %q: no failregex", name)
	}
	f := &Filter{name: name}
	for i, src := range failregex {
		p, err := CompilePattern(src)
		if err != nil {
			return nil, &PatternError{Filter: name, Field: "failregex", Index: i, Source: src, Err: err}
		}
		f.fail = append(f.fail, p)
	}
	for i, src := range ignoreregex {
		re, err := CompileIgnore(src)
		if err != nil {
			return nil, &PatternError{Filter: name, Field: "ignoreregex", Index: i, Source: src, Err: err}
		}
		f.ignore = append(f.ignore, re)
	}
	lits := make([][]string, len(f.fail))
	for i, p := range f.fail {
		for _, l := range p.literals {
			lits[i] = append(lits[i], string(l))
		}
	}
	if l := skipLiteral(lits); l != "" {
		f.literal = []byte(l)
	}
	return f, nil
}

// PatternError reports a failregex or ignoreregex that does not compile.
type PatternError struct {
	Filter string
	Field  string // "failregex" or "ignoreregex"
	Index  int
	Source string
	Err    error
}

func (e *PatternError) Error() string {
	return fmt.Sprintf("filter %q: %s[%d] %q: %v", e.Filter, e.Field, e.Index, e.Source, e.Err)
}

func (e *PatternError) Unwrap() error { return e.Err }

// Name returns the filter's name.
func (f *Filter) Name() string { return f.name }

// Literal returns the text every failregex of the filter requires and Match looks for first,
// the one bytes.Index rules out fastest, or "" if they share none (each pattern then still
// checks its own literals).
func (f *Filter) Literal() string { return string(f.literal) }

// Next returns the index in data of the first occurrence of the text every match holds
// (see Literal), or -1 if there is none: no line of data can match. With no such text it
// returns 0: any line may.
func (f *Filter) Next(data []byte) int {
	if f.literal == nil {
		return 0
	}
	return bytes.Index(data, f.literal)
}

// Patterns returns the compiled failregex patterns.
func (f *Filter) Patterns() []*Pattern { return f.fail }

// SetLocation sets the time zone for timestamps that carry none (syslog, log4j). The
// default is time.Local.
func (f *Filter) SetLocation(loc *time.Location) { f.times.Location = loc }

// Match looks for a failure in line. now is the time the line was read; it stands in for a
// missing timestamp and decides the year of syslog timestamps. Lines without the filter's
// literal return at the cost of one bytes.Index and allocate nothing.
func (f *Filter) Match(line []byte, now time.Time) (Match, Result) {
	if f.literal != nil && bytes.Index(line, f.literal) < 0 {
		return Match{}, NoMatch
	}
	for i, p := range f.fail {
		addr, ok := p.match(line)
		if !ok {
			continue
		}
		for _, ig := range f.ignore {
			if ig.Match(line) {
				return Match{}, Ignored
			}
		}
		m := Match{Addr: addr, Time: now, Pattern: i}
		if t, ok := f.times.Parse(line, now); ok {
			m.Time, m.Timed = t, true
		}
		return m, Matched
	}
	return Match{}, NoMatch
}
