package zimbra

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// Resolver returns a host name's addresses.
type Resolver func(ctx context.Context, host string) ([]netip.Addr, error)

// SystemResolver resolves through the host's resolver (/etc/hosts, DNS).
func SystemResolver(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// Addresses are the directory's facts as addresses, for one host of the farm.
type Addresses struct {
	// Servers are the addresses of every server the directory lists (its names,
	// resolved): never banned, as Zimbra's DoSFilter spares them.
	Servers []netip.Prefix
	// Trusted are the proxies mailboxd trusts (zimbraMailTrustedIP) and the farm's proxy
	// servers: never banned, and stepped over in forwarded-for lists.
	Trusted []netip.Prefix
	// Safe are the addresses DoSFilter never throttles (zimbraHttpThrottleSafeIPs).
	Safe []netip.Prefix
	// Unresolved are the server names that did not resolve, with why; Ignored, the
	// values that are neither an address nor a network. Both are reported, never guessed.
	Unresolved, Ignored []string
}

// NeverBanned returns every address the directory says is the farm's own or spared.
func (a Addresses) NeverBanned() []netip.Prefix {
	all := slices.Concat(a.Servers, a.Trusted, a.Safe)
	slices.SortFunc(all, netip.Prefix.Compare)
	return slices.Compact(all)
}

// Addresses resolves the directory's servers and reads its address lists for host (the
// server this configuration is for; "" or a server the directory does not list takes
// every server's lists).
func (d *Directory) Addresses(ctx context.Context, host string, resolve Resolver) Addresses {
	var a Addresses
	lists := d.Servers
	if s, ok := d.Server(host); ok {
		lists = []Server{s}
	}
	for _, s := range d.Servers {
		addrs, err := resolve(ctx, s.Name)
		if err != nil || len(addrs) == 0 {
			why := "no address"
			if err != nil {
				why = err.Error()
			}
			a.Unresolved = append(a.Unresolved, s.Name+": "+why)
			continue
		}
		for _, ip := range addrs {
			p := netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen())
			a.Servers = append(a.Servers, p)
			if s.Runs("proxy") {
				a.Trusted = append(a.Trusted, p)
			}
		}
	}
	for _, s := range lists {
		a.Trusted = append(a.Trusted, a.parse(s.TrustedIPs, "zimbraMailTrustedIP")...)
		a.Safe = append(a.Safe, a.parse(s.SafeIPs, "zimbraHttpThrottleSafeIPs")...)
	}
	for _, l := range []*[]netip.Prefix{&a.Servers, &a.Trusted, &a.Safe} {
		slices.SortFunc(*l, netip.Prefix.Compare)
		*l = slices.Compact(*l)
	}
	slices.Sort(a.Ignored)
	a.Ignored = slices.Compact(a.Ignored)
	return a
}

// parse reads an attribute's values as addresses or networks; the others are noted in
// a.Ignored.
func (a *Addresses) parse(values []string, attr string) []netip.Prefix {
	var out []netip.Prefix
	for _, v := range values {
		for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
			if p, err := netip.ParsePrefix(f); err == nil {
				out = append(out, p.Masked())
			} else if ip, err := netip.ParseAddr(f); err == nil {
				out = append(out, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
			} else {
				a.Ignored = append(a.Ignored, attr+": "+f)
			}
		}
	}
	return out
}
