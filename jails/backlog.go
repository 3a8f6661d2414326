package jails

import (
	"context"
	"errors"
	"github.com/logban/logban/actions"
	"maps"
	"net/netip"
	"slices"
	"time"
)

// backlog holds the ledger writes that failed: bans in force whose records could not be
// saved (the disk is full, the database is gone), and ended bans whose records could not
// be deleted. A ban is applied even when its record fails, since protection comes first;
// its record waits here, retried with backoff, until the ledger takes it. While anything
// waits, the manager is degraded: a crash now would lose those records, so file
// positions must not be saved past the lines that made them (Manager.Degraded).
type backlog struct {
	saves    map[banKey]Record
	deletes  map[banKey]bool
	err      error     // the last failure
	since    time.Time // when the ledger first failed, this time
	attempts int
	next     time.Time // the next retry
}

// Ledger retries: the first after backlogRetryMin, doubling to backlogRetryMax.
const (
	backlogRetryMin = time.Second
	backlogRetryMax = 30 * time.Second
)

func (b *backlog) empty() bool { return len(b.saves) == 0 && len(b.deletes) == 0 }

// failed notes a failed write at now.
func (b *backlog) failed(err error, now time.Time) {
	if b.since.IsZero() {
		b.since = now
	}
	b.err = err
	b.attempts++
	b.next = now.Add(min(backlogRetryMin<<min(b.attempts-1, 10), backlogRetryMax))
}

// save writes records to the ledger: in one transaction with a BatchLedger, else one
// by one.
func (m *Manager) save(ctx context.Context, records []Record) error {
	if bl, ok := m.ledger.(BatchLedger); ok {
		return bl.SaveBans(ctx, records)
	}
	var err error
	for _, r := range records {
		err = errors.Join(err, m.ledger.SaveBan(ctx, r))
	}
	return err
}

// record saves records in the ledger, in one transaction where it can; those it cannot
// wait in the backlog. Caller holds m.mu.
func (m *Manager) record(ctx context.Context, records []Record) {
	if len(records) == 0 {
		return
	}
	err := m.save(ctx, records)
	b := &m.backlog
	for _, r := range records {
		k := banKey{r.Jail, r.Prefix()}
		delete(b.deletes, k) // a new record replaces any older one
		if err != nil {
			b.saves[k] = r
		}
	}
	if err != nil {
		if b.since.IsZero() {
			m.logger.Error("recording bans failed; they are in force and kept in memory, and recording is retried",
				"bans", len(records), "err", err)
		}
		b.failed(err, m.clock.Now())
		m.wakeRun()
	}
}

// forget deletes an ended ban's record; if the ledger refuses, the deletion waits in the
// backlog. Caller holds m.mu.
func (m *Manager) forget(ctx context.Context, jail string, what netip.Prefix) {
	b := &m.backlog
	k := banKey{jail, what}
	m.dropPending(k)
	delete(b.saves, k) // if never recorded, nothing to delete but an older record, if any
	if err := m.ledger.DeleteBan(ctx, jail, what); err != nil {
		b.deletes[k] = true
		if b.since.IsZero() {
			m.logger.Error("forgetting an ended ban failed; retried", "jail", jail, "addr", actions.Target(what), "err", err)
		}
		b.failed(err, m.clock.Now())
		m.wakeRun()
		return
	}
	delete(b.deletes, k)
}

// retryBacklog writes what waits in the backlog, if its time has come. Caller holds m.mu.
func (m *Manager) retryBacklog(ctx context.Context) {
	b := &m.backlog
	if b.empty() || m.clock.Now().Before(b.next) {
		return
	}
	saves := slices.Collect(maps.Values(b.saves))
	var err error
	if len(saves) > 0 {
		if err = m.save(ctx, saves); err == nil {
			clear(b.saves)
		}
	}
	for k := range b.deletes {
		if e := m.ledger.DeleteBan(ctx, k.jail, k.what); e != nil {
			err = errors.Join(err, e)
			continue
		}
		delete(b.deletes, k)
	}
	now := m.clock.Now()
	if err != nil {
		b.failed(err, now)
		m.logger.Warn("recording bans still fails; they stay in force, kept in memory", "unrecorded", len(b.saves),
			"undeleted", len(b.deletes), "since", b.since, "retry_in", b.next.Sub(now), "err", err)
		return
	}
	m.logger.Info("bans recorded again", "bans", len(saves), "degraded_for", now.Sub(b.since).Round(time.Second))
	*b = backlog{saves: b.saves, deletes: b.deletes}
}

// nextBacklogRetry returns when the backlog is next retried, if anything waits in it.
func (m *Manager) nextBacklogRetry() (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.backlog.empty() {
		return time.Time{}, false
	}
	return m.backlog.next, true
}

// Degraded reports the ledger writes that failed and wait to be retried: bans in force
// without a record, and ended bans whose record is still there. While any wait, a crash
// would lose them: file positions must not be saved past the lines that made them.
type Degraded struct {
	Unrecorded int       // bans in force whose record failed
	Undeleted  int       // ended bans whose record could not be deleted
	Since      time.Time // when the ledger began failing
	Err        error     // its last failure
}

// Degraded returns what waits for the ledger; the zero Degraded when nothing does.
func (m *Manager) Degraded() Degraded {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := &m.backlog
	if b.empty() {
		return Degraded{}
	}
	return Degraded{Unrecorded: len(b.saves), Undeleted: len(b.deletes), Since: b.since, Err: b.err}
}

// UnrecordedIn returns how many of jail's bans in force have no record yet.
func (m *Manager) UnrecordedIn(jail string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for k := range m.backlog.saves {
		if k.jail == jail {
			n++
		}
	}
	return n
}

// Resync makes l the ledger and records in it every ban in force, in one transaction:
// for a database that was lost and made anew. What waited in the backlog is then moot.
func (m *Manager) Resync(ctx context.Context, l BatchLedger) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ledger = l
	var all []Record
	for _, j := range m.jails {
		for r := range j.records {
			all = append(all, r)
		}
	}
	if len(all) > 0 {
		if err := l.SaveBans(ctx, all); err != nil {
			for _, r := range all {
				m.backlog.saves[banKey{r.Jail, r.Prefix()}] = r
			}
			m.backlog.failed(err, m.clock.Now())
			m.wakeRun()
			return err
		}
	}
	m.backlog = backlog{saves: map[banKey]Record{}, deletes: map[banKey]bool{}}
	return nil
}
