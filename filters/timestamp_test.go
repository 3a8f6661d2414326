package filters

import (
	"testing"
	"time"
)

func TestTimeParser(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	p := TimeParser{Location: berlin}
	now := time.Date(2026, 3, 5, 17, 0, 0, 0, berlin)
	tests := []struct {
		line string
		want time.Time // zero = no timestamp
	}{
		{"Mar  5 16:01:34 mta1 postfix", time.Date(2026, 3, 5, 16, 1, 34, 0, berlin)},
		{"Mar 05 16:01:34 mta1", time.Date(2026, 3, 5, 16, 1, 34, 0, berlin)},
		{"Mar 5 16:01:34 mta1", time.Date(2026, 3, 5, 16, 1, 34, 0, berlin)}, // unpadded
		{"Mar 5 16:01:34", time.Date(2026, 3, 5, 16, 1, 34, 0, berlin)},
		{"Mar 5  16:01:34 x", time.Time{}},
		{"Mar  5 16:01:3", time.Time{}},
		{"Dec 31 23:59:59 mta1", time.Date(2025, 12, 31, 23, 59, 59, 0, berlin)}, // not a year ahead: last year
		{"Mar  5 17:00:30 mta1", time.Date(2026, 3, 5, 17, 0, 30, 0, berlin)},    // a little ahead
		{"Mar  5 19:00:00 mta1", time.Date(2026, 3, 5, 19, 0, 0, 0, berlin)},     // hours ahead: a writer's zone
		{"Mar  6 09:00:00 mta1", time.Date(2026, 3, 6, 9, 0, 0, 0, berlin)},      // within a day ahead
		{"Mar  7 09:00:00 mta1", time.Date(2025, 3, 7, 9, 0, 0, 0, berlin)},      // more than a day ahead: last year
		{"2026-03-05 16:01:34,123 WARN  [qtp]", time.Date(2026, 3, 5, 16, 1, 34, 123e6, berlin)},
		{"2026-03-05 16:01:34.123:WARN:oejs.DoSFilter", time.Date(2026, 3, 5, 16, 1, 34, 123e6, berlin)},
		{"2026-03-05 16:01:34 plain", time.Date(2026, 3, 5, 16, 1, 34, 0, berlin)},
		{"2026-03-05T16:01:34.123456+02:00 mta1", time.Date(2026, 3, 5, 14, 1, 34, 123456e3, time.UTC)},
		{"2026-03-05T16:01:34Z mta1", time.Date(2026, 3, 5, 16, 1, 34, 0, time.UTC)},
		{"2026/03/05 16:01:34 [error] 4321#0: *1", time.Date(2026, 3, 5, 16, 1, 34, 0, berlin)}, // nginx's error log
		{"2026/03-05 16:01:34 [error]", time.Time{}},
		{"2026/13/05 16:01:34 [error]", time.Time{}},
		{"2026-03-05T16:01:34-05:30 mta1", time.Date(2026, 3, 5, 21, 31, 34, 0, time.UTC)},
		{"Foo  5 16:01:34 mta1", time.Time{}},
		{"Mar 32 16:01:34 mta1", time.Time{}},
		{"Mar  5 25:01:34 mta1", time.Time{}},
		{"2026-13-05 16:01:34 x", time.Time{}},
		{"2026-03-05 16:01", time.Time{}},
		{"no timestamp at all, long enough", time.Time{}},
		{"", time.Time{}},
	}
	for _, tt := range tests {
		got, ok := p.Parse([]byte(tt.line), now)
		if tt.want.IsZero() {
			if ok {
				t.Errorf("%q: got %v, want none", tt.line, got)
			}
			continue
		}
		if !ok || !got.Equal(tt.want) {
			t.Errorf("%q: got %v %v, want %v", tt.line, got, ok, tt.want)
		}
	}
}

// Across New Year, a writer whose clock or time zone is ahead of the host's writes
// January while the host still reads December: January of the coming year, not one a
// year old. And a December line read in January is last year's.
func TestYearAcrossNewYear(t *testing.T) {
	p := TimeParser{Location: time.UTC}
	eve := time.Date(2026, 12, 31, 23, 59, 45, 0, time.UTC)
	for _, tt := range []struct {
		line string
		now  time.Time
		want time.Time
	}{
		{"Jan  1 00:00:05 mta1", eve, time.Date(2027, 1, 1, 0, 0, 5, 0, time.UTC)},                                           // writer 20 s ahead
		{"Jan  1 00:30:00 mta1", eve, time.Date(2027, 1, 1, 0, 30, 0, 0, time.UTC)},                                          // writer an hour's zone ahead
		{"Dec 31 23:59:40 mta1", eve, time.Date(2026, 12, 31, 23, 59, 40, 0, time.UTC)},                                      //
		{"Dec 31 23:59:40 mta1", eve.Add(time.Minute), time.Date(2026, 12, 31, 23, 59, 40, 0, time.UTC)},                     // read in January
		{"Jan  1 00:00:05 mta1", eve.Add(30 * 24 * time.Hour), time.Date(2027, 1, 1, 0, 0, 5, 0, time.UTC)},                  //
		{"Jun  1 12:00:00 mta1", time.Date(2027, 1, 10, 0, 0, 0, 0, time.UTC), time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}, // an old log read through
	} {
		got, ok := p.Parse([]byte(tt.line), tt.now)
		if !ok || !got.Equal(tt.want) {
			t.Errorf("%q at %v: got %v, want %v", tt.line, tt.now, got, tt.want)
		}
	}
}

// FuzzTimeParser: a time written in any of the formats reads back as that time (syslog
// to the second, its year from a now within the year after it), and no text makes the
// parser panic.
// go test -fuzz FuzzTimeParser ./filters
func FuzzTimeParser(f *testing.F) {
	f.Add(int64(1772726494123456789), int64(3600), uint8(0), []byte("Mar  5 16:01:34 mta1"))
	f.Add(int64(1798761585000000000), int64(-20), uint8(1), []byte("2026-03-05 16:01:34,123 x"))
	f.Add(int64(0), int64(0), uint8(4), []byte("Feb 29 12:00:00"))
	zones := []*time.Location{time.UTC, time.FixedZone("", 3600), time.FixedZone("", -5*3600-1800), time.FixedZone("", 14*3600)}
	f.Fuzz(func(t *testing.T, unix, ahead int64, pick uint8, junk []byte) {
		p := TimeParser{Location: zones[int(pick/8)%len(zones)]}
		if got, ok := p.Parse(junk, time.Unix(0, unix)); ok && (got.Year() < 0 || got.Year() > 10000) {
			t.Fatalf("%q: year %d", junk, got.Year())
		}
		at := time.Unix(0, unix).In(p.Location)                         // 1677 to 2262
		now := at.Add(time.Duration(ahead%(300*24*3600)) * time.Second) // within 300 days after, or before
		if now.Before(at.Add(-yearSlack)) {
			return
		}
		var line string
		want := at
		switch pick % 4 {
		case 0:
			if at.Month() == time.February && at.Day() == 29 {
				return // a year is told from now, and this day is not in every year
			}
			line, want = at.Format(time.Stamp)+" mta1", at.Truncate(time.Second)
		case 1:
			line, want = at.Format("2006-01-02 15:04:05,000")+" WARN", at.Truncate(time.Millisecond)
		case 2:
			line, want = at.Format("2006-01-02 15:04:05.000")+":WARN:", at.Truncate(time.Millisecond)
		case 3:
			line = at.Format(time.RFC3339Nano) + " mta1"
		}
		got, ok := p.Parse([]byte(line), now)
		if !ok || !got.Equal(want) {
			t.Fatalf("%q at %v: got %v %v, want %v", line, now, got, ok, want)
		}
	})
}

func TestTimeParserAllocatesNothing(t *testing.T) {
	p := TimeParser{Location: time.UTC}
	for _, line := range []string{"Mar  5 16:01:34 mta1", "2026-03-05 16:01:34,123 x", "2026-03-05T16:01:34.1+01:00 x"} {
		b := []byte(line)
		if n := testing.AllocsPerRun(100, func() { p.Parse(b, now) }); n != 0 {
			t.Errorf("%q: %v allocations", line, n)
		}
	}
}

func FuzzFilter(f *testing.F) {
	flt := builtin(f, "zimbra-submission", Options{})
	f.Add([]byte("Mar  5 16:01:34 mta1 postfix/submission/smtpd[4242]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: x"))
	f.Add([]byte("2026-03-05T16:01:34.123456+01:00 x"))
	f.Fuzz(func(t *testing.T, line []byte) {
		m, r := flt.Match(line, now)
		if r == Matched && !m.Addr.IsValid() {
			t.Fatalf("matched with an invalid address: %q", line)
		}
		if r == Matched && m.Addr.Is4In6() {
			t.Fatalf("mapped address not unmapped: %q", line)
		}
	})
}
