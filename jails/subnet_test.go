package jails

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/logban/logban/actions"
)

// subnetJail is a jail that bans an address at 3 failures, and a /24 or /64 when five
// of its addresses fail within the hour.
func subnetJail(t *testing.T, ignore ...netip.Prefix) *Jail {
	return New("sasl", testFilter(t), Settings{MaxRetry: 3, FindTime: 10 * time.Minute, Ignore: NewIgnoreList(ignore...),
		Subnet: Subnet{IPv4: 24, IPv6: 64, Addresses: 5, FindTime: time.Hour}})
}

// failEach fails each address once, a minute apart from t0, and returns the tickets.
func failEach(j *Jail, addrs ...string) []Ticket {
	var out []Ticket
	for i, a := range addrs {
		at := t0.Add(time.Duration(i) * time.Minute)
		out = append(out, j.Failure(netip.MustParseAddr(a), at, at)...)
	}
	return out
}

func targets(ts []Ticket) string {
	var out []string
	for _, t := range ts {
		out = append(out, actions.Target(t.Prefix()))
	}
	return fmt.Sprint(out)
}

// Five addresses of one network failing once each, none near maxretry, ban the network;
// four do not, nor do five spread over two networks, nor one address failing five times.
func TestSubnetEscalation(t *testing.T) {
	tests := []struct {
		name  string
		addrs []string
		want  string
	}{
		{"five of one /24", []string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4", "198.51.100.5"}, "[198.51.100.0/24]"},
		{"four of one /24", []string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"}, "[]"},
		{"five over two /24s", []string{"198.51.100.1", "198.51.100.2", "198.51.101.3", "198.51.101.4", "198.51.100.5"}, "[]"},
		{"one address five times", []string{"198.51.100.1", "198.51.100.1", "198.51.100.1", "198.51.100.1", "198.51.100.1"}, "[198.51.100.1]"},
		{"an address twice counts once", []string{"198.51.100.1", "198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"}, "[]"},
		{"an address banned counts too", []string{"198.51.100.1", "198.51.100.1", "198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4", "198.51.100.5"}, "[198.51.100.1 198.51.100.0/24]"},
		{"five of one /64", []string{"2001:db8:5:1::a", "2001:db8:5:1::b", "2001:db8:5:1:1::c", "2001:db8:5:1::d", "2001:db8:5:1:ffff::e"}, "[2001:db8:5:1::/64]"},
		{"five over two /64s", []string{"2001:db8:5:1::a", "2001:db8:5:1::b", "2001:db8:5:2::c", "2001:db8:5:1::d", "2001:db8:5:2::e"}, "[]"},
		{"mapped addresses are IPv4", []string{"::ffff:198.51.100.1", "198.51.100.2", "::ffff:198.51.100.3", "198.51.100.4", "198.51.100.5"}, "[198.51.100.0/24]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := failEach(subnetJail(t), tt.addrs...)
			if targets(got) != tt.want {
				t.Errorf("tickets %s, want %s", targets(got), tt.want)
			}
			for _, tk := range got {
				if tk.Bits != 0 && (tk.Failures != 5 || tk.Why != "5 addresses of "+actions.Target(tk.Prefix())+" failed within 1h0m0s") {
					t.Errorf("ticket %+v", tk)
				}
			}
		})
	}
}

// An address counts within the subnet's findtime of the newest: the first of five
// failing an hour and a minute before the fifth no longer counts.
func TestSubnetFindTime(t *testing.T) {
	j := subnetJail(t)
	var got []Ticket
	for i, a := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4", "198.51.100.5", "198.51.100.6"} {
		at := t0.Add(time.Duration(i) * 61 * time.Minute / 5)
		got = append(got, j.Failure(netip.MustParseAddr(a), at, at)...)
	}
	if targets(got) != "[198.51.100.0/24]" || got[0].Failures != 5 {
		t.Fatalf("tickets %s (%+v), want the /24 at the sixth address", targets(got), got)
	}
	if c := j.Counts(t0.Add(3 * time.Hour)); c.CurrentlyFailedNets != 0 {
		t.Errorf("networks still tracked hours later: %d", c.CurrentlyFailedNets)
	}
}

// A network holding an address never banned (ignoreip, the host's own, loopback) is
// not banned, and the refusal is counted; its addresses still are, one by one.
func TestSubnetNeverOverIgnored(t *testing.T) {
	j := subnetJail(t, netip.MustParsePrefix("198.51.100.200/32"))
	got := failEach(j, "198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4", "198.51.100.5")
	if len(got) != 0 {
		t.Errorf("tickets %s: a /24 holding an ignored address was banned", targets(got))
	}
	if c := j.Counts(t0); c.NetsRefused != 1 {
		t.Errorf("refusals counted: %d, want 1", c.NetsRefused)
	}
	if got := failEach(j, "198.51.100.1", "198.51.100.1"); targets(got) != "[198.51.100.1]" {
		t.Errorf("the address itself: tickets %s", targets(got))
	}
}

// A jail without a subnet table counts addresses only.
func TestSubnetOff(t *testing.T) {
	j := New("sasl", testFilter(t), Settings{MaxRetry: 3, FindTime: time.Hour})
	if got := failEach(j, "198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4", "198.51.100.5", "198.51.100.6"); len(got) != 0 {
		t.Errorf("tickets %s", targets(got))
	}
}

// A network's ban holds its addresses: an address of it reaching maxretry needs no ban
// of its own, and an unban of that address says what holds it. An address banned
// before keeps its own ban, which outlives the network's when longer.
func TestNetworkBanHoldsItsAddresses(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: t0}
	m := newManager(clock)
	rec := &recorder{}
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: 3 * time.Hour, NetBanTime: time.Hour}, []NamedAction{{"rec", rec}})
	early := netip.MustParseAddr("198.51.100.9")
	ban(m, Ticket{Jail: "sasl", Addr: early, Failures: 3})
	net, ok := ban(m, Ticket{Jail: "sasl", Addr: netip.MustParseAddr("198.51.100.77"), Bits: 24, Failures: 5})
	if !ok || net.Target() != "198.51.100.0/24" || !net.Expires.Equal(t0.Add(time.Hour)) {
		t.Fatalf("network ban %+v, %v: want 198.51.100.0/24 for the subnet bantime", net, ok)
	}
	if _, ok := ban(m, Ticket{Jail: "sasl", Addr: netip.MustParseAddr("198.51.100.10"), Failures: 3}); ok {
		t.Error("an address inside the banned network got a ban of its own")
	}
	if _, ok := ban(m, Ticket{Jail: "sasl", Addr: netip.MustParseAddr("198.51.101.10"), Failures: 3}); !ok {
		t.Error("an address of the next network was not banned")
	}
	_, err := m.Unban(ctx, "", actions.Host(netip.MustParseAddr("198.51.100.10")))
	var covered *CoveredError
	if !errors.As(err, &covered) || !errors.Is(err, ErrNotBanned) || covered.By[0].Target() != "198.51.100.0/24" {
		t.Errorf("unban of a held address: %v", err)
	}
	settle(t, m)
	want := "ban sasl 198.51.100.9\nban sasl 198.51.100.0/24\nban sasl 198.51.101.10"
	if rec.String() != want {
		t.Errorf("calls\n%s\nwant\n%s", rec, want)
	}
	clock.Advance(time.Hour)
	if lifted := m.ExpireDue(ctx); len(lifted) != 1 || lifted[0].Target() != "198.51.100.0/24" {
		t.Errorf("expired %v, want the network alone", lifted)
	}
	if _, ok := m.Record("sasl", actions.Host(early)); !ok {
		t.Error("the address banned before the network lost its own, longer ban")
	}
	if _, err := m.Unban(ctx, "", netip.MustParsePrefix("198.51.101.0/24")); !errors.Is(err, ErrNotBanned) {
		t.Errorf("unban of a network never banned: %v", err)
	}
}

// A network banned again is banned longer, by its own ban history, as bantime_increment
// says; its first ban lasts the subnet bantime.
func TestNetworkBansIncrement(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: t0}
	m := newManager(clock)
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Minute, NetBanTime: time.Hour, Increment: Increment{Enabled: true, Factor: 1}}, []NamedAction{{"rec", &recorder{}}})
	net := Ticket{Jail: "sasl", Addr: netip.MustParseAddr("198.51.100.0"), Bits: 24, Failures: 5}
	for i, want := range []time.Duration{time.Hour, 2 * time.Hour} {
		b, ok := ban(m, net)
		if !ok || b.Expires.Sub(b.BannedAt) != want {
			t.Fatalf("ban %d of the network: %v, lasting %v; want %v", i+1, ok, b.Expires.Sub(b.BannedAt), want)
		}
		if _, err := m.Unban(ctx, "", b.Prefix()); err != nil {
			t.Fatal(err)
		}
	}
	if b, ok := ban(m, Ticket{Jail: "sasl", Addr: netip.MustParseAddr("198.51.100.7"), Failures: 3}); !ok || b.Expires.Sub(b.BannedAt) != time.Minute {
		t.Errorf("an address of the network, banned for the first time: %+v", b)
	}
}
