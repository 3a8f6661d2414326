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
}

// The failregex sources of the built-in zimbra-mailbox-auth filter, as its TOML writes them.
const (
	mailboxAuthOIP = `^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} +[A-Z]+ +\[\S*\] \[(?:(?:name|aname|mid|ip|port)=[^;\]]*;)*oip=<HOST>;[^\]]*\] (?:security - cmd=(?:Auth|AdminAuth); .*error=|SoapEngine - handler exception: |(?:imap|pop) - )authentication failed for \[`
	mailboxAuthIP  = `^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} +[A-Z]+ +\[\S*\] \[(?:(?:name|aname|mid)=[^;\]]*;)*ip=<HOST>;(?:(?:port|via|soapId|cid|ds|dsname|DeviceID|DeviceType|Cmd|Version)=[^;\]]*;)*(?:ua=[^\]]*;)?\] (?:security - cmd=(?:Auth|AdminAuth); .*error=|SoapEngine - handler exception: |(?:imap|pop) - )authentication failed for \[`
)

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
	const stamp = "dddd-dd-dd dd:dd:dd,ddd"
	if len(b) < len(stamp) {
		return 0, false
	}
	for k := range len(stamp) {
		if stamp[k] == 'd' && !isDigit(b[k]) || stamp[k] != 'd' && b[k] != stamp[k] {
			return 0, false
		}
	}
	i := len(stamp)
	i, ok := run(b, i, func(c byte) bool { return c == ' ' })
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
	for {
		if bytes.HasPrefix(ctx[i:], []byte("oip=")) {
			break
		}
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
// ";". <HOST>'s characters hold no ";", so the host runs to the first; what the regexp
// would then check of its shape, ParseAddr checks after, and more strictly.
func hostField(ctx []byte, i int) ([]byte, int, bool) {
	end := bytes.IndexByte(ctx[i:], ';')
	if end <= 0 {
		return nil, 0, false
	}
	host := ctx[i : i+end]
	for _, c := range host {
		if !isDigit(c) && !('a' <= c && c <= 'f') && !('A' <= c && c <= 'F') && c != ':' && c != '.' {
			return nil, 0, false
		}
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
