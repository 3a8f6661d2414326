package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/jails"
)

// BenchmarkSaveBans records bursts of 10,000 new bans, each in one call and in no order,
// as the manager writes a burst behind: the ledger's share of a burst's cost.
func BenchmarkSaveBans(b *testing.B) {
	const n = 10_000
	ctx := context.Background()
	s := tempStore(b)
	now := time.Now()
	records := make([]jails.Record, n)
	line := "Dec  7 10:00:00 mta1 postfix/submission/smtpd[4242]: warning: unknown[198.18.0.1]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"
	first := 0
	for b.Loop() {
		for i := range records {
			k := first + i
			records[i] = jails.Record{Ban: actions.Ban{Jail: "sasl", Addr: netip.AddrFrom4([4]byte{10, byte(k >> 16), byte(k >> 8), byte(k)}),
				Failures: 3, BannedAt: now, Expires: now.Add(time.Hour), Why: "3 failures", Lines: []string{line, line, line}}, Count: 1}
		}
		first += n
		rand.Shuffle(len(records), func(i, j int) { records[i], records[j] = records[j], records[i] }) // as a map hands them over
		if err := s.SaveBans(ctx, records); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "bans/s")
}

// BenchmarkBanCounts looks up the history of a few new addresses at a time, as a ban
// does on its way to the kernel when failures come a few at a time, in a history of
// 10,000 addresses.
func BenchmarkBanCounts(b *testing.B) {
	ctx := context.Background()
	s := tempStore(b)
	now := time.Now()
	records := make([]jails.Record, 10_000)
	for i := range records {
		records[i] = jails.Record{Ban: actions.Ban{Jail: "sasl", Addr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}),
			Failures: 3, BannedAt: now, Expires: now.Add(time.Hour)}, Count: 1}
	}
	if err := s.SaveBans(ctx, records); err != nil {
		b.Fatal(err)
	}
	s.LoadHistory() // as ban-server does once the bans are restored
	<-s.historyLoaded
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("%d-addresses", n), func(b *testing.B) {
			whats := make([]netip.Prefix, n)
			k := 0
			for b.Loop() {
				for i := range whats {
					whats[i] = actions.Host(netip.AddrFrom4([4]byte{198, 18, byte(k >> 8), byte(k)}))
					k++
				}
				if _, err := s.BanCounts(ctx, "sasl", whats); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// tempStore opens a new database for a test or benchmark, closed when it ends.
func tempStore(tb testing.TB) *Store {
	tb.Helper()
	s, err := Open(context.Background(), filepath.Join(tb.TempDir(), "logban.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkEachBan reads 100,000 recorded bans, as a start's restore does: the
// ledger's share of a restore's cost.
func BenchmarkEachBan(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	s := tempStore(b)
	fillBans(b, s)
	for b.Loop() {
		read := 0
		for _, err := range s.EachBan(ctx) {
			if err != nil {
				b.Fatal(err)
			}
			read++
		}
		if read != n {
			b.Fatalf("read %d bans, want %d", read, n)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "bans/s")
}

func fillBans(b *testing.B, s *Store) {
	const n = 100_000
	ctx := context.Background()
	now := time.Now()
	records := make([]jails.Record, n)
	for i := range records {
		records[i] = jails.Record{Ban: actions.Ban{Jail: "sasl", Addr: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}),
			Failures: 3, BannedAt: now, Expires: now.Add(time.Hour), Why: "3 failures"}, Count: 1}
	}
	if err := s.SaveBans(ctx, records); err != nil {
		b.Fatal(err)
	}
}
