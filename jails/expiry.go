package jails

import (
	"net/netip"
	"time"
)

// expiry is when one ban ends. The heap may hold expiries of bans lifted or replaced
// since; they are recognised, and dropped, when they come up.
type expiry struct {
	at   time.Time
	jail string
	what netip.Prefix
}

// expiryHeap orders expiries earliest first: a binary heap kept by hand, as
// container/heap would box each expiry in an interface, an allocation a ban.
type expiryHeap []expiry

// Len returns how many expiries are scheduled.
func (h expiryHeap) Len() int { return len(h) }

// schedule adds e and reports whether it is now the earliest end.
func (h *expiryHeap) schedule(e expiry) (earliest bool) {
	earliest = len(*h) == 0 || e.at.Before((*h)[0].at)
	*h = append(*h, e)
	h.up(len(*h) - 1)
	return earliest
}

// due pops the expiries at or before now.
func (h *expiryHeap) due(now time.Time) []expiry {
	var out []expiry
	for len(*h) > 0 && !(*h)[0].at.After(now) {
		out = append(out, h.pop())
	}
	return out
}

// pop removes and returns the earliest expiry.
func (h *expiryHeap) pop() expiry {
	old := *h
	e, last := old[0], len(old)-1
	old[0] = old[last]
	old[last] = expiry{} // no string or time kept alive past its end
	*h = old[:last]
	h.down(0)
	return e
}

func (h expiryHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h[i].at.Before(h[parent].at) {
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
			if c < len(h) && h[c].at.Before(h[first].at) {
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
	return m.expiries[0].at, true
}
