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
	// SaveBan records a ban before it is applied.
	SaveBan(ctx context.Context, r Record) error
	// DeleteBan forgets a ban that ended; its count stays.
	DeleteBan(ctx context.Context, jail string, addr netip.Addr) error
	// BanCount returns how many times addr was banned in jail, or in all jails if "".
	BanCount(ctx context.Context, jail string, addr netip.Addr) (int, error)
}

// MemoryLedger is a Ledger that lasts as long as the process: for tests, and for a
// manager given no other.
type MemoryLedger struct {
	mu     sync.Mutex
	bans   map[banKey]Record
	counts map[netip.Addr]map[string]int // by address, then jail
}

type banKey struct {
	jail string
	addr netip.Addr
}

// NewMemoryLedger returns an empty MemoryLedger.
func NewMemoryLedger() *MemoryLedger {
	return &MemoryLedger{bans: map[banKey]Record{}, counts: map[netip.Addr]map[string]int{}}
}

// SaveBan records r.
func (l *MemoryLedger) SaveBan(_ context.Context, r Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bans[banKey{r.Jail, r.Addr}] = r
	if l.counts[r.Addr] == nil {
		l.counts[r.Addr] = map[string]int{}
	}
	l.counts[r.Addr][r.Jail] = r.Count
	return nil
}

// DeleteBan forgets a ban.
func (l *MemoryLedger) DeleteBan(_ context.Context, jail string, addr netip.Addr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.bans, banKey{jail, addr})
	return nil
}

// BanCount counts addr's bans.
func (l *MemoryLedger) BanCount(_ context.Context, jail string, addr netip.Addr) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if jail != "" {
		return l.counts[addr][jail], nil
	}
	n := 0
	for _, c := range l.counts[addr] {
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

// Increment lengthens the bans of addresses banned before, as fail2ban's
// bantime.increment does.
type Increment struct {
	Enabled bool
	// Factor multiplies the exponential growth: the n-th ban (n from 1) lasts
	// bantime × Factor × 2^(n-1). Ignored when Multipliers is set.
	Factor float64
	// Multipliers, if set, give the n-th ban bantime × Multipliers[n-1], the last one
	// repeating.
	Multipliers []float64
	// MaxTime caps a ban's length; 0 means no cap.
	MaxTime time.Duration
	// RndTime adds up to this much at random, so a botnet cannot learn the exact end.
	RndTime time.Duration
	// OverallJails counts bans of the address in every jail, not only this one.
	OverallJails bool
}

// Duration returns how long a ban lasts when the address was banned prev times before.
// rnd returns a random number in [0, n). A permanent base stays permanent.
func (inc Increment) Duration(base time.Duration, prev int, rnd func(n int64) int64) time.Duration {
	if !inc.Enabled || base < 0 {
		return base
	}
	var mult float64
	if len(inc.Multipliers) > 0 {
		mult = inc.Multipliers[min(prev, len(inc.Multipliers)-1)]
	} else {
		mult = max(inc.Factor, 0) * float64(uint64(1)<<min(prev, 20))
	}
	d := time.Duration(float64(base) * mult)
	if d < 0 || float64(base)*mult > float64(1<<62) {
		d = 1 << 62 // overflow: as long as can be said
	}
	if inc.MaxTime > 0 {
		d = min(d, inc.MaxTime)
	}
	if inc.RndTime > 0 && rnd != nil {
		d += time.Duration(rnd(int64(inc.RndTime)))
	}
	return d
}
