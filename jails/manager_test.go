package jails

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"math"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/logban/logban/actions"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// recorder is an action that writes what it is asked to do as text.
type recorder struct {
	mu    sync.Mutex
	calls []string
	fail  bool
}

func (r *recorder) Start(context.Context) error { return nil }
func (r *recorder) Stop(context.Context) error  { return nil }
func (r *recorder) Ban(_ context.Context, b actions.Ban) error {
	return r.record("ban", b)
}
func (r *recorder) Unban(_ context.Context, b actions.Ban) error {
	return r.record("unban", b)
}
func (r *recorder) record(op string, b actions.Ban) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf("%s %s %s", op, b.Jail, b.Target()))
	if r.fail {
		return errors.New("backend down")
	}
	return nil
}
func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.calls, "\n")
}

// sharedRecorder is a recorder whose kernel state belongs to the address, like a route.
type sharedRecorder struct{ recorder }

func (*sharedRecorder) SharedAcrossJails() {}

func newManager(clock Clock) *Manager {
	return NewManager(clock, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// ban bans t's address and returns the ban, if it is new.
func ban(m *Manager, t Ticket) (actions.Ban, bool) {
	bans := m.BanAll(context.Background(), []Ticket{t})
	if len(bans) == 0 {
		return actions.Ban{}, false
	}
	return bans[0], true
}

// settle waits until every action has made the calls handed to it (failed calls
// waiting for a retry aside).
func settle(t testing.TB, m *Manager) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		m.mu.Lock()
		idle := true
		for _, q := range m.queues {
			idle = idle && q.idle()
		}
		m.mu.Unlock()
		if idle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("actions did not settle in 10 s")
		}
	}
}

var (
	a1 = netip.MustParseAddr("192.0.2.1")
	a2 = netip.MustParseAddr("2001:db8::2")
)

func TestBanExpiresOnTheClock(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: t0}
	m := newManager(clock)
	rec := &recorder{}
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: 10 * time.Minute}, []NamedAction{{"rec", rec}})

	b, isNew := ban(m, Ticket{Jail: "sasl", Addr: a1, Failures: 3})
	if !isNew || !b.Expires.Equal(t0.Add(10*time.Minute)) || b.Failures != 3 {
		t.Fatalf("ban: %+v %v", b, isNew)
	}
	if _, isNew := ban(m, Ticket{Jail: "sasl", Addr: a1}); isNew {
		t.Error("second ban of a banned address is new")
	}
	clock.Advance(10*time.Minute - time.Nanosecond)
	if got := m.ExpireDue(ctx); len(got) != 0 {
		t.Fatalf("expired early: %v", got)
	}
	clock.Advance(time.Nanosecond)
	if got := m.ExpireDue(ctx); len(got) != 1 || got[0].Addr != a1 {
		t.Fatalf("ExpireDue = %v", got)
	}
	settle(t, m)
	if want := "ban sasl 192.0.2.1\nunban sasl 192.0.2.1"; rec.String() != want {
		t.Errorf("calls:\n%s\nwant:\n%s", rec, want)
	}
	c, _ := m.Counts("sasl")
	if c.CurrentlyBanned != 0 || c.TotalBanned != 1 {
		t.Errorf("counts %+v", c)
	}
}

func TestPermanentBanNeverExpires(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: t0}
	m := newManager(clock)
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: -1}, nil)
	b, _ := ban(m, Ticket{Jail: "sasl", Addr: a1})
	if !b.Permanent() {
		t.Fatalf("ban %+v is not permanent", b)
	}
	clock.Advance(100 * 365 * 24 * time.Hour)
	if got := m.ExpireDue(ctx); len(got) != 0 {
		t.Errorf("permanent ban expired: %v", got)
	}
}

func TestUnban(t *testing.T) {
	ctx := context.Background()
	m := newManager(&fakeClock{now: t0})
	rec := &recorder{}
	m.SetJail(ctx, "a", BanPolicy{BanTime: time.Hour}, []NamedAction{{"rec", rec}})
	m.SetJail(ctx, "b", BanPolicy{BanTime: time.Hour}, []NamedAction{{"rec", rec}})
	ban(m, Ticket{Jail: "a", Addr: a1})
	ban(m, Ticket{Jail: "b", Addr: a1})
	ban(m, Ticket{Jail: "b", Addr: a2})

	if _, err := m.Unban(ctx, "nope", actions.Host(a1)); !errors.Is(err, ErrUnknownJail) {
		t.Errorf("unknown jail: %v", err)
	}
	if got, err := m.Unban(ctx, "b", actions.Host(a2)); err != nil || len(got) != 1 {
		t.Errorf("Unban(b, a2) = %v, %v", got, err)
	}
	if got, err := m.Unban(ctx, "", actions.Host(netip.MustParseAddr("::ffff:192.0.2.1"))); err != nil || len(got) != 2 {
		t.Errorf("Unban(all, a1) = %v, %v", got, err)
	}
	if _, err := m.Unban(ctx, "", actions.Host(a1)); !errors.Is(err, ErrNotBanned) {
		t.Errorf("second unban: %v, want ErrNotBanned", err)
	}
	if len(m.Bans("")) != 0 {
		t.Errorf("bans left: %v", m.Bans(""))
	}
	settle(t, m)
	want := "ban a 192.0.2.1\nban b 192.0.2.1\nban b 2001:db8::2\nunban b 2001:db8::2\nunban a 192.0.2.1\nunban b 192.0.2.1"
	if rec.String() != want {
		t.Errorf("calls:\n%s\nwant:\n%s", rec, want)
	}
}

func TestSharedActionHoldsUntilLastJailLetsGo(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: t0}
	m := newManager(clock)
	route := &sharedRecorder{}
	m.SetJail(ctx, "short", BanPolicy{BanTime: time.Minute}, []NamedAction{{"route", route}})
	m.SetJail(ctx, "long", BanPolicy{BanTime: time.Hour}, []NamedAction{{"route", route}})
	ban(m, Ticket{Jail: "short", Addr: a1})
	ban(m, Ticket{Jail: "long", Addr: a1})
	clock.Advance(time.Minute)
	m.ExpireDue(ctx)
	settle(t, m)
	if want := "ban short 192.0.2.1"; route.String() != want {
		t.Fatalf("after first expiry:\n%s\nwant:\n%s", route, want)
	}
	clock.Advance(time.Hour)
	m.ExpireDue(ctx)
	settle(t, m)
	if want := "ban short 192.0.2.1\nunban long 192.0.2.1"; route.String() != want {
		t.Errorf("after both:\n%s\nwant:\n%s", route, want)
	}
}

func TestFailingActionDoesNotStopTheOthers(t *testing.T) {
	ctx := context.Background()
	m := newManager(&fakeClock{now: t0})
	broken, good := &recorder{fail: true}, &recorder{}
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"broken", broken}, {"good", good}})
	if _, isNew := ban(m, Ticket{Jail: "sasl", Addr: a1}); !isNew {
		t.Fatal("ban not new")
	}
	settle(t, m)
	if good.String() != "ban sasl 192.0.2.1" {
		t.Errorf("good action: %q", good)
	}
	if len(m.Bans("sasl")) != 1 {
		t.Error("ban not recorded")
	}
	if e := m.ActionErrors(); e["broken"] != 1 || e["good"] != 0 {
		t.Errorf("errors %v", e)
	}
}

func TestSetJailMovesBansBetweenActions(t *testing.T) {
	ctx := context.Background()
	m := newManager(&fakeClock{now: t0})
	oldAct, newAct, kept := &recorder{}, &recorder{}, &recorder{}
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"old", oldAct}, {"kept", kept}})
	ban(m, Ticket{Jail: "sasl", Addr: a1})
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: 2 * time.Hour}, []NamedAction{{"kept", kept}, {"new", newAct}})
	settle(t, m)
	// SetJail returns once the action it retired has made its last calls.
	if oldAct.String() != "ban sasl 192.0.2.1\nunban sasl 192.0.2.1" || newAct.String() != "ban sasl 192.0.2.1" || kept.String() != "ban sasl 192.0.2.1" {
		t.Errorf("old %q new %q kept %q", oldAct, newAct, kept)
	}
	if bans := m.Bans("sasl"); len(bans) != 1 {
		t.Errorf("bans %v", bans)
	}
	m.RemoveJail(ctx, "sasl")
	if !strings.HasSuffix(newAct.String(), "unban sasl 192.0.2.1") || len(m.Bans("")) != 0 {
		t.Errorf("RemoveJail left %v, new %q", m.Bans(""), newAct)
	}
	if q := m.Queues(); len(q) != 0 {
		t.Errorf("queues of actions no jail uses: %v", q)
	}
}

func TestRunLiftsBansWhenTheyExpire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		m := newManager(SystemClock{}) // the bubble's fake time
		defer m.Close(ctx)
		rec := &recorder{}
		m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Minute}, []NamedAction{{"rec", rec}})
		m.SetJail(ctx, "forever", BanPolicy{BanTime: -1}, []NamedAction{{"rec", rec}})
		done := make(chan error)
		go func() { done <- m.Run(ctx) }()
		ban(m, Ticket{Jail: "forever", Addr: a2})
		time.Sleep(time.Second)
		ban(m, Ticket{Jail: "sasl", Addr: a1})
		time.Sleep(time.Minute - time.Nanosecond)
		synctest.Wait()
		if strings.Contains(rec.String(), "unban") {
			t.Fatalf("lifted early:\n%s", rec)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if want := "ban forever 2001:db8::2\nban sasl 192.0.2.1\nunban sasl 192.0.2.1"; rec.String() != want {
			t.Errorf("calls:\n%s\nwant:\n%s", rec, want)
		}
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

func (r *recorder) setFail(fail bool) { r.mu.Lock(); r.fail = fail; r.mu.Unlock() }

func TestFailedCallsAreRetriedWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		m := newManager(SystemClock{})
		defer m.Close(ctx)
		down, good := &recorder{fail: true}, &recorder{}
		m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"down", down}, {"good", good}})
		ban(m, Ticket{Jail: "sasl", Addr: a1})
		synctest.Wait()
		if m.Pending("sasl") != 1 || len(m.Bans("sasl")) != 1 || good.String() != "ban sasl 192.0.2.1" {
			t.Fatalf("pending %d, bans %v, good %q", m.Pending("sasl"), m.Bans("sasl"), good)
		}
		attempts := func() int { return strings.Count(down.String(), "ban sasl") }

		time.Sleep(RetryMin - time.Millisecond)
		synctest.Wait()
		if attempts() != 1 {
			t.Fatalf("retried before the backoff: %d attempts", attempts())
		}
		time.Sleep(time.Millisecond) // 1s: second attempt, fails; next in 2s
		synctest.Wait()
		time.Sleep(2*RetryMin - time.Millisecond)
		synctest.Wait()
		if attempts() != 2 {
			t.Fatalf("%d attempts, want 2 (backoff doubles)", attempts())
		}
		down.setFail(false) // the backend recovers
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if attempts() != 3 || m.Pending("sasl") != 0 {
			t.Fatalf("after recovery: %d attempts, %d pending", attempts(), m.Pending("sasl"))
		}
		if e := m.ActionErrors(); e["down"] != 2 {
			t.Errorf("errors %v, want 2 for down", e)
		}
	})
}

func TestUnbanWhileTheActionIsDownIsRetriedAsUnban(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		m := newManager(SystemClock{})
		defer m.Close(ctx)
		down := &recorder{fail: true}
		m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"down", down}})
		ban(m, Ticket{Jail: "sasl", Addr: a1})
		m.Unban(ctx, "sasl", actions.Host(a1))
		synctest.Wait()
		down.mu.Lock()
		down.fail = false
		down.calls = nil
		down.mu.Unlock()
		time.Sleep(RetryMax)
		synctest.Wait()
		if got := down.String(); got != "unban sasl 192.0.2.1" {
			t.Errorf("retried %q, want only the unban", got)
		}
	})
}

// A shared action's failed ban for one jail is replaced by the unban another jail asks
// for: the address, not the jail, is what the action holds.
func TestSharedActionRetriesByAddress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		m := newManager(SystemClock{})
		defer m.Close(ctx)
		route := &sharedRecorder{recorder{fail: true}}
		m.SetJail(ctx, "a", BanPolicy{BanTime: time.Hour}, []NamedAction{{"route", route}})
		m.SetJail(ctx, "b", BanPolicy{BanTime: time.Hour}, []NamedAction{{"route", route}})
		ban(m, Ticket{Jail: "a", Addr: a1}) // the route fails
		ban(m, Ticket{Jail: "b", Addr: a1})
		m.Unban(ctx, "a", actions.Host(a1))
		m.Unban(ctx, "b", actions.Host(a1)) // the last jail lets go: unban, fails too
		synctest.Wait()
		route.setFail(false)
		route.mu.Lock()
		route.calls = nil
		route.mu.Unlock()
		time.Sleep(RetryMax)
		synctest.Wait()
		if got := route.String(); got != "unban b 192.0.2.1" {
			t.Errorf("retried %q, want only the unban", got)
		}
	})
}

func TestRetriesOfARemovedActionAreDropped(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: t0}
	m := newManager(clock)
	down := &recorder{fail: true}
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"down", down}})
	ban(m, Ticket{Jail: "sasl", Addr: a1})
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, nil)
	if n := m.Pending("sasl"); n != 0 {
		t.Errorf("%d retries pending for an action no jail uses", n)
	}
}

// gate is an action whose calls wait until it is opened, as a hung webhook does.
type gate struct {
	recorder
	open chan struct{}
}

func newGate() *gate { return &gate{open: make(chan struct{})} }

func (g *gate) Ban(ctx context.Context, b actions.Ban) error {
	select {
	case <-g.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.recorder.Ban(ctx, b)
}

func (g *gate) Unban(ctx context.Context, b actions.Ban) error {
	select {
	case <-g.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.recorder.Unban(ctx, b)
}

// A hung action holds up its own calls only: bans are decided, and the jail's other
// actions make theirs, while it waits.
func TestAHungActionHoldsUpOnlyItself(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		m := newManager(SystemClock{})
		defer m.Close(ctx)
		hung, route := newGate(), &sharedRecorder{}
		m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"hung", hung}, {"route", route}})
		m.SetJail(ctx, "other", BanPolicy{BanTime: time.Hour}, []NamedAction{{"route", route}})
		ban(m, Ticket{Jail: "sasl", Addr: a1})
		ban(m, Ticket{Jail: "other", Addr: a2})
		m.Unban(ctx, "sasl", actions.Host(a1))
		synctest.Wait() // every goroutine blocked: the hung action alone waits
		if want := "ban sasl 192.0.2.1\nban other 2001:db8::2\nunban sasl 192.0.2.1"; route.String() != want {
			t.Errorf("route:\n%s\nwant:\n%s", route, want)
		}
		if q := m.Queues()["hung"]; q.Queued != 2 {
			t.Errorf("hung action's queue %+v, want its 2 calls waiting", q)
		}
		close(hung.open)
		synctest.Wait()
		if want := "ban sasl 192.0.2.1\nunban sasl 192.0.2.1"; hung.String() != want {
			t.Errorf("hung action once free:\n%s\nwant:\n%s", hung, want)
		}
	})
}

// When an action's queue is full, further calls wait in its overflow, the last per
// address kept: no ban is lost, and the action ends as the manager last asked.
func TestAFullQueueOverflowsAndLosesNoBan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		m := newManager(SystemClock{})
		defer m.Close(ctx)
		m.queueCap = 4
		slow := newGate()
		m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"slow", slow}})
		var addrs []netip.Addr
		for i := range 20 {
			a := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
			addrs = append(addrs, a)
			ban(m, Ticket{Jail: "sasl", Addr: a})
		}
		for _, a := range addrs[10:15] { // unbanned while their bans wait in the overflow
			m.Unban(ctx, "sasl", actions.Host(a))
		}
		synctest.Wait()
		q := m.Queues()["slow"]
		if q.Overflowed == 0 {
			t.Fatalf("queue %+v: nothing overflowed", q)
		}
		close(slow.open)
		synctest.Wait()
		held := map[string]bool{}
		for _, c := range strings.Split(slow.String(), "\n") {
			op, addr, _ := strings.Cut(strings.Replace(c, " sasl ", " ", 1), " ")
			held[addr] = op == "ban"
		}
		for i, a := range addrs {
			if want := i < 10 || i >= 15; held[a.String()] != want {
				t.Errorf("%v held %v, want %v", a, held[a.String()], want)
			}
		}
		if q := m.Queues()["slow"]; q.Queued != 0 {
			t.Errorf("queue %+v once free, want empty", q)
		}
	})
}

// Close lets the actions make their calls until its context ends, then abandons the
// rest and says how many.
func TestCloseAbandonsWhatAHungActionHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newManager(SystemClock{})
		hung, rec := newGate(), &recorder{}
		m.SetJail(t.Context(), "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"hung", hung}, {"rec", rec}})
		ban(m, Ticket{Jail: "sasl", Addr: a1})
		ban(m, Ticket{Jail: "sasl", Addr: a2})
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if left := m.Close(ctx); left != 2 {
			t.Errorf("Close left %d calls, want the hung action's 2", left)
		}
		if rec.String() != "ban sasl 192.0.2.1\nban sasl 2001:db8::2" {
			t.Errorf("the other action made %q", rec)
		}
		if bans := m.BanAll(t.Context(), []Ticket{{Jail: "sasl", Addr: netip.MustParseAddr("198.51.100.9")}}); len(bans) != 1 {
			t.Errorf("after Close, BanAll = %v; a ban is still decided and recorded", bans)
		}
	})
}

// each yields the records, as a ledger's cursor would.
func each(records []Record) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		for _, r := range records {
			if !yield(r, nil) {
				return
			}
		}
	}
}

func TestRestore(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: t0}
	m := newManager(clock)
	rec := &recorder{}
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"rec", rec}})
	a3 := netip.MustParseAddr("198.51.100.3")
	records := []Record{
		{Ban: actions.Ban{Jail: "sasl", Addr: a1, BannedAt: t0.Add(-30 * time.Minute), Expires: t0.Add(30 * time.Minute), Failures: 3}, Count: 1},
		{Ban: actions.Ban{Jail: "sasl", Addr: a2, BannedAt: t0.Add(-2 * time.Hour), Expires: t0.Add(-time.Hour)}, Count: 2}, // expired while down
		{Ban: actions.Ban{Jail: "sasl", Addr: a3, BannedAt: t0.Add(-48 * time.Hour)}, Count: 1},                             // until unbanned
		{Ban: actions.Ban{Jail: "gone", Addr: a1, BannedAt: t0, Expires: t0.Add(time.Hour)}, Count: 1},                      // jail removed
	}
	ledger := NewMemoryLedger()
	for _, r := range records {
		ledger.SaveBan(ctx, r)
	}
	m.SetLedger(ledger)
	restored, expired, _ := m.Restore(ctx, each(records))
	if restored != 2 || expired != 1 {
		t.Fatalf("restored %d, expired %d; want 2, 1", restored, expired)
	}
	bans := m.Bans("sasl")
	if len(bans) != 2 || bans[0].Addr != a1 || !bans[0].Expires.Equal(t0.Add(30*time.Minute)) || bans[1].Addr != a3 || !bans[1].Permanent() {
		t.Errorf("bans after restore %+v", bans)
	}
	settle(t, m)
	if want := "ban sasl 192.0.2.1\nban sasl 198.51.100.3\nunban sasl 2001:db8::2"; rec.String() != want {
		t.Errorf("calls:\n%s\nwant:\n%s", rec, want)
	}
	if n := len(ledger.Bans()); n != 2 {
		t.Errorf("ledger keeps %d bans, want 2 (expired and removed-jail bans forgotten)", n)
	}
	clock.Advance(30 * time.Minute) // the restored ban ends on time
	if got := m.ExpireDue(ctx); len(got) != 1 || got[0].Addr != a1 {
		t.Errorf("expired %v", got)
	}
}

// An address one jail's ban ended for while the server was down, but another jail still
// bans, keeps its shared route after restore.
func TestRestoreKeepsASharedActionForTheJailStillBanning(t *testing.T) {
	ctx := context.Background()
	m := newManager(&fakeClock{now: t0})
	route := &sharedRecorder{}
	m.SetJail(ctx, "short", BanPolicy{BanTime: time.Minute}, []NamedAction{{"route", route}})
	m.SetJail(ctx, "long", BanPolicy{BanTime: time.Hour}, []NamedAction{{"route", route}})
	m.Restore(ctx, each([]Record{
		{Ban: actions.Ban{Jail: "short", Addr: a1, BannedAt: t0.Add(-time.Hour), Expires: t0.Add(-59 * time.Minute)}},
		{Ban: actions.Ban{Jail: "long", Addr: a1, BannedAt: t0.Add(-time.Minute), Expires: t0.Add(59 * time.Minute)}},
	}))
	settle(t, m)
	if want := "ban long 192.0.2.1"; route.String() != want {
		t.Errorf("calls:\n%s\nwant:\n%s", route, want)
	}
}

func TestRepeatOffendersAreBannedLonger(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: t0}
	m := newManager(clock)
	inc := Increment{Enabled: true, Factor: 1}
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: 10 * time.Minute, Increment: inc}, nil)
	overall := inc
	overall.OverallJails = true
	m.SetJail(ctx, "imap", BanPolicy{BanTime: 10 * time.Minute, Increment: overall}, nil)
	var got []time.Duration
	for range 3 {
		b, _ := ban(m, Ticket{Jail: "sasl", Addr: a1})
		got = append(got, b.Expires.Sub(b.BannedAt))
		m.Unban(ctx, "sasl", actions.Host(a1))
	}
	// The imap jail counts the address's three sasl bans too.
	b, _ := ban(m, Ticket{Jail: "imap", Addr: a1})
	got = append(got, b.Expires.Sub(b.BannedAt))
	want := []time.Duration{10 * time.Minute, 20 * time.Minute, 40 * time.Minute, 80 * time.Minute}
	if !slices.Equal(got, want) {
		t.Errorf("ban lengths %v, want %v", got, want)
	}
}

func TestAStaleExpiryDoesNotLiftALaterBan(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: t0}
	m := newManager(clock)
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, nil)
	ban(m, Ticket{Jail: "sasl", Addr: a1}) // ends at t0+1h
	m.Unban(ctx, "sasl", actions.Host(a1))
	clock.Advance(30 * time.Minute)
	ban(m, Ticket{Jail: "sasl", Addr: a1}) // ends at t0+1h30m
	clock.Advance(30 * time.Minute)
	if got := m.ExpireDue(ctx); len(got) != 0 {
		t.Fatalf("the first ban's expiry lifted the second: %v", got)
	}
	clock.Advance(30 * time.Minute)
	if got := m.ExpireDue(ctx); len(got) != 1 {
		t.Fatalf("the second ban did not end: %v", got)
	}
}

// BenchmarkBanBurst bans 10,000 addresses one at a time through an action that does
// nothing, with a ledger in memory, and waits until the action has made them all: what
// the manager itself costs per ban.
func BenchmarkBanBurst(b *testing.B) {
	ctx := context.Background()
	const n = 10_000
	addrs := make([]netip.Addr, n)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
	}
	for b.Loop() {
		m := newManager(SystemClock{})
		m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"nop", nopAction{}}})
		for _, a := range addrs {
			m.BanAll(ctx, []Ticket{{Jail: "sasl", Addr: a}})
		}
		m.Close(ctx)
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "bans/s")
}

type nopAction struct{}

func (nopAction) Start(context.Context) error              { return nil }
func (nopAction) Stop(context.Context) error               { return nil }
func (nopAction) Ban(context.Context, actions.Ban) error   { return nil }
func (nopAction) Unban(context.Context, actions.Ban) error { return nil }

// eventLog notes, in order, what the ledger and an action were asked.
type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) add(e string) { l.mu.Lock(); l.events = append(l.events, e); l.mu.Unlock() }
func (l *eventLog) take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.Join(l.events, ",")
	l.events = nil
	return s
}

// batchLedger is a MemoryLedger that records whole batches and notes the order of
// recording and applying.
type batchLedger struct {
	*MemoryLedger
	events *eventLog
}

func (l batchLedger) SaveBans(ctx context.Context, rs []Record) error {
	l.events.add(fmt.Sprintf("record %d", len(rs)))
	for _, r := range rs {
		l.MemoryLedger.SaveBan(ctx, r)
	}
	return nil
}

func (l batchLedger) BanCounts(ctx context.Context, jail string, whats []netip.Prefix) (map[netip.Prefix]int, error) {
	l.events.add(fmt.Sprintf("count %d", len(whats)))
	out := map[netip.Prefix]int{}
	for _, a := range whats {
		out[a], _ = l.MemoryLedger.BanCount(ctx, jail, a)
	}
	return out, nil
}

type orderAction struct {
	nopAction
	events *eventLog
}

func (a orderAction) Ban(_ context.Context, b actions.Ban) error {
	a.events.add("apply " + b.Addr.String())
	return nil
}

func TestBanAllRecordsTheBatchBeforeApplying(t *testing.T) {
	ctx := context.Background()
	m := newManager(&fakeClock{now: t0})
	events := &eventLog{}
	m.SetLedger(batchLedger{NewMemoryLedger(), events})
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"a", orderAction{events: events}}})
	ban(m, Ticket{Jail: "sasl", Addr: a2}) // already banned before the batch
	settle(t, m)
	events.take()
	got := m.BanAll(ctx, []Ticket{
		{Jail: "sasl", Addr: a1},
		{Jail: "nope", Addr: a1}, // unknown jail
		{Jail: "sasl", Addr: a1}, // twice in the batch
		{Jail: "sasl", Addr: a2}, // already banned
		{Jail: "sasl", Addr: netip.MustParseAddr("198.51.100.3")},
	})
	if len(got) != 2 {
		t.Fatalf("BanAll = %v, want 2 new bans", got)
	}
	settle(t, m)
	// the history of the batch's addresses read at once, their bans recorded at once
	if got, want := events.take(), "count 2,record 2,apply 192.0.2.1,apply 198.51.100.3"; got != want {
		t.Errorf("events %q, want %q", got, want)
	}
	if c, _ := m.Counts("sasl"); c.CurrentlyBanned != 3 || c.TotalBanned != 3 {
		t.Errorf("counts %+v", c)
	}
}

// batcher is a gate whose calls may also come in batches; it fails for the addresses
// in failing.
type batcher struct {
	gate
	failing map[netip.Addr]bool
}

func (b *batcher) BanBatch(ctx context.Context, bans []actions.Ban) []error {
	return b.batch(ctx, "ban", bans)
}

func (b *batcher) UnbanBatch(ctx context.Context, bans []actions.Ban) []error {
	return b.batch(ctx, "unban", bans)
}

func (b *batcher) batch(ctx context.Context, op string, bans []actions.Ban) []error {
	<-b.open
	var addrs []string
	errs := make([]error, len(bans))
	for i, ban := range bans {
		addrs = append(addrs, ban.Addr.String())
		if b.failing[ban.Addr] {
			errs[i] = errors.New("refused")
		}
	}
	b.mu.Lock()
	b.calls = append(b.calls, op+"-batch "+strings.Join(addrs, ","))
	b.mu.Unlock()
	return errs
}

// Calls waiting together go to a Batcher at once, each run of bans or of unbans in
// order; a call the batch failed, and only it, is retried.
func TestBatcherGetsRunsInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		m := newManager(SystemClock{})
		defer m.Close(ctx)
		a3 := netip.MustParseAddr("198.51.100.3")
		b := &batcher{gate: *newGate(), failing: map[netip.Addr]bool{a3: true}}
		m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"b", b}})
		ban(m, Ticket{Jail: "sasl", Addr: a1}) // taken alone; the worker waits at the gate
		synctest.Wait()
		ban(m, Ticket{Jail: "sasl", Addr: a2})
		ban(m, Ticket{Jail: "sasl", Addr: a3})
		m.Unban(ctx, "sasl", actions.Host(a1))
		m.Unban(ctx, "sasl", actions.Host(a2))
		ban(m, Ticket{Jail: "sasl", Addr: a1})
		close(b.open)
		synctest.Wait()
		want := "ban sasl 192.0.2.1\nban-batch 2001:db8::2,198.51.100.3\nunban-batch 192.0.2.1,2001:db8::2\nban sasl 192.0.2.1"
		if b.String() != want {
			t.Errorf("calls:\n%s\nwant:\n%s", b, want)
		}
		if n := m.Pending("sasl"); n != 1 {
			t.Errorf("%d calls waiting for a retry, want the one refused", n)
		}
		b.mu.Lock()
		b.calls = nil
		b.mu.Unlock()
		delete(b.failing, a3)
		time.Sleep(RetryMin)
		synctest.Wait()
		if got := b.String(); got != "ban sasl 198.51.100.3" || m.Pending("sasl") != 0 {
			t.Errorf("retried %q, %d pending", got, m.Pending("sasl"))
		}
	})
}

// cursorLedger is a MemoryLedger that must not be written while a cursor on it is open,
// as the SQLite store's one connection cannot be.
type cursorLedger struct {
	*MemoryLedger
	t    *testing.T
	open bool
}

func (l *cursorLedger) DeleteBan(ctx context.Context, jail string, addr netip.Prefix) error {
	if l.open {
		l.t.Errorf("DeleteBan(%s, %v) while the records are being read", jail, addr)
	}
	return l.MemoryLedger.DeleteBan(ctx, jail, addr)
}

// Restore reads the records to their end (or their error) before it deletes the ended
// bans' records, and keeps what it restored before an error.
func TestRestoreFromACursor(t *testing.T) {
	ctx := context.Background()
	m := newManager(&fakeClock{now: t0})
	defer m.Close(ctx)
	ledger := &cursorLedger{MemoryLedger: NewMemoryLedger(), t: t}
	m.SetLedger(ledger)
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, nil)
	broken := errors.New("disk I/O error")
	records := func(yield func(Record, error) bool) {
		ledger.open = true
		defer func() { ledger.open = false }()
		for _, r := range []Record{
			{Ban: actions.Ban{Jail: "sasl", Addr: a1, BannedAt: t0, Expires: t0.Add(time.Hour)}},
			{Ban: actions.Ban{Jail: "sasl", Addr: a2, BannedAt: t0.Add(-2 * time.Hour), Expires: t0.Add(-time.Hour)}}, // ended
			{Ban: actions.Ban{Jail: "gone", Addr: a1, BannedAt: t0, Expires: t0.Add(time.Hour)}},                      // jail removed
		} {
			if !yield(r, nil) {
				return
			}
		}
		yield(Record{}, broken)
	}
	restored, ended, err := m.Restore(ctx, records)
	if restored != 1 || ended != 1 || !errors.Is(err, broken) {
		t.Errorf("Restore = %d, %d, %v", restored, ended, err)
	}
}

// An action a jail lets go of (a reload) makes its last calls while bans go on being
// decided; a hung one is abandoned when the wait ends.
func TestLettingGoOfAHungActionHoldsUpNoBan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		m := newManager(SystemClock{})
		defer m.Close(ctx)
		hung, rec := newGate(), &recorder{}
		m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"hung", hung}})
		m.SetJail(ctx, "other", BanPolicy{BanTime: time.Hour}, []NamedAction{{"rec", rec}})
		ban(m, Ticket{Jail: "sasl", Addr: a1}) // the hung action holds it
		drain, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		done := make(chan struct{})
		go func() { m.SetJail(drain, "sasl", BanPolicy{BanTime: time.Hour}, nil); close(done) }()
		synctest.Wait() // SetJail waits for the hung action's last calls
		if !m.mu.TryLock() {
			t.Fatal("SetJail holds the manager while it waits for the action it let go")
		}
		m.mu.Unlock()
		if _, isNew := ban(m, Ticket{Jail: "other", Addr: a2}); !isNew {
			t.Fatal("no ban while an action was let go")
		}
		synctest.Wait()
		if rec.String() != "ban other 2001:db8::2" {
			t.Errorf("the other jail's action made %q", rec)
		}
		select {
		case <-done:
			t.Fatal("SetJail returned before the hung action made its calls or the wait ended")
		default:
		}
		time.Sleep(5 * time.Second)
		<-done
		if _, ok := m.Queues()["hung"]; ok {
			t.Error("the hung action's queue is still there")
		}
	})
}

func TestHolder(t *testing.T) {
	ctx := context.Background()
	m := NewManager(SystemClock{}, slog.New(slog.DiscardHandler))
	m.SetJail(ctx, "b-jail", BanPolicy{BanTime: time.Hour}, nil)
	m.SetJail(ctx, "a-jail", BanPolicy{BanTime: time.Hour}, nil)
	m.BanAll(ctx, []Ticket{
		{Jail: "b-jail", Addr: netip.MustParseAddr("203.0.113.5")},
		{Jail: "a-jail", Addr: netip.MustParseAddr("203.0.113.5")},
		{Jail: "b-jail", Addr: netip.MustParseAddr("198.51.100.0"), Bits: 24},
	})
	for addr, want := range map[string]string{"203.0.113.5": "a-jail", "::ffff:203.0.113.5": "a-jail", "198.51.100.77": "b-jail", "203.0.113.6": ""} {
		if jail, ok := m.Holder(netip.MustParseAddr(addr)); jail != want || ok != (want != "") {
			t.Errorf("Holder(%s) = %q, %v; want %q", addr, jail, ok, want)
		}
	}
}

// A ban's lines go to the actions and the ledger, and are not held in memory: the bans in
// force are many, their lines read only by "why", from the ledger.
func TestBanLinesStayInTheLedger(t *testing.T) {
	ctx := context.Background()
	m := newManager(&fakeClock{now: t0})
	rec := &recorder{}
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{Name: "rec", Action: rec}})
	lines := []string{"line 1 of 192.0.2.1", "line 2 of 192.0.2.1"}
	b, ok := ban(m, Ticket{Jail: "sasl", Addr: a1, Failures: 2, Lines: lines})
	if !ok || !slices.Equal(b.Lines, lines) {
		t.Fatalf("ban %+v: the actions are handed its lines", b)
	}
	p := netip.PrefixFrom(a1, 32)
	if r, ok := m.Record("sasl", p); !ok || r.Lines != nil {
		t.Errorf("the ban in memory holds %d lines", len(r.Lines))
	}
	if got := m.Lines(ctx, "sasl", p); !slices.Equal(got, lines) {
		t.Errorf("the ledger's lines %q, want %q", got, lines)
	}
}

// A ban in force comes back as it went in, but for its lines (which the ledger keeps):
// of an address or a network, with an end, without one, or with one past the years a
// time in nanoseconds holds; and a count too large for the form it is kept in comes
// back at that form's largest.
func TestABanInForceComesBackWhole(t *testing.T) {
	ctx := context.Background()
	m := newManager(SystemClock{})
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, nil)
	now := time.Date(2026, 12, 7, 23, 0, 0, 123456789, time.UTC)
	want := []Record{
		{Ban: actions.Ban{Jail: "sasl", Addr: netip.MustParseAddr("203.0.113.5"), User: "anna", Failures: 5, BannedAt: now,
			Expires: time.Now().Add(time.Hour).Round(0), By: "mta1", Why: "5 failures"}, Count: 2},
		{Ban: actions.Ban{Jail: "sasl", Addr: netip.MustParseAddr("198.51.100.0"), Bits: 24, Failures: 40, BannedAt: now}, Count: 1},
		{Ban: actions.Ban{Jail: "sasl", Addr: netip.MustParseAddr("2001:db8::7"), BannedAt: now,
			Expires: time.Date(3000, 1, 1, 0, 0, 0, 7, time.UTC)}, Count: 1 << 40},
	}
	records := func(yield func(Record, error) bool) {
		for _, r := range want {
			r.Lines = []string{"a line"}
			if !yield(r, nil) {
				return
			}
		}
	}
	if restored, _, err := m.Restore(ctx, records); err != nil || restored != len(want) {
		t.Fatalf("restored %d of %d: %v", restored, len(want), err)
	}
	want[2].Count = math.MaxInt32
	for _, w := range want {
		got, ok := m.Record("sasl", w.Prefix())
		if !ok {
			t.Errorf("%s: not in force", w.Target())
			continue
		}
		if !got.BannedAt.Equal(w.BannedAt) || !got.Expires.Equal(w.Expires) || got.Expires.IsZero() != w.Expires.IsZero() {
			t.Errorf("%s: banned at %v until %v; want %v until %v", w.Target(), got.BannedAt, got.Expires, w.BannedAt, w.Expires)
		}
		got.BannedAt, got.Expires = w.BannedAt, w.Expires
		if !reflect.DeepEqual(got, w) {
			t.Errorf("%s:\n got %+v\nwant %+v", w.Target(), got, w)
		}
	}
}
