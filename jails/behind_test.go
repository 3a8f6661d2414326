package jails

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/logban/logban/actions"
)

// gatedLedger is a MemoryLedger whose writes wait for the test: a write under way.
type gatedLedger struct {
	*MemoryLedger
	started chan struct{} // a write began
	release chan struct{} // let it finish
}

func (l *gatedLedger) SaveBan(ctx context.Context, r Record) error {
	l.started <- struct{}{}
	<-l.release
	return l.MemoryLedger.SaveBan(ctx, r)
}

// recordingBehind returns a manager that records behind in l, with one jail, "sasl",
// whose one action is rec.
func recordingBehind(ctx context.Context) (m *Manager, l *MemoryLedger, rec *recorder) {
	m, l, rec = newManager(&fakeClock{now: t0}), NewMemoryLedger(), &recorder{}
	m.SetLedger(l)
	m.SetRecordBehind(true)
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"rec", rec}})
	return m, l, rec
}

// appliedNotRecorded checks that what m banned is applied through rec, and not yet in
// l: recorded behind.
func appliedNotRecorded(t *testing.T, m *Manager, l *MemoryLedger, rec *recorder) {
	t.Helper()
	settle(t, m)
	if rec.String() == "" {
		t.Error("nothing applied before the bans were recorded")
	}
	if got := l.Bans(); len(got) != 0 {
		t.Errorf("recorded before WaitRecorded: %v", got)
	}
}

// TestRecordingBehind: bans are applied at once and written to the ledger by
// WaitRecorded; their lines are there meanwhile.
func TestRecordingBehind(t *testing.T) {
	ctx := context.Background()
	m, l, rec := recordingBehind(ctx)
	bans := m.BanAll(ctx, []Ticket{{Jail: "sasl", Addr: a1, Failures: 3, Lines: []string{"line one"}}, {Jail: "sasl", Addr: a2, Failures: 3}})
	if len(bans) != 2 {
		t.Fatalf("banned %v", bans)
	}
	appliedNotRecorded(t, m, l, rec)
	if got := m.Lines(ctx, "sasl", bans[0].Prefix()); !slices.Equal(got, []string{"line one"}) {
		t.Errorf("lines of a ban not recorded yet: %q", got)
	}
	m.WaitRecorded(ctx)
	if got := l.Bans(); len(got) != 2 {
		t.Errorf("recorded after WaitRecorded: %v; want both bans", got)
	}
}

// TestAnUnbanDuringTheWriteStaysUndone: a ban lifted while its record is being written
// has no record once both are done; a crash would otherwise bring back a ban lifted by
// hand.
func TestAnUnbanDuringTheWriteStaysUndone(t *testing.T) {
	ctx := context.Background()
	m := newManager(&fakeClock{now: t0})
	l := &gatedLedger{MemoryLedger: NewMemoryLedger(), started: make(chan struct{}), release: make(chan struct{})}
	m.SetLedger(l)
	m.SetRecordBehind(true)
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"rec", &recorder{}}})
	b, ok := ban(m, Ticket{Jail: "sasl", Addr: a1, Failures: 3})
	if !ok {
		t.Fatal("not banned")
	}
	written := make(chan struct{})
	go func() { m.WaitRecorded(ctx); close(written) }()
	<-l.started // the write is under way, outside the manager's lock
	unbanned := make(chan struct{})
	go func() {
		if _, err := m.Unban(ctx, "sasl", b.Prefix()); err != nil {
			t.Error(err)
		}
		close(unbanned)
	}()
	time.Sleep(50 * time.Millisecond) // the unban would delete the record now, before the write ends
	close(l.release)
	<-written
	<-unbanned
	if got := l.Bans(); len(got) != 0 {
		t.Errorf("records after the unban: %v; want none", got)
	}
}

// TestFarmBansAreRecordedBehind: bans adopted from the farm are applied at once and
// written behind, as those decided here are; the farm's watch hands them over again
// after a crash before the write.
func TestFarmBansAreRecordedBehind(t *testing.T) {
	ctx := context.Background()
	m, l, rec := recordingBehind(ctx)
	adopted := m.Adopt(ctx, []Record{{Ban: actions.Ban{Jail: "sasl", Addr: a1, By: "mta2", BannedAt: t0, Expires: t0.Add(time.Hour)}}})
	if len(adopted) != 1 {
		t.Fatalf("adopted %v", adopted)
	}
	appliedNotRecorded(t, m, l, rec)
	m.WaitRecorded(ctx)
	if got := l.Bans(); len(got) != 1 || got[0].By != "mta2" || got[0].Count != 1 {
		t.Errorf("recorded after WaitRecorded: %+v; want the farm's ban, its first", got)
	}
}

// runningBehind returns a manager that records behind in l, with one jail, "sasl", on
// a fake clock, its Run running until the test ends; and a function that waits until l
// holds at least n records.
func runningBehind(t *testing.T) (m *Manager, l *MemoryLedger, clock *fakeClock, recorded func(n int)) {
	t.Helper()
	clock = &fakeClock{now: t0}
	m, l = newManager(clock), NewMemoryLedger()
	m.SetLedger(l)
	m.SetRecordBehind(true)
	ctx, cancel := context.WithCancel(context.Background())
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"rec", &recorder{}}})
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return m, l, clock, func(n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); len(l.Bans()) < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d records after 10 s; want %d", len(l.Bans()), n)
			}
		}
	}
}

// stillUnrecorded checks, for a while, that l holds no more than n records.
func stillUnrecorded(t *testing.T, l *MemoryLedger, n int) {
	t.Helper()
	for range 100 {
		if got := len(l.Bans()); got > n {
			t.Fatalf("%d records while bans came; want %d: a burst's records take the CPU from its bans", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestABurstIsRecordedOnceBansStopComing: Run leaves the records of a burst's bans
// until bans stop coming for recordQuiet, and then writes them, in one batch.
func TestABurstIsRecordedOnceBansStopComing(t *testing.T) {
	ctx := context.Background()
	m, l, clock, recorded := runningBehind(t)

	m.BanAll(ctx, []Ticket{{Jail: "sasl", Addr: a1, Failures: 3}})
	clock.Advance(recordQuiet / 2)
	m.BanAll(ctx, []Ticket{{Jail: "sasl", Addr: a2, Failures: 3}})
	clock.Advance(recordQuiet / 2) // the first ban's quiet time, not the second's
	stillUnrecorded(t, l, 0)
	clock.Advance(recordQuiet / 2)
	recorded(2)
}

// TestRecordsWaitNoLongerThanRecordWaitMax: bans that never stop coming (an attack that
// goes on) are recorded all the same, the oldest within recordWaitMax of its ban.
func TestRecordsWaitNoLongerThanRecordWaitMax(t *testing.T) {
	ctx := context.Background()
	m, l, clock, recorded := runningBehind(t)

	every := recordQuiet * 4 / 5 // never quiet for long enough
	n := 0
	for ; ; n++ {
		m.BanAll(ctx, []Ticket{{Jail: "sasl", Addr: netip.AddrFrom4([4]byte{198, 51, 100, byte(n)}), Failures: 3}})
		if time.Duration(n+1)*every >= recordWaitMax {
			break
		}
		clock.Advance(every)
	}
	stillUnrecorded(t, l, 0)
	clock.Advance(every) // past the first ban's recordWaitMax, within the last one's quiet time
	recorded(n + 1)
}

// TestRecordsWaitNoMoreThanRecordHeldMax: a burst of recordHeldMax bans is recorded at
// once, without waiting for quiet: unwritten records hold their lines in memory.
func TestRecordsWaitNoMoreThanRecordHeldMax(t *testing.T) {
	ctx := context.Background()
	m, _, _, recorded := runningBehind(t)

	tickets := make([]Ticket, recordHeldMax)
	for i := range tickets {
		tickets[i] = Ticket{Jail: "sasl", Addr: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Failures: 3}
	}
	m.BanAll(ctx, tickets)
	recorded(recordHeldMax)
}

// heldLedger is a MemoryLedger whose writes wait until the test lets them go: a ledger
// that does not keep up. started is closed once the first write has begun.
type heldLedger struct {
	*MemoryLedger
	once    sync.Once
	started chan struct{}
	release chan struct{}
}

func (l *heldLedger) SaveBan(ctx context.Context, r Record) error {
	l.once.Do(func() { close(l.started) })
	<-l.release
	return l.MemoryLedger.SaveBan(ctx, r)
}

// TestRecordsWaitingStayBoundedWhileTheLedgerLags: while a write does not end, bans go
// on coming; the records waiting beside it stop at recordHeldMax, the bans making more
// waiting for the write, and not one ban is lost once it ends.
func TestRecordsWaitingStayBoundedWhileTheLedgerLags(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := &heldLedger{MemoryLedger: NewMemoryLedger(), started: make(chan struct{}), release: make(chan struct{})}
	m := newManager(&fakeClock{now: t0})
	m.SetLedger(l)
	m.SetRecordBehind(true)
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"rec", &recorder{}}})
	ran := make(chan struct{})
	go func() { m.Run(ctx); close(ran) }()
	defer func() { cancel(); <-ran }()
	release := sync.OnceFunc(func() { close(l.release) })
	defer release() // first: a failed test leaves no write held

	const bursts = 4
	burst := func(k int) []Ticket {
		tickets := make([]Ticket, recordHeldMax)
		for i := range tickets {
			tickets[i] = Ticket{Jail: "sasl", Addr: netip.AddrFrom4([4]byte{10, byte(k), byte(i >> 8), byte(i)}), Failures: 3}
		}
		return tickets
	}
	m.BanAll(ctx, burst(0)) // recordHeldMax wait: Run writes them, and the write holds
	<-l.started
	done := make(chan struct{})
	go func() {
		for k := 1; k < bursts; k++ {
			m.BanAll(ctx, burst(k))
		}
		close(done)
	}()
	waiting := func() int {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.rec.pending)
	}
	for range 100 {
		if n := waiting(); n > recordHeldMax {
			t.Fatalf("%d records wait beside a write that does not end; want at most %d", n, recordHeldMax)
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case <-done:
		t.Fatal("every burst was banned while the write did not end: nothing held them back")
	default:
	}
	release()
	<-done
	m.WaitRecorded(ctx)
	if got := len(l.Bans()); got != bursts*recordHeldMax {
		t.Errorf("%d records; want %d", got, bursts*recordHeldMax)
	}
}
