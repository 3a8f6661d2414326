package filters

import (
	"bytes"
	"net/netip"
)

// dosAlertLiteral is in every line dosFilter counts ("DOS ALERT:" and Jetty 9.4.55's
// "DoS ALERT:").
const dosAlertLiteral = "ALERT:"

// The kinds of alert dosFilter counts, in the order of their kind index.
var dosAlertKinds = []string{
	"DOS ALERT: Request rejected ip=ADDR, ...",
	"DOS ALERT: Request delayed=Nms, ip=ADDR, ...",
	"DOS ALERT: Request throttled ip=ADDR, ...",
	"DOS ALERT: ip=ADDR,... (Jetty 7)",
}

// dosFilter reads the alerts of Jetty's DoSFilter, which Zimbra and Carbonio run in
// mailboxd, as Jetty writes them to zmmailboxd.out (StdErrLog, and Jetty 10's slf4j
// appender) or log4j writes them to mailbox.log:
//
//	2013-01-15 15:57:32.537:WARN:oejs.DoSFilter:DOS ALERT:ip=203.0.113.31,session=null,user=null
//	2021-03-31 10:01:51.917:WARN:oejs.DoSFilter:qtp1-190:https://HOST/service/soap/X: DOS ALERT: Request rejected ip=203.0.113.33, session=null, user=null
//	2024-06-01 09:00:00.001:WARN :oejs.DoSFilter:qtp1-5: DoS ALERT: Request rejected ip=[2001:db8::1], overlimit=..., user=null
//	2026-03-05 16:00:00,001 WARN  [qtp1-91] [] DoSFilter - DOS ALERT: Request throttled ip=203.0.113.37, session=null, user=null
//
// Jetty writes the alert's ip= from the connection. Around it the client writes: the
// thread name (the request's URL and Host header, before the alert), the session id it
// sent (session=, which may hold spaces, commas and a whole copy of an alert), the user
// and overlimit fields (after it). So the alert is read where Jetty begins the message,
// right after the thread name, and ip= right after the alert's kind: never the last alert
// on the line, never one inside a field. Jetty escapes control characters in the message,
// so no field can start a line of its own.
func dosFilter(line []byte) (netip.Addr, int, Result) {
	var msg []byte
	var ok bool
	if len(line) > 19 && line[19] == ',' { // log4j: 2026-03-05 16:00:00,001
		var z zimbraLine
		z, ok = readZimbraLine(line)
		msg = z.message
	} else {
		msg, ok = jettyMessage(line)
	}
	if !ok {
		return netip.Addr{}, 0, NoMatch
	}
	addr, kind, ok := dosAlert(msg)
	if !ok {
		return netip.Addr{}, 0, NoMatch
	}
	return addr, kind, Matched
}

// jettyMessage returns the message of a line Jetty's StdErrLog (Jetty 7 to 9) or its
// slf4j StdErrAppender (Jetty 10 and later) wrote for the DoSFilter's logger:
//
//	TIMESTAMP:LEVEL:LOGGER:MESSAGE              Jetty 7 and 8
//	TIMESTAMP:LEVEL:LOGGER:THREAD: MESSAGE      Jetty 9 and later; LEVEL may be padded
//	                                            ("WARN "), and spaces may align THREAD
//	                                            or MESSAGE
//
// THREAD runs to the first white space, which thread names do not hold, and must end
// with ":" (see readZimbraLine on thread names that carry a URL).
func jettyMessage(line []byte) ([]byte, bool) {
	i, ok := shape(line, "dddd-dd-dd dd:dd:dd.ddd:")
	if !ok {
		return nil, false
	}
	if i, ok = run(line, i, isUpper); !ok {
		return nil, false
	}
	i, _ = run(line, i, func(c byte) bool { return c == ' ' })
	if i >= len(line) || line[i] != ':' {
		return nil, false
	}
	// LOGGER: oejs.DoSFilter, org.eclipse.jetty.ee10.servlets.DoSFilter, ...
	end, ok := run(line, i+1, isWord)
	if !ok || end >= len(line) || line[end] != ':' || !bytes.HasSuffix(line[i+1:end], []byte("DoSFilter")) {
		return nil, false
	}
	rest := bytes.TrimLeft(line[end+1:], " ")
	if isAlert(rest) { // Jetty 7 and 8: no thread name
		return rest, true
	}
	t := nextSpace(rest)
	if t < 2 || rest[t-1] != ':' || !threadNamed(rest[:t-1]) {
		return nil, false
	}
	return bytes.TrimLeft(rest[t:], " "), true
}

// isAlert reports whether msg begins with DoSFilter's alert.
func isAlert(msg []byte) bool {
	return bytes.HasPrefix(msg, []byte("DOS ALERT:")) || bytes.HasPrefix(msg, []byte("DoS ALERT:"))
}

// dosAlert reads an alert at the start of msg, every form Jetty has written:
//
//	DOS ALERT: ip=ADDR,session=...                                  Jetty 7
//	DOS ALERT: Request rejected ip=ADDR,session=...                 Jetty 7.6 and 8
//	DOS ALERT: Request throttled ip=ADDR,session=...
//	DOS ALERT: Request delayed=100ms ip=ADDR,session=...
//	DOS ALERT: Request rejected ip=ADDR, session=..., user=...      Jetty 9
//	DOS ALERT: Request delayed=20ms, ip=ADDR, session=..., user=...
//	DOS ALERT: Request rejected ip=ADDR, overlimit=..., session=...  Jetty 9.4 and later
//	DoS ALERT: Request rejected ip=ADDR, overlimit=..., user=...
//
// ADDR runs to the "," Jetty writes after it; Jetty 9.4 and later put an IPv6 address in
// brackets.
func dosAlert(msg []byte) (netip.Addr, int, bool) {
	if !isAlert(msg) {
		return netip.Addr{}, 0, false
	}
	rest := bytes.TrimPrefix(msg[len("DOS ALERT:"):], []byte(" "))
	kind := 3
	if r, ok := bytes.CutPrefix(rest, []byte("Request ")); ok {
		switch {
		case bytes.HasPrefix(r, []byte("rejected ")):
			kind, rest = 0, r[len("rejected "):]
		case bytes.HasPrefix(r, []byte("throttled ")):
			kind, rest = 2, r[len("throttled "):]
		case bytes.HasPrefix(r, []byte("delayed=")):
			k, ok := run(r, len("delayed="), isDigit)
			if !ok {
				return netip.Addr{}, 0, false
			}
			if r, ok = bytes.CutPrefix(r[k:], []byte("ms")); !ok {
				return netip.Addr{}, 0, false
			}
			kind, rest = 1, bytes.TrimPrefix(bytes.TrimPrefix(r, []byte(",")), []byte(" "))
		default:
			return netip.Addr{}, 0, false
		}
	}
	rest, ok := bytes.CutPrefix(rest, []byte("ip="))
	if !ok {
		return netip.Addr{}, 0, false
	}
	ip, _, ok := field(rest, ',')
	if !ok {
		return netip.Addr{}, 0, false
	}
	addr, ok := parseBracketed(ip)
	return addr, kind, ok
}
