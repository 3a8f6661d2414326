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
	s.LoadHistory()
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

// The history is bounded: an attacker earning ban after ban from new addresses adds a
// row each, and past its bound (and slack) the rows banned longest ago go, down to the
// bound less the slack; those banned last keep their counts, and their filter keys.
func TestTheHistoryKeepsItsBoundDroppingTheOldest(t *testing.T) {
	ctx := context.Background()
	s := tempStore(t)
	s.historyMax = 100 // slack 10
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	addr := func(i int) netip.Addr {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 6: byte(i >> 8), 7: byte(i), 15: 1})
	}
	const n = 1000
	for first := 0; first < n; first += 37 {
		var recs []jails.Record
		for i := first; i < min(first+37, n); i++ {
			at := t0.Add(time.Duration(i) * time.Second)
			recs = append(recs, jails.Record{Ban: actions.Ban{Jail: "sasl", Addr: addr(i), BannedAt: at, Expires: at.Add(time.Hour)}, Count: 3})
		}
		if err := s.SaveBans(ctx, recs); err != nil {
			t.Fatal(err)
		}
		if rows := historyRows(t, s); rows > 110 {
			t.Fatalf("after %d bans the history holds %d rows; want at most 110", min(first+37, n), rows)
		}
	}
	var oldest string
	if err := s.db.QueryRowContext(ctx, "SELECT min(last_banned) FROM ban_history").Scan(&oldest); err != nil {
		t.Fatal(err)
	}
	if at, _ := time.Parse(time.RFC3339Nano, oldest); at.Before(t0.Add((n - 110) * time.Second)) {
		t.Errorf("the oldest row left was banned at %s: older rows were kept over newer ones", oldest)
	}
	counts, err := s.BanCounts(ctx, "sasl", []netip.Prefix{actions.Host(addr(n - 1)), actions.Host(addr(0))})
	if err != nil {
		t.Fatal(err)
	}
	if counts[actions.Host(addr(n-1))] != 3 || counts[actions.Host(addr(0))] != 0 {
		t.Errorf("counts of the last ban and the first: %v; want 3 and 0", counts)
	}
}

// The bound holds when the filter answers "maybe" for every key, as one that knows a
// history of millions does: new rows are counted whatever the filter says of them.
func TestTheHistoryKeepsItsBoundWhenTheFilterIsFull(t *testing.T) {
	ctx := context.Background()
	s := tempStore(t)
	s.historyMax = 100 // slack 10
	s.LoadHistory()
	<-s.historyLoaded
	for i := range s.history.words {
		s.history.words[i].Store(^uint64(0))
	}
	now := time.Now()
	for first := 0; first < 1000; first += 50 {
		var recs []jails.Record
		for i := first; i < first+50; i++ {
			recs = append(recs, jails.Record{Ban: actions.Ban{Jail: "sasl", Addr: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}),
				BannedAt: now, Expires: now.Add(time.Hour)}, Count: 1})
		}
		if err := s.SaveBans(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}
	if rows := historyRows(t, s); rows > 110 {
		t.Errorf("after 1,000 new bans the history holds %d rows; want at most 110", rows)
	}
}

// historyRows returns the rows ban_history holds.
func historyRows(t *testing.T, s *Store) int {
	t.Helper()
	var rows int
	if err := s.db.QueryRowContext(context.Background(), "SELECT count(*) FROM ban_history").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	return rows
}
