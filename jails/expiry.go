package jails

import (
	"math"
	"net/netip"
	"time"
)

// expiry is when one ban ends. The heap may hold expiries of bans lifted or replaced
// since; they are recognised, and dropped, when they come up.
//
// It holds no pointer, and 32 bytes where a time, a string and a netip.Prefix take 72:
// the heap has an entry a ban, and a burst of bans grows it, so its copies are half as
// long, and the collector never scans it.
type expiry struct {
	at   int64    // the end, in nanoseconds since 1970 (atNanos)
	addr [16]byte // what is banned: its address, IPv4 as IPv4-mapped
	jail uint32   // the jail, by its number (Manager.jailID)
	bits uint8    // the network's length, of the address as given
	v4   bool     // addr is an IPv4 address
}

// newExpiry returns the expiry of jail's ban of what, ending at.
func newExpiry(at time.Time, jail uint32, what netip.Prefix) expiry {
	return expiry{at: atNanos(at), addr: what.Addr().As16(), jail: jail, bits: uint8(what.Bits()), v4: what.Addr().Is4()}
}

// what returns what the ended ban banned.
func (e expiry) what() netip.Prefix {
	a := netip.AddrFrom16(e.addr)
	if e.v4 {
		a = a.Unmap()
	}
	return netip.PrefixFrom(a, int(e.bits))
}

// atNanos returns t in nanoseconds since 1970, held to what an int64 holds: an end
// beyond 2262 is kept as 2262, which no expiry reaches.
func atNanos(t time.Time) int64 {
	switch {
	case t.After(maxNanos):
		return math.MaxInt64
	case t.Before(minNanos):
		return math.MinInt64
	}
	return t.UnixNano()
}

var maxNanos, minNanos = time.Unix(0, math.MaxInt64), time.Unix(0, math.MinInt64)

// expiryHeap orders expiries earliest first: a binary heap kept by hand, as
// container/heap would box each expiry in an interface, an allocation a ban.
type expiryHeap []expiry

// Len returns how many expiries are scheduled.
func (h expiryHeap) Len() int { return len(h) }

// schedule adds e and reports whether it is now the earliest end.
func (h *expiryHeap) schedule(e expiry) (earliest bool) {
	earliest = len(*h) == 0 || e.at < (*h)[0].at
	*h = append(*h, e)
	h.up(len(*h) - 1)
	return earliest
}

// due pops the expiries at or before now.
func (h *expiryHeap) due(now time.Time) []expiry {
	var out []expiry
	at := atNanos(now)
	for len(*h) > 0 && (*h)[0].at <= at {
		out = append(out, h.pop())
	}
	return out
}

// pop removes and returns the earliest expiry.
func (h *expiryHeap) pop() expiry {
	old := *h
	e, last := old[0], len(old)-1
	old[0] = old[last]
	*h = old[:last]
	h.down(0)
	return e
}

func (h expiryHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if h[i].at >= h[parent].at {
			return
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
}

func (h expiryHeap) down(i int) {
	for {
		first := i
		for _, c := range [2]int{2*i + 1, 2*i + 2} {
			if c < len(h) && h[c].at < h[first].at {
				first = c
			}
		}
		if first == i {
			return
		}
		h[i], h[first] = h[first], h[i]
		i = first
	}
}

// nextExpiry returns the earliest scheduled end of a ban, or false if none is.
func (m *Manager) nextExpiry() (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.expiries.Len() == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, m.expiries[0].at), true
}
