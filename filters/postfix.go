package filters

import (
	"bytes"
	"net/netip"
)

// postfixLiteral is in every line postfixSASL counts. Its first byte is rare in log text,
// so a search skips a Postfix line in one jump.
const postfixLiteral = "SASL "

// postfixSASL reads Postfix's report of a failed SASL login, as syslog writes it to
// zimbra.log or carbonio.log:
//
//	TIMESTAMP HOST PROGRAM[PID]: warning: CLIENT[ADDR](:PORT)?: SASL MECHANISM authentication failed(: REASON)?
//
// TIMESTAMP and HOST come from syslog; PROGRAM is Postfix's syslog_name and service
// (postfix/submission/smtpd); CLIENT is "unknown" or the client's verified host name,
// ADDR and PORT the connection's, all written by Postfix. The client chooses MECHANISM
// (its AUTH argument, verbatim, so "login" and "Plain" are as real as "LOGIN") and, since
// Postfix 3.x appends ", sasl_username=NAME" to REASON, the end of the line. So ADDR is
// read at its place right after the program, and REASON only at its place right after
// "authentication failed: ": a server-side REASON ("Connection lost to authentication
// server", "Invalid authentication mechanism") makes the line no client's failure, but no
// text a user name holds can. service says which Postfix services the filter counts.
func postfixSASL(service func([]byte) bool) lineReader {
	return func(line []byte) (netip.Addr, int, Result) {
		i, ok := syslogPrefix(line)
		if !ok {
			return netip.Addr{}, 0, NoMatch
		}
		rest, ok := postfixProgram(line[i:], service)
		if !ok {
			return netip.Addr{}, 0, NoMatch
		}
		if rest, ok = bytes.CutPrefix(rest, []byte("warning: ")); !ok {
			return netip.Addr{}, 0, NoMatch
		}
		// CLIENT holds only what a verified host name may ("unknown" included), and no "["
		k, ok := run(rest, 0, isWord)
		if !ok || k >= len(rest) || rest[k] != '[' {
			return netip.Addr{}, 0, NoMatch
		}
		host, rest, ok := field(rest[k+1:], ']')
		if !ok {
			return netip.Addr{}, 0, NoMatch
		}
		if r, ok := bytes.CutPrefix(rest, []byte(":")); ok && len(r) > 0 && isDigit(r[0]) { // :PORT
			k, _ := run(r, 0, isDigit)
			rest = r[k:]
		}
		if rest, ok = bytes.CutPrefix(rest, []byte(": SASL ")); !ok {
			return netip.Addr{}, 0, NoMatch
		}
		// MECHANISM is the client's word: it runs to the first space, whatever it holds.
		mech := bytes.IndexByte(rest, ' ')
		if mech <= 0 {
			return netip.Addr{}, 0, NoMatch
		}
		if rest, ok = bytes.CutPrefix(rest[mech:], []byte(" authentication failed")); !ok {
			return netip.Addr{}, 0, NoMatch
		}
		if len(rest) > 0 && rest[0] != ':' {
			return netip.Addr{}, 0, NoMatch
		}
		addr, ok := ParseAddr(host)
		if !ok {
			return netip.Addr{}, 0, NoMatch
		}
		if serverFault(bytes.TrimPrefix(rest, []byte(":"))) {
			return netip.Addr{}, 0, Ignored
		}
		return addr, 0, Matched
	}
}

// postfixAccount reads the account a line postfixSASL counted names: what follows
// ", sasl_username=" (Postfix 3.x) after the reason, to the end of the line, or nil. The
// reason is the SASL server's text, so the first such mark is Postfix's.
func postfixAccount(line []byte) []byte {
	_, rest, ok := bytes.Cut(line, []byte(" authentication failed: "))
	if !ok {
		return nil
	}
	if _, user, ok := bytes.Cut(rest, []byte(", sasl_username=")); ok && len(user) > 0 {
		return user
	}
	return nil
}

// postfixSuccessLiteral is in every line postfixLogin reads.
const postfixSuccessLiteral = "sasl_username="

// postfixLogin reads Postfix's record of a login that worked, the first line of the
// message it was for:
//
//	TIMESTAMP HOST PROGRAM[PID]: QUEUEID: client=CLIENT[ADDR](:PORT)?, sasl_method=MECHANISM, sasl_username=NAME(, sasl_sender=...)?
//
// Every field is Postfix's: CLIENT a verified host name, MECHANISM one the server
// offered, NAME an account that authenticated. service says which services count.
func postfixLogin(service func([]byte) bool) successReader {
	return func(line []byte) (netip.Addr, []byte, bool) {
		i, ok := syslogPrefix(line)
		if !ok {
			return netip.Addr{}, nil, false
		}
		rest, ok := postfixProgram(line[i:], service)
		if !ok {
			return netip.Addr{}, nil, false
		}
		k, ok := run(rest, 0, isWord) // the queue id
		if !ok {
			return netip.Addr{}, nil, false
		}
		if rest, ok = bytes.CutPrefix(rest[k:], []byte(": client=")); !ok {
			return netip.Addr{}, nil, false
		}
		k, ok = run(rest, 0, isWord)
		if !ok || k >= len(rest) || rest[k] != '[' {
			return netip.Addr{}, nil, false
		}
		host, rest, ok := field(rest[k+1:], ']')
		if !ok {
			return netip.Addr{}, nil, false
		}
		if r, ok := bytes.CutPrefix(rest, []byte(":")); ok && len(r) > 0 && isDigit(r[0]) { // :PORT
			k, _ := run(r, 0, isDigit)
			rest = r[k:]
		}
		if rest, ok = bytes.CutPrefix(rest, []byte(", sasl_method=")); !ok {
			return netip.Addr{}, nil, false
		}
		_, user, ok := bytes.Cut(rest, []byte(", sasl_username="))
		if !ok {
			return netip.Addr{}, nil, false
		}
		if u, _, cut := bytes.Cut(user, []byte(", sasl_sender=")); cut {
			user = u
		}
		addr, ok := ParseAddr(host)
		return addr, user, ok && len(user) > 0
	}
}

// serverFault reports whether REASON, the text after "authentication failed:", says the
// fault was the server's: the authentication server was away, or the mechanism is one the
// server does not offer (fail2ban's normal mode does not count it either). What the client
// wrote can only follow the reason, after ", sasl_username=".
func serverFault(reason []byte) bool {
	reason = bytes.TrimPrefix(reason, []byte(" "))
	for _, r := range []string{"Connection lost to authentication server", "Invalid authentication mechanism"} {
		if rest, ok := bytes.CutPrefix(reason, []byte(r)); ok && (len(rest) == 0 || bytes.HasPrefix(rest, []byte(", sasl_username="))) {
			return true
		}
	}
	return false
}

// syslogPrefix matches a syslog timestamp and host name at the start of line, each
// followed by a space, and returns the index after them. The timestamp is BSD syslog's
// "Mmm dd HH:MM:SS" (the day padded with a space, two digits, or unpadded) or RFC 3339
// with a zone, as rsyslog's high-precision format writes it.
func syslogPrefix(line []byte) (int, bool) {
	i, ok := syslogStamp(line)
	if !ok || i >= len(line) || line[i] != ' ' {
		return 0, false
	}
	h := nextSpace(line[i+1:])
	if h == 0 || i+1+h >= len(line) || line[i+1+h] != ' ' {
		return 0, false
	}
	return i + 1 + h + 1, true
}

// syslogStamp matches the timestamp at the start of b and returns the index after it.
func syslogStamp(b []byte) (int, bool) {
	if len(b) > 0 && isUpper(b[0]) {
		for _, s := range []string{"Aaa _d dd:dd:dd", "Aaa d dd:dd:dd"} {
			if n, ok := shape(b, s); ok {
				return n, true
			}
		}
		return 0, false
	}
	i, ok := shape(b, "dddd-dd-ddTdd:dd:dd")
	if !ok {
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		if i, ok = run(b, i+1, isDigit); !ok {
			return 0, false
		}
	}
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case 'Z':
		return i + 1, true
	case '+', '-':
		n, ok := shape(b[i+1:], "dd:dd")
		return i + 1 + n, ok
	}
	return 0, false
}

// postfixProgram matches "PROGRAM[PID]: " at the start of b, where PROGRAM is a Postfix
// syslog name (postfix, or postfix-NAME for a second instance), then a service name or
// none, then "smtpd": postfix/smtpd, postfix/submission/smtpd, postfix-in/smtps/smtpd.
// It returns what follows, if service accepts the service name ("" for none).
func postfixProgram(b []byte, service func([]byte) bool) ([]byte, bool) {
	rest, ok := bytes.CutPrefix(b, []byte("postfix"))
	if !ok {
		return nil, false
	}
	if len(rest) > 0 && rest[0] == '-' { // a second instance: postfix-out
		k, ok := run(rest, 1, isWord)
		if !ok {
			return nil, false
		}
		rest = rest[k:]
	}
	if len(rest) == 0 || rest[0] != '/' {
		return nil, false
	}
	end := bytes.IndexByte(rest, '[')
	if end < 0 {
		return nil, false
	}
	name := rest[1:end] // "smtpd", or "SERVICE/smtpd"
	svc, ok := bytes.CutSuffix(name, []byte("smtpd"))
	if !ok {
		return nil, false
	}
	if len(svc) > 0 {
		if svc, ok = bytes.CutSuffix(svc, []byte("/")); !ok {
			return nil, false
		}
		if k, ok := run(svc, 0, isWord); !ok || k != len(svc) {
			return nil, false
		}
	}
	if !service(svc) {
		return nil, false
	}
	k, ok := run(rest, end+1, isDigit)
	if !ok {
		return nil, false
	}
	return bytes.CutPrefix(rest[k:], []byte("]: "))
}

// isSubmission accepts the submission service, port 587.
func isSubmission(svc []byte) bool { return string(svc) == "submission" }

// isSMTP accepts the services that take SASL logins on ports 25 and 465: smtpd itself,
// and smtps or submissions (the names Postfix configurations give port 465).
func isSMTP(svc []byte) bool {
	switch string(svc) {
	case "", "smtps", "submissions":
		return true
	}
	return false
}
