package jails

import (
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Keys a jail counts failures (or requests) by.
const (
	KeyAddress = "address" // each address on its own (the default)
	KeyUser    = "user"    // each account, across the addresses failing against it
	KeyDevice  = "device"  // each device (an ActiveSync DeviceId), across its addresses
)

// maxKeyAddrs is the most addresses a key's window remembers; past it, the oldest
// goes. It bounds the memory a wide attack on one account takes.
const maxKeyAddrs = 1024

// keyWindow counts failures (or, in a rate jail, requests) per key, an account or a
// device, across addresses. A key reaching maxretry within findtime turns hot for
// findtime: the addresses seen with it within findtime are handed back, and so is each
// address seen with it while it stays hot, at its first line. An account costs 152
// bytes with one failure and 248 with four, beside its name
// (BenchmarkTrackedAccountMemory). It is not safe for concurrent use; Jail serialises
// access.
type keyWindow struct {
	maxRetry int
	findTime time.Duration
	accounts map[string]*keyEvents
	bound    int   // the most keys kept (bound.go)
	evicted  int64 // keys let go at the bound, before their time
}

// keyEvents are one key's recent failures: their times (at most maxretry, ascending),
// the addresses they came from, and until when it is hot.
type keyEvents struct {
	times    []int64
	addrs    []netSeen
	hotUntil int64
}

func newKeyWindow(maxRetry int, findTime time.Duration, bound int) *keyWindow {
	return &keyWindow{maxRetry: max(maxRetry, 1), findTime: findTime, accounts: map[string]*keyEvents{}, bound: max(bound, 1)}
}

// add records a failure against account (or a request of a device) from addr at t,
// seen at now. It returns the key's failures within findtime, and the addresses to ban
// now: none while the key stays under maxretry; every address seen with it within
// findtime when it reaches it (reached is then true); addr alone while it is hot.
func (w *keyWindow) add(account string, addr netip.Addr, t, now time.Time) (n int, addrs []netip.Addr, reached bool) {
	if t.Before(now.Add(-w.findTime)) {
		return 0, nil, false
	}
	ts, limit := t.UnixNano(), t.UnixNano()-int64(w.findTime)
	a, ok := w.accounts[account]
	if !ok {
		if len(w.accounts) >= w.bound {
			w.prune(now)
			w.evicted += int64(shedFewest(w.accounts, shedTarget(w.bound), w.maxRetry,
				func(a *keyEvents) int { return len(a.times) },
				func(k string, _ *keyEvents) { delete(w.accounts, k) }))
		}
		a = &keyEvents{}
		w.accounts[account] = a
	}
	a.times = slices.DeleteFunc(a.times, func(x int64) bool { return x < limit })
	a.times = insertTime(a.times, ts, w.maxRetry)
	me := addr.As16()
	a.addrs = slices.DeleteFunc(a.addrs, func(e netSeen) bool { return e.addr == me || e.at < limit })
	if len(a.addrs) == maxKeyAddrs {
		a.addrs = a.addrs[1:]
	}
	a.addrs = append(a.addrs, netSeen{me, ts})
	switch {
	case ts <= a.hotUntil:
		return len(a.times), []netip.Addr{addr}, false
	case len(a.times) < w.maxRetry:
		return len(a.times), nil, false
	}
	a.hotUntil = ts + int64(w.findTime)
	out := make([]netip.Addr, len(a.addrs))
	for i, e := range a.addrs {
		out[i] = netip.AddrFrom16(e.addr).Unmap()
	}
	return len(a.times), out, true
}

// insertTime adds ts to times (ascending, at most limit of them: the oldest goes when
// it is full, which is ts itself if it is older than all), after any equal time. It
// grows times by doubling up to limit, so a key at its maxretry (a rate jail's busy
// device) costs no allocation per line, and one with a few holds little more than
// their times.
func insertTime(times []int64, ts int64, limit int) []int64 {
	if len(times) == limit {
		if ts < times[0] {
			return times
		}
		copy(times, times[1:])
		times = times[:len(times)-1]
	}
	if len(times) == cap(times) {
		grown := make([]int64, len(times), min(max(1, 2*cap(times)), limit))
		copy(grown, times)
		times = grown
	}
	i, _ := slices.BinarySearch(times, ts+1)
	return slices.Insert(times, i, ts)
}

// prune drops the accounts with no failure within findtime before now, and no longer
// hot.
func (w *keyWindow) prune(now time.Time) {
	limit := now.Add(-w.findTime).UnixNano()
	for name, a := range w.accounts {
		if (len(a.times) == 0 || a.times[len(a.times)-1] < limit) && a.hotUntil < now.UnixNano() {
			delete(w.accounts, name)
		}
	}
}

// accountWhy says what led to the ban of an address that failed against an account.
func accountWhy(account string, n int, findTime time.Duration) string {
	return fmt.Sprintf("failed against account %s, which had %d failures within %s", account, n, findTime)
}

// deviceWhy says what led to the ban of an address a device sent from.
func deviceWhy(device string, n int, findTime time.Duration) string {
	return fmt.Sprintf("sent from by device %s, which made %d requests within %s", device, n, findTime)
}
