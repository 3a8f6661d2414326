package jails

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/logban/logban/actions"
)

// ErrNotBanned reports an unban of an address that no jail holds.
var ErrNotBanned = errors.New("not banned")

// ErrUnknownJail reports a jail name the manager does not know.
var ErrUnknownJail = errors.New("no such jail")

// NamedAction is an action with the name it has in the configuration.
type NamedAction struct {
	Name   string
	Action actions.Action
}

// Manager decides and remembers bans, applies them through each jail's actions and lifts
// them when they expire. It is safe for concurrent use.
//
// Actions are called with the manager's lock held, so the order of a ban and its unban is
// the order the kernel sees; actions are expected to return quickly.
type Manager struct {
	clock  Clock
	logger *slog.Logger
	wake   chan struct{}
	ledger Ledger
	rand   func(n int64) int64
	// observe, if set, is told how long each action call took.
	observe func(action string, unban bool, took time.Duration, err error)

	mu       sync.Mutex
	jails    map[string]*jailBans
	shared   map[sharedKey]int // jails holding addr through a Shared action
	errors   map[string]int64  // action name → failed calls
	pending  map[pendingKey]*pendingOp
	expiries expiryHeap
	backlog  backlog
}

// pendingKey names an action call that failed and waits to be retried.
type pendingKey struct {
	action actions.Action
	jail   string
	addr   netip.Addr
}

// pendingOp is the call to retry: the latest wanted (a ban, or its undoing).
type pendingOp struct {
	name     string // the action's name, for logs and counts
	ban      actions.Ban
	unban    bool
	attempts int
	next     time.Time
}

// Retry backoff: the first retry after RetryMin, doubling up to RetryMax.
const (
	RetryMin = time.Second
	RetryMax = 5 * time.Minute
)

func backoff(attempts int) time.Duration {
	d := RetryMin
	for i := 1; i < attempts && d < RetryMax; i++ {
		d *= 2
	}
	return min(d, RetryMax)
}

// BanPolicy says how long a jail's bans last.
type BanPolicy struct {
	BanTime   time.Duration // < 0: until unbanned
	Increment Increment     // longer bans for repeat offenders
}

type jailBans struct {
	policy        BanPolicy
	actions       []NamedAction
	bans          map[netip.Addr]Record // in force, with their counts
	totalBanned   int64
	totalUnbanned int64
}

type sharedKey struct {
	action actions.Action
	addr   netip.Addr
}

// NewManager returns a manager with no jails. Its bans are kept in a MemoryLedger until
// SetLedger gives it a lasting one.
func NewManager(clock Clock, logger *slog.Logger) *Manager {
	return &Manager{
		clock:   clock,
		logger:  logger,
		ledger:  NewMemoryLedger(),
		rand:    rand.Int64N,
		wake:    make(chan struct{}, 1),
		jails:   make(map[string]*jailBans),
		shared:  make(map[sharedKey]int),
		errors:  make(map[string]int64),
		pending: make(map[pendingKey]*pendingOp),
		backlog: backlog{saves: map[banKey]Record{}, deletes: map[banKey]bool{}},
	}
}

// SetObserver makes f hear of every action call: its action, whether it was an unban,
// how long it took, and its error. Call it before the first ban.
func (m *Manager) SetObserver(f func(action string, unban bool, took time.Duration, err error)) {
	m.mu.Lock()
	m.observe = f
	m.mu.Unlock()
}

// SetLedger makes l the record of bans. Call it before the first ban.
func (m *Manager) SetLedger(l Ledger) {
	m.mu.Lock()
	m.ledger = l
	m.mu.Unlock()
}

// SetJail adds a jail or changes its ban policy and actions. The bans of an existing jail
// are kept; those already in place are lifted through actions the jail no longer has and
// applied through the ones it gains. A new policy applies to new bans.
func (m *Manager) SetJail(ctx context.Context, name string, policy BanPolicy, acts []NamedAction) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, na := range acts {
		if p, ok := na.Action.(actions.JailPreparer); ok {
			if err := p.PrepareJail(ctx, name); err != nil {
				// Not fatal: the first ban tries again, and its failure is retried.
				m.logger.Error("preparing action for jail", "jail", name, "action", na.Name, "err", err)
			}
		}
	}
	j, ok := m.jails[name]
	if !ok {
		m.jails[name] = &jailBans{policy: policy, actions: slices.Clone(acts), bans: make(map[netip.Addr]Record)}
		return
	}
	for _, old := range j.actions {
		if !slices.Contains(acts, old) {
			for _, r := range j.bans {
				m.unbanWith(ctx, old, r.Ban)
			}
		}
	}
	for _, na := range acts {
		if !slices.Contains(j.actions, na) {
			for _, r := range j.bans {
				m.banWith(ctx, na, r.Ban)
			}
		}
	}
	j.policy = policy
	j.actions = slices.Clone(acts)
	m.purgePending()
}

// RemoveJail lifts every ban of the jail and forgets it.
func (m *Manager) RemoveJail(ctx context.Context, name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jails[name]
	if !ok {
		return
	}
	for _, r := range j.bans {
		m.lift(ctx, j, r.Ban)
	}
	delete(m.jails, name)
	m.purgePending()
}

// purgePending forgets retries of actions no jail uses any more: they have been stopped.
func (m *Manager) purgePending() {
	live := map[actions.Action]bool{}
	for _, j := range m.jails {
		for _, na := range j.actions {
			live[na.Action] = true
		}
	}
	for k := range m.pending {
		if !live[k.action] {
			delete(m.pending, k)
		}
	}
}

// RetryDue retries the failed action calls whose time has come, and returns how many
// succeeded.
func (m *Manager) RetryDue(ctx context.Context) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	done := 0
	for k, op := range m.pending {
		if op.next.After(now) {
			continue
		}
		var err error
		if op.unban {
			err = k.action.Unban(ctx, op.ban)
		} else {
			err = k.action.Ban(ctx, op.ban)
		}
		if err == nil {
			delete(m.pending, k)
			done++
			m.logger.Info("action recovered", "action", op.name, "jail", k.jail, "addr", k.addr, "unban", op.unban, "attempts", op.attempts+1)
			continue
		}
		op.attempts++
		op.next = now.Add(backoff(op.attempts))
		m.errors[op.name]++
		m.logger.Warn("action still failing", "action", op.name, "jail", k.jail, "addr", k.addr, "unban", op.unban,
			"attempts", op.attempts, "retry_in", backoff(op.attempts), "err", err)
	}
	return done
}

// Pending returns how many failed action calls of jail's actions wait to be retried.
func (m *Manager) Pending(jail string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for k := range m.pending {
		if k.jail == jail {
			n++
		}
	}
	return n
}

func (m *Manager) nextRetry() (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var next time.Time
	for _, op := range m.pending {
		if next.IsZero() || op.next.Before(next) {
			next = op.next
		}
	}
	return next, !next.IsZero()
}

// Ban bans the ticket's address in its jail. It returns the ban and whether it is new; a
// ticket for an address the jail already bans changes nothing.
func (m *Manager) Ban(ctx context.Context, t Ticket) (actions.Ban, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jails[t.Jail]
	if !ok {
		return actions.Ban{}, false, ErrUnknownJail
	}
	if r, dup := j.bans[t.Addr]; dup {
		return r.Ban, false, nil
	}
	r := m.prepare(j, t, m.counter(ctx, []Ticket{t}))
	m.record(ctx, []Record{r})
	m.apply(ctx, j, r)
	return r.Ban, true, nil
}

// BatchLedger is a Ledger that records many bans at once, in one transaction, and reads
// many addresses' counts in one query.
type BatchLedger interface {
	Ledger
	SaveBans(ctx context.Context, records []Record) error
	// BanCounts returns how many times each address was banned in jail, or in all jails
	// if ""; an address never banned is absent.
	BanCounts(ctx context.Context, jail string, addrs []netip.Addr) (map[netip.Addr]int, error)
}

// BanAll bans the tickets' addresses, recording all the new bans at once (in one
// transaction, with a BatchLedger, their history read in one query a jail) before
// applying any: a burst costs a few queries, not a few per ban. Tickets of unknown jails
// and addresses already banned are skipped. It returns the new bans.
func (m *Manager) BanAll(ctx context.Context, tickets []Ticket) []actions.Ban {
	m.mu.Lock()
	defer m.mu.Unlock()
	var fresh []Ticket
	seen := map[banKey]bool{}
	for _, t := range tickets {
		j, ok := m.jails[t.Jail]
		if !ok {
			continue
		}
		if _, dup := j.bans[t.Addr]; dup || seen[banKey{t.Jail, t.Addr}] {
			continue
		}
		seen[banKey{t.Jail, t.Addr}] = true
		fresh = append(fresh, t)
	}
	if len(fresh) == 0 {
		return nil
	}
	count := m.counter(ctx, fresh)
	records := make([]Record, len(fresh))
	for i, t := range fresh {
		j := m.jails[t.Jail]
		records[i] = m.prepare(j, t, count)
		j.bans[t.Addr] = records[i]
	}
	m.record(ctx, records)
	out := make([]actions.Ban, len(records))
	for i, r := range records {
		m.apply(ctx, m.jails[r.Jail], r)
		out[i] = r.Ban
	}
	return out
}

// counter returns the ban counts the tickets' bans need, read from the ledger: at once
// for all of them from a BatchLedger, else one by one. Caller holds m.mu.
func (m *Manager) counter(ctx context.Context, tickets []Ticket) func(jail string, addr netip.Addr) int {
	bl, ok := m.ledger.(BatchLedger)
	if !ok {
		return func(jail string, addr netip.Addr) int {
			n, err := m.ledger.BanCount(ctx, jail, addr)
			if err != nil {
				m.logger.Error("reading ban history", "addr", addr, "err", err)
			}
			return n
		}
	}
	byJail := map[string][]netip.Addr{}
	for _, t := range tickets {
		byJail[t.Jail] = append(byJail[t.Jail], t.Addr)
		if m.jails[t.Jail].policy.Increment.OverallJails {
			byJail[""] = append(byJail[""], t.Addr)
		}
	}
	counts := map[string]map[netip.Addr]int{}
	for jail, addrs := range byJail {
		c, err := bl.BanCounts(ctx, jail, addrs)
		if err != nil {
			m.logger.Error("reading ban history", "addresses", len(addrs), "err", err)
		}
		counts[jail] = c
	}
	return func(jail string, addr netip.Addr) int { return counts[jail][addr] }
}

// prepare makes the ban for t: its length from the jail's policy and the address's
// history, as count reads it. Caller holds m.mu.
func (m *Manager) prepare(j *jailBans, t Ticket, count func(jail string, addr netip.Addr) int) Record {
	now := m.clock.Now()
	prev := count(t.Jail, t.Addr)
	counted := prev
	if j.policy.Increment.OverallJails {
		counted = count("", t.Addr)
	}
	b := actions.Ban{Jail: t.Jail, Addr: t.Addr, Failures: t.Failures, BannedAt: now}
	if d := j.policy.Increment.Duration(j.policy.BanTime, counted, m.rand); d >= 0 {
		b.Expires = now.Add(d)
	}
	return Record{Ban: b, Count: prev + 1}
}

// apply puts a recorded ban in force through the jail's actions. Caller holds m.mu.
func (m *Manager) apply(ctx context.Context, j *jailBans, r Record) {
	b := r.Ban
	j.bans[b.Addr] = r
	j.totalBanned++
	for _, na := range j.actions {
		m.banWith(ctx, na, b)
	}
	if !b.Permanent() && m.expiries.schedule(expiry{b.Expires, b.Jail, b.Addr}) {
		m.wakeRun() // it ends before anything Run waits for
	}
}

// Unban lifts the ban of addr in jail, or in every jail if jail is "". It returns the bans
// lifted, or ErrNotBanned if there were none.
func (m *Manager) Unban(ctx context.Context, jail string, addr netip.Addr) ([]actions.Ban, error) {
	addr = addr.Unmap()
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
		if r, ok := j.bans[addr]; ok {
			m.lift(ctx, j, r.Ban)
			lifted = append(lifted, r.Ban)
		}
	}
	if len(lifted) == 0 {
		return nil, ErrNotBanned
	}
	return lifted, nil
}

// Restore applies recorded bans at start, each with the time it has left; bans of jails
// that no longer exist are forgotten. A ban that expired while the server was down is
// lifted through its jail's actions too (after a crash the kernel may still hold it) and
// forgotten. It returns how many bans were restored and how many had expired.
func (m *Manager) Restore(ctx context.Context, records []Record) (restored, expired int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	for _, r := range records {
		j, ok := m.jails[r.Jail]
		if !ok {
			m.forget(ctx, r.Jail, r.Addr) // a jail removed
			continue
		}
		if _, dup := j.bans[r.Addr]; dup {
			continue
		}
		if !r.Permanent() && !r.Expires.After(now) {
			for _, na := range j.actions {
				if _, shared := na.Action.(actions.Shared); !shared {
					m.call(ctx, na, r.Ban, true)
				} else if m.shared[sharedKey{na.Action, r.Addr}] == 0 {
					m.call(ctx, na, r.Ban, true)
				}
			}
			m.forget(ctx, r.Jail, r.Addr)
			expired++
			continue
		}
		j.bans[r.Addr] = r
		for _, na := range j.actions {
			m.banWith(ctx, na, r.Ban)
		}
		if !r.Permanent() {
			m.expiries.schedule(expiry{r.Expires, r.Jail, r.Addr})
		}
		restored++
	}
	m.wakeRun()
	return restored, expired
}

// ExpireDue lifts every ban whose time has come on the manager's clock and returns them.
// It costs the number of bans due, not the number of bans.
func (m *Manager) ExpireDue(ctx context.Context) []actions.Ban {
	m.mu.Lock()
	defer m.mu.Unlock()
	var lifted []actions.Ban
	for _, e := range m.expiries.due(m.clock.Now()) {
		j, ok := m.jails[e.jail]
		if !ok {
			continue
		}
		if r, ok := j.bans[e.addr]; ok && r.Expires.Equal(e.at) { // else lifted or replaced since
			m.lift(ctx, j, r.Ban)
			lifted = append(lifted, r.Ban)
		}
	}
	return lifted
}

// nextExpiry returns the earliest scheduled end of a ban, or false if none is.
func (m *Manager) nextExpiry() (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.expiries.Len() == 0 {
		return time.Time{}, false
	}
	return m.expiries[0].at, true
}

func (m *Manager) wakeRun() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Run lifts bans as they expire, retries failed action calls and ledger writes, until
// ctx is done.
func (m *Manager) Run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		m.ExpireDue(ctx)
		m.RetryDue(ctx)
		m.mu.Lock()
		m.retryBacklog(ctx)
		m.mu.Unlock()
		wait := time.Hour
		for _, next := range m.nextEvents() {
			wait = min(wait, max(next.Sub(m.clock.Now()), 0))
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-m.wake:
		case <-timer.C:
		}
	}
}

// nextEvents returns when the next ban expires and the next retry is due, where there are
// such.
func (m *Manager) nextEvents() []time.Time {
	var out []time.Time
	if t, ok := m.nextExpiry(); ok {
		out = append(out, t)
	}
	if t, ok := m.nextRetry(); ok {
		out = append(out, t)
	}
	if t, ok := m.nextBacklogRetry(); ok {
		out = append(out, t)
	}
	return out
}

// Bans returns the bans of jail ("" for every jail), ordered by jail then address.
func (m *Manager) Bans(jail string) []actions.Ban {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []actions.Ban
	for name, j := range m.jails {
		if jail != "" && name != jail {
			continue
		}
		for _, r := range j.bans {
			out = append(out, r.Ban)
		}
	}
	slices.SortFunc(out, func(a, b actions.Ban) int {
		return cmp.Or(cmp.Compare(a.Jail, b.Jail), a.Addr.Compare(b.Addr))
	})
	return out
}

// BanCounts are a jail's ban figures.
type BanCounts struct {
	CurrentlyBanned int
	TotalBanned     int64
	TotalUnbanned   int64
}

// Counts returns jail's ban figures.
func (m *Manager) Counts(jail string) (BanCounts, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jails[jail]
	if !ok {
		return BanCounts{}, ErrUnknownJail
	}
	return BanCounts{CurrentlyBanned: len(j.bans), TotalBanned: j.totalBanned, TotalUnbanned: j.totalUnbanned}, nil
}

// ActionErrors returns how many calls of each action have failed.
func (m *Manager) ActionErrors() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int64, len(m.errors))
	for k, v := range m.errors {
		out[k] = v
	}
	return out
}

func (m *Manager) jailNames() []string {
	names := make([]string, 0, len(m.jails))
	for n := range m.jails {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// lift removes b from j and undoes it through j's actions. Caller holds m.mu.
func (m *Manager) lift(ctx context.Context, j *jailBans, b actions.Ban) {
	delete(j.bans, b.Addr)
	j.totalUnbanned++
	m.forget(ctx, b.Jail, b.Addr)
	for _, na := range j.actions {
		m.unbanWith(ctx, na, b)
	}
}

// banWith applies b through one action; a Shared action is called only for the first jail
// holding the address. A failure is logged and counted; the ban stays recorded.
func (m *Manager) banWith(ctx context.Context, na NamedAction, b actions.Ban) {
	if _, ok := na.Action.(actions.Shared); ok {
		k := sharedKey{na.Action, b.Addr}
		m.shared[k]++
		if m.shared[k] > 1 {
			return
		}
	}
	m.call(ctx, na, b, false)
}

// call applies or lifts b through one action. A failure is logged, counted, and queued
// for retry with backoff; the ban stays recorded. Caller holds m.mu.
func (m *Manager) call(ctx context.Context, na NamedAction, b actions.Ban, unban bool) {
	k := pendingKey{na.Action, b.Jail, b.Addr}
	start := time.Now()
	var err error
	if unban {
		err = na.Action.Unban(ctx, b)
	} else {
		err = na.Action.Ban(ctx, b)
	}
	if m.observe != nil {
		m.observe(na.Name, unban, time.Since(start), err)
	}
	if err == nil {
		delete(m.pending, k)
		return
	}
	m.errors[na.Name]++
	m.pending[k] = &pendingOp{name: na.Name, ban: b, unban: unban, attempts: 1, next: m.clock.Now().Add(backoff(1))}
	op := "ban"
	if unban {
		op = "unban"
	}
	m.logger.Error(op+" failed; will retry", "jail", b.Jail, "addr", b.Addr, "action", na.Name, "retry_in", backoff(1), "err", err)
	m.wakeRun()
}

// unbanWith lifts b through one action; a Shared action is called only when the last jail
// holding the address lets go.
func (m *Manager) unbanWith(ctx context.Context, na NamedAction, b actions.Ban) {
	if _, ok := na.Action.(actions.Shared); ok {
		k := sharedKey{na.Action, b.Addr}
		m.shared[k]--
		if m.shared[k] > 0 {
			return
		}
		delete(m.shared, k)
	}
	m.call(ctx, na, b, true)
}
