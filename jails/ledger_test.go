package jails

import (
	"testing"
	"time"
)

func TestIncrementDuration(t *testing.T) {
	const base = 10 * time.Minute
	none := func(int64) int64 { return 0 }
	tests := []struct {
		name string
		inc  Increment
		prev int
		want time.Duration
	}{
		{"disabled", Increment{Factor: 2}, 5, base},
		{"first ban", Increment{Enabled: true, Factor: 1}, 0, base},
		{"second ban doubles", Increment{Enabled: true, Factor: 1}, 1, 2 * base},
		{"fifth ban", Increment{Enabled: true, Factor: 1}, 4, 16 * base},
		{"factor", Increment{Enabled: true, Factor: 3}, 2, 12 * base},
		{"multipliers", Increment{Enabled: true, Multipliers: []float64{1, 5, 30}}, 1, 5 * base},
		{"last multiplier repeats", Increment{Enabled: true, Multipliers: []float64{1, 5, 30}}, 9, 30 * base},
		{"maxtime caps", Increment{Enabled: true, Factor: 1, MaxTime: time.Hour}, 10, time.Hour},
		{"growth stops at 2^20", Increment{Enabled: true, Factor: 1}, 200, base << 20},
		{"rndtime adds", Increment{Enabled: true, Factor: 1, RndTime: time.Minute}, 0, base + 30*time.Second},
	}
	for _, tt := range tests {
		rnd := none
		if tt.inc.RndTime > 0 {
			rnd = func(n int64) int64 { return n / 2 }
		}
		if got := tt.inc.Duration(base, tt.prev, rnd); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	if got := (Increment{Enabled: true, Factor: 1}).Duration(-1, 3, none); got != -1 {
		t.Errorf("a permanent ban became %v", got)
	}
}
