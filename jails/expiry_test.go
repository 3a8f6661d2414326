package jails

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// TestExpiryHeapPopsInOrder: whatever the order expiries are scheduled in, due pops
// those at or before now, earliest first, and leaves the rest.
func TestExpiryHeapPopsInOrder(t *testing.T) {
	base := time.Unix(1_800_000_000, 0)
	r := rand.New(rand.NewPCG(1, 2))
	var h expiryHeap
	var want []time.Time
	for range 1000 {
		at := base.Add(time.Duration(r.IntN(10_000)) * time.Second)
		earliest := len(want) == 0 || at.Before(slices.MinFunc(want, time.Time.Compare))
		if got := h.schedule(newExpiry(at, 0, netip.MustParsePrefix("192.0.2.1/32"))); got != earliest {
			t.Fatalf("schedule(%v) says earliest %v, want %v", at, got, earliest)
		}
		want = append(want, at)
	}
	slices.SortFunc(want, time.Time.Compare)
	now := base.Add(5_000 * time.Second)
	var got []time.Time
	for _, e := range h.due(now) {
		got = append(got, time.Unix(0, e.at))
	}
	n, _ := slices.BinarySearchFunc(want, now.Add(time.Nanosecond), time.Time.Compare)
	if !slices.EqualFunc(got, want[:n], time.Time.Equal) {
		t.Fatalf("due popped %d expiries out of order or not all of those due (want %d)", len(got), n)
	}
	for _, e := range h.due(base.Add(time.Hour * 24)) {
		got = append(got, time.Unix(0, e.at))
	}
	if !slices.EqualFunc(got, want, time.Time.Equal) || h.Len() != 0 {
		t.Errorf("the rest: %d popped in all, %d left; want %d, in order", len(got), h.Len(), len(want))
	}
}

// TestAnExpiryNamesWhatItEnds: an expiry gives back the jail, the address or network and
// the end it was made with, IPv4 as IPv4, and an end beyond what nanoseconds since 1970
// hold is kept as the latest, not wrapped round to a past that would end the ban now.
func TestAnExpiryNamesWhatItEnds(t *testing.T) {
	at := time.Unix(1_800_000_000, 5)
	for _, s := range []string{"192.0.2.1/32", "198.51.100.0/24", "2001:db8::5/128", "2001:db8::/64", "::ffff:192.0.2.1/128"} {
		p := netip.MustParsePrefix(s)
		e := newExpiry(at, 7, p)
		if e.what() != p || e.jail != 7 || !time.Unix(0, e.at).Equal(at) {
			t.Errorf("%s: got %v in jail %d at %v", s, e.what(), e.jail, time.Unix(0, e.at))
		}
	}
	far := newExpiry(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), 0, netip.MustParsePrefix("192.0.2.1/32"))
	var h expiryHeap
	h.schedule(far)
	if due := h.due(time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)); len(due) != 0 {
		t.Errorf("an end in the year 3000 is due in 2200")
	}
}
