package pipeline

import (
	"context"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/logban/logban/jails"
)

// gateLedger records bans only once the test opens its gate, as a slow disk would.
type gateLedger struct {
	*jails.MemoryLedger
	gate     chan struct{}
	recorded atomic.Int64
}

func (l *gateLedger) SaveBans(ctx context.Context, rs []jails.Record) error {
	<-l.gate
	for _, r := range rs {
		l.SaveBan(ctx, r)
	}
	l.recorded.Add(int64(len(rs)))
	return nil
}

func (l *gateLedger) BanCounts(context.Context, string, []netip.Prefix) (map[netip.Prefix]int, error) {
	return nil, nil
}

// gatedQueue returns a ban queue on a gated manager; stop opens the gate and closes both.
func gatedQueue() (b *BanQueue, stop func()) {
	m, ledger := gatedManager()
	b = NewBanQueue(context.Background(), m)
	return b, func() {
		close(ledger.gate)
		b.Close()
		m.Close(context.Background())
	}
}

func ticket(i int) []jails.Ticket {
	return []jails.Ticket{{Jail: "sasl", Addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), Failures: 3}}
}

func gatedManager() (*jails.Manager, *gateLedger) {
	m := jails.NewManager(jails.SystemClock{}, slog.New(slog.DiscardHandler))
	l := &gateLedger{MemoryLedger: jails.NewMemoryLedger(), gate: make(chan struct{})}
	m.SetLedger(l)
	m.SetJail(context.Background(), "sasl", jails.BanPolicy{BanTime: time.Hour}, nil)
	return m, l
}

// A flush returns only once every ticket queued before it is banned and recorded: file
// positions are saved after a flush, so a position never runs ahead of the bans found
// before it. Closing bans what is still queued.
func TestFlushWaitsForQueuedBans(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		m, ledger := gatedManager()
		defer m.Close(ctx)
		b := NewBanQueue(ctx, m)
		for i := range 3 {
			b.Add(ctx, ticket(i))
		}
		var flushed atomic.Bool
		go func() { b.Flush(ctx); flushed.Store(true) }()
		synctest.Wait()
		if flushed.Load() {
			t.Fatal("flush returned while bans queued before it were not recorded")
		}
		close(ledger.gate)
		synctest.Wait()
		if !flushed.Load() || ledger.recorded.Load() != 3 {
			t.Fatalf("after the bans: flushed %v, %d recorded, want 3", flushed.Load(), ledger.recorded.Load())
		}
		b.Add(ctx, ticket(3))
		b.Close()
		if c, _ := m.Counts("sasl"); c.CurrentlyBanned != 4 {
			t.Errorf("after close %d banned, want 4: close bans what is queued", c.CurrentlyBanned)
		}
	})
}

// A reader waiting for room in a full ban queue gives up when its context ends, and
// leaves nothing queued.
func TestAddGivesUpWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, stop := gatedQueue()
		defer stop()
		big := make([]jails.Ticket, mergeMax) // too many to merge with the next
		for i := range big {
			big[i] = ticket(i)[0]
		}
		for range queueLen + 1 { // one being banned, the rest waiting
			if err := b.Add(t.Context(), big); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- b.Add(ctx, ticket(255)) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Add returned %v on a full queue", err)
		default:
		}
		cancel()
		if err := <-done; err == nil {
			t.Error("Add on a full queue returned nil after its context ended")
		}
	})
}

// A reader stopped right after reading a batch still hands its tickets over while the
// queue has room, whatever the order the stop and the hand-over meet in: otherwise its
// position stays before lines whose failures the jails have counted, and the next start
// counts them twice.
func TestAddQueuesWhileThereIsRoomAfterItsContextEnds(t *testing.T) {
	b, stop := gatedQueue()
	defer stop()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for i := range queueLen / 2 {
		if err := b.Add(ctx, ticket(i)); err != nil {
			t.Fatalf("Add %d with room in the queue: %v", i, err)
		}
	}
}

// A flush whose context ends before the bans queued before it are recorded says so:
// the file positions must then wait.
func TestFlushSaysWhenItGaveUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, stop := gatedQueue()
		defer stop()
		b.Add(t.Context(), ticket(1))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- b.Flush(ctx) }()
		synctest.Wait()
		cancel()
		if err := <-done; err == nil {
			t.Error("Flush returned nil with the ban queued before it unrecorded")
		}
	})
}
