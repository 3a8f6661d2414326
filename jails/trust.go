package jails

import (
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Trust holds the pairs of account and address seen logging in successfully, and when
// last: an address known good for an account is never banned for failures against that
// account (the user's own phone with a stale password, at the user's own address). It
// is shared by the jails of a server and safe for concurrent use. A login of a pair
// already held allocates nothing: logins are as common as the mail users send.
type Trust struct {
	mu       sync.Mutex
	accounts map[string]map[[16]byte]int64 // last login, Unix nanoseconds, by account and address
	dirty    map[string]map[[16]byte]int64 // logins not yet saved
	pairs    int                           // pairs in accounts
	bound    int                           // the most pairs kept
	evicted  int64                         // pairs let go at the bound
}

// DefaultMaxTrustPairs bounds the pairs a Trust keeps: a login needs a working
// password, but one account's owner can log in from any number of addresses. At the
// bound, the oldest logins go first (an eighth at once): trust lost is a failure
// counted again, never a ban made easier.
const DefaultMaxTrustPairs = 1_000_000

// TrustedPair is one account and address, and when the address last logged in to it.
type TrustedPair struct {
	Account string
	Addr    netip.Addr
	Last    time.Time
}

// NewTrust returns an empty Trust.
func NewTrust() *Trust {
	return &Trust{accounts: map[string]map[[16]byte]int64{}, dirty: map[string]map[[16]byte]int64{}, bound: DefaultMaxTrustPairs}
}

// SetBound makes n the most pairs tr keeps (at least 1).
func (tr *Trust) SetBound(n int) {
	tr.mu.Lock()
	tr.bound = max(n, 1)
	tr.mu.Unlock()
}

// Evicted returns how many pairs tr let go at its bound.
func (tr *Trust) Evicted() int64 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.evicted
}

// Len returns how many pairs tr holds.
func (tr *Trust) Len() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.pairs
}

// shed lets the oldest logins go, down to seven eighths of the bound. tr.mu is held.
func (tr *Trust) shed() {
	excess := tr.pairs - shedTarget(tr.bound)
	if excess <= 0 {
		return
	}
	times := make([]int64, 0, tr.pairs)
	for _, addrs := range tr.accounts {
		for _, ns := range addrs {
			times = append(times, ns)
		}
	}
	slices.Sort(times)
	cutoff := times[excess-1] // every login up to it goes, ties included
	for account, addrs := range tr.accounts {
		for key, ns := range addrs {
			if ns <= cutoff {
				delete(addrs, key)
				delete(tr.dirty[account], key)
				tr.pairs--
				tr.evicted++
			}
		}
		if len(addrs) == 0 {
			delete(tr.accounts, account)
		}
	}
}

// loginResolution is how much newer than the one held a login must be to be recorded:
// trust lasts days, and a pair logging in all day is then written once an hour, not at
// each login.
const loginResolution = time.Hour

// Recent reports whether a login of account from addr at t (or later) would change
// nothing: one within loginResolution before it is held already.
func (tr *Trust) Recent(account []byte, addr netip.Addr, t time.Time) bool {
	tr.mu.Lock()
	last, held := tr.accounts[string(account)][addr.Unmap().As16()]
	tr.mu.Unlock()
	return held && last > t.UnixNano()-int64(loginResolution)
}

// Login records a login of account from addr at t.
func (tr *Trust) Login(account []byte, addr netip.Addr, t time.Time) {
	key, ns := addr.Unmap().As16(), t.UnixNano()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	addrs, ok := tr.accounts[string(account)]
	if last, held := addrs[key]; held && last > ns-int64(loginResolution) {
		return
	}
	name := string(account)
	if _, held := addrs[key]; !held {
		if tr.pairs >= tr.bound {
			tr.shed()
			addrs, ok = tr.accounts[name]
		}
		tr.pairs++
	}
	if !ok {
		addrs = map[[16]byte]int64{}
		tr.accounts[name] = addrs
	}
	addrs[key] = ns
	put(tr.dirty, name, key, ns)
}

// put sets m[name][key] to ns, making the inner map if needed.
func put(m map[string]map[[16]byte]int64, name string, key [16]byte, ns int64) {
	inner, ok := m[name]
	if !ok {
		inner = map[[16]byte]int64{}
		m[name] = inner
	}
	inner[key] = ns
}

// Good reports whether addr logged in to account within within before now.
func (tr *Trust) Good(account string, addr netip.Addr, now time.Time, within time.Duration) bool {
	if tr == nil || account == "" {
		return false
	}
	tr.mu.Lock()
	last, ok := tr.accounts[account][addr.Unmap().As16()]
	tr.mu.Unlock()
	return ok && last >= now.Add(-within).UnixNano()
}

// Load adds pairs read back from a database.
func (tr *Trust) Load(pairs []TrustedPair) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	putNewer(tr.accounts, pairs)
	tr.pairs = 0
	for _, addrs := range tr.accounts {
		tr.pairs += len(addrs)
	}
	if tr.pairs > tr.bound {
		tr.shed()
	}
}

// putNewer puts each pair in m, unless m holds a newer login of it.
func putNewer(m map[string]map[[16]byte]int64, pairs []TrustedPair) {
	for _, p := range pairs {
		key, ns := p.Addr.Unmap().As16(), p.Last.UnixNano()
		if ns > m[p.Account][key] {
			put(m, p.Account, key, ns)
		}
	}
}

// Unsaved returns the logins recorded since the last call, to be saved.
func (tr *Trust) Unsaved() []TrustedPair {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []TrustedPair
	for account, addrs := range tr.dirty {
		for key, ns := range addrs {
			out = append(out, TrustedPair{Account: account, Addr: netip.AddrFrom16(key).Unmap(), Last: time.Unix(0, ns)})
		}
	}
	clear(tr.dirty)
	return out
}

// Unsave hands back pairs Unsaved returned whose save failed: the next Unsaved returns
// them again, unless a newer login of the pair is waiting already.
func (tr *Trust) Unsave(pairs []TrustedPair) {
	tr.mu.Lock()
	putNewer(tr.dirty, pairs)
	tr.mu.Unlock()
}

// Forget drops the pairs whose last login is older than keep before now.
func (tr *Trust) Forget(now time.Time, keep time.Duration) {
	limit := now.Add(-keep).UnixNano()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for account, addrs := range tr.accounts {
		for key, last := range addrs {
			if last < limit {
				delete(addrs, key)
				tr.pairs--
			}
		}
		if len(addrs) == 0 {
			delete(tr.accounts, account)
		}
	}
}
