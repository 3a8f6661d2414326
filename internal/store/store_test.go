package store

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/testenv"
	"github.com/logban/logban/jails"
	"github.com/logban/logban/watcher"
)

func TestPositionsSurviveReopening(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state", "logban.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]watcher.Position{
		"/var/log/zimbra.log":                     {File: watcher.Identity{Device: 2049, Inode: 1234567, Head: math.MaxUint64 - 5}, Offset: 159_000_000},
		"/opt/zimbra/log/mailbox.log":             {File: watcher.Identity{Device: 1, Inode: 2}, Offset: 0},
		"journal _SYSTEMD_UNIT=postfix@-.service": {Cursor: "s=11b4991fdfbe4e3d9bb562d88a29e47b;i=1f;b=0123;m=1;t=6620;x=59ad"},
	}
	if err := s.SavePositions(ctx, want); err != nil {
		t.Fatal(err)
	}
	moved := map[string]watcher.Position{"/var/log/zimbra.log": {File: watcher.Identity{Device: 2049, Inode: 99, Head: 7}, Offset: 42}}
	if err := s.SavePositions(ctx, moved); err != nil {
		t.Fatal(err)
	}
	want["/var/log/zimbra.log"] = moved["/var/log/zimbra.log"]
	s.Close()

	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Positions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("positions\n got %v\nwant %v", got, want)
	}
}

func TestReadableWithSqlite3(t *testing.T) {
	sqlite3 := testenv.RequireTool(t, "sqlite3", "sqlite3")
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "logban.db")
	s, _ := Open(ctx, path)
	s.SavePositions(ctx, map[string]watcher.Position{"/var/log/zimbra.log": {Offset: 42}})
	s.Close()
	out, err := exec.Command(sqlite3, path, "SELECT path, offset FROM positions").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "/var/log/zimbra.log|42" {
		t.Errorf("sqlite3: %s %v", out, err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "logban.db")
	s, _ := Open(ctx, path)
	s.db.Exec("PRAGMA user_version = 99")
	s.Close()
	if _, err := Open(ctx, path); err == nil || !strings.Contains(err.Error(), "newer logban") {
		t.Errorf("got %v", err)
	}
}

func TestBansSurviveReopening(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "logban.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 5, 16, 0, 0, 123456789, time.UTC)
	a := netip.MustParseAddr("203.0.113.5")
	six := netip.MustParseAddr("2001:db8::5")
	recs := []jails.Record{
		{Ban: actions.Ban{Jail: "sasl", Addr: a, Failures: 3, BannedAt: t0, Expires: t0.Add(10 * time.Hour), By: "mta1", Why: "3 failures",
			Lines: []string{"Mar  5 15:59:58 mta1 x[1]: unknown[203.0.113.5]: SASL LOGIN failed", "line two"}}, Count: 1},
		{Ban: actions.Ban{Jail: "dos", Addr: six, BannedAt: t0}, Count: 4},
		{Ban: actions.Ban{Jail: "dos", Addr: a, BannedAt: t0, Expires: t0.Add(time.Hour)}, Count: 2},
	}
	for _, r := range recs {
		if err := s.SaveBan(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteBan(ctx, "dos", actions.Host(a)); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, _ = Open(ctx, path)
	defer s.Close()
	got, err := s.Bans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(x, y jails.Record) int { return strings.Compare(x.Jail, y.Jail) })
	if len(got) != 2 || !reflect.DeepEqual(got[0], recs[1]) || !got[1].BannedAt.Equal(t0) || !got[1].Expires.Equal(recs[0].Expires) || got[1].Failures != 3 {
		t.Errorf("bans\n got %+v\nwant %+v and %+v", got, recs[1], recs[0])
	}
	for _, c := range []struct {
		jail string
		want int
	}{{"sasl", 1}, {"dos", 2}, {"", 3}, {"nope", 0}} {
		if n, err := s.BanCount(ctx, c.jail, actions.Host(a)); err != nil || n != c.want {
			t.Errorf("BanCount(%q) = %d, %v; want %d (counts outlive the bans)", c.jail, n, err, c.want)
		}
	}
	// BanCounts agrees with BanCount, many addresses at once, over several queries.
	many := []netip.Prefix{actions.Host(a), actions.Host(six), netip.MustParsePrefix("198.51.100.0/24")}
	for i := range 2 * countChunk {
		many = append(many, actions.Host(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})))
	}
	for _, jail := range []string{"sasl", "dos", "", "nope"} {
		counts, err := s.BanCounts(ctx, jail, many)
		if err != nil {
			t.Fatal(err)
		}
		for _, addr := range many {
			if want, _ := s.BanCount(ctx, jail, addr); counts[addr] != want {
				t.Errorf("BanCounts(%q)[%v] = %d, BanCount says %d", jail, addr, counts[addr], want)
			}
		}
	}
}

// Logins that worked are kept, each pair's newest, and forgotten once older than asked.
func TestKnownGoodSurviveReopening(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "logban.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	a, b := netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("2001:db8::5")
	t1 := time.Date(2026, 3, 5, 16, 0, 0, 500, time.UTC)
	s.SaveKnownGood(ctx, []jails.TrustedPair{{Account: "anna", Addr: a, Last: t1}, {Account: "bob", Addr: b, Last: t1.Add(-40 * 24 * time.Hour)}})
	s.SaveKnownGood(ctx, []jails.TrustedPair{{Account: "anna", Addr: a, Last: t1.Add(-time.Hour)}}) // older: kept the newer
	s.Close()
	if s, err = Open(ctx, path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.KnownGood(ctx, t1.Add(-30*24*time.Hour))
	if err != nil || len(got) != 1 || got[0].Account != "anna" || got[0].Addr != a || !got[0].Last.Equal(t1) {
		t.Errorf("KnownGood = %+v, %v; want anna's login at %v alone", got, err, t1)
	}
}

// A ban of a network, and a ban naming its account, come back as they were saved.
func TestNetworkAndAccountBansSurviveReopening(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "logban.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 5, 16, 0, 0, 0, time.UTC)
	net := jails.Record{Ban: actions.Ban{Jail: "sasl", Addr: netip.MustParseAddr("2001:db8:1:1::"), Bits: 64, Failures: 5, BannedAt: at, Why: "5 addresses"}, Count: 1}
	acct := jails.Record{Ban: actions.Ban{Jail: "sasl", Addr: netip.MustParseAddr("198.51.100.7"), User: "anna@example.com", Failures: 5, BannedAt: at}, Count: 1}
	if err := s.SaveBans(ctx, []jails.Record{net, acct}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(ctx, path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	bans, err := s.Bans(ctx)
	if err != nil || len(bans) != 2 {
		t.Fatalf("bans %+v, %v", bans, err)
	}
	for _, b := range bans {
		if b.Addr.Is4() && (b.User != "anna@example.com" || b.Bits != 0) || b.Addr.Is6() && (b.Target() != "2001:db8:1:1::/64" || b.Why != "5 addresses") {
			t.Errorf("read back %+v", b)
		}
	}
	if n, _ := s.BanCount(ctx, "sasl", netip.MustParsePrefix("2001:db8:1:1::/64")); n != 1 {
		t.Errorf("the network's ban count: %d", n)
	}
	if h, err := s.History(ctx, netip.MustParsePrefix("2001:db8:1:1::/64"), 10); err != nil || len(h) != 1 || h[0].What != netip.MustParsePrefix("2001:db8:1:1::/64") {
		t.Errorf("the network's history: %+v, %v", h, err)
	}
	if err := s.DeleteBan(ctx, "sasl", netip.MustParsePrefix("2001:db8:1:1::/64")); err != nil {
		t.Fatal(err)
	}
	if bans, _ := s.Bans(ctx); len(bans) != 1 {
		t.Errorf("after deleting the network's ban: %+v", bans)
	}
}

func TestKeyBansSurviveReopening(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "logban.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 29, 10, 0, 0, 123, time.UTC)
	device := jails.KeyBan{Jail: "mobile", Kind: jails.KeyDevice, Key: "ApplF17XK0ZZHG7F", User: "anna", Count: 150, BannedAt: at, Expires: at.Add(10 * time.Minute),
		Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("2001:db8::11")}}
	account := jails.KeyBan{Jail: "sasl", Kind: jails.KeyUser, Key: `bob "the" admin`, Count: 5, BannedAt: at}
	if err := s.SaveKeyBans(ctx, jails.KeyBanChanges{Saves: []jails.KeyBan{device, account}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(ctx, path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.KeyBans(ctx)
	if err != nil || len(got) != 2 {
		t.Fatalf("read back %+v, %v", got, err)
	}
	jails.SortKeyBans(got)
	if !reflect.DeepEqual(got, []jails.KeyBan{device, account}) {
		t.Errorf("read back\n %+v\nwant\n %+v", got, []jails.KeyBan{device, account})
	}
	if err := s.SaveKeyBans(ctx, jails.KeyBanChanges{Deletes: []jails.KeyBan{{Jail: "mobile", Kind: jails.KeyDevice, Key: "ApplF17XK0ZZHG7F"}}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.KeyBans(ctx); len(got) != 1 || got[0].Key != account.Key {
		t.Errorf("after the delete: %+v", got)
	}
}

// The database holds who failed how and the lines that counted: its files are root's
// alone, also when an older version left them readable.
func TestDatabaseFilesArePrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logban.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		os.Chmod(p, 0o644) // as an older version left them
	}
	s, err = Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SavePositions(context.Background(), map[string]watcher.Position{"/var/log/zimbra.log": {Offset: 1}}); err != nil {
		t.Fatal(err) // a write, for SQLite's WAL
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600", filepath.Base(p), fi.Mode().Perm(), err)
		}
	}
}

// SaveBans records a burst in whole chunks, on statements prepared once, and the rest
// on its own: every ban is there, with its count, twice over in one Store.
func TestSaveBansInChunks(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "logban.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 3, 5, 16, 0, 0, 0, time.UTC)
	const n = 2*saveChunk + 7
	recs := make([]jails.Record, n)
	for round := 1; round <= 2; round++ {
		for i := range recs {
			recs[i] = jails.Record{Ban: actions.Ban{Jail: "sasl", Addr: netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}),
				Failures: 3, BannedAt: t0, Expires: t0.Add(time.Hour), Lines: []string{fmt.Sprint("line ", i)}}, Count: round}
		}
		if err := s.SaveBans(ctx, recs); err != nil {
			t.Fatal(err)
		}
		got, err := s.Bans(ctx)
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(got, func(x, y jails.Record) int { return x.Addr.Compare(y.Addr) })
		if !reflect.DeepEqual(got, recs) {
			t.Fatalf("round %d: %d bans read back, want the %d saved, as saved", round, len(got), n)
		}
		if c, err := s.BanCount(ctx, "sasl", actions.Host(recs[n-1].Addr)); err != nil || c != round {
			t.Errorf("round %d: ban count %d, %v; want %d", round, c, err, round)
		}
	}
	// A restart's reading leaves the lines in the database.
	read := 0
	for r, err := range s.EachBan(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if read++; r.Lines != nil || r.Failures != 3 || r.Count != 2 {
			t.Fatalf("EachBan yielded %+v; want the ban without its lines", r)
		}
	}
	if read != n {
		t.Errorf("EachBan yielded %d bans, want %d", read, n)
	}
	if lines, err := s.BanLines(ctx, "sasl", actions.Host(recs[5].Addr)); err != nil || len(lines) != 1 || lines[0] != "line 5" {
		t.Errorf("BanLines = %q, %v; want the ban's one line from the database", lines, err)
	}
}
