package jails

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// A jail keyed by user counts failures against one account across addresses: fifty
// addresses failing once each against one account are all banned, the first five at the
// account's fifth failure (before the 10 of Zimbra's zimbraPasswordLockoutMaxFailures
// default), each later one at its first failure while the account is under attack.
func TestAccountKeyBansEveryAddress(t *testing.T) {
	j := New("sasl", testFilter(t), Settings{MaxRetry: 5, FindTime: time.Hour, Key: KeyUser, BanAddresses: true})
	var banned []string
	firstAt := 0
	for i := range 50 {
		at := t0.Add(time.Duration(i) * time.Second)
		addr := netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)})
		for _, tk := range j.FailureOf(addr, "anna@example.com", at, at) {
			if tk.User != "anna@example.com" || tk.Bits != 0 {
				t.Errorf("ticket %+v", tk)
			}
			if firstAt == 0 {
				firstAt = i + 1
			}
			banned = append(banned, tk.Addr.String())
		}
	}
	if len(banned) != 50 || firstAt != 5 {
		t.Errorf("%d addresses banned, the first at failure %d; want all 50, from the 5th", len(banned), firstAt)
	}
	// Failures against other accounts, from one address each, stay under maxretry.
	for i := range 4 {
		if tks := j.FailureOf(netip.MustParseAddr("198.51.100.7"), fmt.Sprintf("user%d", i), t0, t0); len(tks) != 0 {
			t.Errorf("failure against user%d: %+v", i, tks)
		}
	}
	// A failure naming no account counts by its address.
	var got []Ticket
	for range 5 {
		got = append(got, j.FailureOf(netip.MustParseAddr("198.51.100.8"), "", t0, t0)...)
	}
	if len(got) != 1 || got[0].Addr.String() != "198.51.100.8" {
		t.Errorf("failures naming no account: %+v", got)
	}
}

// An address that logged in to an account within trust_time is never banned for
// failures against that account (the user's phone with a stale password): they are
// counted as known good instead. Its failures against another account count.
func TestKnownGoodAddress(t *testing.T) {
	trust := NewTrust()
	home := netip.MustParseAddr("203.0.113.50")
	trust.Login([]byte("anna@example.com"), home, t0.Add(-24*time.Hour))
	for _, key := range []string{KeyAddress, KeyUser} {
		t.Run(key, func(t *testing.T) {
			j := New("sasl", testFilter(t), Settings{MaxRetry: 3, FindTime: time.Hour, Key: key, BanAddresses: key == KeyUser, Trust: trust, TrustTime: 30 * 24 * time.Hour})
			var got []Ticket
			for i := range 20 {
				at := t0.Add(time.Duration(i) * time.Minute)
				got = append(got, j.FailureOf(home, "anna@example.com", at, at)...)
			}
			if len(got) != 0 || j.Counts(t0).KnownGood != 20 {
				t.Errorf("the user's own address: tickets %+v, %d known-good failures", got, j.Counts(t0).KnownGood)
			}
			for range 3 {
				got = append(got, j.FailureOf(home, "bob@example.com", t0, t0)...)
			}
			if len(got) != 1 || got[0].Addr != home {
				t.Errorf("failures against another account: %+v", got)
			}
		})
	}
	// Past trust_time, the address is trusted no more.
	j := New("sasl", testFilter(t), Settings{MaxRetry: 3, FindTime: time.Hour, Trust: trust, TrustTime: time.Hour})
	var got []Ticket
	for range 3 {
		got = append(got, j.FailureOf(home, "anna@example.com", t0, t0)...)
	}
	if len(got) != 1 {
		t.Errorf("a login a day old, trust_time 1h: tickets %+v", got)
	}
}

// In a jail keyed by user, the account's own known-good addresses are left out of the
// addresses banned when it reaches maxretry.
func TestAccountKeySparesKnownGood(t *testing.T) {
	trust := NewTrust()
	home := netip.MustParseAddr("203.0.113.50")
	trust.Login([]byte("anna@example.com"), home, t0)
	j := New("sasl", testFilter(t), Settings{MaxRetry: 3, FindTime: time.Hour, Key: KeyUser, BanAddresses: true, Trust: trust, TrustTime: time.Hour})
	var got []Ticket
	for i := range 3 {
		got = append(got, j.FailureOf(netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)}), "anna@example.com", t0, t0)...)
	}
	if targets(got) != "[198.51.100.1 198.51.100.2 198.51.100.3]" {
		t.Errorf("tickets %s", targets(got))
	}
}

// One login (of an account the attacker owns) does not shield the network around its
// address: five other addresses of the /24 failing still ban it. The login spares
// only its own address's failures against its own account, which do not count
// toward the network either.
func TestOneLoginDoesNotShieldItsNetwork(t *testing.T) {
	trust := NewTrust()
	owned := netip.MustParseAddr("198.51.100.200")
	trust.Login([]byte("mallory@example.com"), owned, t0)
	j := New("sasl", testFilter(t), Settings{MaxRetry: 3, FindTime: 10 * time.Minute, Trust: trust, TrustTime: time.Hour,
		Subnet: Subnet{IPv4: 24, Addresses: 5, FindTime: time.Hour}})
	if got := failEach(j, "198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4", "198.51.100.5"); targets(got) != "[198.51.100.0/24]" {
		t.Errorf("a /24 holding an address that logged in: tickets %s, want the /24", targets(got))
	}
	// A NATed office is kept safe another way: its users' failures from the address
	// they log in from, against their own accounts, count for nothing.
	j = New("sasl", testFilter(t), Settings{MaxRetry: 3, FindTime: 10 * time.Minute, Trust: trust, TrustTime: time.Hour,
		Subnet: Subnet{IPv4: 24, Addresses: 2, FindTime: time.Hour}})
	var got []Ticket
	for range 10 {
		got = append(got, j.FailureOf(owned, "mallory@example.com", t0, t0)...)
	}
	got = append(got, j.Failure(netip.MustParseAddr("198.51.100.9"), t0, t0)...)
	if len(got) != 0 {
		t.Errorf("known-good failures counted toward the network: tickets %s", targets(got))
	}
}

// A jail reading a login that worked records it in its Trust.
func TestJailRecordsLogins(t *testing.T) {
	trust := NewTrust()
	j := New("sasl", loginFilter(t), Settings{MaxRetry: 3, FindTime: time.Hour, Trust: trust, TrustTime: time.Hour})
	j.Line([]byte(t0.Format(time.RFC3339)+" ok anna@example.com from 203.0.113.50"), t0)
	if !trust.Good("anna@example.com", netip.MustParseAddr("203.0.113.50"), t0, time.Hour) || j.Counts(t0).Logins != 1 {
		t.Error("the login was not recorded")
	}
	if got := trust.Unsaved(); len(got) != 1 || got[0].Account != "anna@example.com" {
		t.Errorf("unsaved logins %+v", got)
	}
}
