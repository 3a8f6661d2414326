package jails

import (
	"context"
	"iter"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/logban/logban/actions"
)

// BanAll bans the tickets' addresses and networks: it decides each ban's length from
// the jail's policy and the history of what it bans (read in one query a jail), records
// all the new bans at once (one transaction, with a BatchLedger) and then hands them to
// the jails' actions. It is the one way a ban is made, by a jail's failures or by hand.
// Tickets of unknown jails, of what their jail already bans, and of an address inside a
// network their jail bans (it needs no ban of its own), change nothing. It returns the
// new bans.
func (m *Manager) BanAll(ctx context.Context, tickets []Ticket) []actions.Ban {
	m.mu.Lock()
	defer m.mu.Unlock()
	fresh := make([]Ticket, 0, len(tickets))
	seen := make(map[banKey]bool, len(tickets))
	for _, t := range tickets {
		j, ok := m.jails[t.Jail]
		if !ok {
			continue
		}
		t.Addr = t.Addr.Unmap()
		p := t.Prefix()
		t.Addr = p.Addr()
		if p.IsSingleIP() {
			t.Bits = 0
		}
		k := banKey{t.Jail, p}
		if _, dup := j.bans[p]; dup || seen[k] {
			continue
		}
		if t.Bits == 0 {
			if _, covered := j.covering(t.Addr); covered {
				continue
			}
		}
		if why := m.protected(p); why != "" {
			m.refused++
			m.logger.Warn("ban refused: the address is "+why, "jail", t.Jail, "addr", actions.Target(p))
			continue
		}
		seen[k] = true
		fresh = append(fresh, t)
	}
	if len(fresh) == 0 {
		return nil
	}
	count := m.counter(ctx, fresh)
	records := make([]Record, len(fresh))
	for i, t := range fresh {
		records[i] = m.prepare(m.jails[t.Jail], t, count)
	}
	if m.farm != nil {
		m.farm.Decided(records)
	}
	if m.rec.behind {
		out := m.ban(records, "banned")
		m.recordBehind(records)
		m.holdBack()
		return out
	}
	m.record(ctx, records)
	return m.ban(records, "banned")
}

// ban puts new, recorded bans in force and counts them, each logged with msg, and
// returns them. Caller holds m.mu.
func (m *Manager) ban(records []Record, msg string) []actions.Ban {
	out := make([]actions.Ban, len(records))
	for i, r := range records {
		j := m.jails[r.Jail]
		j.totalBanned++
		m.apply(j, r)
		m.logBan(msg, r)
		out[i] = r.Ban
	}
	return out
}

// logBan writes the one line a ban gets in the server's log, as fail2ban's "Ban" notice:
// jail, address, failures, how long, why, and, in a farm, the deciding node.
// A server logging at warn or above pays nothing for it: a burst's bans are not each
// made into a line no one reads.
func (m *Manager) logBan(msg string, r Record) {
	ctx := context.Background()
	if !m.logger.Enabled(ctx, slog.LevelInfo) {
		return
	}
	bantime := "until unbanned"
	if !r.Permanent() {
		bantime = r.Expires.Sub(r.BannedAt).Round(time.Second).String()
	}
	attrs := []slog.Attr{slog.String("jail", r.Jail), slog.String("addr", r.Target()), slog.Int("failures", r.Failures),
		slog.String("bantime", bantime), slog.Int("ban_count", r.Count), slog.String("why", r.Why), {}}
	if r.By != "" {
		attrs[len(attrs)-1] = slog.String("decided_by", r.By)
	} else {
		attrs = attrs[:len(attrs)-1]
	}
	m.logger.LogAttrs(ctx, slog.LevelInfo, msg, attrs...)
}

// prepare makes the ban for t: its length from the jail's policy and the history of
// what it bans, as count reads it. Caller holds m.mu.
func (m *Manager) prepare(j *jailBans, t Ticket, count func(jail string, what netip.Prefix) int) Record {
	now := m.clock.Now()
	prev := count(t.Jail, t.Prefix())
	counted := prev
	if j.policy.Increment.OverallJails {
		counted = count("", t.Prefix())
	}
	b := actions.Ban{Jail: t.Jail, Addr: t.Addr, Bits: t.Bits, User: t.User, Failures: t.Failures, BannedAt: now, Why: t.Why, Lines: t.Lines}
	if m.farm != nil {
		b.By = m.farm.Node()
	}
	if b.Why == "" {
		b.Why = "by hand"
		if t.Failures > 0 {
			b.Why = strconv.Itoa(t.Failures) + " failures"
		}
	}
	base := j.policy.BanTime
	if b.IsNet() && j.policy.NetBanTime != 0 {
		base = j.policy.NetBanTime
	}
	if d := j.policy.Increment.Duration(base, counted, m.rand); d >= 0 {
		b.Expires = now.Add(d)
	}
	return Record{Ban: b, Count: prev + 1}
}

// apply puts a recorded ban in force: it is the jail's, its actions are handed it, and
// its end is scheduled. Caller holds m.mu.
func (m *Manager) apply(j *jailBans, r Record) {
	j.put(r)
	for _, na := range j.actions {
		m.toAction(na, r.Ban, false)
	}
	if !r.Permanent() && m.expiries.schedule(newExpiry(r.Expires, j.id, r.Prefix())) {
		m.wakeRun() // it ends before anything Run waits for
	}
}

// Covering returns the ban in jail of a network that holds addr, if there is one.
func (m *Manager) Covering(jail string, addr netip.Addr) (Record, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jails[jail]
	if !ok {
		return Record{}, false
	}
	return j.covering(addr.Unmap())
}

// Holder returns a jail that bans addr, by a ban of its own or of a network holding it,
// the first by name if several do.
func (m *Manager) Holder(addr netip.Addr) (jail string, ok bool) {
	addr = addr.Unmap()
	host := actions.Host(addr)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, name := range m.jailNames() {
		j := m.jails[name]
		if _, ok := j.bans[host]; ok {
			return name, true
		}
		if _, ok := j.covering(addr); ok {
			return name, true
		}
	}
	return "", false
}

// Unban lifts the ban of what (an address as a /32 or /128, or a network) in jail, or in
// every jail if jail is "", and, in a farm, on every host. It returns the bans lifted. If
// there were none it returns ErrNotBanned, as a *CoveredError naming the bans of
// networks that hold the address, if any do.
func (m *Manager) Unban(ctx context.Context, jail string, what netip.Prefix) ([]actions.Ban, error) {
	return m.unban(ctx, jail, what, true)
}

// UnbanHere is Unban on this host alone: the farm is not told.
func (m *Manager) UnbanHere(ctx context.Context, jail string, what netip.Prefix) ([]actions.Ban, error) {
	return m.unban(ctx, jail, what, false)
}

func (m *Manager) unban(ctx context.Context, jail string, what netip.Prefix, farmWide bool) ([]actions.Ban, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if jail != "" {
		if _, ok := m.jails[jail]; !ok {
			return nil, ErrUnknownJail
		}
	}
	var lifted []actions.Ban
	for _, name := range m.jailNames() {
		if jail != "" && name != jail {
			continue
		}
		j := m.jails[name]
		if r, ok := j.get(what); ok {
			how := "by hand"
			if !farmWide && m.farm != nil {
				how = "by hand, here only"
				m.rememberLocalUnban(ctx, r.Ban)
			}
			m.lift(ctx, j, r.Ban, how)
			lifted = append(lifted, r.Ban)
		}
	}
	if len(lifted) == 0 {
		if what.IsSingleIP() {
			var by []actions.Ban
			for _, name := range m.jailNames() {
				if r, ok := m.jails[name].covering(what.Addr()); ok && (jail == "" || name == jail) {
					by = append(by, r.Ban)
				}
			}
			if len(by) > 0 {
				return nil, &CoveredError{Addr: what.Addr(), By: by}
			}
		}
		return nil, ErrNotBanned
	}
	if farmWide && m.farm != nil {
		m.farm.Lifted(lifted)
	}
	return lifted, nil
}

// lift ends b, as how says ("expired", "by hand", ...): it leaves the jail, its record
// is deleted, its actions undo it, and the server's log gets one line. Caller holds m.mu.
func (m *Manager) lift(ctx context.Context, j *jailBans, b actions.Ban, how string) {
	m.logger.Info("unbanned", "jail", b.Jail, "addr", b.Target(), "failures", b.Failures,
		"banned_for", m.clock.Now().Sub(b.BannedAt).Round(time.Second).String(), "how", how)
	j.drop(b.Prefix())
	j.totalUnbanned++
	m.forget(ctx, b.Jail, b.Prefix())
	for _, na := range j.actions {
		m.toAction(na, b, true)
	}
}

// ExpireDue lifts every ban whose time has come on the manager's clock and returns them.
// It costs the number of bans due, not the number of bans.
func (m *Manager) ExpireDue(ctx context.Context) []actions.Ban {
	m.mu.Lock()
	defer m.mu.Unlock()
	var lifted []actions.Ban
	for _, e := range m.expiries.due(m.clock.Now()) {
		j, ok := m.jails[m.jailByID[e.jail]]
		if !ok {
			continue
		}
		if r, ok := j.get(e.what()); ok && atNanos(r.Expires) == e.at { // else lifted or replaced since
			m.lift(ctx, j, r.Ban, "expired")
			lifted = append(lifted, r.Ban)
		}
	}
	return lifted
}

// Restore brings back the bans a ledger recorded, at start, as records yields them: each
// in force again with the time it has left, its actions handed it as at a ban (the
// kernel may have lost it, or kept it after a crash: actions are idempotent). A ban that
// ended while the server was down is undone through its jail's actions (a crash may have
// left it in the kernel) and forgotten. A ban of a jail that no longer exists is
// forgotten too, and undone through every kernel action (Reconciler) the jails still
// have: what its jail used is not recorded, a kernel action's unban of what it does not
// hold changes nothing, and a Shared hold another jail's ban stands behind is kept. A
// warning per removed jail says what may be left (an action of its own that no jail
// has now, an empty chain or set) and how to remove it. The
// ledger is touched only once records is done, so records may be a cursor on it. The
// actions start on the first bans while the rest are read. It returns how many bans
// were restored and how many had ended, and the error records ended with, if any: the
// bans read before it stay restored.
func (m *Manager) Restore(ctx context.Context, records iter.Seq2[Record, error]) (restored, ended int, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loadLocalUnbans(ctx)
	now := m.clock.Now()
	var stale, gone []Record
	for r, rerr := range records {
		if rerr != nil {
			err = rerr
			break
		}
		j, ok := m.jails[r.Jail]
		if !ok {
			gone = append(gone, r) // a jail removed
			continue
		}
		r.Addr = r.Addr.Unmap()
		if _, dup := j.bans[r.Prefix()]; dup {
			continue
		}
		if !r.Permanent() && !r.Expires.After(now) {
			stale = append(stale, r)
			continue
		}
		m.apply(j, r)
		m.logBan("ban restored", r)
		restored++
	}
	m.liftGone(ctx, gone)
	// Once every ban in force holds its shared actions, those that ended let go of the
	// addresses no jail holds any more.
	for _, r := range stale {
		m.logger.Info("unbanned", "jail", r.Jail, "addr", r.Target(), "failures", r.Failures,
			"banned_for", r.Expires.Sub(r.BannedAt).Round(time.Second).String(), "how", "expired while the server was stopped")
		for _, na := range m.jails[r.Jail].actions {
			if _, shared := na.Action.(actions.Shared); !shared || m.shared.count(na.Action, r.Prefix()) == 0 {
				m.queue(na).add(actionCall{ban: r.Ban, unban: true})
			}
		}
		m.forget(ctx, r.Jail, r.Prefix())
		ended++
	}
	return restored, ended, err
}

// liftGone forgets the bans of jails that no longer exist, and undoes them through the
// kernel actions the jails still have. Caller holds m.mu, after the bans in force are
// applied (so Shared holds they stand behind are counted).
func (m *Manager) liftGone(ctx context.Context, gone []Record) {
	var kernel []NamedAction
	seen := map[actions.Action]bool{}
	for _, name := range m.jailNames() {
		for _, na := range m.jails[name].actions {
			if _, ok := na.Action.(actions.Reconciler); ok && !seen[na.Action] {
				seen[na.Action] = true
				kernel = append(kernel, na)
			}
		}
	}
	byJail := map[string]int{}
	for _, r := range gone {
		for _, na := range kernel {
			if _, shared := na.Action.(actions.Shared); shared && m.shared.count(na.Action, r.Prefix()) > 0 {
				continue
			}
			m.queue(na).add(actionCall{ban: r.Ban, unban: true})
		}
		m.forget(ctx, r.Jail, r.Prefix())
		byJail[r.Jail]++
	}
	for _, jail := range slices.Sorted(maps.Keys(byJail)) {
		names := make([]string, len(kernel))
		for i, na := range kernel {
			names[i] = na.Name
		}
		m.logger.Warn("bans of a jail no longer configured lifted; what an action of its own, that no jail has now, put in the kernel stays: "+
			"run ban-server -cleanup once to remove everything logban holds there, or add the jail back and unban",
			"jail", jail, "bans", byJail[jail], "lifted_through", strings.Join(names, ","))
	}
}

// sharedHolds counts, for each Shared action, the jails holding each address or network
// through it: a map per action, keyed by what is held, 40 bytes a slot where a key of
// both action and address would take 56.
type sharedHolds map[actions.Action]map[netip.Prefix]int32

// count returns how many jails hold p through a.
func (s sharedHolds) count(a actions.Action, p netip.Prefix) int32 { return s[a][p] }

// add adds delta to the jails holding p through a and returns how many hold it now; p is
// forgotten once none does.
func (s sharedHolds) add(a actions.Action, p netip.Prefix, delta int32) int32 {
	held := s[a]
	if held == nil {
		held = make(map[netip.Prefix]int32)
		s[a] = held
	}
	n := held[p] + delta
	if n > 0 {
		held[p] = n
	} else {
		delete(held, p)
	}
	return n
}

// toAction hands one action a ban, or its undoing. A Shared action (one whose effect
// belongs to the address, like a null route) is handed a ban only for the first jail
// holding the address and its undoing only when the last one lets go, so two jails
// banning one address keep it blocked until both bans end. Caller holds m.mu.
func (m *Manager) toAction(na NamedAction, b actions.Ban, unban bool) {
	if _, ok := na.Action.(actions.Shared); ok {
		if unban {
			if m.shared.add(na.Action, b.Prefix(), -1) > 0 {
				return
			}
		} else if m.shared.add(na.Action, b.Prefix(), 1) > 1 {
			return
		}
	}
	m.queue(na).add(actionCall{ban: b, unban: unban})
}

// queue returns na's queue, making it if the action has none. Caller holds m.mu.
func (m *Manager) queue(na NamedAction) *actionQueue {
	q, ok := m.queues[na.Action]
	if !ok {
		q = m.newQueue(na)
		m.queues[na.Action] = q
	}
	return q
}
