package jails

import (
	"net/netip"
	"slices"
	"time"
)

// Window counts failures per address and reports when one reaches maxretry within
// findtime. It keeps at most maxretry timestamps per address. It is not safe for
// concurrent use; Jail serialises access.
type Window struct {
	maxRetry int
	findTime time.Duration
	seen     map[netip.Addr][]int64 // failure times in Unix nanoseconds, ascending
}

// NewWindow returns an empty window. maxRetry must be at least 1.
func NewWindow(maxRetry int, findTime time.Duration) *Window {
	return &Window{maxRetry: max(maxRetry, 1), findTime: findTime, seen: make(map[netip.Addr][]int64)}
}

// Add records a failure of addr at t, as seen at now. A failure older than findtime before
// now is dropped: replaying an old log bans nobody. It returns the number of failures of
// addr within findtime of its newest one, and whether that reached maxretry; if it did,
// the address's history is cleared, since its ban answers for it.
func (w *Window) Add(addr netip.Addr, t, now time.Time) (count int, reached bool) {
	if t.Before(now.Add(-w.findTime)) {
		return 0, false
	}
	ts := t.UnixNano()
	times := w.seen[addr]
	i, _ := slices.BinarySearch(times, ts+1) // after equal times: arrival order
	times = slices.Insert(times, i, ts)
	if len(times) > w.maxRetry {
		times = times[len(times)-w.maxRetry:]
	}
	newest := times[len(times)-1]
	first := 0
	for first < len(times) && newest-times[first] > int64(w.findTime) {
		first++
	}
	count = len(times) - first
	if count >= w.maxRetry {
		delete(w.seen, addr)
		return count, true
	}
	w.seen[addr] = times
	return count, false
}

// Forget drops addr's history.
func (w *Window) Forget(addr netip.Addr) { delete(w.seen, addr) }

// Prune drops addresses whose newest failure is older than findtime before now.
func (w *Window) Prune(now time.Time) {
	limit := now.Add(-w.findTime).UnixNano()
	for a, times := range w.seen {
		if times[len(times)-1] < limit {
			delete(w.seen, a)
		}
	}
}

// Len returns how many addresses have failures on record.
func (w *Window) Len() int { return len(w.seen) }
