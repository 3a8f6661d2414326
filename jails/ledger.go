package jails

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/logban/logban/actions"
)

// Record is a ban as a Ledger keeps it: the ban, and how many times its address has been
// banned in its jail, this time included.
type Record struct {
	actions.Ban
	Count int
}

// Ledger keeps bans beyond the process, so a restart or a crash loses none, and counts
// each address's bans for longer bans of repeat offenders.
type Ledger interface {
	// SaveBan records a ban: before it is applied, or behind it (SetRecordBehind).
	SaveBan(ctx context.Context, r Record) error
	// DeleteBan forgets a ban that ended; its count stays.
	DeleteBan(ctx context.Context, jail string, what netip.Prefix) error
	// BanCount returns how many times what (an address as a /32 or /128, or a network)
	// was banned in jail, or in all jails if "".
	BanCount(ctx context.Context, jail string, what netip.Prefix) (int, error)
}

// BatchLedger is a Ledger that records many bans at once, in one transaction, and reads
// many addresses' counts in one query.
type BatchLedger interface {
	Ledger
	SaveBans(ctx context.Context, records []Record) error
	// BanCounts returns how many times each of whats was banned in jail, or in all jails
	// if ""; one never banned is absent.
	BanCounts(ctx context.Context, jail string, whats []netip.Prefix) (map[netip.Prefix]int, error)
}

// LineLedger is a Ledger that keeps each ban's lines (the last log lines that counted),
// which the manager does not hold in memory once the ban is recorded.
type LineLedger interface {
	// BanLines returns the lines of jail's ban of what, nil if it has none.
	BanLines(ctx context.Context, jail string, what netip.Prefix) ([]string, error)
}

// Lines returns the lines of jail's ban of what, as the ledger keeps them; nil if the
// ledger keeps none.
func (m *Manager) Lines(ctx context.Context, jail string, what netip.Prefix) []string {
	m.mu.Lock()
	l, ok := m.ledger.(LineLedger)
	r, unwritten := m.unwritten(banKey{jail, what})
	m.mu.Unlock()
	if unwritten {
		return r.Lines // the ledger will have them once it takes the record
	}
	if !ok {
		return nil
	}
	lines, err := l.BanLines(ctx, jail, what)
	if err != nil {
		m.logger.Warn("reading a ban's lines", "jail", jail, "target", actions.Target(what), "err", err)
	}
	return lines
}

// MemoryLedger is a Ledger that lasts as long as the process: for tests, and for a
// manager given no other.
type MemoryLedger struct {
	mu     sync.Mutex
	local  map[localKey]LocalUnban
	bans   map[banKey]Record
	counts map[netip.Prefix]map[string]int // by what was banned, then jail
}

// banKey names a ban: its jail, and the address or network it bans.
type banKey struct {
	jail string
	what netip.Prefix
}

// NewMemoryLedger returns an empty MemoryLedger.
func NewMemoryLedger() *MemoryLedger {
	return &MemoryLedger{bans: map[banKey]Record{}, counts: map[netip.Prefix]map[string]int{}}
}

// SaveBan records r.
func (l *MemoryLedger) SaveBan(_ context.Context, r Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := r.Prefix()
	l.bans[banKey{r.Jail, p}] = r
	if l.counts[p] == nil {
		l.counts[p] = map[string]int{}
	}
	l.counts[p][r.Jail] = r.Count
	return nil
}

// BanLines returns the lines of a recorded ban.
func (l *MemoryLedger) BanLines(_ context.Context, jail string, what netip.Prefix) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bans[banKey{jail, what}].Lines, nil
}

// DeleteBan forgets a ban.
func (l *MemoryLedger) DeleteBan(_ context.Context, jail string, what netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.bans, banKey{jail, what})
	return nil
}

// BanCount counts the bans of what.
func (l *MemoryLedger) BanCount(_ context.Context, jail string, what netip.Prefix) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if jail != "" {
		return l.counts[what][jail], nil
	}
	n := 0
	for _, c := range l.counts[what] {
		n += c
	}
	return n, nil
}

// Bans returns the recorded bans.
func (l *MemoryLedger) Bans() []Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Record, 0, len(l.bans))
	for _, r := range l.bans {
		out = append(out, r)
	}
	return out
}

// HistoryEntry is what a ledger remembers of an address's (or a network's) bans in one
// jail, beyond the bans themselves.
type HistoryEntry struct {
	Jail       string
	What       netip.Prefix // the address (as a /32 or /128) or network banned
	Count      int          // bans of it in the jail
	LastBanned time.Time    // when the last of them began
}

// HistoryLedger is a Ledger that can tell an address's ban history.
type HistoryLedger interface {
	// History returns the history of what (an address as a /32 or /128, or a network)
	// in every jail, or, for the zero Prefix, the limit addresses and networks banned
	// last, newest first.
	History(ctx context.Context, what netip.Prefix, limit int) ([]HistoryEntry, error)
}

// History returns the ledger's ban history of what (or, for the zero Prefix, of the
// limit addresses and networks banned last); nothing if the ledger keeps none.
func (m *Manager) History(ctx context.Context, what netip.Prefix, limit int) ([]HistoryEntry, error) {
	m.mu.Lock()
	l, ok := m.ledger.(HistoryLedger)
	m.mu.Unlock()
	if !ok {
		return nil, nil
	}
	return l.History(ctx, what, limit)
}

// SaveLocalUnban remembers u.
func (l *MemoryLedger) SaveLocalUnban(_ context.Context, u LocalUnban) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.local == nil {
		l.local = map[localKey]LocalUnban{}
	}
	l.local[localKey{u.Jail, u.What}] = u
	return nil
}

// DeleteLocalUnban forgets the local unban of what in jail.
func (l *MemoryLedger) DeleteLocalUnban(_ context.Context, jail string, what netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.local, localKey{jail, what})
	return nil
}

// LocalUnbans returns the local unbans remembered.
func (l *MemoryLedger) LocalUnbans(context.Context) ([]LocalUnban, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []LocalUnban
	for _, u := range l.local {
		out = append(out, u)
	}
	return out, nil
}
