package main

import (
	"runtime/debug"
	"slices"
	"testing"
	"time"
)

func TestGCPercent(t *testing.T) {
	for _, tt := range []struct {
		live, headroom uint64
		want           int
	}{
		{0, busyHeadroom, 100}, {4 << 20, busyHeadroom, 100}, {16 << 20, busyHeadroom, 100},
		{32 << 20, busyHeadroom, 50}, {64 << 20, busyHeadroom, 25}, {1 << 30, busyHeadroom, 25},
		{2 << 20, quietHeadroom, 100}, {8 << 20, quietHeadroom, 50}, {20 << 20, quietHeadroom, 25},
	} {
		if got := gcPercent(tt.live, tt.headroom); got != tt.want {
			t.Errorf("gcPercent(%d MiB, %d MiB) = %d, want %d", tt.live>>20, tt.headroom>>20, got, tt.want)
		}
	}
}

// TestGCTunerGivesABurstRoom: a quiet process keeps its garbage close; one that
// allocates fast gets room, and keeps it for busyFor after the burst ends.
func TestGCTunerGivesABurstRoom(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	const live = 16 << 20
	var tu gcTuner
	now := time.Unix(1_800_000_000, 0)
	allocs := uint64(100 << 20)
	step := func(allocated uint64) int {
		now = now.Add(time.Second)
		allocs += allocated
		return tu.step(now, live, allocs)
	}
	if got := step(0); got != 25 {
		t.Errorf("first step: percent %d, want the quiet 25", got)
	}
	if got := step(64 << 10); got != 25 {
		t.Errorf("quiet: percent %d, want 25", got)
	}
	if got := step(8 << 20); got != 100 {
		t.Errorf("busy: percent %d, want 100", got)
	}
	for range int(busyFor/time.Second) - 1 {
		if got := step(0); got != 100 {
			t.Fatalf("%v after the burst: percent %d, want 100 until busyFor has passed", now, got)
		}
	}
	if got := step(0); got != 25 {
		t.Errorf("busyFor after the burst: percent %d, want 25", got)
	}
}

// TestGCTunerFallsQuietOnce: start-up is busy, and the process falls quiet once busyFor
// after it, then once after each burst, so the binary's pages are given back once each
// time, not every interval.
func TestGCTunerFallsQuietOnce(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	now := time.Unix(1_800_000_000, 0)
	tu := gcTuner{busyUntil: now.Add(busyFor)}
	allocs := uint64(100 << 20)
	quietAt := []int{}
	for i := range 40 {
		now = now.Add(time.Second)
		if i == 20 {
			allocs += 8 << 20 // a burst
		}
		tu.step(now, 16<<20, allocs)
		if tu.fellQuiet(now) {
			quietAt = append(quietAt, i)
		}
	}
	want := []int{int(busyFor/time.Second) - 1, 20 + int(busyFor/time.Second)}
	if !slices.Equal(quietAt, want) {
		t.Errorf("fell quiet at steps %v, want %v", quietAt, want)
	}
}
