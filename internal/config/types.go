package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Duration is a length of time written as a Go duration ("10m", "1h30m"), with days and
// weeks allowed in front ("1d", "2w3d12h"), or as integer seconds as in fail2ban (600).
// -1 means forever, where a field allows it.
type Duration time.Duration

// Forever is the Duration written as -1.
const Forever = Duration(-1)

// UnmarshalText parses a duration; TOML integers arrive here as their decimal text.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ParseDuration parses the text of a Duration.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, badDuration(s)
	}
	if s == "-1" {
		return Forever, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("negative duration %d (only -1, meaning forever, is allowed)", n)
		}
		if n > int64(maxDuration/time.Second) {
			return 0, fmt.Errorf("duration %d seconds is too long", n)
		}
		return Duration(time.Duration(n) * time.Second), nil
	}
	rest := s
	var total time.Duration
	// add adds d to total, refusing a sum past what a duration holds: time.Duration
	// would wrap to a negative, which reads as forever.
	add := func(d time.Duration) error {
		if d > maxDuration-total {
			return fmt.Errorf("duration %q is too long (at most about 292 years)", s)
		}
		total += d
		return nil
	}
	for _, unit := range []struct {
		suffix string
		d      time.Duration
	}{{"w", 7 * 24 * time.Hour}, {"d", 24 * time.Hour}} {
		i := strings.Index(rest, unit.suffix)
		if i < 0 {
			continue
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n < 0 || n > 10000 {
			return 0, badDuration(s)
		}
		if err := add(time.Duration(n) * unit.d); err != nil {
			return 0, err
		}
		rest = rest[i+1:]
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil {
			return 0, badDuration(s)
		}
		if d < 0 {
			return 0, fmt.Errorf("negative duration %q (only -1, meaning forever, is allowed)", s)
		}
		if err := add(d); err != nil {
			return 0, err
		}
	}
	return Duration(total), nil
}

const maxDuration = time.Duration(1<<63 - 1)

// FormatDuration writes d as a configuration writes it, and ParseDuration reads it
// back: days, then hours, minutes, seconds and milliseconds, the units that are not 0
// ("30d", "1h", "1d12h", "90s"); a negative d, forever, as "-1".
func FormatDuration(d time.Duration) string {
	if d < 0 {
		return "-1"
	}
	if d == 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		unit string
		d    time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}} {
		if n := d / u.d; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.unit)
			d -= n * u.d
		}
	}
	if d > 0 {
		fmt.Fprintf(&b, "%dns", d)
	}
	return b.String()
}

func badDuration(s string) error {
	return fmt.Errorf("invalid duration %q; write it like \"10m\", \"1h30m\", \"1d\", or as seconds (600)", s)
}

// Prefix is an address or CIDR prefix in an ignore list: "10.0.0.0/8", "192.0.2.1",
// "2001:db8::/32". Bits set past the prefix length are ignored ("10.1.2.3/8" is 10.0.0.0/8).
type Prefix netip.Prefix

// UnmarshalText parses a Prefix.
func (p *Prefix) UnmarshalText(b []byte) error {
	v, err := ParsePrefix(string(b))
	if err != nil {
		return err
	}
	*p = Prefix(v)
	return nil
}

// ParsePrefix parses an address or CIDR prefix; an address is a prefix of its full length.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, errNotPrefix(s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, errNotPrefix(s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func errNotPrefix(s string) error {
	return fmt.Errorf("%q is not an address or CIDR prefix (like 192.0.2.7, 10.0.0.0/8 or 2001:db8::/32)", s)
}

func prefixes(ps []Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = netip.Prefix(p)
	}
	return out
}

// ParseTimeZone reads a time zone for the timestamps of a log that carry none: "" (the
// host's), a zone name ("UTC", "Europe/Berlin"), or an offset from UTC ("+01:00",
// "-0530", fail2ban's "UTC+0100").
func ParseTimeZone(s string) (*time.Location, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "Local" {
		return time.Local, nil
	}
	off := strings.TrimPrefix(strings.TrimPrefix(s, "UTC"), "GMT")
	if off != s && off == "" {
		return time.UTC, nil
	}
	if len(off) > 1 && (off[0] == '+' || off[0] == '-') {
		// HH, HHMM or HH:MM
		hm := off[1:]
		if len(hm) == 5 && hm[2] == ':' {
			hm = hm[:2] + hm[3:]
		}
		if len(hm) == 2 {
			hm += "00"
		}
		h, err1 := strconv.Atoi(hm[:min(2, len(hm))])
		m, err2 := strconv.Atoi(hm[min(2, len(hm)):])
		if len(hm) == 4 && strings.Trim(hm, "0123456789") == "" && err1 == nil && err2 == nil && h <= 14 && m < 60 {
			sec := h*3600 + m*60
			if off[0] == '-' {
				sec = -sec
			}
			return time.FixedZone(s, sec), nil
		}
	}
	loc, err := time.LoadLocation(s)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q; write a zone name like \"Europe/Berlin\" or \"UTC\", or an offset from UTC like \"+01:00\"", s)
	}
	return loc, nil
}
