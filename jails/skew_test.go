package jails

import (
	"strings"
	"testing"
	"time"
)

func TestSkewMeter(t *testing.T) {
	now := time.Date(2026, 3, 5, 16, 0, 0, 0, time.UTC)
	feed := func(m *SkewMeter, n int, off func(i int) time.Duration) {
		for i := range n {
			m.observe(now.Add(-off(i)), now)
		}
	}
	var m SkewMeter
	feed(&m, 30, func(i int) time.Duration { return time.Hour + time.Duration(i)*time.Second })
	sk, ok := m.Steady()
	if !ok || (sk.Offset-time.Hour).Abs() > time.Minute {
		t.Fatalf("an hour behind: %+v %v", sk, ok)
	}
	if _, ok := m.Steady(); ok {
		t.Error("judged again without new failures")
	}
	// A backlog: lines from over the last hours read at once, spread out.
	feed(&m, 30, func(i int) time.Duration { return time.Duration(i) * 10 * time.Minute })
	if sk, ok := m.Steady(); ok {
		t.Errorf("a spread-out backlog taken for skew: %+v", sk)
	}
	// A clock a few seconds off is no matter.
	feed(&m, 30, func(int) time.Duration { return 20 * time.Second })
	if sk, ok := m.Steady(); ok {
		t.Errorf("20 s taken for skew: %+v", sk)
	}
	// Too few failures to tell.
	feed(&m, 5, func(int) time.Duration { return time.Hour })
	if _, ok := m.Steady(); ok {
		t.Error("judged on 5 failures")
	}
}

func TestSkewAdvice(t *testing.T) {
	now := time.Date(2026, 3, 5, 16, 0, 0, 0, time.UTC)
	berlin := time.FixedZone("CET", 3600)
	tests := []struct {
		offset time.Duration
		loc    *time.Location
		want   string
	}{
		// Read in UTC, written at UTC-1: an hour behind.
		{time.Hour + 30*time.Second, time.UTC, `the times in jail sasl's lines are steadily 1h0m30s behind the host's clock (median of 20 failures): the log is most likely written in another time zone; set jails.sasl.timezone = "-01:00" (or the zone's name, like "Europe/Berlin")`},
		// Read in CET, written at UTC+2: an hour ahead.
		{-time.Hour, berlin, `the times in jail sasl's lines are steadily 1h0m0s ahead of the host's clock (median of 20 failures): the log is most likely written in another time zone; set jails.sasl.timezone = "+02:00" (or the zone's name, like "Europe/Berlin")`},
		// Read in CET, written in UTC: an hour behind.
		{time.Hour, berlin, `set jails.sasl.timezone = "+00:00"`},
		{5*time.Hour + 30*time.Minute, time.UTC, `set jails.sasl.timezone = "-05:30"`},
		{7 * time.Minute, time.UTC, `the times in jail sasl's lines are steadily 7m0s behind the host's clock (median of 20 failures): check the clock of the host that writes the log (NTP)`},
	}
	for _, tt := range tests {
		got := Skew{Offset: tt.offset, Samples: 20}.Advice("sasl", tt.loc, now)
		if got != tt.want && !(len(tt.want) < 60 && strings.Contains(got, tt.want)) {
			t.Errorf("%v in %v:\n got %s\nwant %s", tt.offset, tt.loc, got, tt.want)
		}
	}
}
