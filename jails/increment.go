package jails

import (
	"context"
	"github.com/logban/logban/actions"
	"net/netip"
	"time"
)

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

// counter returns the ban counts the tickets' bans need to know how long they last,
// read from the ledger's history: at once for all of them from a BatchLedger, else one
// by one. Caller holds m.mu.
func (m *Manager) counter(ctx context.Context, tickets []Ticket) func(jail string, what netip.Prefix) int {
	bl, ok := m.ledger.(BatchLedger)
	if !ok {
		return func(jail string, what netip.Prefix) int {
			n, err := m.ledger.BanCount(ctx, jail, what)
			if err != nil {
				m.logger.Error("reading ban history", "addr", actions.Target(what), "err", err)
			}
			return n
		}
	}
	byJail := map[string][]netip.Prefix{}
	for _, t := range tickets {
		byJail[t.Jail] = append(byJail[t.Jail], t.Prefix())
		if m.jails[t.Jail].policy.Increment.OverallJails {
			byJail[""] = append(byJail[""], t.Prefix())
		}
	}
	counts := map[string]map[netip.Prefix]int{}
	for jail, addrs := range byJail {
		c, err := bl.BanCounts(ctx, jail, addrs)
		if err != nil {
			m.logger.Error("reading ban history", "addresses", len(addrs), "err", err)
		}
		counts[jail] = c
	}
	return func(jail string, what netip.Prefix) int { return counts[jail][what] }
}
