package jails

import (
	"net/netip"
	"slices"
	"time"
)

// Window counts failures per address and reports when one reaches maxretry within
// findtime. It keeps at most maxretry timestamps per address. It is not safe for
// concurrent use; Jail serialises access.
//
// A jail may track millions of addresses that failed once or twice, so the layout is
// kept small and nearly free of pointers (the garbage collector does not scan it): a
// map from the 16-byte address to a slot, and each slot's timestamps in fixed-size
// chunks, which grow without copying: 89 bytes an address at maxretry 5
// (BenchmarkTrackedAddressMemory).
type Window struct {
	maxRetry int
	findTime time.Duration
	bound    int   // the most addresses kept (bound.go)
	evicted  int64 // addresses let go at the bound, before their time
	slots    map[[16]byte]uint32
	chunks   []*windowChunk
	free     []uint32 // slots to reuse
}

// chunkSlots is how many addresses' slots a windowChunk holds.
const chunkSlots = 1024

// windowChunk holds chunkSlots slots: each slot's failure times (maxRetry of them, Unix
// nanoseconds, ascending) and how many of them are in use.
type windowChunk struct {
	times []int64
	lens  [chunkSlots]uint32
}

// NewWindow returns an empty window keeping at most DefaultMaxTracked addresses.
// maxRetry must be at least 1.
func NewWindow(maxRetry int, findTime time.Duration) *Window {
	return &Window{maxRetry: max(maxRetry, 1), findTime: findTime, bound: DefaultMaxTracked, slots: make(map[[16]byte]uint32)}
}

// SetBound makes n the most addresses w keeps (at least 1).
func (w *Window) SetBound(n int) { w.bound = max(n, 1) }

// Evicted returns how many addresses w let go at its bound before their time.
func (w *Window) Evicted() int64 { return w.evicted }

// shed makes room at the bound: the addresses that aged out go, then those with the
// fewest failures.
func (w *Window) shed(now time.Time) {
	w.Prune(now)
	w.evicted += int64(shedFewest(w.slots, shedTarget(w.bound), w.maxRetry,
		func(slot uint32) int { _, n := w.slot(slot); return n },
		w.release))
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
	key := addr.As16()
	slot, ok := w.slots[key]
	if !ok {
		if len(w.slots) >= w.bound {
			w.shed(now)
		}
		slot = w.alloc()
		w.slots[key] = slot
	}
	times, n := w.slot(slot)
	i, _ := slices.BinarySearch(times[:n], ts+1) // after equal times: arrival order
	if n == w.maxRetry {                         // full: the oldest goes, which is ts itself if i == 0
		if i > 0 {
			copy(times, times[1:i])
			times[i-1] = ts
		}
	} else {
		copy(times[i+1:n+1], times[i:n])
		times[i] = ts
		n++
	}
	newest := times[n-1]
	first := 0
	for first < n && newest-times[first] > int64(w.findTime) {
		first++
	}
	count = n - first
	if count >= w.maxRetry {
		w.release(key, slot)
		return count, true
	}
	w.chunks[slot/chunkSlots].lens[slot%chunkSlots] = uint32(n)
	return count, false
}

// slot returns a slot's times, all maxRetry of them, and how many are in use.
func (w *Window) slot(slot uint32) ([]int64, int) {
	c, i := w.chunks[slot/chunkSlots], int(slot%chunkSlots)
	return c.times[i*w.maxRetry : (i+1)*w.maxRetry], int(c.lens[i])
}

// alloc returns an empty slot.
func (w *Window) alloc() uint32 {
	if k := len(w.free); k > 0 {
		slot := w.free[k-1]
		w.free = w.free[:k-1]
		return slot
	}
	c := &windowChunk{times: make([]int64, chunkSlots*w.maxRetry)}
	w.chunks = append(w.chunks, c)
	first := uint32(len(w.chunks)-1) * chunkSlots
	for slot := first + chunkSlots - 1; slot > first; slot-- {
		w.free = append(w.free, slot) // handed out lowest first
	}
	return first
}

// release forgets the address holding slot.
func (w *Window) release(key [16]byte, slot uint32) {
	delete(w.slots, key)
	w.chunks[slot/chunkSlots].lens[slot%chunkSlots] = 0
	w.free = append(w.free, slot)
	if len(w.slots) == 0 && len(w.chunks) > 1 { // a burst is over: its memory goes
		w.slots, w.chunks, w.free = make(map[[16]byte]uint32), nil, nil
	}
}

// Forget drops addr's history.
func (w *Window) Forget(addr netip.Addr) {
	key := addr.As16()
	if slot, ok := w.slots[key]; ok {
		w.release(key, slot)
	}
}

// Prune drops addresses whose newest failure is older than findtime before now.
func (w *Window) Prune(now time.Time) {
	limit := now.Add(-w.findTime).UnixNano()
	for key, slot := range w.slots {
		if times, n := w.slot(slot); times[n-1] < limit {
			w.release(key, slot)
		}
	}
}

// Len returns how many addresses have failures on record.
func (w *Window) Len() int { return len(w.slots) }
