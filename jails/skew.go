package jails

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// skewSamples is how many recent failures a SkewMeter keeps.
const skewSamples = 64

// SkewMeter measures how far the times written in a jail's lines lie from the clock that
// reads them: for each failure whose line carries a time, read time minus line time. A
// log written in another time zone than the one logban reads it in (syslog writing local
// time, a host set to another zone), or by a host whose clock is off, shows as an offset
// that stays the same; failures then count as older (or newer) than they are, and
// findtime sees fewer of them.
type SkewMeter struct {
	mu      sync.Mutex
	samples []time.Duration
}

// observe notes one failure's line time t, read at now.
func (m *SkewMeter) observe(t, now time.Time) {
	m.mu.Lock()
	if len(m.samples) == skewSamples {
		m.samples = append(m.samples[:0], m.samples[1:]...)
	}
	m.samples = append(m.samples, now.Sub(t))
	m.mu.Unlock()
}

// Skew is a steady offset between line times and the clock.
type Skew struct {
	// Offset is the median of read time minus line time: positive when lines are
	// behind the clock.
	Offset  time.Duration
	Samples int
}

// Steady returns the offset of the failures observed since the last call, and whether
// it is steady and large enough to report: at least 16 failures, nine in ten within a
// minute of their median, and that median more than 90 seconds off. It forgets what it
// observed, so that each call judges recent lines only.
func (m *SkewMeter) Steady() (Skew, bool) {
	m.mu.Lock()
	s := slices.Clone(m.samples)
	m.samples = m.samples[:0]
	m.mu.Unlock()
	if len(s) < 16 {
		return Skew{}, false
	}
	slices.Sort(s)
	median := s[len(s)/2]
	near := 0
	for _, d := range s {
		if (d - median).Abs() <= time.Minute {
			near++
		}
	}
	if near*10 < len(s)*9 || median.Abs() <= 90*time.Second {
		return Skew{}, false
	}
	return Skew{Offset: median, Samples: len(s)}, true
}

// Advice says what the offset means and what fixes it, for a jail's lines read in loc.
func (sk Skew) Advice(jail string, loc *time.Location, now time.Time) string {
	dir := "behind"
	if sk.Offset < 0 {
		dir = "ahead of"
	}
	what := fmt.Sprintf("the times in jail %s's lines are steadily %s %s the host's clock (median of %d failures)",
		jail, sk.Offset.Abs().Round(time.Second), dir, sk.Samples)
	// A whole number of quarter hours, give or take two minutes: a time zone.
	q := (sk.Offset + 7*time.Minute + 30*time.Second).Truncate(15 * time.Minute)
	if sk.Offset < 0 {
		q = -((-sk.Offset + 7*time.Minute + 30*time.Second).Truncate(15 * time.Minute))
	}
	if (sk.Offset-q).Abs() <= 2*time.Minute && q != 0 {
		_, off := now.In(loc).Zone()
		zone := time.Duration(off)*time.Second - q
		return fmt.Sprintf("%s: the log is most likely written in another time zone; set jails.%s.timezone = %q (or the zone's name, like \"Europe/Berlin\")",
			what, jail, formatOffset(zone))
	}
	return what + ": check the clock of the host that writes the log (NTP)"
}

// formatOffset writes a zone offset as +hh:mm.
func formatOffset(d time.Duration) string {
	sign := "+"
	if d < 0 {
		sign, d = "-", -d
	}
	return fmt.Sprintf("%s%02d:%02d", sign, int(d.Hours()), int(d.Minutes())%60)
}
