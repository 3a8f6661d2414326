package jails

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/filters"
)

var t0 = time.Date(2026, 3, 5, 16, 0, 0, 0, time.UTC)

func testFilter(t *testing.T) *filters.Filter {
	t.Helper()
	f, err := filters.New("t", filters.Definition{FailRegex: []string{`^(?P<ts>\S+) fail from <HOST>$`}}, filters.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.SetLocation(time.UTC)
	return f
}

// failure is one line fed to a jail: the line's own time and the time it is read.
type failure struct {
	addr     string
	at, read time.Duration // offsets from t0
}

func TestJailCounting(t *testing.T) {
	const findTime = time.Hour
	tests := []struct {
		name     string
		maxRetry int
		lines    []failure
		banned   []string // addresses ticketed, in order
	}{
		{"exactly maxretry inside findtime", 3,
			[]failure{{"192.0.2.1", 0, 0}, {"192.0.2.1", 30 * time.Minute, 30 * time.Minute}, {"192.0.2.1", findTime, findTime}},
			[]string{"192.0.2.1"}},
		{"just outside findtime", 3,
			[]failure{{"192.0.2.1", 0, 0}, {"192.0.2.1", 30 * time.Minute, 30 * time.Minute}, {"192.0.2.1", findTime + time.Second, findTime + time.Second}},
			nil},
		{"one short of maxretry", 3,
			[]failure{{"192.0.2.1", 0, 0}, {"192.0.2.1", time.Minute, time.Minute}},
			nil},
		{"maxretry 1", 1,
			[]failure{{"192.0.2.1", 0, 0}},
			[]string{"192.0.2.1"}},
		{"addresses count apart", 2,
			[]failure{{"192.0.2.1", 0, 0}, {"192.0.2.2", 0, 0}, {"192.0.2.3", 0, 0}, {"192.0.2.2", 1, 1}},
			[]string{"192.0.2.2"}},
		{"old lines replayed ban nobody", 2,
			[]failure{{"192.0.2.1", 0, 5 * time.Hour}, {"192.0.2.1", time.Second, 5 * time.Hour}, {"192.0.2.1", 2 * time.Second, 5 * time.Hour}},
			nil},
		{"old lines do not help recent ones", 2,
			[]failure{{"192.0.2.1", 0, 2 * time.Hour}, {"192.0.2.1", 2 * time.Hour, 2 * time.Hour}},
			nil},
		{"a failure exactly findtime old still counts", 2,
			[]failure{{"192.0.2.1", 0, findTime}, {"192.0.2.1", findTime, findTime}},
			[]string{"192.0.2.1"}},
		{"out of order lines from two files", 3,
			[]failure{{"192.0.2.1", 50 * time.Minute, 50 * time.Minute}, {"192.0.2.1", 9 * time.Minute, 50 * time.Minute}, {"192.0.2.1", 70 * time.Minute, 70 * time.Minute}},
			nil}, // 9m and 70m are more than findtime apart: 2 within the window
		{"history cleared by the ban", 2,
			[]failure{{"192.0.2.1", 0, 0}, {"192.0.2.1", 1, 1}, {"192.0.2.1", 2, 2}},
			[]string{"192.0.2.1"}},
		{"IPv6", 2,
			[]failure{{"2001:db8::1", 0, 0}, {"2001:db8::1", 1, 1}},
			[]string{"2001:db8::1"}},
		{"mapped and plain IPv4 are one address", 2,
			[]failure{{"::ffff:192.0.2.7", 0, 0}, {"192.0.2.7", 1, 1}},
			[]string{"192.0.2.7"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := New("sasl", testFilter(t), Settings{MaxRetry: tt.maxRetry, FindTime: findTime})
			var got []string
			for _, f := range tt.lines {
				line := fmt.Sprintf("%s fail from %s", t0.Add(f.at).Format(time.RFC3339), f.addr)
				for _, tk := range j.Line([]byte(line), t0.Add(f.read)) {
					got = append(got, tk.Addr.String())
					if tk.Jail != "sasl" || tk.Failures != tt.maxRetry {
						t.Errorf("ticket %+v", tk)
					}
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.banned) {
				t.Errorf("banned %v, want %v", got, tt.banned)
			}
		})
	}
}

func TestIgnoreList(t *testing.T) {
	l := NewIgnoreList(
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("192.0.2.10/32"),
		netip.MustParsePrefix("2001:db8:1::/48"),
		netip.MustParsePrefix("::ffff:198.51.100.0/120"), // mapped prefix → 198.51.100.0/24
	)
	tests := []struct {
		addr   string
		ignore bool
	}{
		{"127.0.0.1", true}, {"127.8.9.10", true}, {"::1", true}, {"::ffff:127.0.0.1", true},
		{"0.0.0.0", true}, {"::", true},
		{"10.1.2.3", true}, {"::ffff:10.1.2.3", true}, {"11.0.0.1", false},
		{"192.0.2.10", true}, {"192.0.2.11", false},
		{"2001:db8:1:ffff::1", true}, {"2001:db8:2::1", false},
		{"198.51.100.200", true}, {"198.51.101.1", false},
		// addresses no ban can mean
		{"255.255.255.255", true}, {"224.0.0.1", true}, {"239.1.2.3", true}, {"ff02::1", true},
		{"169.254.1.1", true}, {"fe80::1", true}, {"::ffff:169.254.1.1", true},
		{"203.0.113.255", false}, // another network's broadcast is an address like any
	}
	for _, tt := range tests {
		if got := l.Contains(netip.MustParseAddr(tt.addr)); got != tt.ignore {
			t.Errorf("Contains(%s) = %v, want %v", tt.addr, got, tt.ignore)
		}
	}
}

func TestJailNeverBansIgnored(t *testing.T) {
	j := New("sasl", testFilter(t), Settings{MaxRetry: 1, FindTime: time.Hour,
		Ignore: NewIgnoreList(netip.MustParsePrefix("203.0.113.0/24"))})
	for _, a := range []string{"127.0.0.1", "::1", "203.0.113.9", "::ffff:203.0.113.9", "255.255.255.255", "fe80::1", "224.0.0.9"} {
		for _, tk := range j.Failure(netip.MustParseAddr(a), t0, t0) {
			t.Errorf("%s banned: %+v", a, tk)
		}
		if _, err := j.Manual(actions.Host(netip.MustParseAddr(a)), t0); !errors.Is(err, ErrIgnored) {
			t.Errorf("manual ban of %s: %v, want ErrIgnored", a, err)
		}
	}
	if c := j.Counts(t0); c.Ignored != 7 || c.TotalFailed != 0 {
		t.Errorf("counts %+v", c)
	}
}

// A manual ban of an address that must never be banned says why.
func TestManualBanSaysWhyNot(t *testing.T) {
	j := New("sasl", testFilter(t), Settings{MaxRetry: 1, FindTime: time.Hour, Ignore: NewIgnoreList(netip.MustParsePrefix("203.0.113.0/24"))})
	for addr, want := range map[string]string{
		"255.255.255.255": "255.255.255.255 is the broadcast address: never banned",
		"fe80::1":         "fe80::1 is a link-local address (a neighbour on the host's own link, often its IPv6 gateway): never banned",
		"ff05::2":         "ff05::2 is a multicast address: never banned",
		"0.0.0.0":         "0.0.0.0 is the unspecified address: never banned",
		"203.0.113.7":     "203.0.113.7 is on the ignore list (ignoreip, trusted_proxies, or the host's own addresses and networks' broadcast): never banned",
	} {
		if _, err := j.Manual(actions.Host(netip.MustParseAddr(addr)), t0); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %s", addr, err, want)
		}
	}
}

// The host's networks' broadcast addresses are among its own, for every IPv4 network
// wider than /31.
func TestBroadcast(t *testing.T) {
	for p, want := range map[string]string{"192.0.2.17/24": "192.0.2.255", "10.1.2.3/8": "10.255.255.255", "198.51.100.9/30": "198.51.100.11"} {
		if got := broadcast(netip.MustParsePrefix(p)); got != netip.MustParseAddr(want) {
			t.Errorf("broadcast(%s) = %v, want %s", p, got, want)
		}
	}
}

func TestCountsPruneAgedOutAddresses(t *testing.T) {
	j := New("sasl", testFilter(t), Settings{MaxRetry: 5, FindTime: time.Hour})
	j.Failure(netip.MustParseAddr("192.0.2.1"), t0, t0)
	j.Failure(netip.MustParseAddr("192.0.2.2"), t0.Add(30*time.Minute), t0.Add(30*time.Minute))
	if c := j.Counts(t0.Add(30 * time.Minute)); c.CurrentlyFailed != 2 || c.TotalFailed != 2 {
		t.Errorf("counts %+v", c)
	}
	if c := j.Counts(t0.Add(61 * time.Minute)); c.CurrentlyFailed != 1 {
		t.Errorf("after findtime: counts %+v", c)
	}
}

// A failure stamped far in the future counts at the time it was read: it never stays an
// address's newest failure and shields later ones.
func TestFutureFailureShieldsNothing(t *testing.T) {
	j := New("sasl", testFilter(t), Settings{MaxRetry: 3, FindTime: 10 * time.Minute})
	a := netip.MustParseAddr("203.0.113.9")
	j.Failure(a, time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC), t0)
	j.Failure(a, t0.Add(time.Second), t0.Add(time.Second))
	if len(j.Failure(a, t0.Add(2*time.Second), t0.Add(2*time.Second))) == 0 {
		t.Error("three failures within findtime, one stamped 2099, did not ban")
	}
	// Within the tolerance, a time ahead is the line's own.
	j.Failure(a, t0.Add(30*time.Second), t0)
	j.Failure(a, t0, t0)
	if tks := j.Failure(a, t0, t0); len(tks) != 1 || !tks[0].Time.Equal(t0) {
		t.Errorf("tickets %+v", tks)
	}
}

// loginFilter is testFilter with a successregex.
func loginFilter(t *testing.T) *filters.Filter {
	t.Helper()
	f, err := filters.New("t", filters.Definition{
		FailRegex:    []string{`^(?P<ts>\S+) fail from <HOST>$`},
		SuccessRegex: []string{`^\S+ ok <USER> from <HOST>$`},
	}, filters.Options{Successes: true})
	if err != nil {
		t.Fatal(err)
	}
	f.SetLocation(time.UTC)
	return f
}
