package filters

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"strings"
)

// hostPattern is what <HOST> expands to: an IPv4 literal, or anything shaped like an IPv6
// literal (including Java's uncompressed 0:0:0:0:0:0:0:1, IPv4-mapped ::ffff:a.b.c.d, and
// a link-local address's zone, fe80::1%eth0, which is dropped). The capture is validated
// by netip.ParseAddr, so the pattern may be loose but never lets a hostname through. The
// form with an IPv4 tail comes first: where the text after <HOST> may be anything, the
// first form that fits is taken, and ::ffff:1.2.3.4 must not be read as ::ffff:1.
const hostPattern = `(?:\d{1,3}(?:\.\d{1,3}){3}|(?:[0-9A-Fa-f:]*:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:]*)(?:%[-.\w]+)?)`

// hostTag is the placeholder a failregex uses for the failing client's address.
const hostTag = "<HOST>"

// userTag is the placeholder for the account a line names (fail2ban's <F-USER>), and
// userPattern what it matches: a run of text up to white space or a delimiter a log
// line puts around a name, so that it never takes in the fields after it.
const (
	userTag     = "<USER>"
	userPattern = `[^\s,;\[\]<>()"']+`
)

// deviceTag is the placeholder for the device a line names (an ActiveSync DeviceId),
// and devicePattern what it matches: letters, digits, '-', '_', '.' and ':', at most
// maxDeviceLen of them (a longer capture is no device).
const (
	deviceTag     = "<DEVICE>"
	devicePattern = `[-\w.:]+`
)

// ErrNoHost reports a failregex without a <HOST> placeholder.
var ErrNoHost = errors.New("failregex has no <HOST>")

// pattern is one compiled failregex or successregex.
type pattern struct {
	re       *regexp.Regexp
	hosts    []int    // indexes of the host groups, in order
	users    []int    // indexes of the user groups, in order
	devices  []int    // indexes of the device groups, in order
	literals [][]byte // texts every match contains, longest first
}

// compilePattern compiles a failregex: <HOST> is replaced by an address group and the result
// compiled with Go's regexp (RE2 syntax: no backreferences, linear time on any input).
func compilePattern(source string) (*pattern, error) {
	if !strings.Contains(source, hostTag) {
		return nil, ErrNoHost
	}
	n := 0
	expanded := replaceTag(source, hostTag, func() string {
		n++
		return fmt.Sprintf("(?P<host%d>%s)", n, hostPattern)
	})
	u := 0
	expanded = replaceTag(expanded, userTag, func() string {
		u++
		return fmt.Sprintf("(?P<user%d>%s)", u, userPattern)
	})
	d := 0
	expanded = replaceTag(expanded, deviceTag, func() string {
		d++
		return fmt.Sprintf("(?P<device%d>%s)", d, devicePattern)
	})
	re, err := regexp.Compile(expanded)
	if err != nil {
		return nil, readable(err)
	}
	p := &pattern{re: re}
	for i := 1; i <= d; i++ {
		p.devices = append(p.devices, re.SubexpIndex(fmt.Sprintf("device%d", i)))
	}
	for i := 1; i <= n; i++ {
		p.hosts = append(p.hosts, re.SubexpIndex(fmt.Sprintf("host%d", i)))
	}
	for i := 1; i <= u; i++ {
		p.users = append(p.users, re.SubexpIndex(fmt.Sprintf("user%d", i)))
	}
	for _, lit := range requiredLiterals(re.String()) {
		p.literals = append(p.literals, []byte(lit))
	}
	return p, nil
}

// compileIgnore compiles an ignoreregex. <HOST>, <USER> and <DEVICE> are allowed and
// expand as in a failregex.
func compileIgnore(source string) (*regexp.Regexp, error) {
	source = replaceTag(source, userTag, func() string { return "(?:" + userPattern + ")" })
	source = replaceTag(source, deviceTag, func() string { return "(?:" + devicePattern + ")" })
	re, err := regexp.Compile(replaceTag(source, hostTag, func() string {
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

// replaceTag replaces each tag in source with what group returns.
func replaceTag(source, tag string, group func() string) string {
	var b strings.Builder
	for {
		i := strings.Index(source, tag)
		if i < 0 {
			b.WriteString(source)
			return b.String()
		}
		b.WriteString(source[:i])
		b.WriteString(group())
		source = source[i+len(tag):]
	}
}

// match returns the address captured by the pattern in line, and the account and the
// device if the pattern has a <USER> or <DEVICE> that took part (a device longer than
// maxDeviceLen is none). ok is false when the pattern does not match or the capture is
// not an IP address.
func (p *pattern) match(line []byte) (addr netip.Addr, user, device []byte, ok bool) {
	for _, lit := range p.literals {
		if !bytes.Contains(line, lit) {
			return netip.Addr{}, nil, nil, false
		}
	}
	m := p.re.FindSubmatchIndex(line) // allocates only when it matches
	if m == nil {
		return netip.Addr{}, nil, nil, false
	}
	user = firstGroup(line, m, p.users)
	if device = firstGroup(line, m, p.devices); len(device) > maxDeviceLen {
		device = nil
	}
	for _, g := range p.hosts {
		if m[2*g] < 0 {
			continue
		}
		addr, ok = ParseAddr(line[m[2*g]:m[2*g+1]])
		return addr, user, device, ok
	}
	return netip.Addr{}, nil, nil, false
}

// firstGroup returns the text of the first of groups that took part in the match m.
func firstGroup(line []byte, m []int, groups []int) []byte {
	for _, g := range groups {
		if m[2*g] >= 0 {
			return line[m[2*g]:m[2*g+1]]
		}
	}
	return nil
}
