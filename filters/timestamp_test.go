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
		{"Dec 31 23:59:59 mta1", time.Date(2025, 12, 31, 23, 59, 59, 0, berlin)}, // never in the future
		{"Mar  5 17:00:30 mta1", time.Date(2026, 3, 5, 17, 0, 30, 0, berlin)},    // within the slack
		{"Mar  6 09:00:00 mta1", time.Date(2025, 3, 6, 9, 0, 0, 0, berlin)},
		{"2026-03-05 16:01:34,123 WARN  [qtp]", time.Date(2026, 3, 5, 16, 1, 34, 123e6, berlin)},
		{"2026-03-05 16:01:34.123:WARN:oejs.DoSFilter", time.Date(2026, 3, 5, 16, 1, 34, 123e6, berlin)},
		{"2026-03-05 16:01:34 plain", time.Date(2026, 3, 5, 16, 1, 34, 0, berlin)},
		{"2026-03-05T16:01:34.123456+02:00 mta1", time.Date(2026, 3, 5, 14, 1, 34, 123456e3, time.UTC)},
		{"2026-03-05T16:01:34Z mta1", time.Date(2026, 3, 5, 16, 1, 34, 0, time.UTC)},
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
