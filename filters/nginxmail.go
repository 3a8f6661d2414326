package filters

import (
	"bytes"
	"net/netip"
)

// proxyAuthLiteral is in every line proxyAuth counts.
const proxyAuthLiteral = "An error occurred in mail zmauth: "

// The kinds of line proxyAuth counts, in the order of their kind index.
var proxyAuthKinds = []string{
	"An error occurred in mail zmauth: user not found:NAME ..., client: ADDR:PORT, server: ..., login: \"NAME\"",
	"An error occurred in mail zmauth: Error occurred during authentication: account not found for [NAME]. oip=ADDR ..., client: ADDR:PORT, ...",
}

// proxyAuth reads the logins the Zimbra and Carbonio mail proxy (their nginx) refuses
// because the account does not exist, from its error log (nginx.log):
//
//	2026/03/05 16:01:34 [error] 4321#0: *1234 An error occurred in mail zmauth: user not found:bob@example.com while in auth state, client: 203.0.113.5:51234, server: 0.0.0.0:993, login: "bob"
//
// Zimbra's nginx (its 1.17-9-zimbra branch) writes it from ngx_mail_zmauth_module.c
// ("An error occurred in mail zmauth: %V", the lookup's Auth-Status) when the nginx
// lookup extension answers "user not found:NAME" (or, with zimbra_additional_logging,
// "Error occurred during authentication: account not found for [NAME]. oip=ADDR"). The
// mail module's log handler (ngx_mail_log_error) appends " while ACTION", ", client:
// ADDR:PORT" from the connection, " using starttls", ", server: ADDR" and ", login:
// \"LOGIN\"". Such a login reaches no other log: mailboxd never sees it.
//
// The client writes NAME, inside the message, and LOGIN, at the end; nginx escapes
// neither, so either may hold a whole copy of ", client: ADDR". Nothing in the line
// marks where the client's text ends, so a line must hold ", client: " exactly once:
// then it is nginx's. A line with more is not counted. A name that holds ", client: " is
// no account anyone has, so a client gains nothing by it but its guess's uselessness.
// A client behind a trusted proxy or load balancer is not named (the connection is the
// balancer's): nothing is counted.
func proxyAuth(opts Options) lineReader {
	trusted := opts.TrustedProxies
	return func(line []byte) (netip.Addr, int, Result) {
		msg, ok := nginxErrorMessage(line)
		if !ok {
			return netip.Addr{}, 0, NoMatch
		}
		rest, ok := bytes.CutPrefix(msg, []byte(proxyAuthLiteral))
		if !ok {
			return netip.Addr{}, 0, NoMatch
		}
		kind := 0
		switch {
		case bytes.HasPrefix(rest, []byte("user not found:")):
		case bytes.HasPrefix(rest, []byte("Error occurred during authentication: account not found for [")):
			kind = 1
		default:
			return netip.Addr{}, 0, NoMatch
		}
		const client = ", client: "
		i := bytes.Index(rest, []byte(client))
		if i < 0 || bytes.Contains(rest[i+len(client):], []byte(client)) {
			return netip.Addr{}, 0, NoMatch
		}
		field := rest[i+len(client):]
		if end := bytes.IndexAny(field, ", "); end >= 0 {
			field = field[:end]
		}
		addr, ok := clientAddrPort(field)
		if !ok || inPrefixes(addr, trusted) {
			return netip.Addr{}, 0, NoMatch
		}
		return addr, kind, Matched
	}
}

// nginxErrorMessage returns the message of an nginx error-log line:
//
//	YYYY/MM/DD HH:MM:SS [LEVEL] PID#TID: *CONNECTION MESSAGE
func nginxErrorMessage(line []byte) ([]byte, bool) {
	i, ok := shape(line, "dddd/dd/dd dd:dd:dd [")
	if !ok {
		return nil, false
	}
	j, ok := run(line, i, func(c byte) bool { return 'a' <= c && c <= 'z' })
	if !ok || !bytes.HasPrefix(line[j:], []byte("] ")) {
		return nil, false
	}
	if j, ok = run(line, j+2, isDigit); !ok || j >= len(line) || line[j] != '#' {
		return nil, false
	}
	if j, ok = run(line, j+1, isDigit); !ok || !bytes.HasPrefix(line[j:], []byte(": ")) {
		return nil, false
	}
	j += 2
	if j < len(line) && line[j] == '*' {
		if j, ok = run(line, j+1, isDigit); !ok || j >= len(line) || line[j] != ' ' {
			return nil, false
		}
		j++
	}
	return line[j:], true
}

// clientAddrPort reads nginx's client field: an address and, where the connection has
// one, ":PORT" (the Zimbra fork always writes it; an IPv6 address stands unbracketed,
// so the port is the last colon's digits).
func clientAddrPort(b []byte) (netip.Addr, bool) {
	if c := bytes.LastIndexByte(b, ':'); c > 0 && c < len(b)-1 && len(b)-c-1 <= 5 {
		if end, ok := run(b, c+1, isDigit); ok && end == len(b) {
			if a, ok := ParseAddr(b[:c]); ok {
				return a, true
			}
		}
	}
	return ParseAddr(b)
}
