package jails

import (
	"net/netip"
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
}

// TrustedPair is one account and address, and when the address last logged in to it.
type TrustedPair struct {
	Account string
	Addr    netip.Addr
	Last    time.Time
}

// NewTrust returns an empty Trust.
func NewTrust() *Trust {
	return &Trust{accounts: map[string]map[[16]byte]int64{}, dirty: map[string]map[[16]byte]int64{}}
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

// Inside returns a pair whose address lies in p and logged in within within before now,
// if there is one. It looks at every pair: it serves the rare escalation to a network.
func (tr *Trust) Inside(p netip.Prefix, now time.Time, within time.Duration) (TrustedPair, bool) {
	if tr == nil {
		return TrustedPair{}, false
	}
	limit := now.Add(-within).UnixNano()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for account, addrs := range tr.accounts {
		for key, last := range addrs {
			if a := netip.AddrFrom16(key).Unmap(); last >= limit && p.Contains(a) {
				return TrustedPair{Account: account, Addr: a, Last: time.Unix(0, last)}, true
			}
		}
	}
	return TrustedPair{}, false
}

// Load adds pairs read back from a database.
func (tr *Trust) Load(pairs []TrustedPair) {
	tr.mu.Lock()
	putNewer(tr.accounts, pairs)
	tr.mu.Unlock()
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
			}
		}
		if len(addrs) == 0 {
			delete(tr.accounts, account)
		}
	}
}
