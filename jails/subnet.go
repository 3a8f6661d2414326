package jails

import (
	"fmt"
	"net/netip"
	"time"
)

// The widest networks logban bans without being forced: a shorter prefix bans a
// provider, not an attacker.
const (
	WidestIPv4 = 16
	WidestIPv6 = 32
)

// TooWide reports whether p is a network wider than WidestIPv4 or WidestIPv6.
func TooWide(p netip.Prefix) bool {
	if p.Addr().Is4() {
		return p.Bits() < WidestIPv4
	}
	return p.Bits() < WidestIPv6
}

// Subnet is a jail's escalation from addresses to the network they share: when
// Addresses distinct addresses of one network (a /IPv4 or /IPv6 prefix) fail within
// FindTime, the network is banned. It catches a probe spread over many addresses of one
// network, each staying under maxretry.
type Subnet struct {
	IPv4, IPv6 int // prefix lengths to escalate to; 0: never, for that family
	Addresses  int // distinct failing addresses of one network that ban it; 0: never
	FindTime   time.Duration
}

// On reports whether the jail escalates at all.
func (s Subnet) On() bool { return s.Addresses > 0 && (s.IPv4 > 0 || s.IPv6 > 0) }

// bits returns the prefix length addr escalates to, or 0 for none.
func (s Subnet) bits(addr netip.Addr) int {
	if addr.Is4() {
		return s.IPv4
	}
	return s.IPv6
}

// netWindow counts, per network, the distinct addresses that failed and when each last
// did. It keeps at most Addresses of them per network: 124 bytes a network with one
// failing address, 196 with four (BenchmarkTrackedNetworkMemory). It is not safe for
// concurrent use; Jail serialises access.
type netWindow struct {
	s       Subnet
	nets    map[[16]byte][]netSeen // by the network's first address; the family's length is s.bits
	bound   int                    // the most networks kept (bound.go)
	evicted int64                  // networks let go at the bound, before their time
}

// netSeen is one address of a network and when it last failed, in Unix nanoseconds.
type netSeen struct {
	addr [16]byte
	at   int64
}

func newNetWindow(s Subnet, bound int) *netWindow {
	return &netWindow{s: s, nets: map[[16]byte][]netSeen{}, bound: max(bound, 1)}
}

// add records a failure of addr at t, seen at now. It returns the network and the number
// of its distinct addresses that failed within findtime of t, and whether that reached
// Addresses: the network's history is then cleared, as its ban answers for it. A failure
// older than findtime before now is dropped, as in Window.
func (w *netWindow) add(addr netip.Addr, t, now time.Time) (netip.Prefix, int, bool) {
	bits := w.s.bits(addr)
	if bits == 0 || t.Before(now.Add(-w.s.FindTime)) {
		return netip.Prefix{}, 0, false
	}
	p, err := addr.Prefix(bits)
	if err != nil {
		return netip.Prefix{}, 0, false
	}
	key, me, ts := p.Addr().As16(), addr.As16(), t.UnixNano()
	limit := ts - int64(w.s.FindTime)
	seen, ok := w.nets[key]
	if !ok && len(w.nets) >= w.bound {
		w.prune(now)
		w.evicted += int64(shedFewest(w.nets, shedTarget(w.bound), w.s.Addresses,
			func(seen []netSeen) int { return len(seen) },
			func(k [16]byte, _ []netSeen) { delete(w.nets, k) }))
	}
	kept, found := seen[:0], false
	for _, e := range seen {
		if e.addr == me {
			e.at, found = max(e.at, ts), true
		}
		if e.at >= limit {
			kept = append(kept, e)
		}
	}
	if !found {
		if len(kept) == w.s.Addresses { // full of newer ones: the oldest goes
			oldest := 0
			for i, e := range kept {
				if e.at < kept[oldest].at {
					oldest = i
				}
			}
			kept = append(kept[:oldest], kept[oldest+1:]...)
		}
		kept = append(kept, netSeen{me, ts})
	}
	if len(kept) >= w.s.Addresses {
		delete(w.nets, key)
		return p, len(kept), true
	}
	w.nets[key] = kept
	return p, len(kept), false
}

// prune drops the networks none of whose addresses failed within findtime before now.
func (w *netWindow) prune(now time.Time) {
	limit := now.Add(-w.s.FindTime).UnixNano()
	for key, seen := range w.nets {
		newest := int64(0)
		for _, e := range seen {
			newest = max(newest, e.at)
		}
		if newest < limit {
			delete(w.nets, key)
		}
	}
}

// netWhy says what led to a network's ban.
func netWhy(p netip.Prefix, n int, findTime time.Duration) string {
	return fmt.Sprintf("%d addresses of %s failed within %s", n, p, findTime)
}
