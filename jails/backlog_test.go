package jails

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/logban/logban/actions"
)

// flakyLedger is a MemoryLedger whose writes fail while down is set, as on a full disk.
type flakyLedger struct {
	*MemoryLedger
	mu   sync.Mutex
	down bool
}

var errDiskFull = errors.New("database or disk is full")

func (l *flakyLedger) setDown(down bool) { l.mu.Lock(); l.down = down; l.mu.Unlock() }
func (l *flakyLedger) isDown() bool      { l.mu.Lock(); defer l.mu.Unlock(); return l.down }

func (l *flakyLedger) SaveBans(ctx context.Context, rs []Record) error {
	if l.isDown() {
		return errDiskFull
	}
	for _, r := range rs {
		l.SaveBan(ctx, r)
	}
	return nil
}
func (l *flakyLedger) DeleteBan(ctx context.Context, jail string, what netip.Prefix) error {
	if l.isDown() {
		return errDiskFull
	}
	return l.MemoryLedger.DeleteBan(ctx, jail, what)
}
func (l *flakyLedger) BanCounts(ctx context.Context, jail string, whats []netip.Prefix) (map[netip.Prefix]int, error) {
	out := map[netip.Prefix]int{}
	for _, a := range whats {
		if n, _ := l.BanCount(ctx, jail, a); n > 0 {
			out[a] = n
		}
	}
	return out, nil
}

func recordedAddrs(l *flakyLedger) []string {
	var out []string
	for _, r := range l.Bans() {
		out = append(out, r.Addr.String())
	}
	slices.Sort(out)
	return out
}

// While the ledger fails, bans are still applied, kept in memory and reported; when it
// works again they are recorded, and ended bans deleted, without anything asking.
func TestBansOutliveAFailingLedger(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: t0}
	m := newManager(clock)
	ledger := &flakyLedger{MemoryLedger: NewMemoryLedger()}
	m.SetLedger(ledger)
	act := &recorder{}
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"rec", act}})

	m.BanAll(ctx, []Ticket{{Jail: "sasl", Addr: a1}}) // recorded while the disk had room
	ledger.setDown(true)
	m.BanAll(ctx, []Ticket{{Jail: "sasl", Addr: a2}, {Jail: "sasl", Addr: netip.MustParseAddr("192.0.2.3")}})
	settle(t, m)
	if got := act.String(); got != "ban sasl 192.0.2.1\nban sasl 2001:db8::2\nban sasl 192.0.2.3" {
		t.Errorf("bans not applied while the ledger fails:\n%s", got)
	}
	if d := m.Degraded(); d.Unrecorded != 2 || !errors.Is(d.Err, errDiskFull) || !d.Since.Equal(t0) {
		t.Errorf("degraded %+v", d)
	}
	if n := m.UnrecordedIn("sasl"); n != 2 {
		t.Errorf("UnrecordedIn = %d", n)
	}
	m.Unban(ctx, "sasl", actions.Host(a1)) // its record cannot be deleted yet
	m.Unban(ctx, "sasl", actions.Host(netip.MustParseAddr("192.0.2.3")))
	if d := m.Degraded(); d.Unrecorded != 1 || d.Undeleted != 2 {
		t.Errorf("after unbans: %+v", d)
	}

	clock.Advance(time.Minute)
	m.mu.Lock()
	m.retryBacklog(ctx) // still down
	m.mu.Unlock()
	if got := recordedAddrs(ledger); !slices.Equal(got, []string{"192.0.2.1"}) {
		t.Errorf("recorded while down: %v", got)
	}

	ledger.setDown(false)
	clock.Advance(time.Minute)
	m.mu.Lock()
	m.retryBacklog(ctx)
	m.mu.Unlock()
	if d := m.Degraded(); d != (Degraded{}) {
		t.Errorf("still degraded: %+v", d)
	}
	if got := recordedAddrs(ledger); !slices.Equal(got, []string{"2001:db8::2"}) {
		t.Errorf("recorded %v, want the one ban in force", got)
	}
}

// Run retries the backlog on its own, on the clock.
func TestRunRetriesTheBacklog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		m := newManager(SystemClock{})
		defer m.Close(ctx)
		ledger := &flakyLedger{MemoryLedger: NewMemoryLedger(), down: true}
		m.SetLedger(ledger)
		m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"rec", &recorder{}}})
		go m.Run(ctx)
		m.BanAll(ctx, []Ticket{{Jail: "sasl", Addr: a1}})
		time.Sleep(10 * time.Second) // the clock of the bubble: retried, and still down
		synctest.Wait()
		if d := m.Degraded(); d.Unrecorded != 1 {
			t.Fatalf("degraded %+v", d)
		}
		ledger.setDown(false)
		time.Sleep(backlogRetryMax)
		synctest.Wait()
		if d := m.Degraded(); d != (Degraded{}) {
			t.Errorf("still degraded: %+v", d)
		}
		if got := recordedAddrs(ledger); !slices.Equal(got, []string{"192.0.2.1"}) {
			t.Errorf("recorded %v", got)
		}
	})
}

// Resync records every ban in force in a new ledger, with its count.
func TestResync(t *testing.T) {
	ctx := context.Background()
	m := newManager(&fakeClock{now: t0})
	old := &flakyLedger{MemoryLedger: NewMemoryLedger()}
	m.SetLedger(old)
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"rec", &recorder{}}})
	m.BanAll(ctx, []Ticket{{Jail: "sasl", Addr: a1}, {Jail: "sasl", Addr: a2}})
	old.setDown(true)
	m.BanAll(ctx, []Ticket{{Jail: "sasl", Addr: netip.MustParseAddr("192.0.2.3")}})

	fresh := &flakyLedger{MemoryLedger: NewMemoryLedger()}
	if err := m.Resync(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	if got := recordedAddrs(fresh); !slices.Equal(got, []string{"192.0.2.1", "192.0.2.3", "2001:db8::2"}) {
		t.Errorf("resynced %v", got)
	}
	if d := m.Degraded(); d != (Degraded{}) {
		t.Errorf("degraded after resync: %+v", d)
	}
	for _, r := range fresh.Bans() {
		if r.Count != 1 {
			t.Errorf("%v: count %d", r.Addr, r.Count)
		}
	}
}
