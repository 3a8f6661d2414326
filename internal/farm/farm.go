package farm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/config"
	"github.com/logban/logban/internal/natsserver"
	"github.com/logban/logban/internal/store"
	"github.com/logban/logban/jails"
)

// Target is the ban manager, as the farm uses it (jails.Manager).
type Target interface {
	Adopt(ctx context.Context, records []jails.Record) []actions.Ban
	LiftIf(ctx context.Context, jail string, what netip.Prefix, lift func(jails.Record) bool) bool
	Bans(jail string) []actions.Ban
}

// Decide hands bans the farm's count decided to this host's ban path, which records them
// and tells the farm (FarmLink.Decided).
type Decide func(ctx context.Context, tickets []jails.Ticket) error

// Outbox keeps what waits for the farm across restarts (store.Store).
type Outbox interface {
	AddOutbox(ctx context.Context, messages [][]byte) ([]int64, error)
	Outbox(ctx context.Context) ([]store.OutboxEntry, error)
	DeleteOutbox(ctx context.Context, ids []int64) error
}

// Jail is what the farm knows of a jail.
type Jail struct {
	Name     string
	Mode     string // config.FarmCount, FarmBans or FarmLocal
	MaxRetry int
	FindTime time.Duration
	// BanTime is how long the jail's bans last (< 0: until unbanned).
	BanTime time.Duration
	// Ignore are the addresses the jail never bans here: a farm ban of one is refused.
	Ignore *jails.IgnoreList
}

// Observer hears how long a stage took: "publish" (a decision until the farm holds it)
// or "apply" (a decision elsewhere until this host holds it).
type Observer func(stage string, took time.Duration)

// Farm is this host's membership of a farm. It is safe for concurrent use.
type Farm struct {
	cfg     config.Farm
	logger  *slog.Logger
	clock   jails.Clock
	observe Observer

	failures *queue[failure]
	wake     chan struct{} // the publisher has work
	purges   *queue[failureSubject]
	resync   chan struct{} // the connection came back: watch again
	// reannounce: the jails changed, this node's entry is written again
	reannounce chan struct{}

	conn atomic.Pointer[nats.Conn]
	// joined holds the farm's bucket and streams once this host has joined.
	joined atomic.Pointer[handles]

	mu         sync.Mutex
	jails      map[string]Jail
	quotas     []Quota             // the policy service's, counted across the farm
	own        []netip.Prefix      // this host's addresses and shared ignore list
	others     map[string]nodeInfo // other nodes, by name
	revs       map[string]uint64   // revision of each ban in the farm, by key
	seenRev    uint64              // the bans bucket's newest revision the watch has handed over
	ownRevs    map[string]uint64   // revision of each ban this host published, by key
	lifts      tombstones          // the newest revision lifted of the keys lifted last
	pending    []pendingMessage    // the outbox, in order
	pendBans   map[string]int      // bans of each key waiting in the outbox, unsettled
	pendUnbans map[string]int      // unbans of each key waiting in the outbox, unsettled
	moot       map[uint64]bool     // outbox bans settled by the watch, by seq (see settleHeld)
	outbox     Outbox              // nil: in memory only
	drift      map[string]string   // a warning per jail whose settings differ from the farm's
	nodesRead  bool                // the nodes watch has delivered every node's entry
	lastErr    string
	lastAt     time.Time
	synced     bool      // the bans watch has delivered every ban in force
	dialErr    string    // why a server could not be reached, last
	dialLogged time.Time // when that was last logged
	seq        uint64    // the last pendingMessage.seq given

	shared, dropped, decided, applied, ignored atomic.Int64
	lost                                       atomic.Int64 // bans decided here that another host had decided first

	signer *signer // this node's key, signing what it writes; nil without one
	keys   keys    // the farm's node keys, checking what others wrote; nil without a list
	// forged counts values refused because their signature did not hold;
	// forgedLogged is when one was last logged, unix nanoseconds.
	forged, forgedLogged atomic.Int64

	routes    func() []natsserver.Route // the embedded server's routes; nil without one
	health    []StreamHealth            // the bucket's and streams', as last asked; under mu
	lastWrite atomic.Int64              // when the farm last took a write from this host, unix ns

	wrap func(*handles) // a test's faults, laid over the handles once joined
}

// LoadKeys reads this node's signing key and the farm's node keys from the
// configuration's files. Call it before Run.
func (f *Farm) LoadKeys() error {
	s, err := loadSigner(f.cfg.Node, f.cfg.NKeySeed, f.cfg.Creds)
	if err != nil {
		return fmt.Errorf("this node's key: %w", err)
	}
	k, err := loadKeys(f.cfg.Nodes)
	if err != nil {
		return fmt.Errorf("the farm's node keys: %w", err)
	}
	f.signer, f.keys = s, k
	return nil
}

// refuse logs (at most once every ten seconds) and counts a value whose signature did
// not hold.
func (f *Farm) refuse(what, key string, err error) {
	n := f.forged.Add(1)
	now := time.Now().UnixNano()
	if last := f.forgedLogged.Load(); now-last >= int64(10*time.Second) && f.forgedLogged.CompareAndSwap(last, now) {
		f.logger.Warn("farm value refused: "+err.Error(), "what", what, "key", key, "refused_so_far", n)
	}
}

type pendingMessage struct {
	seq uint64 // this run's number for it
	id  int64  // in the outbox; 0 if it could not be saved
	key string // its ban's key in the bucket
	msg outboxMessage
}

type failure struct {
	jail string
	addr netip.Addr
	t    time.Time
	from jails.Origin
}

// setupGrace is how long a host waits for the farm's servers to answer before it says
// they do not: seeds starting together take some seconds to elect their leaders.
const setupGrace = 30 * time.Second

// failureBuffer is how many failures wait to be published before more are dropped.
const failureBuffer = 1 << 16

// New returns a farm membership; nothing dials until Run.
func New(cfg config.Farm, logger *slog.Logger, clock jails.Clock) *Farm {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if clock == nil {
		clock = jails.SystemClock{}
	}
	return &Farm{
		cfg: cfg, logger: logger.With("farm", cfg.Name), clock: clock,
		failures:   newQueue[failure](failureBuffer),
		wake:       make(chan struct{}, 1),
		purges:     newQueue[failureSubject](purgeQueue),
		resync:     make(chan struct{}, 1),
		reannounce: make(chan struct{}, 1),
		jails:      map[string]Jail{},
		others:     map[string]nodeInfo{},
		revs:       map[string]uint64{},
		ownRevs:    map[string]uint64{},
		pendBans:   map[string]int{},
		moot:       map[uint64]bool{},
		pendUnbans: map[string]int{},
		drift:      map[string]string{},
	}
}

// SetObserver makes o hear the farm's latencies. Call it before Run.
func (f *Farm) SetObserver(o Observer) { f.observe = o }

// SetJails tells the farm the running jails; local ones are ignored.
func (f *Farm) SetJails(js []Jail) {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.jails)
	for _, j := range js {
		if j.Mode != config.FarmLocal {
			f.jails[j.Name] = j
		}
	}
	f.poke(f.resync)
	f.poke(f.reannounce)
}

// SetOwn sets the addresses this host publishes as its own: no host of the farm bans them.
func (f *Farm) SetOwn(prefixes []netip.Prefix) {
	f.mu.Lock()
	f.own = slices.Clone(prefixes)
	f.mu.Unlock()
}

// SetOutbox makes o the outbox, and saves in it what waits in memory (a database made
// anew has lost what the old one held).
func (f *Farm) SetOutbox(ctx context.Context, o Outbox) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.outbox = o
	if len(f.pending) == 0 || o == nil {
		return
	}
	msgs := make([][]byte, len(f.pending))
	for i, p := range f.pending {
		msgs[i] = p.msg.marshal()
	}
	ids, err := o.AddOutbox(ctx, msgs)
	if err != nil {
		f.logger.Error("saving the farm outbox in the new database", "err", err)
		return
	}
	for i := range f.pending {
		f.pending[i].id = ids[i]
	}
}

// LoadOutbox takes what the last run left in the outbox; call it before Run.
func (f *Farm) LoadOutbox(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.outbox == nil {
		return nil
	}
	entries, err := f.outbox.Outbox(ctx)
	if err != nil {
		return err
	}
	for _, e := range entries {
		var m outboxMessage
		if err := json.Unmarshal(e.Data, &m); err != nil {
			f.logger.Warn("farm outbox: unreadable message dropped", "id", e.ID, "err", err)
			continue
		}
		f.seq++
		p := pendingMessage{seq: f.seq, id: e.ID, key: keyOf(m.Ban), msg: m}
		f.pending = append(f.pending, p)
		f.hold(p)
	}
	if len(f.pending) > 0 {
		f.logger.Info("farm outbox: messages left by the last run are published once the farm answers", "messages", len(f.pending))
	}
	return nil
}

func keyOf(v banValue) string {
	what, _ := actions.ParseTarget(v.Addr)
	return banKey(v.Jail, what)
}

// Node is this host's name in the farm.
func (f *Farm) Node() string { return f.cfg.Node }

// Decided queues the bans this host decided in shared jails for the farm: saved in the
// outbox, then published. Each carries the bucket's newest revision this host had seen
// (revisions count the whole bucket's writes, in order): a ban of its key newer than
// that, or the unban of one, settles it. It is a jails.FarmLink method, called with the
// manager's lock.
func (f *Farm) Decided(records []jails.Record) {
	now := f.clock.Now().UnixMilli()
	var msgs []outboxMessage
	f.mu.Lock()
	for _, r := range records {
		if _, ok := f.jails[r.Jail]; ok {
			msgs = append(msgs, outboxMessage{Op: opBan, Ban: valueOf(r.Ban), Rev: max(f.seenRev, f.revs[banKey(r.Jail, r.Prefix())]), At: now})
		}
	}
	f.mu.Unlock()
	f.enqueue(msgs)
}

// Lifted queues unbans made by hand here for the farm. It is a jails.FarmLink method.
func (f *Farm) Lifted(bans []actions.Ban) {
	now := f.clock.Now().UnixMilli()
	var msgs []outboxMessage
	f.mu.Lock()
	for _, b := range bans {
		if _, ok := f.jails[b.Jail]; ok {
			msgs = append(msgs, outboxMessage{Op: opUnban, Ban: valueOf(b), Rev: f.revs[banKey(b.Jail, b.Prefix())], At: now})
		}
	}
	f.mu.Unlock()
	f.enqueue(msgs)
}

// enqueue saves msgs in the outbox and wakes the publisher.
func (f *Farm) enqueue(msgs []outboxMessage) {
	if len(msgs) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []int64
	if f.outbox != nil {
		data := make([][]byte, len(msgs))
		for i, m := range msgs {
			data[i] = m.marshal()
		}
		var err error
		// The manager's context is not at hand: a write of the outbox must not be cut
		// short by a stop anyway.
		if ids, err = f.outbox.AddOutbox(context.Background(), data); err != nil {
			f.fail("saving the farm outbox; kept in memory", err)
			ids = nil
		}
	}
	for i, m := range msgs {
		f.seq++
		p := pendingMessage{seq: f.seq, key: keyOf(m.Ban), msg: m}
		if ids != nil {
			p.id = ids[i]
		}
		f.pending = append(f.pending, p)
		f.hold(p)
	}
	f.poke(f.wake)
}

// hold counts p as waiting for the farm. Caller holds f.mu.
func (f *Farm) hold(p pendingMessage) {
	counts := f.pendBans
	if p.msg.Op == opUnban {
		counts = f.pendUnbans
	}
	counts[p.key]++
}

// settle counts p as no longer waiting: the farm took it, or it needs no publishing;
// lost says another host's ban of its key stands in its place. A ban the watch settled
// already (moot) is not counted twice.
func (f *Farm) settle(p pendingMessage, lost bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, moot := f.moot[p.seq]; moot {
		return
	}
	f.unhold(p, lost)
}

// unhold is settle's count. Caller holds f.mu.
func (f *Farm) unhold(p pendingMessage, lost bool) {
	if lost {
		f.lost.Add(1)
	}
	counts := f.pendBans
	if p.msg.Op == opUnban {
		counts = f.pendUnbans
	}
	if counts[p.key]--; counts[p.key] <= 0 {
		delete(counts, p.key)
	}
	if len(counts) == 0 { // a map keeps the size a burst grew it to: let it go
		if p.msg.Op == opUnban {
			f.pendUnbans = map[string]int{}
		} else {
			f.pendBans = map[string]int{}
		}
	}
}

// heldBan is a ban the watch delivered for a key with bans in the outbox.
type heldBan struct {
	rev   uint64
	other bool // decided by another host
}

// settleHeld settles the outbox's bans of the keys in held decided before the farm's
// ban there (their Rev is older): the farm holds a ban for them, so they are done with,
// and an unban of that ban lifts them too. Publishing one later would bring back a ban
// lifted meanwhile. Each is marked moot: the publisher drops it unpublished. moot is
// true where the farm's ban is this host's own, a write whose answer is not read yet:
// it counts as decided here when the answer comes, or when the publisher drops it if
// the answer was lost. Caller holds f.mu.
func (f *Farm) settleHeld(held map[string]heldBan) {
	for _, p := range f.pending {
		h, ok := held[p.key]
		if _, moot := f.moot[p.seq]; !ok || p.msg.Op != opBan || p.msg.Rev >= h.rev || moot {
			continue
		}
		f.moot[p.seq] = !h.other
		f.unhold(p, h.other)
	}
	f.poke(f.wake) // the publisher takes them out of the outbox
}

// Unbanning reports whether an unban of jail's ban of what, made here, waits in the
// outbox: while it does, no farm ban of that key is applied here. It is a jails.FarmLink
// method, asked by the manager's Adopt under the manager's lock, the lock under which an
// operator's unban lifts the ban and is queued (Lifted): a ban the watch delivered
// before the unban was queued is not applied after it, as it would be if the watch
// looked.
func (f *Farm) Unbanning(jail string, what netip.Prefix) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pendUnbans[banKey(jail, what)] > 0
}

// Protected returns why what (an address as a /32 or /128, or a network) must not be
// banned by this farm: it is, or holds, another node's address. It is a jails.FarmLink
// method.
func (f *Farm) Protected(what netip.Prefix) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for name, n := range f.others {
		for _, p := range n.prefixes {
			if p.Overlaps(what) {
				if what.IsSingleIP() {
					return "an address of farm node " + name
				}
				return "a network holding an address of farm node " + name
			}
		}
	}
	return ""
}

// Failure hands a failure of a counting jail to the farm, without waiting: if the farm
// is not connected, or too many wait, it is dropped and counted (the host's own count
// goes on). It is a jails.Tally method.
func (f *Farm) Failure(jail string, addr netip.Addr, t time.Time, from jails.Origin) {
	if nc := f.conn.Load(); nc == nil || !nc.IsConnected() {
		f.dropped.Add(1)
		return
	}
	if !f.failures.push(failure{jail, addr, t, from}) {
		f.dropped.Add(1)
	}
}

// poke wakes whoever waits on ch, without waiting.
func (f *Farm) poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// fail remembers the last error, for status, and logs it. Caller holds f.mu.
func (f *Farm) fail(what string, err error) {
	f.lastErr, f.lastAt = what+": "+err.Error(), f.clock.Now()
	f.logger.Warn(what, "err", err)
}

// dialFailed hears why a server could not be reached (the address and the system's
// words: "dial tcp 127.0.0.1:4223: connect: connection refused"): kept for status, and
// logged when it changes, or once a minute while it stays.
func (f *Farm) dialFailed(err error) {
	if err == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.clock.Now()
	if err.Error() == f.dialErr && now.Sub(f.dialLogged) < time.Minute {
		return
	}
	f.dialErr, f.dialLogged = err.Error(), now
	f.fail("cannot reach the farm's servers; trying again", err)
}

// resolved clears the last error if it began with one of prefixes: what it said is
// over (the connection is back), so status no longer shows it.
func (f *Farm) resolved(prefixes ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range prefixes {
		if strings.HasPrefix(f.lastErr, p) {
			f.lastErr, f.dialErr = "", ""
			return
		}
	}
}

// failf is fail for callers not holding f.mu.
func (f *Farm) failf(what string, err error) {
	f.mu.Lock()
	f.fail(what, err)
	f.mu.Unlock()
}

// Run connects to the farm and keeps this host in step with it until ctx is done:
// publishing failures and the outbox, applying the farm's bans through target, and
// deciding through decide the bans the farm's count reaches. It reconnects forever.
func (f *Farm) Run(ctx context.Context, target Target, decide Decide) error {
	nc, err := f.connect()
	if err != nil {
		return fmt.Errorf("farm %q: %w", f.cfg.Name, err)
	}
	f.conn.Store(nc)
	defer nc.Close()
	// An answer lost with a connection resolves as a timeout, and is asked again.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("farm %q: %w", f.cfg.Name, err)
	}
	var h *handles
	started := time.Now()
	for backoff := newBackoff(); h == nil; {
		if h, err = f.setup(ctx, js); err != nil {
			var clash *clashError
			if errors.As(err, &clash) {
				return err
			}
			f.mu.Lock()
			dialErr := f.dialErr
			f.mu.Unlock()
			if !nc.IsConnected() && dialErr != "" { // say why, not that it timed out
				err = fmt.Errorf("no server of %s answers (%s): %w", strings.Join(f.cfg.Servers, ", "), dialErr, err)
			}
			if time.Since(started) < setupGrace && nc.IsConnected() { // the servers' cluster forming: how a start goes
				f.logger.Info("waiting for the farm's servers to answer; trying again", "err", err)
			} else {
				f.failf("setting up the farm's bucket and streams; trying again", err)
			}
			f.dropEnded(ctx) // the outbox waits for the farm: its bans end meanwhile
			if !backoff.wait(ctx) {
				return nil
			}
		}
	}
	f.resolved("setting up the farm's")
	if f.wrap != nil {
		f.wrap(h)
	}
	f.makeStreams(ctx, h)
	f.makeQuotaStreams(ctx, h)
	f.joined.Store(h)
	defer f.joined.Store(nil)
	f.logger.Info("farm joined", "node", f.cfg.Node, "server", nc.ConnectedUrlRedacted(), "enforce", f.cfg.Enforce)
	var wg sync.WaitGroup
	for _, run := range []func(context.Context, *handles, Target, Decide){f.watchBans, f.watchNodes, f.announce, f.publish, f.count, f.purge, f.checkHealth} {
		wg.Go(func() { run(ctx, h, target, decide) })
	}
	wg.Wait()
	return nil
}

// connect dials the servers; it returns at once, and the client retries forever.
func (f *Farm) connect() (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("logban " + f.cfg.Node),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.DontRandomize(), // the servers in the order given: a host's nearest first
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.Timeout(2 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				f.failf("farm connection lost; local bans go on, decisions wait in the outbox", err)
			}
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { f.dialFailed(err) }),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			f.resolved("cannot reach", "farm connection lost")
			f.logger.Info("farm connection back", "server", nc.ConnectedUrlRedacted())
			f.poke(f.resync)
			f.poke(f.wake)
		}),
		nats.ConnectHandler(func(nc *nats.Conn) {
			f.resolved("cannot reach")
			f.poke(f.resync)
			f.poke(f.wake)
		}),
	}
	switch {
	case f.cfg.Creds != "":
		opts = append(opts, nats.UserCredentials(f.cfg.Creds))
	case f.cfg.NKeySeed != "":
		o, err := nats.NkeyOptionFromSeed(f.cfg.NKeySeed)
		if err != nil {
			return nil, fmt.Errorf("nkey_seed %s: %w", f.cfg.NKeySeed, err)
		}
		opts = append(opts, o)
	case f.cfg.User != "":
		opts = append(opts, nats.UserInfo(f.cfg.User, f.cfg.Password))
	}
	if f.cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(f.cfg.TLSCA))
	}
	if f.cfg.TLSCert != "" {
		opts = append(opts, nats.ClientCert(f.cfg.TLSCert, f.cfg.TLSKey))
	}
	return nats.Connect(strings.Join(f.cfg.Servers, ","), opts...)
}

// backoff waits longer each time, up to a bound.
type backoff struct{ next time.Duration }

func newBackoff() *backoff { return &backoff{next: 100 * time.Millisecond} }

// wait sleeps for the next wait, or until ctx is done; it reports whether ctx is alive.
func (b *backoff) wait(ctx context.Context) bool {
	t := time.NewTimer(b.next)
	defer t.Stop()
	b.next = min(2*b.next, 10*time.Second)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (b *backoff) reset() { b.next = 100 * time.Millisecond }
