package farm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/config"
	"github.com/logban/logban/internal/farm"
	"github.com/logban/logban/internal/farmkeys"
	"github.com/logban/logban/internal/natsserver/natstest"
	"github.com/logban/logban/internal/pipeline"
	"github.com/logban/logban/internal/store"
	"github.com/logban/logban/jails"
)

// host is one ban-server's engine: a manager with its database, one counting jail, its
// ban queue and its farm membership, on a real NATS cluster.
type host struct {
	t       *testing.T
	name    string
	servers []string
	db      string
	banTime time.Duration

	m      *jails.Manager
	target farm.Target // what the farm applies bans to; nil: m
	f      *farm.Farm
	st     *store.Store
	jail   *jails.Jail
	bans   *pipeline.BanQueue

	life       context.CancelFunc
	farmStop   context.CancelFunc
	farmDone   chan struct{}
	managerEnd chan struct{}
}

const jail = "sasl"

func logger(t *testing.T, name string) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("host", name)
	}
	return slog.New(slog.DiscardHandler)
}

// startHost starts a host whose database is in dir; a host started again on the same
// dir takes up where it stopped.
func startHost(t *testing.T, name string, servers []string, dir string, banTime time.Duration, tweak ...func(*config.Farm)) *host {
	t.Helper()
	h := &host{t: t, name: name, servers: servers, db: filepath.Join(dir, name+".db"), banTime: banTime}
	ctx, cancel := context.WithCancel(context.Background())
	h.life = cancel
	lg := logger(t, name)
	st, err := store.Open(ctx, h.db)
	if err != nil {
		t.Fatal(err)
	}
	h.st = st
	h.m = jails.NewManager(jails.SystemClock{}, lg)
	h.m.SetLedger(st)
	replicas := 3
	if len(servers) == 1 {
		replicas = 1
	}
	fc := config.Farm{Name: "test", Node: name, Servers: servers, Enforce: true, Replicas: replicas}
	for _, f := range tweak {
		f(&fc)
	}
	h.f = farm.New(fc, lg, nil)
	if err := h.f.LoadKeys(); err != nil {
		t.Fatal(err)
	}
	h.f.SetOutbox(ctx, st)
	if err := h.f.LoadOutbox(ctx); err != nil {
		t.Fatal(err)
	}
	h.m.SetFarm(h.f)
	h.m.SetJail(ctx, jail, jails.BanPolicy{BanTime: banTime}, []jails.NamedAction{{Name: "log", Action: actions.NewLog(actions.LogOptions{}, lg)}})
	h.f.SetJails([]farm.Jail{{Name: jail, Mode: config.FarmCount, MaxRetry: 5, FindTime: 10 * time.Minute}})
	if _, _, err := h.m.Restore(ctx, st.EachBan(ctx)); err != nil {
		t.Fatal(err)
	}
	h.jail = jails.New(jail, nil, jails.Settings{MaxRetry: 5, FindTime: 10 * time.Minute, Tally: h.f})
	h.bans = pipeline.NewBanQueue(ctx, h.m)
	h.managerEnd = make(chan struct{})
	go func() { defer close(h.managerEnd); h.m.Run(ctx) }() //nolint:errcheck // ends with ctx
	h.startFarm()
	t.Cleanup(h.stop)
	return h
}

func (h *host) startFarm() {
	ctx, cancel := context.WithCancel(context.Background())
	h.farmStop, h.farmDone = cancel, make(chan struct{})
	var target farm.Target = h.m
	if h.target != nil {
		target = h.target
	}
	go func() {
		defer close(h.farmDone)
		if err := h.f.Run(ctx, target, h.bans.Add); err != nil {
			h.t.Errorf("%s: farm: %v", h.name, err)
		}
	}()
}

func (h *host) stopFarm() {
	h.farmStop()
	<-h.farmDone
}

// stop stops the host as ban-server does; its database keeps its bans and outbox.
func (h *host) stop() {
	if h.life == nil {
		return
	}
	h.stopFarm()
	h.bans.Close()
	h.life()
	<-h.managerEnd
	h.m.Close(context.Background())
	h.st.Close()
	h.life = nil
}

// fail counts n failures of addr here, as a log line would.
func (h *host) fail(addr netip.Addr, n int) {
	now := time.Now()
	for range n {
		if ts := h.jail.Failure(addr, now, now); len(ts) > 0 {
			if err := h.bans.Add(context.Background(), ts); err != nil {
				h.t.Error(err)
			}
		}
	}
}

// banByHand bans addr here as ban-client banip does.
func (h *host) banByHand(addr netip.Addr) {
	t, err := h.jail.Manual(actions.Host(addr), time.Now())
	if err != nil {
		h.t.Fatal(err)
	}
	h.m.BanAll(context.Background(), []jails.Ticket{t})
}

func (h *host) ban(addr netip.Addr) (jails.Record, bool) { return h.m.Record(jail, actions.Host(addr)) }

// eventually waits up to a generous bound for cond, and fails the test with what if it
// never holds. It asserts an outcome, not a time.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMain(m *testing.M) {
	natstest.Serve() // a test binary started as a NATS server of StartProcesses serves
	os.Exit(m.Run())
}

func threeHosts(t *testing.T, banTime time.Duration) (*natstest.Cluster, []*host) {
	return hostsOn(t, natstest.Start(t, 3), banTime)
}

// hostsOn starts hosts a, b and c on c's three servers, each dialling its own first.
func hostsOn(t *testing.T, c *natstest.Cluster, banTime time.Duration) (*natstest.Cluster, []*host) {
	dir := t.TempDir()
	var hs []*host
	for i, name := range []string{"a", "b", "c"} {
		// Each host dials its own server first, as a farm's hosts would their nearest.
		servers := append([]string{c.URL(i)}, c.URLs()...)
		hs = append(hs, startHost(t, name, servers, dir, banTime))
	}
	for _, h := range hs {
		eventually(t, h.name+" joins the farm", func() bool { s := h.f.Status(); return s.State == "connected" && s.Synced })
	}
	return c, hs
}

func heldBy(hs []*host, addr netip.Addr) func() bool {
	return func() bool {
		for _, h := range hs {
			if _, ok := h.ban(addr); !ok {
				return false
			}
		}
		return true
	}
}

func heldByNone(hs []*host, addr netip.Addr) func() bool {
	return func() bool {
		for _, h := range hs {
			if _, ok := h.ban(addr); ok {
				return false
			}
		}
		return true
	}
}

func TestABanOnOneHostIsAppliedOnAllAndAnUnbanAnywhereLiftsIt(t *testing.T) {
	_, hs := threeHosts(t, time.Hour)
	a, b, c := hs[0], hs[1], hs[2]
	x := netip.MustParseAddr("203.0.113.5")
	a.banByHand(x)
	eventually(t, "b and c hold a's ban", heldBy(hs, x))
	for _, h := range hs {
		if r, _ := h.ban(x); r.By != "a" || r.Why != "by hand" {
			t.Errorf("%s holds the ban as decided by %q for %q; want a, by hand", h.name, r.By, r.Why)
		}
	}
	if _, err := c.m.Unban(context.Background(), jail, actions.Host(x)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "c's unban lifts the ban on a and b", heldByNone(hs, x))

	// A stale unban: c lifts a ban it knew at one revision while the farm has moved on
	// to a newer ban of the address. The newer ban stands, everywhere.
	y := netip.MustParseAddr("203.0.113.6")
	a.banByHand(y)
	eventually(t, "every host holds y", heldBy(hs, y))
	c.stopFarm()
	if _, err := a.m.Unban(context.Background(), jail, actions.Host(y)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b sees y lifted", func() bool { _, ok := b.ban(y); return !ok })
	a.banByHand(y) // a newer ban, at a newer revision
	eventually(t, "b holds the newer ban", func() bool { _, ok := b.ban(y); return ok })
	if _, err := c.m.Unban(context.Background(), jail, actions.Host(y)); err != nil { // c knew the old revision only
		t.Fatal(err)
	}
	c.startFarm()
	eventually(t, "c's outbox is published", func() bool { return c.f.Status().Outbox == 0 })
	eventually(t, "c takes the newer ban back", func() bool { _, ok := c.ban(y); return ok })
	for _, h := range []*host{a, b} {
		if _, ok := h.ban(y); !ok {
			t.Errorf("c's stale unban lifted the newer ban on %s", h.name)
		}
	}
}

func TestFailuresAddUpAcrossHostsAndOneHostDecides(t *testing.T) {
	c, hs := threeHosts(t, time.Hour)
	kv := c.Bucket("test_bans")
	const rounds = 20
	for round := range rounds {
		addr := netip.AddrFrom4([4]byte{198, 51, 100, byte(round + 1)})
		var wg sync.WaitGroup
		for _, h := range hs {
			wg.Go(func() { h.fail(addr, 2) }) // 6 failures in all; maxretry is 5; none alone reaches it
		}
		wg.Wait()
		eventually(t, fmt.Sprintf("round %d: every host holds the ban of %v", round, addr), heldBy(hs, addr))
		// A KV get may be answered by a replica a moment behind the leader the hosts'
		// watches read from.
		var e jetstream.KeyValueEntry
		eventually(t, fmt.Sprintf("round %d: the farm holds the ban", round), func() bool {
			var err error
			e, err = kv.Get(context.Background(), jail+"."+fmt.Sprintf("198-51-100-%d", round+1))
			return err == nil
		})
		var v struct{ By, Why string }
		json.Unmarshal(e.Value(), &v) //nolint:errcheck // checked below
		if v.By == "" || v.Why != "5 failures across the farm" {
			t.Errorf("round %d: farm ban by %q for %q", round, v.By, v.Why)
		}
		eventually(t, "every host names the one deciding node", func() bool {
			for _, h := range hs {
				if r, _ := h.ban(addr); r.By != v.By {
					return false
				}
			}
			return true
		})
	}
	for _, h := range hs {
		if n := len(h.m.Bans(jail)); n != rounds {
			t.Errorf("%s holds %d bans; want %d", h.name, n, rounds)
		}
	}
	// A decision counts once its publish is acknowledged, which may come after the
	// other hosts' watches delivered it.
	var decided int64
	eventually(t, "one decision a round", func() bool {
		decided = 0
		for _, h := range hs {
			decided += h.f.Status().Decided
		}
		return decided >= rounds
	})
	if decided != rounds {
		t.Errorf("hosts decided %d bans in %d rounds; want exactly one decision a round", decided, rounds)
	}
}

func TestExpiryReachesEveryHostEvenWithoutQuorum(t *testing.T) {
	c, hs := threeHosts(t, 3*time.Second)
	x := netip.MustParseAddr("203.0.113.7")
	hs[0].banByHand(x)
	eventually(t, "every host holds x", heldBy(hs, x))
	eventually(t, "x expires on every host", heldByNone(hs, x))

	y := netip.MustParseAddr("203.0.113.8")
	hs[1].banByHand(y)
	eventually(t, "every host holds y", heldBy(hs, y))
	c.Stop(1)
	c.Stop(2) // one server of three: no quorum, the farm expires nothing
	eventually(t, "each host's own clock expires y", heldByNone(hs, y))
}

func TestAHostAwayCatchesUpWithTheFarm(t *testing.T) {
	_, hs := threeHosts(t, time.Hour)
	a, b := hs[0], hs[1]
	p, q := netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("203.0.113.10")
	a.banByHand(p)
	eventually(t, "b holds p", func() bool { _, ok := b.ban(p); return ok })
	b.stop()
	if _, err := a.m.Unban(context.Background(), jail, actions.Host(p)); err != nil {
		t.Fatal(err)
	}
	a.banByHand(q)
	eventually(t, "the farm has p's unban and q's ban", func() bool { return a.f.Status().Outbox == 0 })
	b = startHost(t, "b", b.servers, filepath.Dir(b.db), time.Hour)
	eventually(t, "b, back, holds what a holds", func() bool {
		_, hasP := b.ban(p)
		_, hasQ := b.ban(q)
		return !hasP && hasQ
	})
	if got, want := addrs(b.m.Bans(jail)), addrs(a.m.Bans(jail)); got != want {
		t.Errorf("b holds %s; a holds %s", got, want)
	}
}

// slowTarget is a host's manager whose first adoption waits for gate, as a host busy
// applying a large farm would, and which remembers the bans the farm lifted here.
type slowTarget struct {
	*jails.Manager
	gate    chan struct{}
	waiting chan struct{} // closed when the first adoption waits
	once    sync.Once

	mu     sync.Mutex
	lifted []netip.Prefix
}

func (s *slowTarget) Adopt(ctx context.Context, records []jails.Record) []actions.Ban {
	s.once.Do(func() { close(s.waiting); <-s.gate })
	return s.Manager.Adopt(ctx, records)
}

func (s *slowTarget) LiftIf(ctx context.Context, jail string, what netip.Prefix, lift func(jails.Record) bool) bool {
	ok := s.Manager.LiftIf(ctx, jail, what, lift)
	if ok {
		s.mu.Lock()
		s.lifted = append(s.lifted, what)
		s.mu.Unlock()
	}
	return ok
}

// A ban this host decides while its watch is still applying the farm's bans waits in the
// outbox until the watch has caught up (the farm may hold, or have lifted, a ban of the
// address), then reaches the farm, and is still this host's: it is not taken for one the
// farm lifted while the host was away.
func TestABanDecidedWhileCatchingUpIsPublishedAfterAndKept(t *testing.T) {
	_, hs := threeHosts(t, time.Hour)
	a, b := hs[0], hs[1]
	x, y := netip.MustParseAddr("203.0.113.20"), netip.MustParseAddr("203.0.113.21")
	b.banByHand(x)
	eventually(t, "a holds x", func() bool { _, ok := a.ban(x); return ok })

	a.stopFarm()
	slow := &slowTarget{Manager: a.m, gate: make(chan struct{}), waiting: make(chan struct{})}
	a.target = slow
	a.startFarm()
	<-slow.waiting // the watch has delivered x, the farm's every ban, and waits to apply it
	a.banByHand(y)
	if s := a.f.Status(); s.Synced || s.Outbox != 1 {
		t.Errorf("a says synced %v, outbox %d, while catching up; want false and y waiting", s.Synced, s.Outbox)
	}
	close(slow.gate)
	eventually(t, "a has caught up", func() bool { return a.f.Status().Synced })
	eventually(t, "the farm has y", func() bool { return a.f.Status().Outbox == 0 })
	eventually(t, "every host holds y", heldBy(hs, y))
	if s := a.f.Status(); s.Decided != 1 {
		t.Errorf("a decided %d bans; want 1 (y)", s.Decided)
	}
	slow.mu.Lock()
	defer slow.mu.Unlock()
	if len(slow.lifted) > 0 {
		t.Errorf("a lifted %v while catching up: the farm holds them", slow.lifted)
	}
}

func TestWithoutQuorumLocalBansGoOnAndTheOutboxDrainsAfter(t *testing.T) {
	c, hs := threeHosts(t, time.Hour)
	a := hs[0]
	c.Stop(1)
	c.Stop(2)
	w, v := netip.MustParseAddr("203.0.113.11"), netip.MustParseAddr("203.0.113.12")
	a.fail(w, 5) // maxretry here: a bans on its own count
	eventually(t, "a bans w on its own while the farm has no quorum", func() bool { _, ok := a.ban(w); return ok })
	a.banByHand(v)
	if _, err := a.m.Unban(context.Background(), jail, actions.Host(v)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a's decisions wait in the outbox", func() bool { return a.f.Status().Outbox == 3 })
	c.Restart(1)
	c.Restart(2)
	eventually(t, "the outbox drains", func() bool { return a.f.Status().Outbox == 0 })
	eventually(t, "every host holds w", heldBy(hs, w))
	eventually(t, "no host holds v, banned and unbanned while away", heldByNone(hs, v))
	for _, h := range hs[1:] {
		// A host holds a ban as it applies it, and counts it once the batch is applied.
		eventually(t, h.name+" counts w applied", func() bool { return h.f.Status().Applied >= 1 })
		// v was lifted before the farm could take it: no host applies it, to lift it.
		if n := h.f.Status().Applied; n != 1 {
			t.Errorf("%s applied %d bans of a's; want 1 (w)", h.name, n)
		}
	}
}

// TestABanThatEndsWhileTheFarmIsAwayLeavesTheOutbox: a ban decided while no server of the
// farm answers waits in the outbox, and leaves it when it ends, before the farm is back:
// a long partition's outbox holds the bans in force, not every ban made in it. The farm,
// back, applies none of it.
func TestABanThatEndsWhileTheFarmIsAwayLeavesTheOutbox(t *testing.T) {
	c, hs := threeHosts(t, 3*time.Second)
	a := hs[0]
	for i := range 3 {
		c.Stop(i)
	}
	w := netip.MustParseAddr("203.0.113.21")
	a.fail(w, 5)
	eventually(t, "a bans w on its own while the farm is away", func() bool { _, ok := a.ban(w); return ok })
	if n := a.f.Status().Outbox; n != 1 {
		t.Fatalf("%d messages in the outbox; want w's ban", n)
	}
	deadline := time.Now().Add(20 * time.Second)
	for a.f.Status().Outbox != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("w's ban ended 3 s after it was made, and 20 s on it still waits in the outbox")
		}
		time.Sleep(10 * time.Millisecond)
	}
	eventually(t, "w's ban ends on a", func() bool { _, ok := a.ban(w); return !ok })
	for i := range 3 {
		c.Restart(i)
	}
	for _, h := range hs {
		eventually(t, h.name+" is back in the farm", func() bool { s := h.f.Status(); return s.State == "connected" && s.Synced })
	}
	for _, h := range hs[1:] {
		if n := h.f.Status().Applied; n != 0 {
			t.Errorf("%s applied %d bans of a's; want none", h.name, n)
		}
	}
}

// TestALeaderKilledMidBurstLosesNoBan kills -9 the process of the NATS server leading
// the bans bucket while a host publishes a burst of bans: writes pause for the Raft
// election, the host keeps its decisions in the outbox meanwhile, and every ban reaches
// every host.
func TestALeaderKilledMidBurstLosesNoBan(t *testing.T) {
	c, hs := hostsOn(t, natstest.StartProcesses(t, 3), time.Hour)
	a := hs[0]
	const burst, chunk = 3000, 100
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}) }
	for first := 0; first < burst; first += chunk {
		if first == burst/3 {
			leader := c.Leader("KV_test_bans")
			c.Kill(leader)
			t.Logf("killed the leader, server %d, after %d bans", leader+1, first)
		}
		var tickets []jails.Ticket
		for i := first; i < first+chunk; i++ {
			tk, _ := a.jail.Manual(actions.Host(addr(i)), time.Now())
			tickets = append(tickets, tk)
		}
		a.m.BanAll(context.Background(), tickets)
	}
	for _, h := range hs {
		eventually(t, h.name+" holds every ban", func() bool { return len(h.m.Bans(jail)) == burst })
	}
	eventually(t, "a's outbox drains", func() bool { return a.f.Status().Outbox == 0 })
}

// announce makes addr h's own address and waits until other has heard of it.
func (h *host) announce(other *host, addr netip.Addr) {
	h.f.SetOwn([]netip.Prefix{netip.PrefixFrom(addr, addr.BitLen())})
	h.stopFarm()
	h.startFarm() // announces at once
	eventually(h.t, other.name+" knows "+h.name+"'s address", func() bool {
		n := other.f.Status().Nodes
		return len(n) == 1 && len(n[0].Addrs) == 1
	})
}

func TestANodesOwnAddressIsNeverBanned(t *testing.T) {
	c := natstest.Start(t, 1)
	dir := t.TempDir()
	a := startHost1(t, "a", c, dir)
	b := startHost1(t, "b", c, dir)
	proxy := netip.MustParseAddr("10.0.0.7")
	b.announce(a, proxy)
	a.fail(proxy, 5)
	a.bans.Flush(context.Background())
	a.banByHand(proxy)
	if _, ok := a.ban(proxy); ok {
		t.Fatal("a banned an address of farm node b")
	}
	if a.m.Refused() != 2 {
		t.Errorf("refused %d bans; want 2 (one decided, one by hand)", a.m.Refused())
	}
}

func TestAFarmBanOfAnAddressAHostIgnoresIsNotAppliedThere(t *testing.T) {
	c := natstest.Start(t, 1)
	dir := t.TempDir()
	a := startHost1(t, "a", c, dir)
	b := startHost1(t, "b", c, dir)
	office, other := netip.MustParseAddr("192.0.2.44"), netip.MustParseAddr("192.0.2.45")
	b.f.SetJails([]farm.Jail{{Name: jail, Mode: config.FarmCount, MaxRetry: 5, FindTime: 10 * time.Minute,
		Ignore: jails.NewIgnoreList(netip.PrefixFrom(office, 32))}})
	a.banByHand(office)
	a.banByHand(other)
	eventually(t, "b holds the other ban", func() bool { _, ok := b.ban(other); return ok })
	if _, ok := b.ban(office); ok {
		t.Error("b applied a farm ban of an address on its ignore list")
	}
	if _, ok := a.ban(office); !ok {
		t.Error("a, which does not ignore it, lost its ban")
	}
	if n := b.f.Status().Ignored; n != 1 {
		t.Errorf("b counted %d ignored farm bans; want 1", n)
	}
}

func startHost1(t *testing.T, name string, c *natstest.Cluster, dir string) *host {
	h := startHost(t, name, c.URLs(), dir, time.Hour)
	eventually(t, name+" joins", func() bool { return h.f.Status().Synced })
	return h
}

func addrs(bans []actions.Ban) string {
	s := ""
	for _, b := range bans {
		s += b.Addr.String() + " "
	}
	return s
}

func TestAnUnbanHereOnlyLeavesTheOtherHostsBanned(t *testing.T) {
	_, hs := threeHosts(t, time.Hour)
	x := netip.MustParseAddr("203.0.113.20")
	hs[0].banByHand(x)
	eventually(t, "every host holds x", heldBy(hs, x))
	if _, err := hs[1].m.UnbanHere(context.Background(), jail, actions.Host(x)); err != nil {
		t.Fatal(err)
	}
	if hs[1].f.Status().Outbox != 0 {
		t.Error("an unban here only was queued for the farm")
	}
	// Another ban, published after the local unban, reaching every host shows the farm
	// has moved past it; x is still held by a and c.
	y := netip.MustParseAddr("203.0.113.21")
	hs[1].banByHand(y)
	eventually(t, "every host holds y", heldBy(hs, y))
	for _, h := range []*host{hs[0], hs[2]} {
		if _, ok := h.ban(x); !ok {
			t.Errorf("b's local unban lifted x on %s", h.name)
		}
	}
}

func TestAJailSharingBansOnlyCountsAlone(t *testing.T) {
	_, hs := threeHosts(t, time.Hour)
	for _, h := range hs {
		h.f.SetJails([]farm.Jail{{Name: jail, Mode: config.FarmBans, MaxRetry: 5, FindTime: 10 * time.Minute}})
	}
	x, y := netip.MustParseAddr("203.0.113.22"), netip.MustParseAddr("203.0.113.23")
	for _, h := range hs {
		h.fail(x, 2) // 6 in the farm, but each host counts alone
		h.bans.Flush(context.Background())
	}
	hs[0].fail(y, 5) // a's own count reaches maxretry: the ban is shared
	eventually(t, "every host holds y", heldBy(hs, y))
	for _, h := range hs {
		if _, ok := h.ban(x); ok {
			t.Errorf("%s banned x, whose failures were spread: a jail sharing bans only counted across the farm", h.name)
		}
	}
}

func TestHostsWhoseJailCountsDifferentlyAreWarned(t *testing.T) {
	_, hs := threeHosts(t, time.Hour)
	b := hs[1]
	b.f.SetJails([]farm.Jail{{Name: jail, Mode: config.FarmCount, MaxRetry: 3, FindTime: time.Hour}})
	b.stopFarm()
	b.startFarm() // finds the counting stream a host made with maxretry 5, findtime 10m
	eventually(t, "b warns of the difference", func() bool {
		d := b.f.Status().Drift
		return len(d) == 1 && strings.Contains(d[0], "maxretry 5 and findtime 10m0s") && strings.Contains(d[0], "maxretry 3 and findtime 1h0m0s")
	})
}

func TestAFarmNameTakenByAnotherBucketIsRefused(t *testing.T) {
	c := natstest.Start(t, 1)
	js := c.JetStream()
	ctx := context.Background()
	for {
		if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "mail_bans"}); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond) // JetStream still starting
	}
	f := farm.New(config.Farm{Name: "mail", Node: "a", Servers: c.URLs(), Enforce: true, Replicas: 1}, nil, nil)
	m := jails.NewManager(jails.SystemClock{}, slog.New(slog.DiscardHandler))
	runCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := f.Run(runCtx, m, func(context.Context, []jails.Ticket) error { return nil })
	if err == nil || !strings.Contains(err.Error(), `NATS already holds "mail_bans", which no logban farm of this name made`) ||
		!strings.Contains(err.Error(), "choose another [farm] name") {
		t.Fatalf("Run on a taken name: %v", err)
	}
}

// hostPermissions are the NATS permissions README.md's "Trust" gives a host of farm
// "test": its own failures and decisions, its own node entry, and the JetStream API calls
// a host makes on a farm whose bucket and streams exist.
func hostPermissions(node string) *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			"logban.test.fail.>", "$KV.test_bans.>", "$KV.test_nodes." + node,
			"$JS.API.INFO", "$JS.API.STREAM.INFO.*", "$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.DELETE.>",
			"$JS.API.DIRECT.GET.>", "$JS.API.STREAM.MSG.GET.>", "$JS.API.STREAM.PURGE.test_fail_*", "$JS.FC.>",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}
}

// TestAHostLimitedToItsOwnSubjectsWorksAndCannotPoseAsAnother runs two hosts under
// hostPermissions, on a farm an administrator's user made: their failures add up, their
// ban and unban reach each other, and one cannot write the other's node entry.
func TestAHostLimitedToItsOwnSubjectsWorksAndCannotPoseAsAnother(t *testing.T) {
	c := natstest.StartConfigured(t, 1, func(o *server.Options) {
		o.Users = []*server.User{
			{Username: "admin", Password: "admin"},
			{Username: "mta1", Password: "one", Permissions: hostPermissions("mta1")},
			{Username: "mta2", Password: "two", Permissions: hostPermissions("mta2")},
		}
	})
	dir := t.TempDir()
	login := func(user, password string) func(*config.Farm) {
		return func(f *config.Farm) { f.User, f.Password = user, password }
	}
	admin := startHost(t, "admin", c.URLs(), dir, time.Hour, login("admin", "admin"))
	js := c.JetStream(nats.UserInfo("admin", "admin"))
	eventually(t, "the administrator's host makes the farm's bucket and counting stream", func() bool {
		_, err := js.Stream(context.Background(), "test_fail_sasl")
		return admin.f.Status().Synced && err == nil
	})
	admin.stop()
	mta1 := startHost(t, "mta1", c.URLs(), dir, time.Hour, login("mta1", "one"))
	mta2 := startHost(t, "mta2", c.URLs(), dir, time.Hour, login("mta2", "two"))
	hs := []*host{mta1, mta2}
	for _, h := range hs {
		eventually(t, h.name+" joins", func() bool { s := h.f.Status(); return s.Synced && len(s.Nodes) >= 1 })
	}
	x := netip.MustParseAddr("203.0.113.30")
	mta1.fail(x, 3)
	mta2.fail(x, 2)
	eventually(t, "the hosts' failures add up to a ban both hold", heldBy(hs, x))
	if _, err := mta2.m.Unban(context.Background(), jail, actions.Host(x)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "mta2's unban reaches mta1", heldByNone(hs, x))

	nc, err := nats.Connect(c.URL(0), nats.UserInfo("mta1", "one"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	mta1js, _ := jetstream.New(nc)
	publish := func(subject string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := mta1js.Publish(ctx, subject, []byte(`{"node":"x","addrs":["203.0.113.0/24"]}`))
		return err
	}
	if err := publish("$KV.test_nodes.mta2"); err == nil {
		t.Fatal("mta1 wrote mta2's node entry")
	}
	if err := publish("$KV.test_nodes.mta1"); err != nil {
		t.Errorf("mta1 could not write its own node entry: %v", err)
	}
}

// A ban of a network is shared like any ban: every host holds it as the network, and an
// unban of the network anywhere lifts it everywhere. A network holding a farm node's
// address is never banned, and one holding an address a host ignores is not applied
// there.
func TestANetworkBanIsSharedLikeAnyBan(t *testing.T) {
	c := natstest.Start(t, 1)
	dir := t.TempDir()
	a := startHost1(t, "a", c, dir)
	b := startHost1(t, "b", c, dir)
	net := netip.MustParsePrefix("198.51.100.0/24")
	banNet := func(h *host, p netip.Prefix) {
		tk, err := h.jail.Manual(p, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		h.m.BanAll(context.Background(), []jails.Ticket{tk})
	}
	banNet(a, net)
	eventually(t, "b holds a's network ban", func() bool { _, ok := b.m.Record(jail, net); return ok })
	if r, _ := b.m.Record(jail, net); r.Target() != "198.51.100.0/24" || r.By != "a" {
		t.Errorf("b holds %+v", r)
	}
	if _, err := b.m.Unban(context.Background(), jail, net); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b's unban of the network lifts it on a", func() bool { _, ok := a.m.Record(jail, net); return !ok })

	proxy := netip.MustParseAddr("10.0.0.7")
	b.announce(a, proxy)
	banNet(a, netip.MustParsePrefix("10.0.0.0/24"))
	if _, ok := a.m.Record(jail, netip.MustParsePrefix("10.0.0.0/24")); ok || a.m.Refused() != 1 {
		t.Errorf("a banned a network holding farm node b's address (refused %d)", a.m.Refused())
	}

	office := netip.MustParseAddr("192.0.2.44")
	b.f.SetJails([]farm.Jail{{Name: jail, Mode: config.FarmCount, MaxRetry: 5, FindTime: 10 * time.Minute,
		Ignore: jails.NewIgnoreList(netip.PrefixFrom(office, 32))}})
	banNet(a, netip.MustParsePrefix("192.0.2.0/24"))
	banNet(a, netip.MustParsePrefix("203.0.113.0/24"))
	eventually(t, "b holds the other network's ban", func() bool { _, ok := b.m.Record(jail, netip.MustParsePrefix("203.0.113.0/24")); return ok })
	if _, ok := b.m.Record(jail, netip.MustParsePrefix("192.0.2.0/24")); ok {
		t.Error("b applied a farm ban of a network holding an address on its ignore list")
	}
}

// A policy quota counts farm-wide: of anna's messages, 2 through host a and 1 through b
// reach a limit of 3, and her next, through c, is over; bob's first is not. Recipients
// too: with 10 allowed, a message to 8 leaves 2, one to 3 is over and leaves them (a
// message not sent counts nothing), and one to 2 goes.
func TestQuotaCountsAcrossTheFarm(t *testing.T) {
	_, hs := threeHosts(t, time.Hour)
	count := func(h *host, q farm.Quota, holder string, rcpts int) bool {
		t.Helper()
		var over bool
		var err error
		eventually(t, "the farm answers", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			over, err = h.f.CountMessage(ctx, q, holder, rcpts)
			return err == nil
		})
		return over
	}
	msgs := farm.Quota{Name: "outbound", Messages: 3, Window: time.Hour}
	for i, h := range []*host{hs[0], hs[0], hs[1]} {
		if count(h, msgs, "anna@example.com", 1) {
			t.Fatalf("message %d of 3: over", i+1)
		}
	}
	if !count(hs[2], msgs, "anna@example.com", 1) {
		t.Error("the 4th message, through a third host, is not over the farm's quota of 3")
	}
	if count(hs[2], msgs, "bob@example.com", 1) {
		t.Error("bob's first message is over")
	}
	rcpts := farm.Quota{Name: "recipients", Recipients: 10, Window: time.Hour}
	for _, tt := range []struct {
		h     *host
		rcpts int
		over  bool
	}{{hs[0], 8, false}, {hs[1], 3, true}, {hs[2], 2, false}, {hs[0], 1, true}} {
		if got := count(tt.h, rcpts, "anna@example.com", tt.rcpts); got != tt.over {
			t.Errorf("a message to %d recipients: over %v, want %v", tt.rcpts, got, tt.over)
		}
	}
}

// Every bucket and stream the farm makes is bounded, so no publisher can grow a server
// (or the ban-servers watching) without limit: a value past the bound is refused.
func TestTheFarmsBucketsAndStreamsAreBounded(t *testing.T) {
	c := natstest.Start(t, 1)
	h := startHost(t, "mta1", c.URLs(), t.TempDir(), time.Hour)
	js := c.JetStream()
	eventually(t, "the host makes the farm's bucket and counting stream", func() bool {
		_, err := js.Stream(context.Background(), "test_fail_sasl")
		return h.f.Status().Synced && err == nil
	})
	ctx := context.Background()
	for name, want := range map[string][3]int64{
		"KV_test_bans":   {-1, farm.MaxBansBytes, farm.MaxBanValue},
		"KV_test_nodes":  {-1, farm.MaxNodesBytes, farm.MaxNodeValue},
		"test_fail_sasl": {farm.MaxCountMsgs, farm.MaxCountBytes, farm.MaxCountMsg},
	} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		if cfg.MaxMsgs != want[0] || cfg.MaxBytes != want[1] || int64(cfg.MaxMsgSize) != want[2] {
			t.Errorf("%s: max msgs %d, bytes %d, msg size %d; want %v", name, cfg.MaxMsgs, cfg.MaxBytes, cfg.MaxMsgSize, want)
		}
	}
	if _, err := js.Publish(ctx, "$KV.test_bans.sasl.203-0-113-5", make([]byte, farm.MaxBanValue+1)); err == nil {
		t.Error("a ban value past the bound was taken")
	}
}

// withKeys makes a host sign what it writes with its key in dir, and check what others
// wrote against the farm's list there.
func withKeys(dir, node string) func(*config.Farm) {
	return func(f *config.Farm) {
		f.NKeySeed = farmkeys.Files(dir, node).Seed
		f.Nodes, _ = farmkeys.ReadNodes(filepath.Join(dir, farmkeys.NodesFile))
	}
}

// A host that can write to the farm's subjects (here, all of them) writes as another:
// a ban it says mta2 decided, a ban it did not sign, mta2's node entry, and its own
// entry claiming the whole internet. The farm's hosts check every value against the
// node keys: none of it is applied, mta2 is not framed, nothing stops the farm's bans,
// and each refusal is counted. A ban signed by the node it names is applied.
func TestAHostCannotWriteAsAnother(t *testing.T) {
	keys := t.TempDir()
	if err := farmkeys.Init(keys, "test"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"mta1", "mta2", "mta3"} {
		if _, err := farmkeys.AddNode(keys, n, nil); err != nil {
			t.Fatal(err)
		}
	}
	nodes, _ := farmkeys.ReadNodes(filepath.Join(keys, farmkeys.NodesFile))
	c := natstest.StartConfigured(t, 1, func(o *server.Options) {
		for _, pub := range nodes {
			o.Nkeys = append(o.Nkeys, &server.NkeyUser{Nkey: pub})
		}
	})
	dir := t.TempDir()
	mta2 := startHost(t, "mta2", c.URLs(), dir, time.Hour, withKeys(keys, "mta2"))
	mta3 := startHost(t, "mta3", c.URLs(), dir, time.Hour, withKeys(keys, "mta3"))
	for _, h := range []*host{mta2, mta3} {
		eventually(t, h.name+" joins", func() bool { return h.f.Status().Synced })
	}
	// mta1, compromised, writes by hand with its own key.
	seed, _ := os.ReadFile(farmkeys.Files(keys, "mta1").Seed)
	kp, err := nkeys.ParseDecoratedNKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(node string, body string) []byte {
		sig, _ := kp.Sign([]byte(body))
		out, _ := json.Marshal(map[string]any{"body": json.RawMessage(body), "node": node, "sig": sig})
		return out
	}
	asMTA1, err := nats.NkeyOptionFromSeed(farmkeys.Files(keys, "mta1").Seed)
	if err != nil {
		t.Fatal(err)
	}
	js := c.JetStream(asMTA1)
	ctx := context.Background()
	until := time.Now().Add(time.Hour).UnixMilli()
	ban := func(addr, by string) string {
		return fmt.Sprintf(`{"v":1,"jail":"sasl","addr":%q,"at":%d,"until":%d,"by":%q,"why":"5 failures across the farm"}`, addr, time.Now().UnixMilli(), until, by)
	}
	put := func(subject string, data []byte) {
		if _, err := js.Publish(ctx, subject, data); err != nil {
			t.Fatal(err)
		}
	}
	framed, unsigned, forgedKey := netip.MustParseAddr("203.0.113.41"), netip.MustParseAddr("203.0.113.42"), netip.MustParseAddr("203.0.113.43")
	put("$KV.test_bans.sasl.203-0-113-41", sign("mta1", ban(framed.String(), "mta2")))          // by mta2, signed by mta1
	put("$KV.test_bans.sasl.203-0-113-42", []byte(ban(unsigned.String(), "mta1")))              // not signed
	put("$KV.test_bans.sasl.203-0-113-43", sign("mta2", ban(forgedKey.String(), "mta2")))       // claims mta2's signature
	put("$KV.test_nodes.mta2", sign("mta1", `{"node":"mta2","addrs":["203.0.113.44"],"at":1}`)) // mta2's entry
	put("$KV.test_nodes.mta1", sign("mta1", fmt.Sprintf(`{"node":"mta1","addrs":["0.0.0.0/0","::/0","203.0.113.45"],"at":%d}`, time.Now().UnixMilli())))
	eventually(t, "every forged value is refused by both hosts", func() bool {
		return mta2.f.Status().Forged >= 4 && mta3.f.Status().Forged >= 4
	})
	honest := netip.MustParseAddr("203.0.113.46")
	put("$KV.test_bans.sasl.203-0-113-46", sign("mta1", ban(honest.String(), "mta1")))
	eventually(t, "a ban mta1 signed as itself is applied", heldBy([]*host{mta2, mta3}, honest))
	for _, a := range []netip.Addr{framed, unsigned, forgedKey} {
		if _, ok := mta3.ban(a); ok {
			t.Errorf("mta3 applied the forged ban of %s", a)
		}
	}
	// mta1 lifts mta2's bans farm-wide: a purge with no body (as the server's expiry
	// marker is), and one whose body says mta2 lifted it. Neither lifts a ban on mta3
	// before its end; mta2's own unban does.
	kept, lifted := netip.MustParseAddr("203.0.113.47"), netip.MustParseAddr("203.0.113.48")
	for _, a := range []netip.Addr{kept, lifted} {
		tk, err := mta2.jail.Manual(actions.Host(a), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		mta2.m.BanAll(ctx, []jails.Ticket{tk})
	}
	eventually(t, "mta2's bans reach mta3", func() bool { return heldBy([]*host{mta3}, kept)() && heldBy([]*host{mta3}, lifted)() })
	purge := func(key string, body []byte) {
		m := nats.NewMsg("$KV.test_bans." + key)
		m.Header.Set("KV-Operation", "PURGE")
		m.Header.Set("Nats-Rollup", "sub")
		m.Data = body
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	before := mta3.f.Status().Forged
	purge("sasl.203-0-113-47", nil)
	purge("sasl.203-0-113-47", sign("mta2", `{"jail":"sasl","addr":"203.0.113.47","by":"mta2","at":1}`))
	eventually(t, "mta3 refuses the forged unban", func() bool { return mta3.f.Status().Forged > before })
	if _, err := mta2.m.Unban(ctx, jail, actions.Host(lifted)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "mta2's own unban reaches mta3", heldByNone([]*host{mta3}, lifted))
	if _, ok := mta3.ban(kept); !ok {
		t.Error("mta3 lifted mta2's ban on mta1's purge")
	}
	// mta1's claim of the internet protects nothing but its one address.
	if why := mta3.f.Protected(netip.MustParsePrefix("198.51.100.7/32")); why != "" {
		t.Errorf("an address is protected by mta1's network claim: %s", why)
	}
	if why := mta3.f.Protected(netip.MustParsePrefix("203.0.113.45/32")); why == "" {
		t.Error("mta1's own address is not protected")
	}
	if why := mta3.f.Protected(netip.MustParsePrefix("203.0.113.44/32")); why != "" {
		t.Errorf("the forged entry of mta2 protects %s: %s", "203.0.113.44", why)
	}
	// An entry that ends (its TTL's marker, here a purge of its key) takes its
	// addresses with it.
	m := nats.NewMsg("$KV.test_nodes.mta1")
	m.Header.Set("KV-Operation", "PURGE")
	m.Header.Set("Nats-Rollup", "sub")
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	eventually(t, "mta1's entry, ended, protects nothing", func() bool {
		return mta3.f.Protected(netip.MustParsePrefix("203.0.113.45/32")) == ""
	})
	if m := mta3.f.Status().Missing; !slices.Equal(m, []string{"mta1"}) {
		t.Errorf("mta3's status misses %v, want mta1, whose entry ended", m)
	}
}

// A farm server that cannot be reached is named with the system's words at once, not as
// a time-out later: the address, and "connection refused".
func TestAnUnreachableServerIsNamed(t *testing.T) {
	c := natstest.Start(t, 1)
	c.Stop(0)
	h := startHost(t, "mta1", c.URLs(), t.TempDir(), time.Hour)
	eventually(t, "the status names the server and why", func() bool {
		e := h.f.Status().LastError
		return strings.Contains(e, strings.TrimPrefix(c.URL(0), "nats://")) && strings.Contains(e, "connection refused")
	})
	c.Restart(0)
	eventually(t, "the error clears once the server answers", func() bool {
		s := h.f.Status()
		return s.Synced && s.LastError == ""
	})
}

// A farm ban lifted on one host alone stays lifted there through a restart (the
// catch-up would apply it again), until the farm's ban is over: a new decision of the
// farm for the address, after it, applies there again.
func TestAnUnbanHereOnlySurvivesARestart(t *testing.T) {
	c, hs := threeHosts(t, time.Hour)
	x := netip.MustParseAddr("203.0.113.24")
	hs[0].banByHand(x)
	eventually(t, "every host holds x", heldBy(hs, x))
	if _, err := hs[1].m.UnbanHere(context.Background(), jail, actions.Host(x)); err != nil {
		t.Fatal(err)
	}
	b := hs[1]
	b.stop()
	b = startHost(t, "b", append([]string{c.URL(1)}, c.URLs()...), filepath.Dir(b.db), time.Hour)
	eventually(t, "b, restarted, catches up", func() bool { return b.f.Status().Synced })
	if _, ok := b.ban(x); ok {
		t.Fatal("the ban lifted on b alone came back at its restart")
	}
	if n := b.m.LocallyLifted(); n != 1 {
		t.Errorf("b remembers %d bans lifted here only, want 1", n)
	}
	// The farm lifts x, then bans it anew: the new ban is b's too.
	if _, err := hs[0].m.Unban(context.Background(), jail, actions.Host(x)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the farm's unban reaches c", heldByNone([]*host{hs[2]}, x))
	eventually(t, "b forgets its local unban once the farm's ban is over", func() bool { return b.m.LocallyLifted() == 0 })
	hs[0].banByHand(x)
	eventually(t, "the farm's new ban reaches b", heldBy([]*host{b, hs[2]}, x))
}

// A farm-wide unban forgets the address's failures in the farm, as an unban does on one
// host: one new failure after it does not ban again; maxretry new ones do.
func TestAnUnbanForgetsTheFailuresFarmWide(t *testing.T) {
	c, hs := threeHosts(t, time.Hour)
	x := netip.MustParseAddr("203.0.113.25")
	// Two failures on c: in the farm's count, under maxretry (5).
	hs[2].fail(x, 2)
	js := c.JetStream()
	subject := "logban.test.fail.sasl.203-0-113-25"
	stored := func() int {
		s, err := js.Stream(context.Background(), "test_fail_sasl")
		if err != nil {
			return -1
		}
		info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(subject))
		if err != nil {
			return -1
		}
		return int(info.State.Subjects[subject])
	}
	eventually(t, "c's two failures are the farm's", func() bool { return stored() == 2 })
	hs[0].banByHand(x)
	eventually(t, "every host holds x", heldBy(hs, x))
	if _, err := hs[0].m.Unban(context.Background(), jail, actions.Host(x)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the unban reaches every host", heldByNone(hs, x))
	eventually(t, "the farm forgets x's failures", func() bool { return stored() == 0 })
	hs[1].fail(x, 3)
	eventually(t, "b's three new failures are the farm's", func() bool { return stored() == 3 })
	for _, h := range hs {
		if _, ok := h.ban(x); ok {
			t.Fatalf("%s banned x again at its 3rd failure after the unban", h.name)
		}
	}
	hs[1].fail(x, 2)
	eventually(t, "the 5th failure after the unban bans x", heldBy(hs, x))
}

// Two hosts decide one ban; the one that publishes second finds the farm's decision
// there: it counts the race as lost, not as decided, and holds the farm's decision, the
// first host's.
func TestAHostThatLosesTheRaceTakesTheFarmsDecision(t *testing.T) {
	_, hs := threeHosts(t, time.Hour)
	a, b := hs[0], hs[1]
	x := netip.MustParseAddr("203.0.113.26")
	b.stopFarm() // b decides while it does not hear the farm
	a.banByHand(x)
	eventually(t, "a's ban is the farm's", func() bool { return a.f.Status().Decided == 1 })
	b.banByHand(x)
	b.startFarm()
	eventually(t, "b finds a's decision first", func() bool {
		r, ok := b.ban(x)
		return ok && r.By == "a" && b.f.Status().Lost == 1
	})
	if s := b.f.Status(); s.Decided != 0 {
		t.Errorf("b counts %d bans as decided here, want 0 (it lost the race)", s.Decided)
	}
}

// inFlight is the answer of a replicated stream to a compare-and-set while another write
// to the key is in flight (10164), as nats.go's kv.Create reports it.
var inFlight = &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequenceConstant, Description: "wrong last sequence"}

// partitionedJS answers the first writes to the bans bucket as a leader without quorum
// does after a lost answer: "in flight", storing nothing.
type partitionedJS struct {
	jetstream.JetStream
	faults *atomic.Int64
}

type failedFuture struct {
	msg *nats.Msg
	err chan error
}

func (f failedFuture) Ok() <-chan *jetstream.PubAck { return nil }
func (f failedFuture) Err() <-chan error            { return f.err }
func (f failedFuture) Msg() *nats.Msg               { return f.msg }

func (p partitionedJS) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if strings.HasPrefix(m.Subject, "$KV.test_bans.") && p.faults.Add(-1) >= 0 {
		err := make(chan error, 1)
		err <- inFlight
		return failedFuture{m, err}, nil
	}
	return p.JetStream.PublishMsgAsync(m, opts...)
}

type partitionedKV struct {
	jetstream.KeyValue
	faults *atomic.Int64
}

func (p partitionedKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	if p.faults.Add(-1) >= 0 {
		return 0, fmt.Errorf("%w: %w", inFlight, jetstream.ErrKeyExists)
	}
	return p.KeyValue.Create(ctx, key, value, opts...)
}

// lostAnswerJS writes the first bans to the bucket, but answers them "in flight", as a
// leader does whose answer to a write it stored was lost.
type lostAnswerJS struct {
	jetstream.JetStream
	faults *atomic.Int64
}

func (l lostAnswerJS) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	fut, err := l.JetStream.PublishMsgAsync(m, opts...)
	if err != nil || !strings.HasPrefix(m.Subject, "$KV.test_bans.") || l.faults.Add(-1) < 0 {
		return fut, err
	}
	select {
	case <-fut.Ok():
	case err := <-fut.Err():
		return nil, err
	}
	answer := make(chan error, 1)
	answer <- inFlight
	return failedFuture{m, answer}, nil
}

// TestABanWhoseAnswerWasLostIsDecidedOnce writes a's ban to the farm but answers it "in
// flight": the watch shows a its own ban, the outbox drops it, and a counts it decided,
// once, and lost to no other host.
func TestABanWhoseAnswerWasLostIsDecidedOnce(t *testing.T) {
	_, hs := threeHosts(t, time.Hour)
	a := hs[0]
	var faults atomic.Int64
	a.stopFarm()
	farm.Fault(a.f, func(js jetstream.JetStream, kv jetstream.KeyValue) (jetstream.JetStream, jetstream.KeyValue) {
		return lostAnswerJS{js, &faults}, kv
	})
	faults.Store(1)
	a.startFarm()
	eventually(t, "a is back in the farm", func() bool { s := a.f.Status(); return s.State == "connected" && s.Synced })
	w := netip.MustParseAddr("203.0.113.27")
	a.fail(w, 5)
	eventually(t, "every host holds w", heldBy(hs, w))
	eventually(t, "a's outbox drains", func() bool { return a.f.Status().Outbox == 0 })
	if s := a.f.Status(); s.Decided != 1 || s.Lost != 0 {
		t.Errorf("a decided %d and lost %d races; want 1 and 0: the ban was its own", s.Decided, s.Lost)
	}
}

// answerInFlight rejoins h to the farm with its next n writes to the bans bucket
// answered as partitionedJS and partitionedKV do, and returns the count of those left.
func answerInFlight(t *testing.T, h *host, n int64) *atomic.Int64 {
	t.Helper()
	var faults atomic.Int64
	h.stopFarm()
	farm.Fault(h.f, func(js jetstream.JetStream, kv jetstream.KeyValue) (jetstream.JetStream, jetstream.KeyValue) {
		return partitionedJS{js, &faults}, partitionedKV{kv, &faults}
	})
	faults.Store(n)
	h.startFarm()
	eventually(t, h.name+" is back in the farm", func() bool { s := h.f.Status(); return s.State == "connected" && s.Synced })
	return &faults
}

// TestABanAnsweredInFlightStaysInTheOutbox performs what lost a ban in a partition run:
// the servers answer this host's ban with "a write of the key is in flight", which
// kv.Create reports as "key exists", while the bucket holds nothing. The ban stays in
// the outbox until the farm is seen to hold it, then reaches every host.
func TestABanAnsweredInFlightStaysInTheOutbox(t *testing.T) {
	_, hs := threeHosts(t, time.Hour)
	a := hs[0]
	faults := answerInFlight(t, a, 6)
	w := netip.MustParseAddr("203.0.113.21")
	a.fail(w, 5)
	eventually(t, "the farm answered a's ban in flight twice", func() bool { return faults.Load() <= 4 })
	eventually(t, "every host holds w", heldBy(hs, w))
	eventually(t, "a's outbox drains", func() bool { return a.f.Status().Outbox == 0 })
	if s := a.f.Status(); s.Lost != 0 || s.Decided != 1 {
		t.Errorf("a decided %d and lost %d races; want 1 and 0: the ban was its own", s.Decided, s.Lost)
	}
}

// TestALostRaceDoesNotBringBackABanLiftedMeanwhile performs a resurrection: a's ban is
// answered "in flight" while b bans the same address, which every host then holds as
// b's; an unban on b lifts it everywhere, a too; and once a's writes go through again,
// its outbox must not publish the ban the farm held and lifted meanwhile.
func TestALostRaceDoesNotBringBackABanLiftedMeanwhile(t *testing.T) {
	_, hs := threeHosts(t, time.Hour)
	a, b := hs[0], hs[1]
	faults := answerInFlight(t, a, 1<<30)
	w := netip.MustParseAddr("203.0.113.22")
	a.fail(w, 5)
	eventually(t, "a's ban answered in flight", func() bool { return faults.Load() < 1<<30 && a.f.Status().Outbox == 1 })
	b.banByHand(w)
	eventually(t, "every host holds w", heldBy(hs, w))
	if _, err := b.m.Unban(context.Background(), jail, actions.Host(w)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b and c lift w", heldByNone(hs[1:], w))
	faults.Store(0)
	noneHoldsAfterNextBan(t, hs, a, w, netip.MustParseAddr("203.0.113.23"), "a's outbox brought back the ban lifted on b")
	if s := a.f.Status(); s.Decided != 1 || s.Lost != 1 {
		t.Errorf("a decided %d and lost %d races; want 1 (the mark) and 1 (w, b's)", s.Decided, s.Lost)
	}
}

// TestAnUnbanWhileAHostWasAwayLiftsItsWaitingBan bans an address on a while a is out of
// the farm, and on b by hand, and lifts b's ban: when a comes back, the farm's first
// delivery holds only the unban, and a's waiting ban, decided before the ban lifted, is
// lifted with it rather than published.
func TestAnUnbanWhileAHostWasAwayLiftsItsWaitingBan(t *testing.T) {
	_, hs := threeHosts(t, time.Hour)
	a, b := hs[0], hs[1]
	a.stopFarm()
	w := netip.MustParseAddr("203.0.113.24")
	a.banByHand(w)
	if _, ok := a.ban(w); !ok || a.f.Status().Outbox != 1 {
		t.Fatalf("a, out of the farm, did not ban w and keep the ban in its outbox (outbox %d)", a.f.Status().Outbox)
	}
	b.banByHand(w)
	eventually(t, "b and c hold w", heldBy(hs[1:], w))
	if _, err := b.m.Unban(context.Background(), jail, actions.Host(w)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b and c lift w", heldByNone(hs[1:], w))
	a.startFarm()
	noneHoldsAfterNextBan(t, hs, a, w, netip.MustParseAddr("203.0.113.25"), "a published the ban b lifted while a was away")
}

// noneHoldsAfterNextBan waits for a's outbox to drain, then bans mark on a by hand until
// every host holds it: a's writes reach every host in order, so whatever a published
// before has too. It fails the test, saying why, for each host that holds w.
func noneHoldsAfterNextBan(t *testing.T, hs []*host, a *host, w, mark netip.Addr, why string) {
	t.Helper()
	eventually(t, a.name+"'s outbox drains", func() bool { return a.f.Status().Outbox == 0 })
	a.banByHand(mark)
	eventually(t, "every host holds "+a.name+"'s next ban", heldBy(hs, mark))
	for _, h := range hs {
		if _, ok := h.ban(w); ok {
			t.Errorf("%s holds %s: %s", h.name, w, why)
		}
	}
}

// TestAnOldUnbanDoesNotLiftANewerDecision bans an address on b and lifts it there, which
// a sees; then a, out of the farm a moment, bans it again by hand. When a comes back, the
// farm's first delivery still holds the old unban: it lifted a ban a had seen, not a's
// new one, which must reach every host.
func TestAnOldUnbanDoesNotLiftANewerDecision(t *testing.T) {
	_, hs := threeHosts(t, time.Hour)
	a, b := hs[0], hs[1]
	x := netip.MustParseAddr("203.0.113.26")
	b.banByHand(x)
	eventually(t, "every host holds x", heldBy(hs, x))
	if _, err := b.m.Unban(context.Background(), jail, actions.Host(x)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "no host holds x", heldByNone(hs, x))
	a.stopFarm()
	a.banByHand(x)
	a.startFarm()
	eventually(t, "a's outbox drains", func() bool { return a.f.Status().Outbox == 0 })
	eventually(t, "every host holds a's new ban of x", heldBy(hs, x))
}

// TestChangedSettingsReachTheFarm changes maxretry on the hosts one by one, as reloads
// do: while they disagree, each says so, naming who says what and which settings count
// (the stream's); once all agree, the farm counts with the new settings, the warning is
// gone, and a ban's reason names the count that decided it.
func TestChangedSettingsReachTheFarm(t *testing.T) {
	_, hs := threeHosts(t, time.Hour)
	a, c := hs[0], hs[2]
	three := []farm.Jail{{Name: jail, Mode: config.FarmCount, MaxRetry: 3, FindTime: 10 * time.Minute}}
	for _, h := range hs[:2] {
		h.f.SetJails(three)
	}
	eventually(t, "a says the hosts disagree, naming c, and that the stream's settings count", func() bool {
		d := a.f.Status().Drift
		return len(d) == 1 && strings.Contains(d[0], "c: maxretry 5 and findtime 10m0s") &&
			strings.Contains(d[0], "this host (a), b: maxretry 3") && strings.Contains(d[0], "the farm counts with maxretry 5 and findtime 10m0s")
	})
	x := netip.MustParseAddr("203.0.113.31")
	a.fail(x, 3)
	eventually(t, "a's three failures shared", func() bool { return a.f.Status().FailuresShared == 3 })

	c.f.SetJails(three)
	eventually(t, "no host warns once all agree", func() bool {
		for _, h := range hs {
			if len(h.f.Status().Drift) > 0 {
				return false
			}
		}
		return true
	})
	if _, ok := a.ban(x); ok {
		t.Fatal("x banned at 3 failures while the farm counted to 5")
	}
	y := netip.MustParseAddr("203.0.113.32")
	a.fail(y, 2)
	c.fail(y, 1)
	eventually(t, "every host bans y at the farm's new count", heldBy(hs, y))
	r, _ := a.ban(y)
	if r.Why != "3 failures across the farm" || r.Failures != 3 {
		t.Errorf("y's ban says %q, %d failures; want the farm's count, 3", r.Why, r.Failures)
	}
}

// laggingKV delivers the bans bucket's watch late, as a watch served by a busy or
// catching-up server does.
type laggingKV struct {
	jetstream.KeyValue
	lag time.Duration
}

type laggingWatcher struct {
	jetstream.KeyWatcher
	out chan jetstream.KeyValueEntry
}

func (l laggingWatcher) Updates() <-chan jetstream.KeyValueEntry { return l.out }

func (l laggingKV) WatchAll(ctx context.Context, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	w, err := l.KeyValue.WatchAll(ctx, opts...)
	if err != nil {
		return nil, err
	}
	out := make(chan jetstream.KeyValueEntry, 1024)
	go func() {
		defer close(out)
		for e := range w.Updates() {
			if e != nil {
				time.Sleep(l.lag)
			}
			out <- e
		}
	}()
	return laggingWatcher{w, out}, nil
}

// TestABanLiftedHereIsNotAppliedAgainByALateWatch bans by hand and lifts the ban at once
// on a host whose watch lags behind its own writes: the watch delivers the ban after the
// unban was published, and the host must not apply it again (ban, unban, then ban and
// unban again the address it banned and lifted by hand).
func TestABanLiftedHereIsNotAppliedAgainByALateWatch(t *testing.T) {
	_, hs := threeHosts(t, time.Hour)
	a := hs[0]
	a.stopFarm()
	const lag = 300 * time.Millisecond
	farm.Fault(a.f, func(js jetstream.JetStream, kv jetstream.KeyValue) (jetstream.JetStream, jetstream.KeyValue) {
		return js, laggingKV{kv, lag}
	})
	a.startFarm()
	eventually(t, "a is back in the farm", func() bool { s := a.f.Status(); return s.State == "connected" && s.Synced })
	x := netip.MustParseAddr("203.0.113.41")
	a.banByHand(x)
	eventually(t, "the farm holds a's ban", heldBy(hs[1:], x))
	if _, err := a.m.Unban(context.Background(), jail, actions.Host(x)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "no host holds x", heldByNone(hs, x))
	time.Sleep(4 * lag) // the late watch's ban and unban of x are delivered now
	if c, err := a.m.Counts(jail); err != nil || c.TotalBanned != 1 {
		t.Errorf("a banned x %d times (%v); want once: the late watch's ban was applied again", c.TotalBanned, err)
	}
}

// unbanFirstTarget is a host's manager on which, the first time the farm hands it a ban
// of addr, an operator lifts addr by hand first: the unban lands between the watch's
// look at the outbox and the manager's lock. It remembers what the manager applied.
type unbanFirstTarget struct {
	*jails.Manager
	addr netip.Addr
	once sync.Once

	mu      sync.Mutex
	applied []actions.Ban
}

func (u *unbanFirstTarget) Adopt(ctx context.Context, records []jails.Record) []actions.Ban {
	for _, r := range records {
		if r.Addr == u.addr {
			u.once.Do(func() { u.Manager.Unban(ctx, jail, actions.Host(u.addr)) }) //nolint:errcheck // banned here: it is this host's ban
		}
	}
	fresh := u.Manager.Adopt(ctx, records)
	u.mu.Lock()
	u.applied = append(u.applied, fresh...)
	u.mu.Unlock()
	return fresh
}

// A ban lifted by hand while the farm's watch hands over that same ban (this host's
// own, coming back from the farm) is not applied again: the farm's look at the outbox
// came before the unban was queued, and the manager looks again under its lock.
// (TestAFarmThroughAPartition's ban made and lifted by hand at once on one host meets
// this race: the ban would come back until the unban's own return lifted it.)
func TestABanLiftedByHandWhileItComesBackIsNotAppliedAgain(t *testing.T) {
	_, hs := threeHosts(t, time.Hour)
	a := hs[0]
	x := netip.MustParseAddr("203.0.113.40")
	a.stopFarm()
	target := &unbanFirstTarget{Manager: a.m, addr: x}
	a.target = target
	a.startFarm()

	a.banByHand(x)
	eventually(t, "the farm has x and its unban", func() bool { return a.f.Status().Outbox == 0 && a.f.Status().Decided == 1 })
	eventually(t, "no host holds x", heldByNone(hs, x))
	target.mu.Lock()
	defer target.mu.Unlock()
	if len(target.applied) > 0 {
		t.Errorf("a applied %v again after lifting it by hand", addrs(target.applied))
	}
}
