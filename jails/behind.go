package jails

import (
	"context"
	"maps"
	"slices"
	"time"
)

// Recording behind. By default BanAll records bans in the ledger before it applies them.
// With SetRecordBehind, it applies them first and the ledger gets them behind, in
// batches, so a burst reaches the kernel at the kernel's pace and not the database's.
// It is as crash-safe as recording first for bans read from logs, as long as whoever
// saves how far the logs were read first waits for the bans found before with
// WaitRecorded: a crash before the write loses the records, but the lines that made the
// bans are read again at the next start, and ban again (cmd/ban-server's
// TestSIGKILLDuringABanBurstLosesNoBan kills it mid-burst). A ban made by hand must wait
// the same way before it is reported made. A ban adopted from the farm (Adopt) needs no
// wait: the farm's watch hands it over again at the next start.

// Run writes what waits once bans stop coming for recordQuiet: a burst reaches the
// kernel whole before its records take the CPU from it, and is written in one batch.
// It writes sooner once the oldest record has waited recordWaitMax, or recordHeldMax
// wait: they hold their lines in memory. (The daemon's position saves, each second,
// write what waits too: WaitRecorded.) Should recordHeldMax wait while a write is still
// under way, the ledger is not keeping up: the next bans wait for that write to end
// (holdBack), so what waits stays near recordHeldMax however long an attack goes on.
const (
	recordQuiet   = 50 * time.Millisecond
	recordWaitMax = time.Second
	recordHeldMax = 16384
)

// behindLog holds the bans applied and not yet written. The Manager's mutex guards it.
type behindLog struct {
	behind      bool
	pending     map[banKey]Record // applied, waiting to be written
	writing     map[banKey]Record // being written now, outside the lock
	busy        bool              // a write is under way
	first, last time.Time         // when the oldest record waiting came, and the newest
}

// writeAt returns when Run is to write the records that wait, if any do. Caller holds
// m.mu.
func (l *behindLog) writeAt() (time.Time, bool) {
	switch {
	case len(l.pending) == 0:
		return time.Time{}, false
	case len(l.pending) >= recordHeldMax:
		return l.last, true
	}
	return minTime(l.last.Add(recordQuiet), l.first.Add(recordWaitMax)), true
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// SetRecordBehind makes BanAll apply bans first and record them behind (see above). Run,
// or WaitRecorded, writes them.
func (m *Manager) SetRecordBehind(on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rec.behind = on
}

// recordBehind queues records, applied already, for the next write. A new record
// supersedes what waits in the backlog for its key. Caller holds m.mu.
func (m *Manager) recordBehind(records []Record) {
	if m.rec.pending == nil {
		m.rec.pending, m.rec.writing = map[banKey]Record{}, map[banKey]Record{}
	}
	now := m.clock.Now()
	if len(m.rec.pending) == 0 {
		m.rec.first = now
	}
	m.rec.last = now
	for _, r := range records {
		k := banKey{r.Jail, r.Prefix()}
		delete(m.backlog.saves, k)
		delete(m.backlog.deletes, k)
		m.rec.pending[k] = r
	}
	m.wakeRun()
}

// holdBack waits for the write under way to end if recordHeldMax records wait beside it,
// so that no more pile up (see above). Caller holds m.mu, which the wait lets go: it
// comes once the caller has done what it holds m.mu for.
func (m *Manager) holdBack() {
	for m.rec.busy && len(m.rec.pending) >= recordHeldMax {
		m.recorded.Wait()
	}
}

// writeDue writes the records that wait if their time has come (writeAt).
func (m *Manager) writeDue(ctx context.Context) {
	m.mu.Lock()
	at, ok := m.rec.writeAt()
	due := ok && !m.clock.Now().Before(at)
	m.mu.Unlock()
	if due {
		m.writeBehind(ctx)
	}
}

// dropPending forgets the unwritten record of k, and waits until a write under way no
// longer holds it: a ban that ended must not be written after its record was deleted.
// Caller holds m.mu.
func (m *Manager) dropPending(k banKey) {
	delete(m.rec.pending, k)
	for {
		if _, ok := m.rec.writing[k]; !ok {
			return
		}
		m.recorded.Wait()
	}
}

// WaitRecorded returns once every ban applied before it is written to the ledger, or
// handed to the backlog if the ledger refused it (Degraded says so). It writes what
// waits itself, after any write under way.
func (m *Manager) WaitRecorded(ctx context.Context) {
	m.writeBehind(ctx)
}

// writeBehind writes the records that wait, in one batch, after any write under way.
func (m *Manager) writeBehind(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.rec.busy {
		m.recorded.Wait()
	}
	if len(m.rec.pending) == 0 {
		return
	}
	batch := slices.AppendSeq(make([]Record, 0, len(m.rec.pending)), maps.Values(m.rec.pending))
	// What waits becomes what is written, and the map written last, emptied, takes what
	// comes next: a burst's records are not copied from one map to the other.
	m.rec.pending, m.rec.writing = m.rec.writing, m.rec.pending
	m.rec.busy = true
	m.mu.Unlock()
	// Bans in force are written whatever ends the caller: a stop must not leave them
	// unrecorded (SQLite's busy timeout bounds the write).
	err := m.save(context.WithoutCancel(ctx), batch)
	m.mu.Lock()
	if len(m.rec.writing) > 1024 {
		m.rec.writing = map[banKey]Record{} // a map keeps its room: a burst's is let go
	} else {
		clear(m.rec.writing)
	}
	m.rec.busy = false
	m.recorded.Broadcast()
	if err != nil {
		b := &m.backlog
		for _, r := range batch {
			if _, newer := m.rec.pending[banKey{r.Jail, r.Prefix()}]; !newer {
				b.saves[banKey{r.Jail, r.Prefix()}] = r
			}
		}
		if b.since.IsZero() {
			m.logger.Error("recording bans failed; they are in force and kept in memory, and recording is retried",
				"bans", len(batch), "err", err)
		}
		b.failed(err, m.clock.Now())
		m.wakeRun()
	}
}

// unwritten returns the record of k that the ledger does not have yet: applied and
// waiting to be written, being written, or waiting in the backlog. Caller holds m.mu.
func (m *Manager) unwritten(k banKey) (Record, bool) {
	if r, ok := m.rec.pending[k]; ok {
		return r, true
	}
	if r, ok := m.rec.writing[k]; ok {
		return r, true
	}
	r, ok := m.backlog.saves[k]
	return r, ok
}
