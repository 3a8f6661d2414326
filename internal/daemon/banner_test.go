package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/jails"
)

// gateAction applies a ban only once the test opens its gate.
type gateAction struct {
	gate    chan struct{}
	applied atomic.Int64
}

func (a *gateAction) Start(context.Context) error { return nil }
func (a *gateAction) Stop(context.Context) error  { return nil }
func (a *gateAction) Ban(context.Context, actions.Ban) error {
	<-a.gate
	a.applied.Add(1)
	return nil
}
func (a *gateAction) Unban(context.Context, actions.Ban) error { return nil }

// A flush returns only once every ticket queued before it is banned: file positions are
// saved after a flush, so a position never runs ahead of the bans found before it.
// Closing bans what is still queued.
func TestBannerFlushWaitsForQueuedBans(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		m := jails.NewManager(jails.SystemClock{}, slog.New(slog.DiscardHandler))
		a := &gateAction{gate: make(chan struct{})}
		m.SetJail(ctx, "sasl", jails.BanPolicy{BanTime: time.Hour}, []jails.NamedAction{{Name: "gate", Action: a}})
		b := newBanner(m)
		go b.run(ctx)
		ticket := func(i int) []jails.Ticket {
			return []jails.Ticket{{Jail: "sasl", Addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), Failures: 3}}
		}
		for i := range 3 {
			b.ban(ticket(i))
		}
		var flushed atomic.Bool
		go func() { b.flush(ctx); flushed.Store(true) }()
		synctest.Wait()
		if flushed.Load() {
			t.Fatal("flush returned while bans queued before it were not applied")
		}
		close(a.gate)
		synctest.Wait()
		if !flushed.Load() || a.applied.Load() != 3 {
			t.Fatalf("after the bans: flushed %v, %d applied, want 3", flushed.Load(), a.applied.Load())
		}
		b.ban(ticket(3))
		b.close()
		if c, _ := m.Counts("sasl"); c.CurrentlyBanned != 4 {
			t.Errorf("after close %d banned, want 4: close bans what is queued", c.CurrentlyBanned)
		}
	})
}
