package jails

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// A rate jail keyed by device: 150 requests within 30 s, from any addresses, ban the
// device once; its addresses only where the jail says ban_addresses.
func TestDeviceKeyedRate(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	office := []netip.Addr{netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("203.0.113.11"), netip.MustParseAddr("2001:db8::11")}
	for _, banAddrs := range []bool{false, true} {
		var keyBans []KeyBan
		j := New("mobile", testFilter(t), Settings{MaxRetry: 150, FindTime: 30 * time.Second, Key: KeyDevice, BanAddresses: banAddrs,
			KeyBan: func(b KeyBan) { keyBans = append(keyBans, b) }})
		var tickets []Ticket
		at := func(i int) time.Time { return t0.Add(time.Duration(i) * 190 * time.Millisecond) } // 150 requests in 28.3 s
		// Another device, with 300 requests over two minutes (75 in any 30 s), and
		// requests naming no device, count toward nothing.
		for i := range 300 {
			at := t0.Add(time.Duration(i) * 400 * time.Millisecond)
			tickets = append(tickets, j.RequestOf(office[0], "SEC1", at, at)...)
			tickets = append(tickets, j.RequestOf(office[0], "", at, at)...)
		}
		for i := range 149 {
			tickets = append(tickets, j.RequestOf(office[i%3], "ApplF17XK0ZZHG7F", at(i), at(i))...)
		}
		if len(keyBans) != 0 || len(tickets) != 0 {
			t.Fatalf("ban_addresses %v: under the rate: %d key bans, %d tickets", banAddrs, len(keyBans), len(tickets))
		}
		tickets = j.RequestOf(office[2], "ApplF17XK0ZZHG7F", at(149), at(149))
		if len(keyBans) != 1 || keyBans[0].Key != "ApplF17XK0ZZHG7F" || keyBans[0].Kind != KeyDevice || keyBans[0].Count != 150 || len(keyBans[0].Addrs) != 3 {
			t.Fatalf("ban_addresses %v: key bans %+v, want the device's, 150 requests from 3 addresses", banAddrs, keyBans)
		}
		if want := map[bool]int{false: 0, true: 3}[banAddrs]; len(tickets) != want {
			t.Fatalf("ban_addresses %v: %d tickets, want %d", banAddrs, len(tickets), want)
		}
		// While it is hot, a new address of the device is banned at its first request;
		// the device is not banned again.
		tickets = j.RequestOf(netip.MustParseAddr("198.51.100.7"), "ApplF17XK0ZZHG7F", at(150), at(150))
		if want := map[bool]int{false: 0, true: 1}[banAddrs]; len(tickets) != want || len(keyBans) != 1 {
			t.Fatalf("ban_addresses %v: while hot: %d tickets (want %d), %d key bans", banAddrs, len(tickets), want, len(keyBans))
		}
		if banAddrs && tickets[0].Why != "sent from by device ApplF17XK0ZZHG7F, which made 150 requests within 30s" {
			t.Errorf("why: %q", tickets[0].Why)
		}
	}
}

func TestKeyBans(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	k := NewKeyBans()
	d := KeyBan{Jail: "mobile", Kind: KeyDevice, Key: "D1", Count: 150, BannedAt: t0, Expires: t0.Add(10 * time.Minute)}
	u := KeyBan{Jail: "sasl", Kind: KeyUser, Key: "bob", Count: 5, BannedAt: t0}
	if !k.Ban(d) || !k.Ban(u) || k.Ban(d) {
		t.Fatal("Ban: want new, new, then banned already")
	}
	c := k.Unsaved()
	if len(c.Saves) != 2 || len(c.Deletes) != 0 || !k.Unsaved().Empty() {
		t.Fatalf("unsaved %+v", c)
	}
	if got := k.Expire(t0.Add(10*time.Minute - time.Second)); len(got) != 0 {
		t.Fatalf("expired early: %+v", got)
	}
	got := k.Expire(t0.Add(10 * time.Minute))
	if len(got) != 1 || got[0].Key != "D1" || len(k.List("")) != 1 {
		t.Fatalf("expired %+v, left %+v", got, k.List(""))
	}
	c = k.Unsaved()
	if len(c.Deletes) != 1 || c.Deletes[0].Key != "D1" {
		t.Fatalf("unsaved after expiry %+v", c)
	}
	k.Unsave(c) // recording failed
	if c2 := k.Unsaved(); len(c2.Deletes) != 1 {
		t.Fatalf("given back: %+v", c2)
	}
	if _, ok := k.Unban("sasl", KeyUser, "bob"); !ok {
		t.Fatal("Unban of a permanent ban")
	}
	if _, ok := k.Unban("sasl", KeyUser, "bob"); ok {
		t.Fatal("Unban twice")
	}
	// A restart: the ban that ended while stopped is returned and forgotten.
	k2 := NewKeyBans()
	ended := k2.Load([]KeyBan{d, u}, t0.Add(time.Hour))
	if len(ended) != 1 || ended[0].Key != "D1" || len(k2.List("sasl")) != 1 || len(k2.List("mobile")) != 0 {
		t.Fatalf("load: ended %+v, in force %+v", ended, k2.List(""))
	}
	if c := k2.Unsaved(); len(c.Deletes) != 1 || len(c.Saves) != 0 {
		t.Fatalf("load: unsaved %+v", c)
	}
}

// A rate jail keyed by user bans the account at its 150th request within 30 s, and,
// without ban_addresses, no address.
func TestUserKeyedRate(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	var keyBans []KeyBan
	j := New("mobile-users", testFilter(t), Settings{MaxRetry: 150, FindTime: 30 * time.Second, Key: KeyUser, Rate: true,
		KeyBan: func(b KeyBan) { keyBans = append(keyBans, b) }})
	for i := range 150 {
		at := t0.Add(time.Duration(i) * 150 * time.Millisecond)
		if tickets := j.FailureOf(netip.MustParseAddr("203.0.113.10"), "anna", at, at); len(tickets) != 0 {
			t.Fatalf("request %d: tickets %+v", i+1, tickets)
		}
		if want := map[bool]int{false: 0, true: 1}[i == 149]; len(keyBans) != want {
			t.Fatalf("request %d: %d key bans", i+1, len(keyBans))
		}
	}
	if b := keyBans[0]; b.Kind != KeyUser || b.Key != "anna" || b.User != "anna" || b.Count != 150 {
		t.Errorf("key ban %+v", b)
	}
}

// One address guessing passwords of 40 accounts, each failing once or twice, in a
// jail keyed by user: its own failures reach maxretry and it is banned, as in any
// jail. And ten spellings of one account are one account.
func TestUserKeyedJailCountsTheAddressToo(t *testing.T) {
	var keyBans []KeyBan
	j := New("sasl-users", testFilter(t), Settings{MaxRetry: 5, FindTime: time.Hour, Key: KeyUser,
		KeyBan: func(b KeyBan) { keyBans = append(keyBans, b) }})
	sprayer := netip.MustParseAddr("203.0.113.66")
	var got []Ticket
	for i := range 40 {
		got = append(got, j.FailureOf(sprayer, fmt.Sprintf("user%d@example.com", i), t0, t0)...)
		if i == 3 && len(got) != 0 {
			t.Fatalf("banned before maxretry: %s", targets(got))
		}
		if len(got) > 0 {
			break
		}
	}
	if targets(got) != "[203.0.113.66]" || len(keyBans) != 0 {
		t.Errorf("sprayer: tickets %s, key bans %d; want the address at its 5th failure, no account banned", targets(got), len(keyBans))
	}

	j = New("sasl-users", testFilter(t), Settings{MaxRetry: 5, FindTime: time.Hour, Key: KeyUser,
		KeyBan: func(b KeyBan) { keyBans = append(keyBans, b) }})
	for i, name := range []string{"Anna@Example.com", "ANNA@EXAMPLE.COM", "anna@example.com", "aNNa@example.COM", "AnNa@ExAmPlE.cOm"} {
		j.FailureOf(netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)}), name, t0, t0)
	}
	if len(keyBans) != 1 || keyBans[0].Key != "anna@example.com" {
		t.Errorf("five spellings of one account from five addresses: key bans %+v, want anna@example.com once", keyBans)
	}
}
