package jails

import (
	"math/rand/v2"
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
		if got := h.schedule(expiry{at: at}); got != earliest {
			t.Fatalf("schedule(%v) says earliest %v, want %v", at, got, earliest)
		}
		want = append(want, at)
	}
	slices.SortFunc(want, time.Time.Compare)
	now := base.Add(5_000 * time.Second)
	var got []time.Time
	for _, e := range h.due(now) {
		got = append(got, e.at)
	}
	n, _ := slices.BinarySearchFunc(want, now.Add(time.Nanosecond), time.Time.Compare)
	if !slices.Equal(got, want[:n]) {
		t.Fatalf("due popped %d expiries out of order or not all of those due (want %d)", len(got), n)
	}
	for _, e := range h.due(base.Add(time.Hour * 24)) {
		got = append(got, e.at)
	}
	if !slices.Equal(got, want) || h.Len() != 0 {
		t.Errorf("the rest: %d popped in all, %d left; want %d, in order", len(got), h.Len(), len(want))
	}
}
