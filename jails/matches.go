package jails

import "net/netip"

// MaxMatches is how many of an address's last matched lines a jail keeps, and a ban
// records: what "ban-client why" shows (fail2ban's dbmaxmatches).
const MaxMatches = 5

// matchesKept is how many addresses' lines a jail keeps at once. Past it, an address's
// lines make room by dropping another's: the memory stays bounded however many
// addresses fail, and a ban then records the lines still kept.
const matchesKept = 4096

// matches are the last matched lines of recently failing addresses. Jail serialises
// access.
type matches struct {
	m    map[netip.Addr]lastLines
	peak int // the most addresses m has held since it was made
}

// matchesKeptEmpty is how many addresses a map may have held and still be kept when it
// empties: a small one serves the next failures (an address failing its maxretry lines
// in a row empties it at each ban), and one a burst grew is let go, as a map keeps
// its room.
const matchesKeptEmpty = 64

// lastLines is an address's last lines, in a ring: a failure adds its line without
// growing or shifting a slice.
type lastLines struct {
	lines    [MaxMatches]string
	first, n uint8 // the oldest line's place, and how many there are
}

// add keeps line as addr's newest, dropping its oldest past MaxMatches.
func (mp *matches) add(addr netip.Addr, line []byte) {
	if mp.m == nil {
		mp.m, mp.peak = map[netip.Addr]lastLines{}, 0
	}
	m := mp.m
	l, ok := m[addr]
	if !ok && len(m) >= matchesKept {
		for other := range m { // any one: map order is arbitrary
			delete(m, other)
			break
		}
	}
	if l.n < MaxMatches {
		l.lines[(int(l.first)+int(l.n))%MaxMatches] = string(line)
		l.n++
	} else {
		l.lines[l.first] = string(line)
		l.first = (l.first + 1) % MaxMatches
	}
	m[addr] = l
	mp.peak = max(mp.peak, len(m))
}

// take returns addr's lines, oldest first, and forgets them.
func (mp *matches) take(addr netip.Addr) []string {
	l, ok := mp.m[addr]
	if !ok {
		return nil
	}
	delete(mp.m, addr)
	if len(mp.m) == 0 && mp.peak > matchesKeptEmpty {
		mp.m = nil
	}
	lines := make([]string, l.n)
	for i := range lines {
		lines[i] = l.lines[(int(l.first)+i)%MaxMatches]
	}
	return lines
}
