package filters

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"
)

// Filter finds failures in log lines: a set of failregex patterns, or one of the built-in
// formats (see format), and ignoreregex expressions that drop lines either would count.
type Filter struct {
	name    string
	fail    []*pattern          // nil for a format
	read    lineReader          // nil for failregex patterns
	account func([]byte) []byte // the account a counted line of the format names
	device  func([]byte) []byte // the device a counted line of the format names
	// lineTime, if set, reads a line's time for a format whose lines do not begin
	// with it; times reads the others.
	lineTime func([]byte) (time.Time, bool)
	rules    []string // what counts a line: failregex sources, or the format's kinds
	ignore   []*regexp.Regexp
	literal  []byte // every failure holds it; nil when there is no such text
	times    TimeParser

	// The logins that worked, read only with Options.Successes: successregex patterns
	// or the format's reader, and the text every such line holds (nil: none known).
	success     []*pattern
	readSuccess successReader
	successLit  []byte
	successes   bool
	needles     [][]byte // what Needles returns
}

// Options are what a filter needs to know of the site it runs at.
type Options struct {
	// TrustedProxies are the farm's own proxies and the load balancers in front of them:
	// in a list of forwarded-for addresses, the entries they appended are stepped over
	// from the right to reach the client (see forwardedClient). Empty, the rightmost
	// entry, the one the farm's proxy appended, is the client.
	TrustedProxies []netip.Prefix
	// Successes makes the filter read the logins that worked too (its successregex, or
	// its format's success lines), for a jail that trusts the addresses they come from.
	// Without it those rules cost nothing.
	Successes bool
}

// Match is what a filter found in a line: a failure, or a login that worked.
type Match struct {
	Addr netip.Addr
	// Account is the account the line names, as written, or nil if it names none. It
	// lies in the line: copy it to keep it.
	Account []byte
	// Device is the device the line names (<DEVICE>, an ActiveSync DeviceId), or nil.
	// It lies in the line too.
	Device []byte
	// Time is the line's own timestamp, or the time it was read if it has none.
	Time time.Time
	// Timed reports whether Time came from the line.
	Timed bool
	// Rule is the index in Rules of the failregex or kind of line that matched.
	Rule int
}

// Result says what a filter made of a line.
type Result uint8

// The outcomes of Filter.Match.
const (
	NoMatch   Result = iota // no failure (or the capture was not an address)
	Ignored                 // a failure that does not count: an ignoreregex dropped it, or the format says the fault was the server's
	Matched                 // a failure
	Succeeded               // a login that worked (only with Options.Successes); its Time is the time read (see LineTime)
)

// New builds a filter from its definition: its failregex or its parser, and its
// ignoreregex. The error names the offending expression by its index.
func New(name string, d Definition, opts Options) (*Filter, error) {
	f := &Filter{name: name}
	switch {
	case d.Parser != "" && len(d.FailRegex) > 0:
		return nil, fmt.Errorf("filter %q: %w", name, ErrParserAndRegex)
	case d.Parser != "":
		fm, ok := formats[d.Parser]
		if !ok {
			return nil, &UnknownParserError{Filter: name, Parser: d.Parser}
		}
		f.read, f.rules, f.account, f.device, f.lineTime = fm.reader(opts), fm.kinds, fm.account, fm.device, fm.time
		f.literal = []byte(skipLiteral([][]string{{fm.literal}}))
		if fm.success != nil && opts.Successes {
			f.readSuccess, f.successLit = fm.success(opts), []byte(fm.successLiteral)
		}
		if len(d.SuccessRegex) > 0 {
			return nil, fmt.Errorf("filter %q: %w", name, ErrParserAndSuccess)
		}
	case len(d.FailRegex) == 0:
		return nil, fmt.Errorf("filter %q: %w", name, ErrNoFailRegex)
	default:
		lits := make([][]string, len(d.FailRegex))
		for i, src := range d.FailRegex {
			p, err := compilePattern(src)
			if err != nil {
				return nil, &PatternError{Filter: name, Field: "failregex", Index: i, Source: src, Err: err}
			}
			f.fail = append(f.fail, p)
			f.rules = append(f.rules, src)
			for _, l := range p.literals {
				lits[i] = append(lits[i], string(l))
			}
		}
		if l := skipLiteral(lits); l != "" {
			f.literal = []byte(l)
		}
	}
	if err := f.compileSuccess(d.SuccessRegex, opts); err != nil {
		return nil, err
	}
	for i, src := range d.IgnoreRegex {
		re, err := compileIgnore(src)
		if err != nil {
			return nil, &PatternError{Filter: name, Field: "ignoreregex", Index: i, Source: src, Err: err}
		}
		f.ignore = append(f.ignore, re)
	}
	f.setNeedles()
	return f, nil
}

// Errors of filter definitions.
var (
	ErrNoFailRegex      = errors.New("no failregex (or parser)")
	ErrParserAndRegex   = errors.New("parser and failregex both set: a filter is one or the other")
	ErrParserAndSuccess = errors.New("parser and successregex both set: a parser reads the logins that worked itself")
	ErrNoUser           = errors.New("successregex has no <USER>: a login that worked is trusted for its account only")
)

// compileSuccess compiles the successregex patterns, each with <HOST> and <USER>; they
// are kept only if opts asks for successes.
func (f *Filter) compileSuccess(srcs []string, opts Options) error {
	var lits [][]string
	var pats []*pattern
	for i, src := range srcs {
		p, err := compilePattern(src)
		if err == nil && len(p.users) == 0 {
			err = ErrNoUser
		}
		if err != nil {
			return &PatternError{Filter: f.name, Field: "successregex", Index: i, Source: src, Err: err}
		}
		pats = append(pats, p)
		var l []string
		for _, b := range p.literals {
			l = append(l, string(b))
		}
		lits = append(lits, l)
	}
	if !opts.Successes || len(pats) == 0 {
		return nil
	}
	f.success = pats
	if l := skipLiteral(lits); l != "" {
		f.successLit = []byte(l)
	}
	f.successes = true
	return nil
}

// UnknownParserError reports a parser key that names no format.
type UnknownParserError struct {
	Filter, Parser string
}

// Error names the parser and the parsers there are.
func (e *UnknownParserError) Error() string {
	return fmt.Sprintf("filter %q: unknown parser %q; valid: %s", e.Filter, e.Parser, strings.Join(FormatNames(), ", "))
}

// PatternError reports a failregex or ignoreregex that does not compile.
type PatternError struct {
	Filter string
	Field  string // "failregex" or "ignoreregex"
	Index  int
	Source string
	Err    error
}

// Error names the pattern and what is wrong with it.
func (e *PatternError) Error() string {
	return fmt.Sprintf("filter %q: %s[%d] %q: %v", e.Filter, e.Field, e.Index, e.Source, e.Err)
}

// Unwrap returns the regexp's error.
func (e *PatternError) Unwrap() error { return e.Err }

// Name returns the filter's name.
func (f *Filter) Name() string { return f.name }

// Rules returns what counts a line as a failure, in the order Match.Rule indexes: the
// failregex sources, or the kinds of line a format counts.
func (f *Filter) Rules() []string { return f.rules }

// Literal returns the text every failure holds and Match looks for first, the one
// bytes.Index rules out fastest, or "" if there is none (each failregex then still checks
// its own literals).
func (f *Filter) Literal() string { return string(f.literal) }

// Next returns the index in data of the first occurrence of the text every match holds
// (see Literal), or -1 if there is none: no line of data can match. With no such text it
// returns 0: any line may. A filter reading successes looks for their text too.
func (f *Filter) Next(data []byte) int {
	if f.literal == nil {
		return 0
	}
	i := bytes.Index(data, f.literal)
	if !f.readsSuccesses() {
		return i
	}
	if f.successLit == nil {
		return 0
	}
	j := bytes.Index(data, f.successLit)
	switch {
	case i < 0:
		return j
	case j < 0:
		return i
	}
	return min(i, j)
}

// Needles returns the texts one of which every line the filter judges holds: its
// literal, and the logins' text when it reads them. None means any line may match.
// watcher.Batch.SearchAny finds the lines holding them, each searched once a batch.
func (f *Filter) Needles() [][]byte { return f.needles }

// setNeedles sets what Needles returns, once the filter is built.
func (f *Filter) setNeedles() {
	switch {
	case f.literal == nil:
	case !f.readsSuccesses():
		f.needles = [][]byte{f.literal}
	case f.successLit != nil:
		f.needles = [][]byte{f.literal, f.successLit}
	}
}

// readsSuccesses reports whether the filter reads the logins that worked.
func (f *Filter) readsSuccesses() bool { return f.readSuccess != nil || f.successes }

// SetLocation sets the time zone for timestamps that carry none (syslog, log4j). The
// default is time.Local.
func (f *Filter) SetLocation(loc *time.Location) { f.times.Location = loc }

// Match looks for a failure in line. now is the time the line was read; it stands in for a
// missing timestamp and decides the year of syslog timestamps. Lines without the filter's
// literal return at the cost of one bytes.Index and allocate nothing.
//
// With Options.Successes, a line that is no failure may be a login that worked: it is
// returned as Succeeded, with its address and account.
func (f *Filter) Match(line []byte, now time.Time) (Match, Result) {
	if f.literal != nil && !bytes.Contains(line, f.literal) {
		return f.matchSuccess(line, now)
	}
	addr, user, device, rule, r := f.find(line)
	if r == NoMatch {
		return f.matchSuccess(line, now)
	}
	if r != Matched {
		return Match{}, r
	}
	for _, ig := range f.ignore {
		if ig.Match(line) {
			return Match{}, Ignored
		}
	}
	m := Match{Addr: addr, Account: user, Device: device, Time: now, Rule: rule}
	m.Time, m.Timed = f.LineTime(line, now)
	return m, Matched
}

// matchSuccess judges a line that is no failure as a login that worked, if the filter
// reads those.
func (f *Filter) matchSuccess(line []byte, now time.Time) (Match, Result) {
	if !f.readsSuccesses() || f.successLit != nil && !bytes.Contains(line, f.successLit) {
		return Match{}, NoMatch
	}
	var addr netip.Addr
	var user []byte
	ok := false
	if f.readSuccess != nil {
		addr, user, ok = f.readSuccess(line)
	}
	for _, p := range f.success {
		if addr, user, _, ok = p.match(line); ok && len(user) > 0 {
			break
		}
	}
	if !ok || len(user) == 0 {
		return Match{}, NoMatch
	}
	// The time is read only when asked (LineTime): a login of a pair trusted already
	// needs none, and logins are as common as the mail users send.
	return Match{Addr: addr, Account: user, Time: now}, Succeeded
}

// LineTime returns the time written in line, or now if it carries none; timed says
// which.
func (f *Filter) LineTime(line []byte, now time.Time) (t time.Time, timed bool) {
	if f.lineTime != nil {
		if t, ok := f.lineTime(line); ok {
			return t, true
		}
		return now, false
	}
	if t, ok := f.times.Parse(line, now); ok {
		return t, true
	}
	return now, false
}

// find runs the format, or the failregexes in order until one matches: the address,
// the account and the device the line names, and the rule that matched.
func (f *Filter) find(line []byte) (netip.Addr, []byte, []byte, int, Result) {
	if f.read != nil {
		addr, kind, r := f.read(line)
		var user, device []byte
		if r == Matched && f.account != nil {
			user = f.account(line)
		}
		if r == Matched && f.device != nil {
			device = f.device(line)
		}
		return addr, user, device, kind, r
	}
	for i, p := range f.fail {
		if addr, user, device, ok := p.match(line); ok {
			return addr, user, device, i, Matched
		}
	}
	return netip.Addr{}, nil, nil, 0, NoMatch
}
