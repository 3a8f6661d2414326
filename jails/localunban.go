package jails

import (
	"context"
	"net/netip"
	"time"

	"github.com/logban/logban/actions"
)

// A farm's ban lifted on this host alone (ban-client unbanip --local) stays lifted here
// until the farm's ban ends or is lifted: the farm still holds it, and without this the
// next catch-up (a reconnect, a restart) would apply it again. A newer decision of the
// farm for the same address is a new ban, and applies.

// LocalUnban is a farm ban lifted on this host alone.
type LocalUnban struct {
	Jail     string
	What     netip.Prefix
	BannedAt time.Time // the lifted ban's decision: an older or equal one stays lifted
	Until    time.Time // the lifted ban's end; zero: until the farm lifts it
}

// LocalUnbanLedger is a Ledger that remembers local unbans across restarts.
type LocalUnbanLedger interface {
	SaveLocalUnban(ctx context.Context, u LocalUnban) error
	DeleteLocalUnban(ctx context.Context, jail string, what netip.Prefix) error
	LocalUnbans(ctx context.Context) ([]LocalUnban, error)
}

// localKey names a local unban.
type localKey struct {
	jail string
	what netip.Prefix
}

// rememberLocalUnban notes that b, a farm's ban, was lifted here alone. Caller holds
// m.mu.
func (m *Manager) rememberLocalUnban(ctx context.Context, b actions.Ban) {
	if b.By == "" {
		return // this host's own ban outside the farm: nothing brings it back
	}
	u := LocalUnban{Jail: b.Jail, What: b.Prefix(), BannedAt: b.BannedAt, Until: b.Expires}
	m.localUnbans[localKey{u.Jail, u.What}] = u
	if l, ok := m.ledger.(LocalUnbanLedger); ok {
		if err := l.SaveLocalUnban(ctx, u); err != nil {
			m.logger.Error("remembering a ban lifted here only", "jail", u.Jail, "addr", actions.Target(u.What), "err", err)
		}
	}
}

// liftedHere reports whether r, a farm's ban, was lifted on this host alone and stays
// so; a local unban that ended, or that a newer decision replaces, is forgotten. Caller
// holds m.mu.
func (m *Manager) liftedHere(ctx context.Context, r Record) bool {
	k := localKey{r.Jail, r.Prefix()}
	u, ok := m.localUnbans[k]
	if !ok {
		return false
	}
	if !r.BannedAt.After(u.BannedAt) && (u.Until.IsZero() || u.Until.After(m.clock.Now())) {
		return true
	}
	m.forgetLocalUnban(ctx, k)
	return false
}

// forgetLocalUnban drops a local unban: its ban ended, was lifted, or was replaced.
// Caller holds m.mu.
func (m *Manager) forgetLocalUnban(ctx context.Context, k localKey) {
	if _, ok := m.localUnbans[k]; !ok {
		return
	}
	delete(m.localUnbans, k)
	if l, ok := m.ledger.(LocalUnbanLedger); ok {
		if err := l.DeleteLocalUnban(ctx, k.jail, k.what); err != nil {
			m.logger.Error("forgetting a ban lifted here only", "jail", k.jail, "addr", actions.Target(k.what), "err", err)
		}
	}
}

// loadLocalUnbans reads the local unbans the ledger remembers. Caller holds m.mu.
func (m *Manager) loadLocalUnbans(ctx context.Context) {
	l, ok := m.ledger.(LocalUnbanLedger)
	if !ok {
		return
	}
	us, err := l.LocalUnbans(ctx)
	if err != nil {
		m.logger.Error("reading the bans lifted here only", "err", err)
		return
	}
	now := m.clock.Now()
	for _, u := range us {
		if !u.Until.IsZero() && !u.Until.After(now) {
			l.DeleteLocalUnban(ctx, u.Jail, u.What) //nolint:errcheck // read again next start
			continue
		}
		m.localUnbans[localKey{u.Jail, u.What}] = u
	}
}

// LocallyLifted returns how many farm bans are lifted on this host alone.
func (m *Manager) LocallyLifted() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.localUnbans)
}
