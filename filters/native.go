package filters

import (
	"bytes"
	"net/netip"
)

// A native matcher does, in straight-line code, exactly what one failregex does: the same
// lines, the same address. It stands in for the regexp only where the failregex's source
// is, to the byte, the one it was written for (a built-in's, or a copy of it); any other
// source, or any edit, is run by the regexp. nativeMatchers' tests hold each to its
// regexp on the samples and on generated and fuzzed lines.
//
// They exist for the lines Go's regexp is slowest on: a Zimbra audit line is 300 bytes
// the backtracker walks at about 25 ns a byte, 8-10 µs a line, where this takes well under
// one.
type nativeMatcher func(line []byte) (netip.Addr, bool)

// nativeMatchers maps a failregex source to its native matcher.
var nativeMatchers = map[string]nativeMatcher{
	mailboxAuthOIP: func(line []byte) (netip.Addr, bool) { return zimbraAudit(line, oipContext) },
	mailboxAuthIP:  func(line []byte) (netip.Addr, bool) { return zimbraAudit(line, ipContext) },
	submissionSASL: func(line []byte) (netip.Addr, bool) { return postfixSASL(line, "postfix/submission/smtpd[") },
	smtpSASL: func(line []byte) (netip.Addr, bool) {
		return postfixSASL(line, "postfix/smtpd[", "postfix/smtps/smtpd[")
	},
}

// The failregex sources of the built-in zimbra-mailbox-auth filter, as its TOML writes them.
const (
	mailboxAuthOIP = `^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} +[A-Z]+ +\[\S*\] \[(?:(?:name|aname|mid|ip|port)=[^;\]]*;)*oip=<HOST>;[^\]]*\] (?:security - cmd=(?:Auth|AdminAuth); .*error=|SoapEngine - handler exception: |(?:imap|pop) - )authentication failed for \[`
	mailboxAuthIP  = `^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} +[A-Z]+ +\[\S*\] \[(?:(?:name|aname|mid)=[^;\]]*;)*ip=<HOST>;(?:(?:port|via|soapId|cid|ds|dsname|DeviceID|DeviceType|Cmd|Version)=[^;\]]*;)*(?:ua=[^\]]*;)?\] (?:security - cmd=(?:Auth|AdminAuth); .*error=|SoapEngine - handler exception: |(?:imap|pop) - )authentication failed for \[`
)

// The failregex sources of the built-in zimbra-submission and zimbra-smtp-auth filters.
const (
	submissionSASL = `^(?:[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:\d\d)) \S+ postfix/submission/smtpd\[\d+\]: warning: [-._0-9A-Za-z]+\[<HOST>\](?::\d+)?: SASL [-0-9A-Z]+ authentication failed`
	smtpSASL       = `^(?:[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:\d\d)) \S+ postfix/(?:smtps/)?smtpd\[\d+\]: warning: [-._0-9A-Za-z]+\[<HOST>\](?::\d+)?: SASL [-0-9A-Z]+ authentication failed`
)

// postfixSASL matches a syslog line `TIMESTAMP HOST PROGRAM[PID]: warning:
// CLIENT[ADDR](:PORT)?: SASL MECHANISM authentication failed` whose program is one of
// programs (each given with its "["), and returns ADDR.
func postfixSASL(line []byte, programs ...string) (netip.Addr, bool) {
	i, ok := syslogStamp(line)
	if !ok || i >= len(line) || line[i] != ' ' {
		return netip.Addr{}, false
	}
	// \S+ : the host runs to the first white space, which must be the " " before the program
	h := i + 1
	for h < len(line) && !isSpace(line[h]) {
		h++
	}
	if h == i+1 || h >= len(line) || line[h] != ' ' {
		return netip.Addr{}, false
	}
	rest := line[h+1:]
	matched := false
	for _, p := range programs {
		if r, ok := bytes.CutPrefix(rest, []byte(p)); ok {
			rest, matched = r, true
			break
		}
	}
	if !matched {
		return netip.Addr{}, false
	}
	k, ok := run(rest, 0, isDigit)
	if !ok {
		return netip.Addr{}, false
	}
	if rest, ok = bytes.CutPrefix(rest[k:], []byte("]: warning: ")); !ok {
		return netip.Addr{}, false
	}
	// the client name's characters hold no "[": it runs to the first
	k, ok = run(rest, 0, func(c byte) bool {
		return c == '-' || c == '.' || c == '_' || isDigit(c) || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z'
	})
	if !ok || k >= len(rest) || rest[k] != '[' {
		return netip.Addr{}, false
	}
	rest = rest[k+1:]
	// <HOST>'s characters hold no "]": it runs to the first
	end := bytes.IndexByte(rest, ']')
	if end <= 0 || !hostChars(rest[:end]) {
		return netip.Addr{}, false
	}
	host := rest[:end]
	rest = rest[end+1:]
	if r, ok := bytes.CutPrefix(rest, []byte(":")); ok && len(r) > 0 && isDigit(r[0]) { // (?::\d+)?
		k, _ := run(r, 0, isDigit)
		rest = r[k:]
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(": SASL ")); !ok {
		return netip.Addr{}, false
	}
	k, ok = run(rest, 0, func(c byte) bool { return c == '-' || isDigit(c) || 'A' <= c && c <= 'Z' })
	if !ok || !bytes.HasPrefix(rest[k:], []byte(" authentication failed")) {
		return netip.Addr{}, false
	}
	return ParseAddr(host)
}

// syslogStamp matches `[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d` or
// `\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:\d\d)` at the start of b and returns the index
// after it.
func syslogStamp(b []byte) (int, bool) {
	if len(b) > 0 && 'A' <= b[0] && b[0] <= 'Z' {
		return pattern(b, "Aaa _d dd:dd:dd")
	}
	i, ok := pattern(b, "dddd-dd-ddT")
	if !ok {
		return 0, false
	}
	// [0-9:.]+ runs to the first other byte, which must begin the zone
	i, ok = run(b, i, func(c byte) bool { return isDigit(c) || c == ':' || c == '.' })
	if !ok || i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case 'Z':
		return i + 1, true
	case '+', '-':
		n, ok := pattern(b[i+1:], "dd:dd")
		return i + 1 + n, ok
	}
	return 0, false
}

// pattern matches a fixed-width shape at the start of b: in shape, d is a digit, A an
// upper-case letter, a a lower-case one, _ a space or a digit; any other byte stands for
// itself. It returns the shape's length.
func pattern(b []byte, shape string) (int, bool) {
	if len(b) < len(shape) {
		return 0, false
	}
	for k := range len(shape) {
		c := b[k]
		var ok bool
		switch shape[k] {
		case 'd':
			ok = isDigit(c)
		case 'A':
			ok = 'A' <= c && c <= 'Z'
		case 'a':
			ok = 'a' <= c && c <= 'z'
		case '_':
			ok = c == ' ' || isDigit(c)
		default:
			ok = c == shape[k]
		}
		if !ok {
			return 0, false
		}
	}
	return len(shape), true
}

// hostChars reports whether b holds only the characters <HOST> may: hex digits, ":"
// and ".". What the regexp would check of their order, ParseAddr checks after, and more
// strictly.
func hostChars(b []byte) bool {
	for _, c := range b {
		if !isDigit(c) && !('a' <= c && c <= 'f') && !('A' <= c && c <= 'F') && c != ':' && c != '.' {
			return false
		}
	}
	return true
}

// zimbraAudit matches a mailbox.log line, `TIMESTAMP LEVEL [THREAD] [CONTEXT] MESSAGE`,
// whose context yields the client's address by context and whose message is a failed
// login. It returns that address.
func zimbraAudit(line []byte, context func(ctx []byte) (host []byte, end int, ok bool)) (netip.Addr, bool) {
	i, ok := auditPrefix(line)
	if !ok {
		return netip.Addr{}, false
	}
	host, end, ok := context(line[i:])
	if !ok {
		return netip.Addr{}, false
	}
	if !failedLogin(line[i+end:]) {
		return netip.Addr{}, false
	}
	return ParseAddr(host)
}

// auditPrefix matches `^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} +[A-Z]+ +\[\S*\] \[` and
// returns the index after it. The thread name holds no white space, so it ends where the
// first white space after its "[" is, which must be the " " of "] [".
func auditPrefix(b []byte) (int, bool) {
	i, ok := pattern(b, "dddd-dd-dd dd:dd:dd,ddd")
	if !ok {
		return 0, false
	}
	i, ok = run(b, i, func(c byte) bool { return c == ' ' })
	if !ok {
		return 0, false
	}
	if i, ok = run(b, i, func(c byte) bool { return 'A' <= c && c <= 'Z' }); !ok {
		return 0, false
	}
	if i, ok = run(b, i, func(c byte) bool { return c == ' ' }); !ok {
		return 0, false
	}
	if i >= len(b) || b[i] != '[' {
		return 0, false
	}
	sp := i + 1
	for sp < len(b) && !isSpace(b[sp]) {
		sp++
	}
	// "]" at sp-1, after the "[", then " [" at sp
	if sp-1 <= i || b[sp-1] != ']' || sp+1 >= len(b) || b[sp] != ' ' || b[sp+1] != '[' {
		return 0, false
	}
	return sp + 2, true
}

// oipContext matches `(?:(?:name|aname|mid|ip|port)=[^;\]]*;)*oip=<HOST>;[^\]]*\] ` at
// the start of ctx: fields the server writes before oip, oip itself, then anything up
// to the context's "]". It returns oip's value and the index after the "] ".
func oipContext(ctx []byte) ([]byte, int, bool) {
	i := 0
	for !bytes.HasPrefix(ctx[i:], []byte("oip=")) {
		next, ok := field(ctx, i, "name", "aname", "mid", "ip", "port")
		if !ok {
			return nil, 0, false
		}
		i = next
	}
	host, i, ok := hostField(ctx, i+len("oip="))
	if !ok {
		return nil, 0, false
	}
	end := bytes.IndexByte(ctx[i:], ']')
	if end < 0 || i+end+1 >= len(ctx) || ctx[i+end+1] != ' ' {
		return nil, 0, false
	}
	return host, i + end + 2, true
}

// ipContext matches `(?:(?:name|aname|mid)=[^;\]]*;)*ip=<HOST>;(?:(?:port|via|soapId|cid|
// ds|dsname|DeviceID|DeviceType|Cmd|Version)=[^;\]]*;)*(?:ua=[^\]]*;)?\] ` at the start
// of ctx: ip, and after it only fields that are never oip, or the user agent to the
// context's end. It returns ip's value and the index after the "] ".
func ipContext(ctx []byte) ([]byte, int, bool) {
	i := 0
	for !bytes.HasPrefix(ctx[i:], []byte("ip=")) {
		next, ok := field(ctx, i, "name", "aname", "mid")
		if !ok {
			return nil, 0, false
		}
		i = next
	}
	host, i, ok := hostField(ctx, i+len("ip="))
	if !ok {
		return nil, 0, false
	}
	for {
		next, ok := field(ctx, i, "port", "via", "soapId", "cid", "ds", "dsname", "DeviceID", "DeviceType", "Cmd", "Version")
		if !ok {
			break
		}
		i = next
	}
	if bytes.HasPrefix(ctx[i:], []byte("ua=")) {
		// the user agent runs to the context's first "]", and ends with ";"
		end := bytes.IndexByte(ctx[i:], ']')
		if end < len("ua=")+1 || ctx[i+end-1] != ';' {
			return nil, 0, false
		}
		i += end
	}
	if i+1 >= len(ctx) || ctx[i] != ']' || ctx[i+1] != ' ' {
		return nil, 0, false
	}
	return host, i + 2, true
}

// field matches `KEY=[^;\]]*;` at ctx[i:] for one of keys, and returns the index after it.
func field(ctx []byte, i int, keys ...string) (int, bool) {
	for _, k := range keys {
		rest := ctx[i:]
		if len(rest) <= len(k) || string(rest[:len(k)]) != k || rest[len(k)] != '=' {
			continue
		}
		end := bytes.IndexAny(rest[len(k)+1:], ";]")
		if end < 0 || rest[len(k)+1+end] != ';' {
			return 0, false
		}
		return i + len(k) + 1 + end + 1, true
	}
	return 0, false
}

// hostField matches `<HOST>;` at ctx[i:] and returns the host and the index after the
// ";". <HOST>'s characters hold no ";", so the host runs to the first.
func hostField(ctx []byte, i int) ([]byte, int, bool) {
	end := bytes.IndexByte(ctx[i:], ';')
	if end <= 0 {
		return nil, 0, false
	}
	host := ctx[i : i+end]
	if !hostChars(host) {
		return nil, 0, false
	}
	return host, i + end + 1, true
}

// failedLogin matches `(?:security - cmd=(?:Auth|AdminAuth); .*error=|SoapEngine - handler
// exception: |(?:imap|pop) - )authentication failed for \[` at the start of msg.
func failedLogin(msg []byte) bool {
	const failed = "authentication failed for ["
	for _, prefix := range []string{"SoapEngine - handler exception: ", "imap - ", "pop - "} {
		if rest, ok := bytes.CutPrefix(msg, []byte(prefix)); ok {
			return bytes.HasPrefix(rest, []byte(failed))
		}
	}
	for _, prefix := range []string{"security - cmd=Auth; ", "security - cmd=AdminAuth; "} {
		if rest, ok := bytes.CutPrefix(msg, []byte(prefix)); ok {
			// .* reaches any later "error=authentication failed for [" on the line
			j := bytes.Index(rest, []byte("error="+failed))
			return j >= 0 && bytes.IndexByte(rest[:j], '\n') < 0
		}
	}
	return false
}

// run matches one or more bytes of class at b[i:] and returns the index after them.
func run(b []byte, i int, class func(byte) bool) (int, bool) {
	j := i
	for j < len(b) && class(b[j]) {
		j++
	}
	return j, j > i
}

// isSpace is Go regexp's \s: [\t\n\f\r ].
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r' }
