package filters

import (
	"bytes"
)

// zimbraLine is a line of mailbox.log or audit.log, as the log4j layout of Zimbra and
// Carbonio writes it ("%d %-5p [%t] [%z] %c{1} - %m"):
//
//	2026-03-05 16:01:34,123 WARN  [qtp1-12:https://mail.example.com/service/soap/AuthRequest] [name=a@example.com;oip=203.0.113.9;ua=zclient;] security - cmd=Auth; ...
//
// Who writes what:
//   - the timestamp, level and category are the server's;
//   - the thread name is the server's, but Jetty names an HTTP request's thread after the
//     request's URL, Host header included, which the client writes;
//   - the context ([%z]) is written by ZimbraLog: key=value; fields whose keys are the
//     server's and whose values may be the client's (ua, name, via, oip). ZimbraLog
//     doubles every ";" in a value and turns CR and LF into spaces, so a value cannot
//     end its field or the line; it does not escape "]" or "[", so a value can hold a
//     copy of a whole context;
//   - the message is the server's text with the client's (a login name) inside it.
//
// So the context is read by ZimbraLog's own rule (a field ends at a ";" that is not
// doubled; the context ends at the "]" after a field's end), never "up to the first ]".
type zimbraLine struct {
	name     []byte // the context's name value (the account) as written; nil if absent
	ip, oip  []byte // the context's ip and oip values as written; nil if absent
	category []byte
	message  []byte
}

// readZimbraLine reads a Zimbra log4j line. ok is false for a line of another shape, and
// for one whose context breaks a rule ZimbraLog always keeps (see zimbraContext).
//
// The thread name is taken to run to the first white space, which real thread names do
// not hold. Where it carries a request URL ("qtp1-12:https://HOST/PATH") the URL must
// have its path: a Host header holding white space, which only a request sent straight to
// mailboxd (not through Zimbra's proxy) can carry, then fails the line instead of moving
// where the context seems to begin.
func readZimbraLine(line []byte) (zimbraLine, bool) {
	var z zimbraLine
	i, ok := shape(line, "dddd-dd-dd dd:dd:dd,ddd ")
	if !ok {
		return z, false
	}
	if i, ok = run(line, i, isUpper); !ok { // %-5p: the level, padded with spaces
		return z, false
	}
	if i, ok = run(line, i, func(c byte) bool { return c == ' ' }); !ok || i >= len(line) || line[i] != '[' {
		return z, false
	}
	thread := line[i+1:]
	end := nextSpace(thread)
	if end < 1 || thread[end-1] != ']' || !threadNamed(thread[:end-1]) {
		return z, false
	}
	rest, ok := bytes.CutPrefix(thread[end:], []byte(" ["))
	if !ok {
		return z, false
	}
	rest, ok = zimbraContext(rest, &z)
	if !ok {
		return z, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(" ")); !ok {
		return z, false
	}
	// %c{1} - %m
	c := nextSpace(rest)
	if c == 0 {
		return z, false
	}
	z.category = rest[:c]
	z.message, ok = bytes.CutPrefix(rest[c:], []byte(" - "))
	return z, ok
}

// threadNamed reports whether name can be a thread name as Zimbra's Jetty writes it: a
// name, then, for an HTTP request, ":" and the request's URL with its path.
func threadNamed(name []byte) bool {
	_, url, ok := bytes.Cut(name, []byte("://"))
	return !ok || bytes.IndexByte(url, '/') >= 0
}

// zimbraContext reads a context's fields, from just after its "[" through its "]", and
// returns what follows. A field is KEY=VALUE; where VALUE runs to the first ";" that is
// not doubled (";;" is a ";" of the value). It notes the ip and oip values in z.
//
// ZimbraLog writes name, aname, mid and ip first, in that order, then the other keys,
// each key once. A context that breaks this was not written by ZimbraLog as it appears:
// text from an earlier field (a Host header in the thread name) has moved where the
// fields seem to begin. Such a line is not read.
func zimbraContext(b []byte, z *zimbraLine) ([]byte, bool) {
	const (
		orderedKeys = 4 // name, aname, mid, ip: see rank
		other       = orderedKeys
	)
	last := -1 // rank of the last key read
	for {
		if len(b) > 0 && b[0] == ']' {
			return b[1:], true
		}
		eq := bytes.IndexByte(b, '=')
		if eq < 1 {
			return nil, false
		}
		key := b[:eq]
		if k, ok := run(key, 0, isWord); !ok || k != len(key) {
			return nil, false
		}
		value, rest, ok := contextValue(b[eq+1:])
		if !ok {
			return nil, false
		}
		r := rank(key)
		switch {
		case r < orderedKeys && r <= last: // out of order, or twice
			return nil, false
		case r < orderedKeys:
			last = r
		default:
			last = other
		}
		switch string(key) {
		case "name":
			z.name = value
		case "ip":
			z.ip = value
		case "oip":
			if z.oip != nil {
				return nil, false
			}
			z.oip = value
		}
		b = rest
	}
}

// rank is a context key's place among the keys ZimbraLog writes first, in order; other
// keys rank after them.
func rank(key []byte) int {
	switch string(key) {
	case "name":
		return 0
	case "aname":
		return 1
	case "mid":
		return 2
	case "ip":
		return 3
	}
	return 4
}

// contextValue reads an escaped value up to its terminating ";" and returns it (still
// escaped) and what follows the ";".
func contextValue(b []byte) (value, rest []byte, ok bool) {
	for i := 0; i < len(b); i++ {
		if b[i] != ';' {
			continue
		}
		if i+1 < len(b) && b[i+1] == ';' {
			i++ // an escaped ";"
			continue
		}
		return b[:i], b[i+1:], true
	}
	return nil, nil, false
}
