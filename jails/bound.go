package jails

// Every table a jail keeps is filled by the internet: an address, a network, an account
// name per failing line. Each is bounded (Settings.MaxTracked entries); at the bound,
// what aged out of findtime goes first, then the entries with the fewest failures, down
// to seven eighths of the bound, and they are counted (Counts.Evicted). An attacker
// flooding a table with new addresses, each failing once, so pushes out only entries
// that failed as little as theirs, never one close to its maxretry: the brute force a
// flood would hide keeps its count.

// DefaultMaxTracked bounds each of a jail's tables (addresses, networks, keys) unless
// the configuration says otherwise: 500,000 entries, about 130 MB of addresses at the
// worst, with room for a wide attack's whole findtime.
const DefaultMaxTracked = 500_000

// shedTarget is how far a full table is shed: seven eighths of its bound, so that the
// sweep (a pass over the table) runs once per eighth of the bound of new entries.
func shedTarget(bound int) int { return bound - bound/8 }

// shedFewest removes entries of m, those with the fewest failures first, until at most
// target are left, and returns how many it removed. count says an entry's failures (at
// most top); remove takes an entry out, of m and of whatever else holds it.
func shedFewest[K comparable, V any](m map[K]V, target, top int, count func(V) int, remove func(K, V)) int {
	excess := len(m) - target
	if excess <= 0 {
		return 0
	}
	hist := make([]int, top+2)
	for _, v := range m {
		hist[min(max(count(v), 0), top+1)]++
	}
	// below: every entry with fewer failures than level goes; at level, only some.
	level, below := 0, 0
	for level <= top+1 && below+hist[level] < excess {
		below += hist[level]
		level++
	}
	atLevel := excess - below
	removed := 0
	for k, v := range m {
		c := min(max(count(v), 0), top+1)
		if c < level || c == level && atLevel > 0 {
			if c == level {
				atLevel--
			}
			remove(k, v)
			removed++
		}
	}
	return removed
}
