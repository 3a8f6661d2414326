package jails

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
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

// TestRecordingBehind: bans are applied at once and written to the ledger by
// WaitRecorded; their lines are there meanwhile.
func TestRecordingBehind(t *testing.T) {
	ctx := context.Background()
	m := newManager(&fakeClock{now: t0})
	l := NewMemoryLedger()
	m.SetLedger(l)
	m.SetRecordBehind(true)
	rec := &recorder{}
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"rec", rec}})
	bans := m.BanAll(ctx, []Ticket{{Jail: "sasl", Addr: a1, Failures: 3, Lines: []string{"line one"}}, {Jail: "sasl", Addr: a2, Failures: 3}})
	if len(bans) != 2 {
		t.Fatalf("banned %v", bans)
	}
	settle(t, m)
	if rec.String() == "" {
		t.Error("nothing applied before the bans were recorded")
	}
	if got := l.Bans(); len(got) != 0 {
		t.Errorf("recorded before WaitRecorded: %v", got)
	}
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

// countingLedger is a MemoryLedger that counts its batched writes.
type countingLedger struct {
	*MemoryLedger
	mu     sync.Mutex
	writes int
}

func (l *countingLedger) SaveBans(ctx context.Context, records []Record) error {
	l.mu.Lock()
	l.writes++
	l.mu.Unlock()
	for _, r := range records {
		l.MemoryLedger.SaveBan(ctx, r)
	}
	return nil
}

func (l *countingLedger) BanCounts(ctx context.Context, jail string, whats []netip.Prefix) (map[netip.Prefix]int, error) {
	out := map[netip.Prefix]int{}
	for _, w := range whats {
		if n, _ := l.BanCount(ctx, jail, w); n > 0 {
			out[w] = n
		}
	}
	return out, nil
}

// TestRunRecordsABurstAfterIt: bans that come one batch after the other are written by
// Run in one write once they stop coming, not one write a batch; and they are written
// without WaitRecorded.
func TestRunRecordsABurstAfterIt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := newManager(SystemClock{})
	l := &countingLedger{MemoryLedger: NewMemoryLedger()}
	m.SetLedger(l)
	m.SetRecordBehind(true)
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"rec", &recorder{}}})
	ran := make(chan struct{})
	go func() { m.Run(ctx); close(ran) }()
	const batches = 100
	for i := range batches {
		m.BanAll(ctx, []Ticket{{Jail: "sasl", Addr: netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}), Failures: 3}})
		time.Sleep(time.Millisecond) // a reader's next batch
	}
	for deadline := time.Now().Add(10 * time.Second); len(l.Bans()) < batches; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d bans recorded by Run", len(l.Bans()), batches)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// One write, or a few where this machine stalled for recordQuiet; not one a batch.
	if l.writes > 10 {
		t.Errorf("Run wrote %d batches of bans as they came, one by one; want them written after the burst", l.writes)
	}
	cancel()
	<-ran
}
