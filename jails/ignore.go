package jails

import (
	"net"
	"net/netip"
	"slices"
)

// IgnoreList holds the prefixes whose addresses are never banned. Loopback addresses are
// always in it.
type IgnoreList struct {
	prefixes []netip.Prefix
}

// NewIgnoreList returns a list of the given prefixes plus loopback.
func NewIgnoreList(prefixes ...netip.Prefix) *IgnoreList {
	l := &IgnoreList{prefixes: []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("::1/128"),
	}}
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
func (l *IgnoreList) Contains(addr netip.Addr) bool {
	addr = addr.Unmap()
	if addr.IsLoopback() || addr.IsUnspecified() {
		return true
	}
	for _, p := range l.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// HostPrefixes returns the host's own addresses as single-address prefixes, so a jail
// never bans the machine it runs on.
func HostPrefixes() ([]netip.Prefix, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out, nil
}
