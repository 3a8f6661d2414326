package jails

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/logban/logban/actions"
)

// ErrNotBanned reports an unban of an address that no jail holds.
var ErrNotBanned = errors.New("not banned")

// CoveredError reports an unban of an address that has no ban of its own but lies in
// networks banned: it says which bans hold it, to be lifted instead.
type CoveredError struct {
	Addr netip.Addr
	By   []actions.Ban // the bans of networks holding Addr
}

// Error names the networks that hold the address.
func (e *CoveredError) Error() string {
	held := make([]string, len(e.By))
	for i, b := range e.By {
		held[i] = b.Target() + " (jail " + b.Jail + ")"
	}
	return e.Addr.String() + " has no ban of its own; it is held by the ban of " + strings.Join(held, ", ") + ": unban that network to let it through"
}

// Is makes errors.Is(err, ErrNotBanned) hold.
func (e *CoveredError) Is(target error) bool { return target == ErrNotBanned }

// ErrUnknownJail reports a jail name the manager does not know.
var ErrUnknownJail = errors.New("no such jail")

// NamedAction is an action with the name it has in the configuration.
type NamedAction struct {
	Name   string
	Action actions.Action
}

// Manager decides and remembers bans, hands them to each jail's actions and lifts them
// when they expire. It is safe for concurrent use. Its parts, a file each:
//
//   - decide.go: the one way a ban is made (BanAll), lifted (Unban, expiry) and brought
//     back at start (Restore), and the rule for actions shared by jails;
//   - increment.go: how long a repeat offender's ban lasts, from its history;
//   - backlog.go: ledger writes that failed, kept and retried;
//   - actionqueue.go: each action's own queue and worker, with its retries and batches:
//     deciding a ban never waits for an action, and a slow one delays only its own calls;
//   - reconcile.go: what kernel actions hold, compared with the bans in force and
//     repaired both ways;
//   - expiry.go: when bans end;
//   - farm.go: what the manager tells the farm, and the bans it takes from it.
type Manager struct {
	clock  Clock
	logger *slog.Logger
	wake   chan struct{}
	ledger Ledger
	rand   func(n int64) int64
	// observe, if set, is told how long each action call took.
	observe func(action string, unban bool, took time.Duration, err error)

	life     context.Context // the action workers' lifetime
	end      context.CancelFunc
	queueCap int // calls an action's queue holds before they overflow

	mu       sync.Mutex
	jails    map[string]*jailBans
	shared   sharedHolds // jails holding an address or network through a Shared action
	queues   map[actions.Action]*actionQueue
	expiries expiryHeap
	jailIDs  map[string]uint32 // each jail name ever set, numbered for expiries
	jailByID []string          // and its name by its number
	backlog  backlog
	rec      behindLog  // bans applied, to be recorded behind (behind.go)
	recorded *sync.Cond // on mu: a write behind has ended
	farm     FarmLink   // nil outside a farm
	refused  int64      // bans refused because the farm protects the address
	// localUnbans are the farm's bans lifted on this host alone (localunban.go).
	localUnbans map[localKey]LocalUnban
}

// BanPolicy says how long a jail's bans last.
type BanPolicy struct {
	BanTime time.Duration // < 0: until unbanned
	// NetBanTime is how long a ban of a network (a subnet escalation) lasts; 0: BanTime.
	NetBanTime time.Duration
	Increment  Increment // longer bans for repeat offenders
}

type jailBans struct {
	name          string
	id            uint32 // its number in Manager.jailIDs
	policy        BanPolicy
	actions       []NamedAction
	bans          map[netip.Prefix]heldBan // in force, by what they ban, with their counts
	netBits       map[int]int              // bans of networks in bans, by prefix length
	totalBanned   int64
	totalUnbanned int64
}

// heldBan is a ban in force as its jail keeps it: its Record without what the jail's map
// says already (the jail; the address or network, its key) or keeps elsewhere (the
// lines, in the ledger: LineLedger), its times as Unix seconds and nanoseconds. It is
// 80 bytes where a Record is 184, in a map that holds every ban in force.
type heldBan struct {
	bannedSec, expiresSec   int64
	bannedNsec, expiresNsec int32
	failures, count         int32
	user, by, why           string
}

// put makes r one of the jail's bans in force, replacing one of the same address or
// network.
func (j *jailBans) put(r Record) {
	p := r.Prefix()
	if _, ok := j.bans[p]; !ok && r.IsNet() {
		j.netBits[p.Bits()]++
	}
	j.bans[p] = heldBan{
		bannedSec: r.BannedAt.Unix(), bannedNsec: int32(r.BannedAt.Nanosecond()),
		expiresSec: r.Expires.Unix(), expiresNsec: int32(r.Expires.Nanosecond()),
		failures: int32(min(r.Failures, math.MaxInt32)), count: int32(min(r.Count, math.MaxInt32)),
		user: r.User, by: r.By, why: r.Why,
	}
}

// record returns the ban of p in force, without its lines.
func (j *jailBans) record(p netip.Prefix, h heldBan) Record {
	b := actions.BanOf(j.name, p)
	b.User, b.Failures, b.By, b.Why = h.user, int(h.failures), h.by, h.why
	// The zero time (a ban without end) comes back as the zero time.
	b.BannedAt, b.Expires = time.Unix(h.bannedSec, int64(h.bannedNsec)), time.Unix(h.expiresSec, int64(h.expiresNsec))
	return Record{Ban: b, Count: int(h.count)}
}

// get returns the ban of p, if it is in force.
func (j *jailBans) get(p netip.Prefix) (Record, bool) {
	h, ok := j.bans[p]
	if !ok {
		return Record{}, false
	}
	return j.record(p, h), true
}

// records yields the bans in force, in no order.
func (j *jailBans) records(yield func(Record) bool) {
	for p, h := range j.bans {
		if !yield(j.record(p, h)) {
			return
		}
	}
}

// drop removes the ban of p from those in force.
func (j *jailBans) drop(p netip.Prefix) {
	if _, ok := j.bans[p]; ok && !p.IsSingleIP() {
		if j.netBits[p.Bits()]--; j.netBits[p.Bits()] == 0 {
			delete(j.netBits, p.Bits())
		}
	}
	delete(j.bans, p)
}

// covering returns the ban of a network that holds addr, if the jail has one: a lookup
// per prefix length banned, so an address costs nothing more where no network is.
func (j *jailBans) covering(addr netip.Addr) (Record, bool) {
	for bits := range j.netBits {
		if p, err := addr.Prefix(bits); err == nil {
			if r, ok := j.get(p); ok {
				return r, true
			}
		}
	}
	return Record{}, false
}

// NewManager returns a manager with no jails. Its bans are kept in a MemoryLedger until
// SetLedger gives it a lasting one.
func NewManager(clock Clock, logger *slog.Logger) *Manager {
	life, end := context.WithCancel(context.Background())
	m := &Manager{
		clock:       clock,
		logger:      logger,
		ledger:      NewMemoryLedger(),
		rand:        rand.Int64N,
		wake:        make(chan struct{}, 1),
		life:        life,
		end:         end,
		queueCap:    queueLen,
		jails:       make(map[string]*jailBans),
		jailIDs:     make(map[string]uint32),
		shared:      sharedHolds{},
		localUnbans: map[localKey]LocalUnban{},
		queues:      make(map[actions.Action]*actionQueue),
		backlog:     backlog{saves: map[banKey]Record{}, deletes: map[banKey]bool{}},
	}
	m.recorded = sync.NewCond(&m.mu)
	return m
}

// SetObserver makes f hear of every action call: its action, whether it was an unban,
// how long it took, and its error. Call it before the first jail is set.
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
// applied through the ones it gains. A new policy applies to new bans. An action no jail
// uses any more makes its last calls before SetJail returns, or is abandoned when ctx
// is done: it may be stopped then. Bans are decided meanwhile.
func (m *Manager) SetJail(ctx context.Context, name string, policy BanPolicy, acts []NamedAction) {
	m.letGo(ctx, m.setJail(ctx, name, policy, acts))
}

// setJail is SetJail but for the wait; it returns the queues it retired.
func (m *Manager) setJail(ctx context.Context, name string, policy BanPolicy, acts []NamedAction) []*actionQueue {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, na := range acts {
		m.queue(na)
		if p, ok := na.Action.(actions.JailPreparer); ok {
			if err := p.PrepareJail(ctx, name); err != nil {
				// Not fatal: the first ban tries again, and its failure is retried.
				m.logger.Error("preparing action for jail", "jail", name, "action", na.Name, "err", err)
			}
		}
	}
	j, ok := m.jails[name]
	if !ok {
		m.jails[name] = &jailBans{name: name, id: m.jailID(name), policy: policy, actions: slices.Clone(acts), bans: make(map[netip.Prefix]heldBan), netBits: map[int]int{}}
		return nil
	}
	for _, old := range j.actions {
		if !slices.Contains(acts, old) {
			for r := range j.records {
				m.toAction(old, r.Ban, true)
			}
		}
	}
	for _, na := range acts {
		if !slices.Contains(j.actions, na) {
			for r := range j.records {
				m.toAction(na, r.Ban, false)
			}
		}
	}
	j.policy = policy
	j.actions = slices.Clone(acts)
	return m.retireQueues()
}

// RemoveJail lifts every ban of the jail and forgets it. Actions no jail uses any more
// are let go as by SetJail; ctx bounds that wait only, not the deletion of the records.
func (m *Manager) RemoveJail(ctx context.Context, name string) {
	m.mu.Lock()
	j, ok := m.jails[name]
	if !ok {
		m.mu.Unlock()
		return
	}
	for r := range j.records {
		m.lift(context.WithoutCancel(ctx), j, r.Ban, "its jail was removed")
	}
	delete(m.jails, name)
	retired := m.retireQueues()
	m.mu.Unlock()
	m.letGo(ctx, retired)
}

// Run lifts bans as they expire, and retries failed ledger writes, until ctx is done.
func (m *Manager) Run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	// What waits to be recorded is written before Run returns.
	defer m.writeBehind(ctx)
	for {
		m.writeDue(ctx)
		m.ExpireDue(ctx)
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

// nextEvents returns when the next ban expires, the bans applied are next recorded and
// the ledger is next retried, where there are such.
func (m *Manager) nextEvents() []time.Time {
	var out []time.Time
	m.mu.Lock()
	t, ok := m.rec.writeAt()
	m.mu.Unlock()
	if ok {
		out = append(out, t)
	}
	if t, ok := m.nextExpiry(); ok {
		out = append(out, t)
	}
	if t, ok := m.nextBacklogRetry(); ok {
		out = append(out, t)
	}
	return out
}

func (m *Manager) wakeRun() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Bans returns the bans of jail ("" for every jail), ordered by jail then what they ban.
func (m *Manager) Bans(jail string) []actions.Ban {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []actions.Ban
	for name, j := range m.jails {
		if jail != "" && name != jail {
			continue
		}
		for r := range j.records {
			out = append(out, r.Ban)
		}
	}
	slices.SortFunc(out, func(a, b actions.Ban) int {
		return cmp.Or(cmp.Compare(a.Jail, b.Jail), a.Prefix().Compare(b.Prefix()))
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

// ActionErrors returns how many calls of each action have failed, by action name.
func (m *Manager) ActionErrors() map[string]int64 {
	out := map[string]int64{}
	for name, q := range m.Queues() {
		out[name] = q.Failures
	}
	return out
}

// jailID returns the number of the jail named name, numbering it if it has none: a
// jail removed and set again keeps its number. Caller holds m.mu.
func (m *Manager) jailID(name string) uint32 {
	id, ok := m.jailIDs[name]
	if !ok {
		id = uint32(len(m.jailByID))
		m.jailIDs[name] = id
		m.jailByID = append(m.jailByID, name)
	}
	return id
}

func (m *Manager) jailNames() []string {
	names := make([]string, 0, len(m.jails))
	for n := range m.jails {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
