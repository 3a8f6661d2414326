package jails

import (
	"container/heap"
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

// expiryHeap orders expiries earliest first.
type expiryHeap []expiry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// schedule adds e and reports whether it is now the earliest end.
func (h *expiryHeap) schedule(e expiry) (earliest bool) {
	earliest = h.Len() == 0 || e.at.Before((*h)[0].at)
	heap.Push(h, e)
	return earliest
}

// due pops the expiries at or before now.
func (h *expiryHeap) due(now time.Time) []expiry {
	var out []expiry
	for h.Len() > 0 && !(*h)[0].at.After(now) {
		out = append(out, heap.Pop(h).(expiry))
	}
	return out
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
