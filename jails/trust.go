package jails

import (
	"net/netip"
	"sync"
	"time"
)

// Trust holds the pairs of account and address seen logging in successfully, and when
// last: an address known good for an account is never banned for failures against that
// account (the user's own phone with a stale password, at the user's own address). It
// is shared by the jails of a server and safe for concurrent use.
type Trust struct {
	mu    sync.Mutex
	pairs map[trustKey]int64 // last login, Unix nanoseconds
	dirty map[trustKey]int64 // logins not yet saved
}

type trustKey struct {
	account string
	addr    [16]byte
}

// TrustedPair is one account and address, and when the address last logged in to it.
type TrustedPair struct {
	Account string
	Addr    netip.Addr
	Last    time.Time
}

// NewTrust returns an empty Trust.
func NewTrust() *Trust {
	return &Trust{pairs: map[trustKey]int64{}, dirty: map[trustKey]int64{}}
}

func keyOf(account string, addr netip.Addr) trustKey {
	return trustKey{account, addr.Unmap().As16()}
}

// Login records a login of account from addr at t.
func (tr *Trust) Login(account string, addr netip.Addr, t time.Time) {
	k, ns := keyOf(account, addr), t.UnixNano()
	tr.mu.Lock()
	if ns > tr.pairs[k] {
		tr.pairs[k] = ns
		tr.dirty[k] = ns
	}
	tr.mu.Unlock()
}

// Good reports whether addr logged in to account within within before now.
func (tr *Trust) Good(account string, addr netip.Addr, now time.Time, within time.Duration) bool {
	if tr == nil || account == "" {
		return false
	}
	tr.mu.Lock()
	last, ok := tr.pairs[keyOf(account, addr)]
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
	for k, last := range tr.pairs {
		if a := netip.AddrFrom16(k.addr).Unmap(); last >= limit && p.Contains(a) {
			return TrustedPair{Account: k.account, Addr: a, Last: time.Unix(0, last)}, true
		}
	}
	return TrustedPair{}, false
}

// Load adds pairs read back from a database.
func (tr *Trust) Load(pairs []TrustedPair) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, p := range pairs {
		k, ns := keyOf(p.Account, p.Addr), p.Last.UnixNano()
		if ns > tr.pairs[k] {
			tr.pairs[k] = ns
		}
	}
}

// Unsaved returns the logins recorded since the last call, to be saved.
func (tr *Trust) Unsaved() []TrustedPair {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := make([]TrustedPair, 0, len(tr.dirty))
	for k, ns := range tr.dirty {
		out = append(out, TrustedPair{Account: k.account, Addr: netip.AddrFrom16(k.addr).Unmap(), Last: time.Unix(0, ns)})
	}
	clear(tr.dirty)
	return out
}

// Forget drops the pairs whose last login is older than keep before now, and returns
// how many are left.
func (tr *Trust) Forget(now time.Time, keep time.Duration) int {
	limit := now.Add(-keep).UnixNano()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for k, last := range tr.pairs {
		if last < limit {
			delete(tr.pairs, k)
		}
	}
	return len(tr.pairs)
}
