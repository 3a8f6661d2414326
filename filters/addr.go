package filters

import (
	"bytes"
	"net/netip"
)

// ParseAddr parses an IPv4 or IPv6 literal. An IPv4-mapped IPv6 address is returned as
// IPv4, and an IPv6 zone (fe80::1%eth0, as getnameinfo and Java write link-local
// addresses) is dropped: the address is counted without it.
func ParseAddr(b []byte) (netip.Addr, bool) {
	a, err := netip.ParseAddr(string(b))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.WithZone("").Unmap(), true
}

// parseBracketed parses an address that may be written in brackets, as Jetty 9.4 and
// later write IPv6 client addresses ([2001:db8::1]).
func parseBracketed(b []byte) (netip.Addr, bool) {
	if len(b) > 2 && b[0] == '[' && b[len(b)-1] == ']' {
		b = b[1 : len(b)-1]
	}
	return ParseAddr(b)
}

// forwardedClient returns the client of a request that reached the server through
// proxies, from the list of addresses they recorded (X-Forwarded-For: "client, proxy1,
// proxy2"). Each proxy appends the address it was connected from, so only the entries
// appended by proxies the farm trusts are known to be true: the client is the rightmost
// entry outside trusted, found from the right the way nginx's real_ip_recursive finds it.
// Entries left of it are whatever the client sent. ok is false when no such entry exists
// (every entry is trusted) or when an entry that a trusted proxy must have written is not
// an address.
func forwardedClient(list []byte, trusted []netip.Prefix) (netip.Addr, bool) {
	for len(list) > 0 {
		entry := list
		if i := bytes.LastIndexByte(list, ','); i >= 0 {
			entry, list = list[i+1:], list[:i]
		} else {
			list = nil
		}
		a, ok := forwardedEntry(bytes.Trim(entry, " \t"))
		if !ok {
			return netip.Addr{}, false
		}
		if !inPrefixes(a, trusted) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// forwardedEntry parses one entry of a forwarded-for list: an address, or an address and
// port as some load balancers write them (192.0.2.1:4711, [2001:db8::1]:4711).
func forwardedEntry(b []byte) (netip.Addr, bool) {
	if a, ok := parseBracketed(b); ok {
		return a, true
	}
	if ap, err := netip.ParseAddrPort(string(b)); err == nil {
		return ap.Addr().WithZone("").Unmap(), true
	}
	return netip.Addr{}, false
}

// inPrefixes reports whether a lies in any of ps.
func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
