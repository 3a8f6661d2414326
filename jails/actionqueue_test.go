package jails

import (
	"testing"

	"github.com/logban/logban/actions"
)

// TestCallFIFOKeepsOrderAcrossBlocks: calls come out in the order they went in, taken a
// few or many at a time while more come, across the blocks the queue holds them in; an
// emptied queue lets a burst's blocks go, keeping a small one at most.
func TestCallFIFOKeepsOrderAcrossBlocks(t *testing.T) {
	var f callFIFO
	pushed, next := 0, 0
	push := func(n int) {
		for range n {
			f.push(actionCall{ban: actions.Ban{Failures: pushed}})
			pushed++
		}
	}
	take := func(max int) {
		got := f.take(nil, max)
		if want := min(max, pushed-next); len(got) != want {
			t.Fatalf("took %d of %d waiting with max %d", len(got), pushed-next, max)
		}
		for _, c := range got {
			if c.ban.Failures != next {
				t.Fatalf("took call %d, want %d", c.ban.Failures, next)
			}
			next++
		}
		if f.len() != pushed-next {
			t.Fatalf("len %d, want %d", f.len(), pushed-next)
		}
	}
	push(1)
	take(1)
	take(1) // empty
	push(3*batchLen + 5)
	take(7)
	push(batchLen)
	for f.len() > 0 {
		take(batchLen)
	}
	if len(f.blocks) > 1 || len(f.blocks) == 1 && cap(f.blocks[0]) > 64 {
		t.Errorf("an emptied queue holds %d blocks after a burst, the first of %d calls' room", len(f.blocks), cap(f.blocks[0]))
	}
	push(2)
	take(1)
	push(batchLen)
	take(1)
	take(3 * batchLen)
}
