package jails

import (
	"errors"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// HostSet is the host's own addresses, its networks' broadcasts and its gateways,
// never banned, kept current by whoever watches the host's addresses and routes (the
// daemon): an address added to an interface, or a new default route, is protected from
// the next check on. The zero value holds nothing; a nil *HostSet holds nothing.
type HostSet struct {
	p atomic.Pointer[[]netip.Prefix]
}

// Set makes ps the host's addresses.
func (h *HostSet) Set(ps []netip.Prefix) { h.p.Store(&ps) }

// Prefixes returns the host's addresses as last set.
func (h *HostSet) Prefixes() []netip.Prefix {
	if h == nil {
		return nil
	}
	if p := h.p.Load(); p != nil {
		return *p
	}
	return nil
}

func (h *HostSet) overlaps(q netip.Prefix) bool {
	for _, p := range h.Prefixes() {
		if p.Overlaps(q) {
			return true
		}
	}
	return false
}

// HostPrefixesOf returns, read through h (a handle into the host's network namespace),
// the host's own addresses as single-address prefixes, the broadcast address of each of
// its IPv4 networks, and its gateways (the next hops of its default routes), so a jail
// never bans the machine it runs on, its networks' broadcast, nor the router every
// client's packets come through.
func HostPrefixesOf(h *netlink.Handle) ([]netip.Prefix, error) {
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, err
	}
	var out []netip.Prefix
	add := func(p netip.Prefix) {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	for _, a := range addrs {
		if a.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		add(netip.PrefixFrom(ip, ip.BitLen()))
		ones, _ := a.Mask.Size()
		if ip.Is4() && ones > 0 && ones < 31 {
			add(netip.PrefixFrom(broadcast(netip.PrefixFrom(ip, ones)), 32))
		}
	}
	// Unicast routes only: a gateway's route is one, and the null routes of the bans are
	// not (blackhole, unreachable, prohibit). On a handle with strict checking
	// (netlink.Handle.SetStrictCheck) the kernel leaves the others out of the dump, or
	// 100,000 bans' routes would be read, and decoded, to find a default one.
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC, Type: unix.RTN_UNICAST},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_TYPE)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, err
	}
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue // not a default route
			}
		}
		gws := []netlink.NexthopInfo{{Gw: r.Gw}}
		for _, nh := range r.MultiPath {
			gws = append(gws, *nh)
		}
		for _, nh := range gws {
			if gw, ok := netip.AddrFromSlice(nh.Gw); ok {
				gw = gw.Unmap()
				add(netip.PrefixFrom(gw, gw.BitLen()))
			}
		}
	}
	return out, nil
}
