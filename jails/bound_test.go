package jails

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// v6 returns the i-th address of a flood of IPv6 addresses, each in its own /64.
func v6(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i), 15: 1})
}

// A flood of addresses each failing once, each in its own /64, never grows a jail's
// tables past their bound; it pushes out only entries that failed as little, so a
// brute force under way keeps its count and is banned at its maxretry; and what was
// let go is counted.
func TestFloodStaysWithinTheBound(t *testing.T) {
	const bound = 1000
	j := New("sasl", testFilter(t), Settings{MaxRetry: 5, FindTime: time.Hour, MaxTracked: bound, Key: KeyUser,
		Subnet: Subnet{IPv4: 24, IPv6: 64, Addresses: 5, FindTime: time.Hour}})
	brute := netip.MustParseAddr("203.0.113.9")
	for range 4 {
		if got := j.FailureOf(brute, "anna@example.com", t0, t0); len(got) != 0 {
			t.Fatalf("banned before maxretry: %s", targets(got))
		}
	}
	for i := range 50 * bound {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		j.FailureOf(v6(i), fmt.Sprintf("guess%d@example.com", i), at, at)
		j.mu.Lock()
		addrs, nets, keys := j.window.Len(), len(j.nets.nets), len(j.keys.accounts)
		j.mu.Unlock()
		if addrs > bound || nets > bound || keys > bound {
			t.Fatalf("after %d addresses: %d addresses, %d networks, %d keys tracked, past the bound of %d", i+1, addrs, nets, keys, bound)
		}
	}
	if c := j.Counts(t0); c.Evicted < 3*(50*bound-bound) {
		t.Errorf("evicted %d, want each table's excess counted", c.Evicted)
	}
	at := t0.Add(time.Minute)
	if got := j.FailureOf(brute, "anna@example.com", at, at); targets(got) != "[203.0.113.9]" {
		t.Errorf("the brute force's 5th failure after the flood: tickets %s; its count was pushed out", targets(got))
	}
}

func TestShedFewest(t *testing.T) {
	m := map[string]int{"a": 1, "b": 3, "c": 1, "d": 2, "e": 5, "f": 2}
	removed := shedFewest(m, 3, 5, func(v int) int { return v }, func(k string, _ int) { delete(m, k) })
	if removed != 3 || len(m) != 3 || m["b"] != 3 || m["e"] != 5 {
		t.Errorf("removed %d, left %v: want the two 1s and one 2 gone", removed, m)
	}
}

// One account's owner logging in from any number of addresses fills the trust table
// only up to its bound, the oldest logins let go first.
func TestTrustIsBounded(t *testing.T) {
	tr := NewTrust()
	tr.SetBound(1000)
	for i := range 20_000 {
		tr.Login([]byte("mallory@example.com"), v6(i), t0.Add(time.Duration(i)*time.Second))
		if n := tr.Len(); n > 1000 {
			t.Fatalf("after %d logins the trust holds %d pairs, past its bound of 1000", i+1, n)
		}
	}
	last := t0.Add(19_999 * time.Second)
	if !tr.Good("mallory@example.com", v6(19_999), last, time.Hour) || tr.Good("mallory@example.com", v6(0), last, 48*time.Hour) {
		t.Error("the newest login was let go, or the oldest kept")
	}
	if tr.Evicted() < 19_000 {
		t.Errorf("evicted %d", tr.Evicted())
	}
}
