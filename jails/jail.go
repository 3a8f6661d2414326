package jails

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logban/logban/filters"
)

// Settings are a jail's counting rules.
type Settings struct {
	MaxRetry int
	FindTime time.Duration
	Ignore   *IgnoreList
	// Tally, if set, hears of every failure counted, so a farm can count it too.
	Tally Tally
	// Logger, if set, gets a debug line for each failure counted.
	Logger *slog.Logger
}

// Tally hears of the failures a jail counts, to count them across a farm. Failure is
// called on the reading path: it must not wait.
type Tally interface {
	Failure(jail string, addr netip.Addr, t time.Time, from Origin)
}

// Origin is where a failure was read: the file (its Head hash, which tells files apart
// across rotations) and the offset just past the line. The same line read twice has the
// same origin, so a farm counts it once. The zero Origin is a failure from no file.
type Origin struct {
	File   uint64
	Offset int64
}

// Ticket asks the Manager to ban an address.
type Ticket struct {
	Jail     string
	Addr     netip.Addr
	Failures int       // failures within findtime; 0 for a manual ban
	Time     time.Time // time of the last failure
	// Why says what led to the ban; "" for the usual words (failures within findtime,
	// or by hand).
	Why string
	// Lines are the address's last matched lines (at most MaxMatches), oldest first.
	Lines []string
}

// ErrIgnored reports an address that the jail must never ban. The error returned is an
// *IgnoredError, which says why.
var ErrIgnored = errors.New("never banned")

// IgnoredError reports an address that must never be banned, and why.
type IgnoredError struct {
	Addr netip.Addr
	Why  string
}

// Error says why the address is never banned.
func (e *IgnoredError) Error() string { return e.Addr.String() + " is " + e.Why + ": never banned" }

// Is makes errors.Is(err, ErrIgnored) hold.
func (e *IgnoredError) Is(target error) bool { return target == ErrIgnored }

// Jail finds failures in lines with its filter and turns maxretry of them within findtime
// into a Ticket. It is safe for concurrent use: several files may feed one jail.
type Jail struct {
	name     string
	filter   *filters.Filter
	settings Settings

	mu      sync.Mutex
	window  *Window
	matches matches // the last lines of recently failing addresses

	totalFailed atomic.Int64
	ignored     atomic.Int64
	dropped     atomic.Int64 // failures the filter itself dropped (ignoreregex)
	skew        SkewMeter
}

// New returns a jail.
func New(name string, filter *filters.Filter, s Settings) *Jail {
	if s.Ignore == nil {
		s.Ignore = NewIgnoreList()
	}
	return &Jail{name: name, filter: filter, settings: s, window: NewWindow(s.MaxRetry, s.FindTime), matches: matches{}}
}

// Line runs the filter over line, read at now, and counts a failure if there is one. A
// line no failregex wants returns at once without allocating.
func (j *Jail) Line(line []byte, now time.Time) (Ticket, bool) {
	return j.LineFrom(line, now, Origin{})
}

// LineFrom is Line for a line read at from.
func (j *Jail) LineFrom(line []byte, now time.Time, from Origin) (Ticket, bool) {
	m, r := j.filter.Match(line, now)
	if r != filters.Matched {
		if r == filters.Ignored {
			j.dropped.Add(1)
		}
		return Ticket{}, false
	}
	if m.Timed {
		j.skew.observe(m.Time, now)
	}
	return j.failure(m.Addr, m.Time, now, from, line)
}

// Skew returns the steady offset between the jail's line times and the clock, measured
// on the failures found since the last call (SkewMeter.Steady).
func (j *Jail) Skew() (Skew, bool) { return j.skew.Steady() }

// Next returns the index in data of the first place a line the jail's filter could match
// may lie, or -1 if there is none (filters.Filter.Next).
func (j *Jail) Next(data []byte) int { return j.filter.Next(data) }

// FutureTolerance is how far ahead of the host's clock a line's time may lie and still
// count as written: a writer's clock a little ahead, or a log written in another time
// zone, must not make failures look as if they had not happened yet.
const FutureTolerance = time.Minute

// Failure counts a failure of addr at t (the log's time), seen at now. A t further ahead
// of now than FutureTolerance counts at now: a line stamped in the future (a writer's
// clock set wrong, a forged year) would otherwise stay an address's newest failure and
// keep every later one from counting.
func (j *Jail) Failure(addr netip.Addr, t, now time.Time) (Ticket, bool) {
	return j.failure(addr, t, now, Origin{}, nil)
}

// failure counts a failure; line, if any, is the log line it was found in.
func (j *Jail) failure(addr netip.Addr, t, now time.Time, from Origin, line []byte) (Ticket, bool) {
	addr = addr.Unmap()
	if t.After(now.Add(FutureTolerance)) {
		t = now
	}
	if j.settings.Ignore.Contains(addr) {
		j.ignored.Add(1)
		return Ticket{}, false
	}
	j.totalFailed.Add(1)
	if l := j.settings.Logger; l != nil && l.Enabled(context.Background(), slog.LevelDebug) {
		l.Debug("failure", "jail", j.name, "addr", addr, "time", t)
	}
	if j.settings.Tally != nil {
		j.settings.Tally.Failure(j.name, addr, t, from)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	n, reached := j.window.Add(addr, t, now)
	if line != nil {
		j.matches.add(addr, line)
	}
	if !reached {
		return Ticket{}, false
	}
	return Ticket{Jail: j.name, Addr: addr, Failures: n, Time: t, Lines: j.matches.take(addr)}, true
}

// Manual returns a ticket for an operator's ban of addr, refused if addr is ignored.
func (j *Jail) Manual(addr netip.Addr, now time.Time) (Ticket, error) {
	addr = addr.Unmap()
	if why := j.settings.Ignore.Why(addr); why != "" {
		return Ticket{}, &IgnoredError{Addr: addr, Why: why}
	}
	j.Forget(addr)
	return Ticket{Jail: j.name, Addr: addr, Time: now}, nil
}

// Forget drops addr's failure history.
func (j *Jail) Forget(addr netip.Addr) {
	j.mu.Lock()
	j.window.Forget(addr)
	delete(j.matches, addr)
	j.mu.Unlock()
}

// Prune drops failure histories that have aged out of findtime.
func (j *Jail) Prune(now time.Time) {
	j.mu.Lock()
	j.window.Prune(now)
	j.mu.Unlock()
}

// Counts are a jail's failure figures.
type Counts struct {
	CurrentlyFailed int   // addresses with failures within findtime
	TotalFailed     int64 // failures counted since the jail started
	Ignored         int64 // failures of addresses on the ignore list
	// Dropped are failures the filter itself set aside: its ignoreregex, or a format
	// that says the fault was the server's.
	Dropped int64
}

// Counts returns the jail's failure figures as of now.
func (j *Jail) Counts(now time.Time) Counts {
	j.mu.Lock()
	j.window.Prune(now)
	n := j.window.Len()
	j.mu.Unlock()
	return Counts{CurrentlyFailed: n, TotalFailed: j.totalFailed.Load(), Ignored: j.ignored.Load(), Dropped: j.dropped.Load()}
}
