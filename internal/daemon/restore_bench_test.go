package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/netnstest"
	"github.com/logban/logban/internal/store"
	"github.com/logban/logban/jails"
)

// BenchmarkRestore reads 100,000 recorded bans from the database and applies them, as a
// start does, until the action has made every call: through the log action, and
// through null routes in a namespace (as root). It also times the action's stop, which
// for null routes and nftables takes every ban out of the kernel.
func BenchmarkRestore(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "logban.db")
	st, err := store.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	records := make([]jails.Record, n)
	for i := range records {
		a := netip.MustParseAddr("2001:db8::").As16()
		a[13], a[14], a[15] = byte(i>>16), byte(i>>8), byte(i)
		// Each with the three lines that made it, as a ban from the logs has.
		line := fmt.Sprintf("Dec  7 10:00:00 mta1 postfix/submission/smtpd[4242]: warning: unknown[%s]: SASL LOGIN authentication failed: UGFzc3dvcmQ6", netip.AddrFrom16(a))
		records[i] = jails.Record{Ban: actions.Ban{Jail: "sasl", Addr: netip.AddrFrom16(a), Failures: 3, BannedAt: now, Expires: now.Add(time.Hour),
			Lines: []string{line, line, line}}, Count: 1}
	}
	if err := st.SaveBans(ctx, records); err != nil {
		b.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	// do runs the action's Start and Stop where the action acts: a netlink action's
	// socket opens at Start in the namespace of the thread that calls it, and every
	// call, made by the action's worker, goes over it.
	restore := func(b *testing.B, a actions.Action, do func(func())) {
		var took, stopping time.Duration
		var held uint64 // the heap the bans in force hold, over all runs
		for b.Loop() {
			do(func() {
				if err := a.Start(ctx); err != nil {
					b.Fatal(err)
				}
			})
			m := jails.NewManager(jails.SystemClock{}, quiet)
			m.SetLedger(st)
			m.SetJail(ctx, "sasl", jails.BanPolicy{BanTime: time.Hour}, []jails.NamedAction{{Name: "a", Action: a}})
			start := time.Now()
			restored, _, err := m.Restore(ctx, st.EachBan(ctx))
			if err != nil {
				b.Fatal(err)
			}
			if left := m.Close(ctx); left != 0 { // every ban applied
				b.Fatalf("%d calls not made", left)
			}
			took += time.Since(start)
			if restored != n {
				b.Fatalf("restored %d, want %d", restored, n)
			}
			held += heapHeld(m)
			start = time.Now()
			do(func() { a.Stop(ctx) }) // the route action's Stop removes every route, as ban-server's stop does
			stopping += time.Since(start)
		}
		b.ReportMetric(took.Seconds()/float64(b.N), "s/restore")
		b.ReportMetric(stopping.Seconds()/float64(b.N), "s/stop")
		b.ReportMetric(float64(n*b.N)/took.Seconds(), "bans/s")
		b.ReportMetric(float64(held)/float64(n*b.N), "heap-bytes/ban")
	}
	b.Run("log", func(b *testing.B) {
		a := actions.NewLog(actions.LogOptions{Path: filepath.Join(b.TempDir(), "bans.log")}, quiet)
		restore(b, a, func(f func()) { f() })
	})
	b.Run("route", func(b *testing.B) {
		lab := netnstest.New(b)
		a := actions.NewRoute(actions.RouteOptions{Type: "blackhole", Table: 254, Protocol: actions.DefaultRouteProtocol}, quiet)
		restore(b, a, lab.Do)
	})
	b.Run("nftables", func(b *testing.B) {
		lab := netnstest.New(b)
		opts := actions.NFTablesOptions{Hooks: []string{"input"}, Priority: -10, Protocol: "all", BlockType: "DROP", CheckInterval: "1h"}
		restore(b, actions.NewNFTables("nftables", opts, quiet), lab.Do)
	})
}

// heapHeld returns what m holds: the live heap with m, less the live heap once m is let
// go of.
func heapHeld(m *jails.Manager) uint64 {
	var with, without runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&with)
	runtime.KeepAlive(m)
	runtime.GC()
	runtime.ReadMemStats(&without)
	return with.HeapAlloc - min(without.HeapAlloc, with.HeapAlloc)
}

// BenchmarkBanBurstRecorded bans 10,000 addresses at once through the manager with the
// SQLite ledger and the log action: recorded first, then applied (first), or applied
// and recorded behind, as ban-server does (behind), until every ban is both applied and
// recorded.
func BenchmarkBanBurstRecorded(b *testing.B) {
	const n = 10_000
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	addrs := make([]netip.Addr, n)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
	}
	for _, behind := range []bool{false, true} {
		name := "first"
		if behind {
			name = "behind"
		}
		b.Run(name, func(b *testing.B) {
			var took, applying time.Duration
			for b.Loop() {
				st, err := store.Open(ctx, filepath.Join(b.TempDir(), "logban.db"))
				if err != nil {
					b.Fatal(err)
				}
				a := actions.NewLog(actions.LogOptions{Path: filepath.Join(b.TempDir(), "bans.log")}, quiet)
				a.Start(ctx)
				m := jails.NewManager(jails.SystemClock{}, quiet)
				m.SetLedger(st)
				m.SetRecordBehind(behind)
				m.SetJail(ctx, "sasl", jails.BanPolicy{BanTime: time.Hour}, []jails.NamedAction{{Name: "log", Action: a}})
				run, stop := context.WithCancel(ctx)
				ran := make(chan struct{})
				go func() { m.Run(run); close(ran) }() // writes the records behind
				start := time.Now()
				// As the daemon bans: the tickets of each batch of lines (at most 1024) at once.
				var tickets []jails.Ticket
				for i, addr := range addrs {
					tickets = append(tickets, jails.Ticket{Jail: "sasl", Addr: addr, Failures: 3})
					if len(tickets) == 1024 || i == len(addrs)-1 {
						m.BanAll(ctx, tickets)
						tickets = tickets[:0]
					}
				}
				m.Close(ctx) // every ban applied
				applying += time.Since(start)
				m.WaitRecorded(ctx)
				took += time.Since(start)
				stop()
				<-ran
				a.Stop(ctx)
				st.Close()
			}
			b.ReportMetric(float64(n*b.N)/took.Seconds(), "bans/s")
			b.ReportMetric(float64(n*b.N)/applying.Seconds(), "applied-bans/s")
		})
	}
}
