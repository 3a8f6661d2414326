package jails

import (
	"context"
	"net/netip"

	"github.com/logban/logban/actions"
)

// FarmLink is what the manager tells the farm its host belongs to, and asks of it. Its
// methods are called with the manager's lock held: they must not call back into the
// manager, and must not wait on the network.
type FarmLink interface {
	// Node is this host's name in the farm; it signs the bans this host decides.
	Node() string
	// Decided is handed the bans this host decided (by its jails' failures, the farm's
	// count, or by hand), before they are recorded, so a crash between the two still
	// publishes them.
	Decided(records []Record)
	// Lifted is handed the bans an operator lifted here, to be lifted farm-wide.
	Lifted(bans []actions.Ban)
	// Unbanning reports whether an unban of jail's ban of what, made here, waits to
	// reach the farm: a farm ban of it delivered meanwhile is the one being lifted.
	Unbanning(jail string, what netip.Prefix) bool
	// Protected returns why what (an address as a /32 or /128, or a network) must never
	// be banned by this farm (it is, or holds, another node's address), or "".
	Protected(what netip.Prefix) string
}

// SetFarm links the manager to a farm: the bans it decides are signed by the farm's
// node and handed to it, operators' unbans too, and no ban, decided here or adopted, is
// made of an address the farm protects. Call it before the first ban.
func (m *Manager) SetFarm(f FarmLink) {
	m.mu.Lock()
	m.farm = f
	m.mu.Unlock()
}

// protected returns why what must not be banned for the farm, or "". Caller holds m.mu.
func (m *Manager) protected(what netip.Prefix) string {
	if m.farm == nil {
		return ""
	}
	return m.farm.Protected(what)
}

// Adopt puts in force bans the farm decided elsewhere, as they are: their end, their
// deciding node and their reason. A ban already in force here takes the farm's end and
// node (the farm's decision is the one every host holds); its actions are not called
// again. Bans of unknown jails, and of addresses the farm protects, are skipped; the
// latter are logged. It returns the bans new here.
func (m *Manager) Adopt(ctx context.Context, records []Record) []actions.Ban {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	var fresh, changed []Record
	var tickets []Ticket
	for _, r := range records {
		r.Addr = r.Addr.Unmap()
		j, ok := m.jails[r.Jail]
		if !ok || (!r.Permanent() && !r.Expires.After(now)) {
			continue
		}
		if m.liftedHere(ctx, r) {
			continue // lifted on this host alone, until the farm's ban ends
		}
		if m.farm != nil && m.farm.Unbanning(r.Jail, r.Prefix()) {
			// Lifted here by hand, the unban on its way to the farm (queued under this
			// lock): the ban must not come back before the unban reaches the farm.
			continue
		}
		if why := m.protected(r.Prefix()); why != "" {
			m.refused++
			m.logger.Warn("farm ban refused: the address is "+why, "jail", r.Jail, "addr", r.Target(), "decided_by", r.By)
			continue
		}
		if old, ok := j.get(r.Prefix()); ok {
			if old.By == r.By && old.Expires.UnixMilli() == r.Expires.UnixMilli() { // the farm keeps milliseconds
				continue
			}
			if m.farm != nil && old.By == m.farm.Node() && r.By != old.By {
				m.logger.Info("the farm's decision stands: this host decided the ban too, but another host first",
					"jail", r.Jail, "addr", r.Target(), "decided_by", r.By, "until", r.Expires)
			}
			r.Count = old.Count
			changed = append(changed, r)
			continue
		}
		fresh = append(fresh, r)
		tickets = append(tickets, Ticket{Jail: r.Jail, Addr: r.Addr, Bits: r.Bits})
	}
	if len(fresh) > 0 {
		count := m.counter(ctx, tickets)
		for i := range fresh {
			fresh[i].Count = count(fresh[i].Jail, fresh[i].Prefix()) + 1
		}
	}
	// Recorded behind, as a ban decided here is: a crash before the record loses nothing,
	// for the farm's watch hands every ban it holds over again at the next start.
	all := append(changed, fresh...)
	if !m.rec.behind {
		m.record(ctx, all)
	}
	for _, r := range changed {
		j := m.jails[r.Jail]
		j.put(r)
		if !r.Permanent() && m.expiries.schedule(newExpiry(r.Expires, j.id, r.Prefix())) {
			m.wakeRun()
		}
	}
	out := m.ban(fresh, "banned by the farm")
	if m.rec.behind {
		m.recordBehind(all)
		m.holdBack()
	}
	return out
}

// LiftIf lifts the ban of what in jail if there is one and lift says so, without telling
// the farm: it is how a ban lifted elsewhere in the farm is lifted here. Without one,
// the farm's ban of what is over, and so is its unban here only, if any. It reports
// whether it lifted one.
func (m *Manager) LiftIf(ctx context.Context, jail string, what netip.Prefix, lift func(Record) bool) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jails[jail]
	if !ok {
		return false
	}
	r, ok := j.get(what)
	if !ok {
		m.forgetLocalUnban(ctx, localKey{jail, what}) // the farm's ban ended: so does its local unban
		return false
	}
	if !lift(r) {
		return false
	}
	m.lift(ctx, j, r.Ban, "lifted in the farm (an unban elsewhere, or its end)")
	return true
}

// Record returns the ban of what in jail, if there is one.
func (m *Manager) Record(jail string, what netip.Prefix) (Record, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jails[jail]
	if !ok {
		return Record{}, false
	}
	return j.get(what)
}

// Refused returns how many bans were refused because the farm protects their address.
func (m *Manager) Refused() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.refused
}
