package filters

import "time"

// TimeParser reads the timestamp at the start of a log line. It knows the formats Zimbra
// and Carbonio hosts write:
//
//	Mar  5 16:01:34                    syslog (zimbra.log); the year is inferred; the day may
//	                                   also be written unpadded (Aug 3 15:30:49)
//	2026-03-05 16:01:34,123            log4j (mailbox.log, audit.log)
//	2026-03-05 16:01:34.123            Jetty (zmmailboxd.out)
//	2026-03-05T16:01:34.123456+01:00   RFC 3339 (rsyslog's high-precision format)
//	2026/03/05 16:01:34                nginx's error log (the proxy's nginx.log)
//
// Parsing allocates nothing.
type TimeParser struct {
	// Location is the zone of timestamps that carry none; nil means time.Local.
	Location *time.Location
}

// yearSlack is how far past now a syslog timestamp may lie and still be taken for this
// year (or the next): a writer whose clock or time zone is ahead of the host's writes
// "Jan  1 00:00:10" while the host still reads on Dec 31. Further ahead, the timestamp
// is from the year before: a December line read in January, an old log read through.
const yearSlack = 24 * time.Hour

// Parse returns the timestamp at the start of line. now decides the year of a syslog
// timestamp: the most recent that puts it no more than a day ahead of now.
func (p TimeParser) Parse(line []byte, now time.Time) (time.Time, bool) {
	t, _, ok := p.ParseFormat(line, now)
	return t, ok
}

// The timestamp formats, as ParseFormat names them.
const (
	FormatSyslog  = "syslog (Mmm dd HH:MM:SS)"
	FormatLog4j   = "log4j (YYYY-MM-DD HH:MM:SS,mmm)"
	FormatJetty   = "Jetty (YYYY-MM-DD HH:MM:SS.mmm)"
	FormatPlain   = "YYYY-MM-DD HH:MM:SS"
	FormatRFC3339 = "RFC 3339"
	FormatNginx   = "nginx (YYYY/MM/DD HH:MM:SS)"
)

// ParseFormat is Parse, also naming the format found.
func (p TimeParser) ParseFormat(line []byte, now time.Time) (time.Time, string, bool) {
	loc := p.Location
	if loc == nil {
		loc = time.Local
	}
	if len(line) >= 14 && line[0] >= 'A' && line[0] <= 'Z' {
		t, ok := parseSyslog(line, now, loc)
		return t, FormatSyslog, ok
	}
	if len(line) >= 19 && isDigit(line[0]) {
		t, ok := parseISO(line, loc)
		format := FormatPlain
		switch {
		case line[4] == '/':
			format = FormatNginx
		case line[10] == 'T':
			format = FormatRFC3339
		case len(line) > 19 && line[19] == ',':
			format = FormatLog4j
		case len(line) > 19 && line[19] == '.':
			format = FormatJetty
		}
		return t, format, ok
	}
	return time.Time{}, "", false
}

var months = [12]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// parseSyslog reads "Mmm dd HH:MM:SS", the day space-padded (" 5"), two digits ("05",
// "15") or unpadded ("5", followed by a single space).
func parseSyslog(b []byte, now time.Time, loc *time.Location) (time.Time, bool) {
	month := 0
	for i, m := range months {
		if b[0] == m[0] && b[1] == m[1] && b[2] == m[2] {
			month = i + 1
			break
		}
	}
	if month == 0 || b[3] != ' ' {
		return time.Time{}, false
	}
	day, clockAt := 0, 7
	switch {
	case b[4] == ' ' && isDigit(b[5]) && b[6] == ' ':
		day = int(b[5] - '0')
	case isDigit(b[4]) && isDigit(b[5]) && b[6] == ' ':
		day = int(b[4]-'0')*10 + int(b[5]-'0')
	case isDigit(b[4]) && b[5] == ' ':
		day, clockAt = int(b[4]-'0'), 6
	default:
		return time.Time{}, false
	}
	if len(b) < clockAt+8 {
		return time.Time{}, false
	}
	h, m, s, ok := clock(b[clockAt : clockAt+8])
	if !ok || day < 1 || day > 31 {
		return time.Time{}, false
	}
	// The most recent year in which the timestamp is no more than yearSlack ahead of now.
	now = now.In(loc)
	limit := now.Add(yearSlack)
	for year := now.Year() + 1; ; year-- {
		if t := time.Date(year, time.Month(month), day, h, m, s, 0, loc); !t.After(limit) {
			return t, true
		}
	}
}

// parseISO reads "YYYY-MM-DD HH:MM:SS" or "YYYY-MM-DDTHH:MM:SS", then an optional fraction
// after ',' or '.', then, after 'T' only, an optional zone (Z or ±hh:mm).
func parseISO(b []byte, loc *time.Location) (time.Time, bool) {
	year, ok1 := digits(b[0:4])
	month, ok2 := digits(b[5:7])
	day, ok3 := digits(b[8:10])
	dash := b[4] == '-' && b[7] == '-'
	if b[4] == '/' && b[7] == '/' && b[10] == ' ' { // nginx: no fraction, no zone
		if !ok1 || !ok2 || !ok3 {
			return time.Time{}, false
		}
		h, m, s, ok := clock(b[11:19])
		if !ok || month < 1 || month > 12 || day < 1 || day > 31 {
			return time.Time{}, false
		}
		return time.Date(year, time.Month(month), day, h, m, s, 0, loc), true
	}
	if !ok1 || !ok2 || !ok3 || !dash || (b[10] != ' ' && b[10] != 'T') {
		return time.Time{}, false
	}
	h, m, s, ok := clock(b[11:19])
	if !ok || month < 1 || month > 12 || day < 1 || day > 31 {
		return time.Time{}, false
	}
	rest := b[19:]
	nsec := 0
	if len(rest) > 1 && (rest[0] == ',' || rest[0] == '.') && isDigit(rest[1]) {
		scale := 100_000_000
		i := 1
		for ; i < len(rest) && isDigit(rest[i]); i++ {
			nsec += int(rest[i]-'0') * scale
			scale /= 10
		}
		rest = rest[i:]
	}
	if b[10] == 'T' && len(rest) > 0 {
		switch {
		case rest[0] == 'Z':
			loc = time.UTC
		case len(rest) >= 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
			oh, ok1 := digits(rest[1:3])
			om, ok2 := digits(rest[4:6])
			if !ok1 || !ok2 {
				return time.Time{}, false
			}
			off := oh*3600 + om*60
			if rest[0] == '-' {
				off = -off
			}
			loc = fixedZone(off)
		}
	}
	return time.Date(year, time.Month(month), day, h, m, s, nsec, loc), true
}

// fixedZone returns a zone at offset seconds east of UTC. time.FixedZone allocates, so the
// zones of whole quarter hours, which are all that real hosts use, are made once.
func fixedZone(off int) *time.Location {
	if off%900 == 0 && off >= -14*3600 && off <= 14*3600 {
		return quarterZones[(off+14*3600)/900]
	}
	return time.FixedZone("", off)
}

var quarterZones = func() []*time.Location {
	zs := make([]*time.Location, 2*14*4+1)
	for i := range zs {
		zs[i] = time.FixedZone("", i*900-14*3600)
	}
	return zs
}()

// clock reads "HH:MM:SS".
func clock(b []byte) (h, m, s int, ok bool) {
	if b[2] != ':' || b[5] != ':' {
		return 0, 0, 0, false
	}
	h, ok1 := digits(b[0:2])
	m, ok2 := digits(b[3:5])
	s, ok3 := digits(b[6:8])
	if !ok1 || !ok2 || !ok3 || h > 23 || m > 59 || s > 60 {
		return 0, 0, 0, false
	}
	return h, m, s, true
}

func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
