package filters

import (
	"bytes"
	"net/netip"
)

// mailboxAuthLiteral is in every line mailboxAuth counts ("authentication failed for",
// "Error occurred during authentication: account not found").
const mailboxAuthLiteral = "authentication"

// The kinds of line mailboxAuth counts, in the order of their kind index.
var mailboxAuthKinds = []string{
	"security - cmd=Auth|AdminAuth; ... error=authentication failed for [NAME], REASON;",
	"SoapEngine - handler exception: authentication failed for [NAME], REASON",
	"imap|pop - authentication failed for [NAME] (REASON)",
	"account - authentication failed for [NAME] (no such account)",
	"security - Error occurred during authentication: account not found for [NAME]. oip=ADDR (a proxy's lookup)",
}

// mailboxAuth reads the failed logins Zimbra's and Carbonio's mailbox server writes to
// mailbox.log and audit.log (see zimbraLine for who writes which part of a line):
//
//	... [name=NAME;oip=203.0.113.9;ua=zclient;] security - cmd=Auth; account=NAME; protocol=soap; error=authentication failed for [NAME], invalid password;
//	... [oip=203.0.113.9;ua=...;] SoapEngine - handler exception: authentication failed for [NAME], account not found
//	... [name=NAME;ip=192.0.2.10;oip=203.0.113.9;] imap - authentication failed for [NAME] (invalid password)
//	... [ip=192.0.2.10;oip=203.0.113.9;] account - authentication failed for [NAME] (no such account)
//
// The client is read from the context, never the message: oip when present, else ip.
// Zimbra sets oip only when the connection came from an address it trusts (its proxies,
// localhost), from the proxy's X-Forwarded-For header, which nginx writes as whatever
// the client sent, ", ", and the address it saw. So oip is a list whose leading entries
// are the client's own text, and the client is its rightmost entry outside the farm's
// trusted proxies (forwardedClient). Without oip, ip is the connection's own address,
// unless that is a trusted proxy: then no client is named.
//
// One line names its client in the message: with zimbra_additional_logging on, the
// nginx lookup extension (zm-nginx-lookup-store, NginxLookupExtension) writes
//
//	... [ip=192.0.2.10;] security - Error occurred during authentication: account not found for [NAME]. oip=203.0.113.9
//
// when the mail proxy asks for an account that does not exist: an IMAP or POP login to
// a guessed name, which reaches no other line of mailboxd's. Zimbra appends oip= (the
// Client-IP nginx sends, from the connection) after NAME, which the client wrote and
// which may hold "]. oip=" itself: so the address is the message's last oip=, and only
// when the request came from a trusted proxy (or the host itself), the lookup's only
// callers.
//
// Lines not counted: the other "security - Error occurred during authentication: ..."
// lines (written beside another line of the same attempt), and lines whose context
// ZimbraLog could not have written.
func mailboxAuth(opts Options) lineReader {
	trusted := opts.TrustedProxies
	return func(line []byte) (netip.Addr, int, Result) {
		z, ok := readZimbraLine(line)
		if !ok {
			return netip.Addr{}, 0, NoMatch
		}
		kind, ok := failedLogin(z.category, z.message)
		if !ok {
			if addr, ok := lookupNotFound(z, trusted); ok {
				return addr, len(mailboxAuthKinds) - 1, Matched
			}
			return netip.Addr{}, 0, NoMatch
		}
		addr, ok := mailboxClient(z, trusted)
		if !ok {
			return netip.Addr{}, 0, NoMatch
		}
		return addr, kind, Matched
	}
}

// lookupNotFound reads the client of the nginx lookup's "account not found" line, as
// mailboxAuth describes it.
func lookupNotFound(z zimbraLine, trusted []netip.Prefix) (netip.Addr, bool) {
	const prefix, oip = "Error occurred during authentication: account not found for [", "]. oip="
	if string(z.category) != "security" || !bytes.HasPrefix(z.message, []byte(prefix)) || z.oip != nil {
		return netip.Addr{}, false
	}
	if z.ip != nil { // the lookup came over the network: from a proxy of the farm only
		if proxy, ok := ParseAddr(z.ip); !ok || !inPrefixes(proxy, trusted) {
			return netip.Addr{}, false
		}
	}
	i := bytes.LastIndex(z.message, []byte(oip))
	if i < len(prefix) {
		return netip.Addr{}, false
	}
	return ParseAddr(bytes.TrimRight(z.message[i+len(oip):], " "))
}

// mailboxClient returns the client of a mailbox line, as mailboxAuth reads it.
func mailboxClient(z zimbraLine, trusted []netip.Prefix) (netip.Addr, bool) {
	switch {
	case z.oip != nil:
		return forwardedClient(z.oip, trusted)
	case z.ip != nil:
		addr, ok := ParseAddr(z.ip)
		return addr, ok && !inPrefixes(addr, trusted) // else a proxy that forwarded no client
	}
	return netip.Addr{}, false // a client on the server itself: ZimbraLog leaves localhost out
}

// mailboxAccount reads the account a line mailboxAuth counted names: the account= field
// of a security line, which ZimbraLog.encodeAttrs writes, else the context's name. The
// bracketed name in the message ("authentication failed for [NAME]") is never read:
// nothing there marks where the client's text ends.
func mailboxAccount(line []byte) []byte {
	z, ok := readZimbraLine(line)
	if !ok {
		return nil
	}
	if a := securityAccount(z); a != nil {
		return a
	}
	return z.name
}

// securityAccount returns the account= field of a "security - cmd=Auth; ..." line, or nil.
func securityAccount(z zimbraLine) []byte {
	if string(z.category) != "security" {
		return nil
	}
	rest, ok := bytes.CutPrefix(z.message, []byte("cmd=Auth; "))
	if !ok {
		return nil
	}
	if rest, ok = bytes.CutPrefix(rest, []byte("account=")); !ok {
		return nil
	}
	value, _, ok := contextValue(rest)
	if !ok || len(value) == 0 {
		return nil
	}
	return value
}

// mailboxLoginLiteral is in every line mailboxLogin reads.
const mailboxLoginLiteral = "account"

// mailboxLogin reads the logins that worked from mailbox.log and audit.log, with the
// client found as mailboxAuth finds it:
//
//	... [name=NAME;oip=203.0.113.9;ua=...;] account - authentication successful
//	... [name=NAME;oip=203.0.113.9;] security - cmd=Auth; account=NAME; protocol=soap;
//
// (a security line with no error= field is a login that worked). The account is the
// security line's account= field, else the context's name.
func mailboxLogin(opts Options) successReader {
	trusted := opts.TrustedProxies
	return func(line []byte) (netip.Addr, []byte, bool) {
		z, ok := readZimbraLine(line)
		if !ok {
			return netip.Addr{}, nil, false
		}
		var account []byte
		switch string(z.category) {
		case "account":
			if string(z.message) != "authentication successful" {
				return netip.Addr{}, nil, false
			}
			account = z.name
		case "security":
			if account = securityAccount(z); account == nil || bytes.Contains(z.message, []byte("; error=")) {
				return netip.Addr{}, nil, false
			}
		default:
			return netip.Addr{}, nil, false
		}
		addr, ok := mailboxClient(z, trusted)
		return addr, account, ok && len(account) > 0
	}
}

// failedLogin reports whether a message in category is a failed login, and which kind.
func failedLogin(category, msg []byte) (int, bool) {
	const failed = "authentication failed for "
	switch string(category) {
	case "security":
		// cmd=Auth; account=NAME; protocol=soap; error=authentication failed for [NAME], REASON;
		// ZimbraLog.encodeAttrs writes the fields, escaped as the context's are.
		rest, ok := bytes.CutPrefix(msg, []byte("cmd=Auth; "))
		if !ok {
			if rest, ok = bytes.CutPrefix(msg, []byte("cmd=AdminAuth; ")); !ok {
				return 0, false
			}
		}
		for len(rest) > 0 {
			eq := bytes.IndexByte(rest, '=')
			if eq < 1 {
				return 0, false
			}
			key := rest[:eq]
			value, after, ok := contextValue(rest[eq+1:])
			if !ok {
				return 0, false
			}
			if string(key) == "error" {
				return 0, bytes.HasPrefix(value, []byte(failed+"["))
			}
			rest = bytes.TrimPrefix(after, []byte(" "))
		}
	case "SoapEngine":
		return 1, bytes.HasPrefix(msg, []byte("handler exception: "+failed+"["))
	case "imap", "pop":
		return 2, bytes.HasPrefix(msg, []byte(failed+"["))
	case "account":
		return 3, bytes.HasPrefix(msg, []byte(failed)) && bytes.HasSuffix(msg, []byte(" (no such account)"))
	}
	return 0, false
}
