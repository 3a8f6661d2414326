package jails

import (
	"net/netip"
	"slices"
)

// IgnoreList holds the addresses that are never banned: the prefixes it was given
// (ignoreip, trusted proxies, the host's own addresses), and the addresses no ban can
// mean: loopback, unspecified, multicast, link-local and broadcast.
type IgnoreList struct {
	prefixes []netip.Prefix
	host     *HostSet // the host's own addresses and gateways, kept current; may be nil
	// directory is what the farm's directory names never to ban (its servers, trusted
	// proxies, DoSFilter-safe addresses), kept current; may be nil.
	directory *HostSet
}

// WithHost returns l checking h too: the host's own addresses and gateways, as they
// are at each check.
func (l *IgnoreList) WithHost(h *HostSet) *IgnoreList {
	return &IgnoreList{prefixes: l.prefixes, host: h, directory: l.directory}
}

// WithDirectory returns l checking d too: the addresses a farm's directory names never
// to ban, as they are at each check.
func (l *IgnoreList) WithDirectory(d *HostSet) *IgnoreList {
	return &IgnoreList{prefixes: l.prefixes, host: l.host, directory: d}
}

// NewIgnoreList returns a list of the given prefixes and the addresses no ban can mean.
func NewIgnoreList(prefixes ...netip.Prefix) *IgnoreList {
	l := &IgnoreList{}
	for _, p := range prefixes {
		p = p.Masked()
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if !slices.Contains(l.prefixes, p) {
			l.prefixes = append(l.prefixes, p)
		}
	}
	return l
}

// Contains reports whether addr must never be banned.
func (l *IgnoreList) Contains(addr netip.Addr) bool { return l.Why(addr) != "" }

// Why says why addr must never be banned, or "" if it may be. A nil list holds only
// what no ban may mean (loopback and the like).
func (l *IgnoreList) Why(addr netip.Addr) string {
	addr = addr.Unmap()
	if why := unbannable(addr); why != "" {
		return why
	}
	if l == nil {
		return ""
	}
	for _, p := range l.prefixes {
		if p.Contains(addr) {
			return "on the ignore list (ignoreip, trusted_proxies, or the host's own addresses and networks' broadcast)"
		}
	}
	if l.host.overlaps(netip.PrefixFrom(addr, addr.BitLen())) {
		return "the host's own address, a broadcast of its networks, or its gateway"
	}
	if l.directory.overlaps(netip.PrefixFrom(addr, addr.BitLen())) {
		return "named by the farm's directory ([zimbra]): one of its servers, trusted proxies or DoSFilter-safe addresses"
	}
	return ""
}

// WhyNet says why the network p must never be banned, or "" if it may be: it holds an
// address no ban may mean (loopback and the like) or one of the list's. An address alone
// (a /32 or /128) is Why's.
func (l *IgnoreList) WhyNet(p netip.Prefix) string {
	if p.IsSingleIP() {
		return l.Why(p.Addr())
	}
	for _, s := range specialNets {
		if s.net.Overlaps(p) {
			return "a network holding " + s.what
		}
	}
	if l == nil {
		return ""
	}
	for _, q := range l.prefixes {
		if q.Overlaps(p) {
			return "a network holding an address on the ignore list (ignoreip, trusted_proxies, or the host's own addresses)"
		}
	}
	if l.host.overlaps(p) {
		return "a network holding the host's own address or its gateway"
	}
	if l.directory.overlaps(p) {
		return "a network holding an address the farm's directory names ([zimbra])"
	}
	return ""
}

// specialNets are the networks of the addresses no ban can mean (unbannable).
var specialNets = []struct {
	net  netip.Prefix
	what string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "the unspecified address"},
	{netip.MustParsePrefix("::/128"), "the unspecified address"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback addresses (the host itself)"},
	{netip.MustParsePrefix("::1/128"), "the loopback address (the host itself)"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local addresses"},
	{netip.MustParsePrefix("fe80::/10"), "link-local addresses"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast addresses"},
	{netip.MustParsePrefix("ff00::/8"), "multicast addresses"},
	{netip.MustParsePrefix("255.255.255.255/32"), "the broadcast address"},
}

// unbannable says why no ban can mean addr, or "" if one can: a ban of it would cut the
// host off from itself or its network (loopback, link-local: often the IPv6 gateway),
// or block nobody in particular (unspecified, multicast, broadcast).
func unbannable(addr netip.Addr) string {
	switch {
	case !addr.IsValid():
		return "not an address"
	case addr.IsLoopback():
		return "a loopback address (the host itself)"
	case addr.IsUnspecified():
		return "the unspecified address"
	case addr.IsMulticast():
		return "a multicast address"
	case addr.IsLinkLocalUnicast():
		return "a link-local address (a neighbour on the host's own link, often its IPv6 gateway)"
	case addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "the broadcast address"
	}
	return ""
}

// broadcast returns the last address of an IPv4 prefix.
func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(b)
}
