package jails

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
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
	r.calls = append(r.calls, fmt.Sprintf("%s %s %s", op, b.Jail, b.Addr))
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

	b, isNew, err := m.Ban(ctx, Ticket{Jail: "sasl", Addr: a1, Failures: 3})
	if err != nil || !isNew || !b.Expires.Equal(t0.Add(10*time.Minute)) || b.Failures != 3 {
		t.Fatalf("Ban: %+v %v %v", b, isNew, err)
	}
	if _, isNew, _ := m.Ban(ctx, Ticket{Jail: "sasl", Addr: a1}); isNew {
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
	b, _, _ := m.Ban(ctx, Ticket{Jail: "sasl", Addr: a1})
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
	m.Ban(ctx, Ticket{Jail: "a", Addr: a1})
	m.Ban(ctx, Ticket{Jail: "b", Addr: a1})
	m.Ban(ctx, Ticket{Jail: "b", Addr: a2})

	if _, err := m.Unban(ctx, "nope", a1); !errors.Is(err, ErrUnknownJail) {
		t.Errorf("unknown jail: %v", err)
	}
	if got, err := m.Unban(ctx, "b", a2); err != nil || len(got) != 1 {
		t.Errorf("Unban(b, a2) = %v, %v", got, err)
	}
	if got, err := m.Unban(ctx, "", netip.MustParseAddr("::ffff:192.0.2.1")); err != nil || len(got) != 2 {
		t.Errorf("Unban(all, a1) = %v, %v", got, err)
	}
	if _, err := m.Unban(ctx, "", a1); !errors.Is(err, ErrNotBanned) {
		t.Errorf("second unban: %v, want ErrNotBanned", err)
	}
	if len(m.Bans("")) != 0 {
		t.Errorf("bans left: %v", m.Bans(""))
	}
}

func TestSharedActionHoldsUntilLastJailLetsGo(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: t0}
	m := newManager(clock)
	route := &sharedRecorder{}
	m.SetJail(ctx, "short", BanPolicy{BanTime: time.Minute}, []NamedAction{{"route", route}})
	m.SetJail(ctx, "long", BanPolicy{BanTime: time.Hour}, []NamedAction{{"route", route}})
	m.Ban(ctx, Ticket{Jail: "short", Addr: a1})
	m.Ban(ctx, Ticket{Jail: "long", Addr: a1})
	clock.Advance(time.Minute)
	m.ExpireDue(ctx)
	if want := "ban short 192.0.2.1"; route.String() != want {
		t.Fatalf("after first expiry:\n%s\nwant:\n%s", route, want)
	}
	clock.Advance(time.Hour)
	m.ExpireDue(ctx)
	if want := "ban short 192.0.2.1\nunban long 192.0.2.1"; route.String() != want {
		t.Errorf("after both:\n%s\nwant:\n%s", route, want)
	}
}

func TestFailingActionDoesNotStopTheOthers(t *testing.T) {
	ctx := context.Background()
	m := newManager(&fakeClock{now: t0})
	broken, good := &recorder{fail: true}, &recorder{}
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"broken", broken}, {"good", good}})
	if _, isNew, err := m.Ban(ctx, Ticket{Jail: "sasl", Addr: a1}); err != nil || !isNew {
		t.Fatalf("Ban: %v %v", isNew, err)
	}
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
	m.Ban(ctx, Ticket{Jail: "sasl", Addr: a1})
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: 2 * time.Hour}, []NamedAction{{"kept", kept}, {"new", newAct}})
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
}

func TestRunLiftsBansWhenTheyExpire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		m := newManager(SystemClock{}) // the bubble's fake time
		rec := &recorder{}
		m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Minute}, []NamedAction{{"rec", rec}})
		m.SetJail(ctx, "forever", BanPolicy{BanTime: -1}, []NamedAction{{"rec", rec}})
		done := make(chan error)
		go func() { done <- m.Run(ctx) }()
		m.Ban(ctx, Ticket{Jail: "forever", Addr: a2})
		time.Sleep(time.Second)
		m.Ban(ctx, Ticket{Jail: "sasl", Addr: a1})
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

func TestFailedCallsAreRetriedWithBackoff(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: t0}
	m := newManager(clock)
	down, good := &recorder{fail: true}, &recorder{}
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"down", down}, {"good", good}})
	m.Ban(ctx, Ticket{Jail: "sasl", Addr: a1})
	if m.Pending("sasl") != 1 || len(m.Bans("sasl")) != 1 || good.String() != "ban sasl 192.0.2.1" {
		t.Fatalf("pending %d, bans %v, good %q", m.Pending("sasl"), m.Bans("sasl"), good)
	}
	attempts := func() int { return strings.Count(down.String(), "ban sasl") }

	clock.Advance(RetryMin - time.Millisecond)
	m.RetryDue(ctx)
	if attempts() != 1 {
		t.Fatalf("retried before the backoff: %d attempts", attempts())
	}
	clock.Advance(time.Millisecond) // 1s: second attempt, fails; next in 2s
	m.RetryDue(ctx)
	clock.Advance(2*RetryMin - time.Millisecond)
	m.RetryDue(ctx)
	if attempts() != 2 {
		t.Fatalf("%d attempts, want 2 (backoff doubles)", attempts())
	}
	down.mu.Lock()
	down.fail = false // the backend recovers
	down.mu.Unlock()
	clock.Advance(time.Millisecond)
	if n := m.RetryDue(ctx); n != 1 || m.Pending("sasl") != 0 {
		t.Fatalf("after recovery: %d retried, %d pending", n, m.Pending("sasl"))
	}
	if e := m.ActionErrors(); e["down"] != 2 {
		t.Errorf("errors %v, want 2 for down", e)
	}
}

func TestUnbanWhileTheActionIsDownIsRetriedAsUnban(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: t0}
	m := newManager(clock)
	down := &recorder{fail: true}
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"down", down}})
	m.Ban(ctx, Ticket{Jail: "sasl", Addr: a1})
	m.Unban(ctx, "sasl", a1)
	down.mu.Lock()
	down.fail = false
	down.calls = nil
	down.mu.Unlock()
	clock.Advance(RetryMax)
	m.RetryDue(ctx)
	if got := down.String(); got != "unban sasl 192.0.2.1" {
		t.Errorf("retried %q, want only the unban", got)
	}
}

func TestRetriesOfARemovedActionAreDropped(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: t0}
	m := newManager(clock)
	down := &recorder{fail: true}
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"down", down}})
	m.Ban(ctx, Ticket{Jail: "sasl", Addr: a1})
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, nil)
	if n := m.Pending("sasl"); n != 0 {
		t.Errorf("%d retries pending for an action no jail uses", n)
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
	restored, expired := m.Restore(ctx, records)
	if restored != 2 || expired != 1 {
		t.Fatalf("restored %d, expired %d; want 2, 1", restored, expired)
	}
	bans := m.Bans("sasl")
	if len(bans) != 2 || bans[0].Addr != a1 || !bans[0].Expires.Equal(t0.Add(30*time.Minute)) || bans[1].Addr != a3 || !bans[1].Permanent() {
		t.Errorf("bans after restore %+v", bans)
	}
	if want := "ban sasl 192.0.2.1\nunban sasl 2001:db8::2\nban sasl 198.51.100.3"; rec.String() != want {
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
		b, _, _ := m.Ban(ctx, Ticket{Jail: "sasl", Addr: a1})
		got = append(got, b.Expires.Sub(b.BannedAt))
		m.Unban(ctx, "sasl", a1)
	}
	// The imap jail counts the address's three sasl bans too.
	b, _, _ := m.Ban(ctx, Ticket{Jail: "imap", Addr: a1})
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
	m.Ban(ctx, Ticket{Jail: "sasl", Addr: a1}) // ends at t0+1h
	m.Unban(ctx, "sasl", a1)
	clock.Advance(30 * time.Minute)
	m.Ban(ctx, Ticket{Jail: "sasl", Addr: a1}) // ends at t0+1h30m
	clock.Advance(30 * time.Minute)
	if got := m.ExpireDue(ctx); len(got) != 0 {
		t.Fatalf("the first ban's expiry lifted the second: %v", got)
	}
	clock.Advance(30 * time.Minute)
	if got := m.ExpireDue(ctx); len(got) != 1 {
		t.Fatalf("the second ban did not end: %v", got)
	}
}

// BenchmarkBanBurst bans 10,000 addresses through an action that does nothing, with a
// ledger in memory: what the manager itself costs per ban.
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
			m.Ban(ctx, Ticket{Jail: "sasl", Addr: a})
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "bans/s")
}

type nopAction struct{}

func (nopAction) Start(context.Context) error              { return nil }
func (nopAction) Stop(context.Context) error               { return nil }
func (nopAction) Ban(context.Context, actions.Ban) error   { return nil }
func (nopAction) Unban(context.Context, actions.Ban) error { return nil }

// batchLedger is a MemoryLedger that records whole batches and notes the order of
// recording and applying.
type batchLedger struct {
	*MemoryLedger
	events *[]string
}

func (l batchLedger) SaveBans(ctx context.Context, rs []Record) error {
	*l.events = append(*l.events, fmt.Sprintf("record %d", len(rs)))
	for _, r := range rs {
		l.MemoryLedger.SaveBan(ctx, r)
	}
	return nil
}

func (l batchLedger) BanCounts(ctx context.Context, jail string, addrs []netip.Addr) (map[netip.Addr]int, error) {
	*l.events = append(*l.events, fmt.Sprintf("count %d", len(addrs)))
	out := map[netip.Addr]int{}
	for _, a := range addrs {
		out[a], _ = l.MemoryLedger.BanCount(ctx, jail, a)
	}
	return out, nil
}

type orderAction struct {
	nopAction
	events *[]string
}

func (a orderAction) Ban(_ context.Context, b actions.Ban) error {
	*a.events = append(*a.events, "apply "+b.Addr.String())
	return nil
}

func TestBanAllRecordsTheBatchBeforeApplying(t *testing.T) {
	ctx := context.Background()
	m := newManager(&fakeClock{now: t0})
	var events []string
	ledger := batchLedger{NewMemoryLedger(), &events}
	m.SetLedger(ledger)
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"a", orderAction{events: &events}}})
	m.Ban(ctx, Ticket{Jail: "sasl", Addr: a2}) // already banned before the batch
	events = nil
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
	// the history of the batch's addresses read at once, their bans recorded at once
	if want := "count 2,record 2,apply 192.0.2.1,apply 198.51.100.3"; strings.Join(events, ",") != want {
		t.Errorf("events %q, want %q", events, want)
	}
	if c, _ := m.Counts("sasl"); c.CurrentlyBanned != 3 || c.TotalBanned != 3 {
		t.Errorf("counts %+v", c)
	}
}
