package store

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/jails"
)

// The history's filter keeps every count BanCounts gives, of bans on disk at Open and of
// bans recorded since, in one jail and over all of them; and a burst of new addresses,
// looked up a few at a time as bans come, asks SQLite nothing.
func TestTheHistoryFilterKeepsEveryCountAndSparesSQLiteTheNew(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "logban.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	record := func(s *Store, from, to int) {
		var recs []jails.Record
		for i := from; i < to; i++ {
			jail := "sasl"
			if i%2 == 1 {
				jail = "dos"
			}
			recs = append(recs, jails.Record{Ban: actions.Ban{Jail: jail, Addr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}),
				BannedAt: now, Expires: now.Add(time.Hour)}, Count: i%5 + 1})
		}
		if i := to - 1; from < to && i%3 == 0 { // a network too
			recs = append(recs, jails.Record{Ban: actions.Ban{Jail: "sasl", Addr: netip.MustParseAddr("198.51.100.0"), Bits: 24, BannedAt: now}, Count: 2})
		}
		if err := s.SaveBans(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}
	record(s, 0, 1000)
	s.Close()

	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	<-s.historyLoaded
	if !s.history.ready.Load() {
		t.Fatal("the history's filter is not ready once loaded")
	}
	record(s, 1000, 1010) // after the filter is ready
	var all []netip.Prefix
	for i := range 1010 {
		all = append(all, actions.Host(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})))
	}
	all = append(all, netip.MustParsePrefix("198.51.100.0/24"))
	for _, jail := range []string{"sasl", "dos", "", "nope"} {
		counts, err := s.BanCounts(ctx, jail, all)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range all {
			var want int
			q := "SELECT coalesce(SUM(ban_count), 0) FROM ban_history WHERE addr = ? AND (jail = ? OR ? = '')"
			if err := s.db.QueryRowContext(ctx, q, actions.Target(p), jail, jail).Scan(&want); err != nil {
				t.Fatal(err)
			}
			if counts[p] != want {
				t.Errorf("BanCounts(%q)[%v] = %d, the history says %d", jail, p, counts[p], want)
			}
		}
	}

	asked := s.counted.Load()
	for i := 0; i < 3000; i += 3 {
		var fresh []netip.Prefix
		for k := i; k < i+3; k++ {
			fresh = append(fresh, actions.Host(netip.AddrFrom4([4]byte{198, 18, byte(k >> 8), byte(k)})))
		}
		for _, jail := range []string{"sasl", ""} {
			counts, err := s.BanCounts(ctx, jail, fresh)
			if err != nil || len(counts) != 0 {
				t.Fatalf("BanCounts(%q) of new addresses = %v, %v", jail, counts, err)
			}
		}
	}
	if n := s.counted.Load() - asked; n > 0 {
		t.Errorf("2,000 lookups of 3 new addresses each asked SQLite %d times; want none", n)
	}
}
