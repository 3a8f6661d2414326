package daemon

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/control"
	"github.com/logban/logban/internal/store"
	"github.com/logban/logban/internal/testenv"
	"github.com/logban/logban/jails"
)

// dbPath is the harness's database.
func (h *harness) dbPath() string { return filepath.Join(h.dir, "run", "logban.db") }

// recorded returns the addresses the database at path holds bans for, and their
// ban_count and banned_at, read by a connection of the test's own.
func recorded(t *testing.T, path string) map[string]string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT addr, ban_count, banned_at FROM bans")
	if err != nil {
		return nil
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var addr, at string
		var n int
		rows.Scan(&addr, &n, &at)
		out[addr] = fmt.Sprintf("%d %s", n, at)
	}
	return out
}

// waitRecorded waits until the database at path holds n bans.
func waitRecorded(t *testing.T, path string, n int) map[string]string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			if got := recorded(t, path); len(got) == n {
				return got
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the database never held %d bans: %v", n, recorded(t, path))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A database deleted, or replaced by a damaged file, while the server runs is noticed
// within seconds and made anew from the bans in force, which then survive a restart.
// (Damage in place is checked too, by Store.Check, but a live database's own writes may
// put its first page back before a check looks.)
func TestDatabaseLostWhileRunning(t *testing.T) {
	for name, lose := range map[string]func(path string){
		"deleted": func(path string) { os.Remove(path) },
		"damaged": func(path string) {
			os.WriteFile(path+".tmp", []byte(strings.Repeat("damaged ", 2000)), 0o600)
			os.Rename(path+".tmp", path)
		},
	} {
		t.Run(name, func(t *testing.T) {
			h := start(t, baseConfig, Options{})
			h.fail("203.0.113.1", 3)
			h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 1 })
			waitRecorded(t, h.dbPath(), 1)

			lose(h.dbPath())
			// Made anew, with the ban in it: the old files (the damaged one, and the old
			// write-ahead log, which would still answer a reader) are moved aside first.
			deadline := time.Now().Add(20 * time.Second)
			for moved, _ := filepath.Glob(h.dbPath() + ".corrupt-*-wal"); len(moved) == 0; moved, _ = filepath.Glob(h.dbPath() + ".corrupt-*-wal") {
				if time.Now().After(deadline) {
					t.Fatal("the lost database was never made anew")
				}
				time.Sleep(20 * time.Millisecond)
			}
			waitRecorded(t, h.dbPath(), 1)
			h.fail("203.0.113.2", 3)
			h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 2 })
			waitRecorded(t, h.dbPath(), 2)

			h.shutdown()
			h.run(Options{})
			if s := h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 2 }); !strings.Contains(strings.Join(bannedAddrs(s), " "), "203.0.113.1") {
				t.Errorf("after restart: %v", bannedAddrs(s))
			}
			if moved, _ := filepath.Glob(h.dbPath() + ".corrupt-*[0-9]Z"); name == "damaged" && len(moved) != 1 {
				t.Errorf("the damaged database kept aside: %v", moved)
			}
		})
	}
}

// A database too damaged to open does not keep the server from protecting the host: it
// starts, on a new database, and keeps the damaged one aside.
func TestDamagedDatabaseAtStart(t *testing.T) {
	h := start(t, baseConfig, Options{})
	h.fail("203.0.113.1", 3)
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 1 })
	h.shutdown()
	os.WriteFile(h.dbPath(), []byte(strings.Repeat("not a database ", 100)), 0o600)

	h.run(Options{})
	h.fail("203.0.113.2", 3)
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 1 })
	if moved, _ := filepath.Glob(h.dbPath() + ".corrupt-*"); len(moved) != 1 {
		t.Errorf("moved aside: %v", moved)
	}
}

// Bans recorded by the last run are in force before any line is read: lines read again
// after a crash (their position was not saved yet) ban nobody again, and raise no
// ban_count.
func TestLinesReadAgainAfterACrashBanNobodyAgain(t *testing.T) {
	h := start(t, baseConfig, Options{})
	const n = 2000
	var b strings.Builder
	stamp := time.Now().Format(time.Stamp)
	for i := range n {
		for range 3 {
			fmt.Fprintf(&b, "%s mta1 postfix/submission/smtpd[1]: warning: unknown[10.%d.%d.%d]: SASL LOGIN authentication failed: x\n", stamp, i>>16, (i>>8)&255, i&255)
		}
	}
	h.append(b.String())
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == n })
	before := waitRecorded(t, h.dbPath(), n)
	h.shutdown()

	// As after a crash before the position was saved: the lines are read again.
	db, _ := sql.Open("sqlite", "file:"+h.dbPath())
	if _, err := db.Exec("UPDATE positions SET offset = 0"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	h.run(Options{})
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.TotalFailed == 3*n })
	h.shutdown() // the ban queue has handed on every ticket once the readers stop
	after := recorded(t, h.dbPath())
	for addr, was := range before {
		if after[addr] != was {
			t.Fatalf("%s: ban_count and banned_at %q after the lines were read again, %q before", addr, after[addr], was)
		}
	}
}

// failingLedger refuses every write while down, like a full disk; otherwise it writes to
// the daemon's store.
type failingLedger struct {
	*store.Store
	down atomic.Bool
}

func (l *failingLedger) SaveBans(ctx context.Context, rs []jails.Record) error {
	if l.down.Load() {
		return errors.New("database or disk is full")
	}
	return l.Store.SaveBans(ctx, rs)
}

// While bans cannot be recorded, they are in force, the server says it is degraded, and
// file positions are not saved past the lines that made them: a stop (or a crash) then
// reads those lines again at the next start and nothing is lost.
func TestUnrecordedBansHoldPositionsBack(t *testing.T) {
	h := start(t, baseConfig, Options{})
	ledger := &failingLedger{Store: h.d.store}
	ledger.down.Store(true)
	h.d.manager.SetLedger(ledger)

	h.fail("203.0.113.1", 3)
	// The ban is applied, then its record fails behind it.
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 1 && s.Unrecorded == 1 })
	if st, err := h.client.Status(context.Background()); err != nil || !strings.Contains(st.Degraded, "1 bans in force are not recorded") {
		t.Errorf("status: %+v, %v", st, err)
	}
	h.shutdown()
	if got := recorded(t, h.dbPath()); len(got) != 0 {
		t.Fatalf("recorded %v through a failing ledger", got)
	}

	h.run(Options{}) // a working database: the lines are read again, and the ban made
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 1 })
	waitRecorded(t, h.dbPath(), 1)
}

// On a disk that fills up, bans go on being applied and wait in memory; once space is
// back they are all recorded without a restart, and survive one.
func TestDiskFull(t *testing.T) {
	testenv.RequireRoot(t)
	h := start(t, strings.Replace(baseConfig, `database = "run/logban.db"`, `database = "tmpfs/logban.db"`, 1), Options{})
	h.shutdown()
	tmpfs := filepath.Join(h.dir, "tmpfs")
	os.MkdirAll(tmpfs, 0o700)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", tmpfs).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", tmpfs).Run() })
	h.run(Options{})
	db := filepath.Join(tmpfs, "logban.db")

	// Fill what is left of the tmpfs.
	filler := filepath.Join(tmpfs, "filler")
	f, _ := os.Create(filler)
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()

	const n = 500
	var b strings.Builder
	stamp := time.Now().Format(time.Stamp)
	for i := range n {
		for range 3 {
			fmt.Fprintf(&b, "%s mta1 postfix/submission/smtpd[1]: warning: unknown[10.0.%d.%d]: SASL LOGIN authentication failed: x\n", stamp, i>>8, i&255)
		}
	}
	h.append(b.String())
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == n && s.Unrecorded > 0 })
	if st, _ := h.client.Status(context.Background()); st.Degraded == "" {
		t.Error("a full disk not shown in status")
	}

	os.Remove(filler)
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.Unrecorded == 0 })
	if st, _ := h.client.Status(context.Background()); st.Degraded != "" {
		t.Errorf("still degraded: %s", st.Degraded)
	}
	waitRecorded(t, db, n)
	h.shutdown()
	h.run(Options{})
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == n })
}

// A part of the server that fails stops it without lifting what the actions put in the
// kernel, as a crash would; an orderly stop lifts it.
func TestOnlyAnOrderlyStopStopsTheActions(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "stopped")
	cfg := strings.Replace(baseConfig, `actions = ["log"]`, `actions = ["log", "mark"]`, 1) + `
[actions.mark]
type  = "exec"
ban   = ["true"]
unban = ["true"]
stop  = ["touch", "` + marker + `"]
`
	h := start(t, cfg, Options{})
	h.d.controlLn.Close() // the control socket fails: Serve ends with an error
	if err := <-h.stopped; err == nil {
		t.Fatal("Run returned no error after a part failed")
	}
	h.stop = nil
	if _, err := os.Stat(marker); err == nil {
		t.Error("a failure stopped the actions")
	}

	h.run(Options{})
	h.shutdown()
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("an orderly stop did not stop the actions: %v", err)
	}
}

// banip of many addresses records them in one transaction, and says why an address is
// never banned.
func TestManualBanOfManyAddresses(t *testing.T) {
	h := start(t, baseConfig, Options{})
	var addrs []netip.Addr
	for i := range 2000 {
		addrs = append(addrs, netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}))
	}
	addrs = append(addrs, netip.MustParseAddr("255.255.255.255"), netip.MustParseAddr("fe80::1"), netip.MustParseAddr("ff02::1"))
	var targets []netip.Prefix
	for _, a := range addrs {
		targets = append(targets, actions.Host(a))
	}
	rs, err := h.client.BanIP(context.Background(), "sasl", targets...)
	if err != nil {
		t.Fatal(err)
	}
	done := 0
	for _, r := range rs {
		if r.Done {
			done++
		}
	}
	if done != 2000 || rs[2000].Note != "the broadcast address: never banned" || !strings.HasPrefix(rs[2001].Note, "a link-local address") || rs[2002].Note != "a multicast address: never banned" {
		t.Errorf("%d banned; notes %q %q %q", done, rs[2000].Note, rs[2001].Note, rs[2002].Note)
	}
	waitRecorded(t, h.dbPath(), 2000)
}

// stoppedClock is a clock that stays where the test puts it.
type stoppedClock struct{ at atomic.Pointer[time.Time] }

func (c *stoppedClock) Now() time.Time { return *c.at.Load() }

// A log whose line times are steadily an hour off the host's clock (written in another
// time zone) is reported once, with the offset and the setting that fixes it; with that
// setting, its failures count when they happened.
func TestClockSkewReported(t *testing.T) {
	now := time.Date(2026, 3, 5, 16, 0, 0, 0, time.Local)
	clock := &stoppedClock{}
	clock.at.Store(&now)
	// findtime 10m: an hour-old failure never counts.
	cfg := strings.Replace(strings.Replace(baseConfig, "maxretry = 3", "maxretry = 100", 1), `findtime = "1h"`, `findtime = "10m"`, 1)
	h := start(t, cfg, Options{Clock: clock})
	writeAt := func(n int, at time.Time) {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "%s mta1 postfix/submission/smtpd[1]: warning: unknown[203.0.113.%d]: SASL LOGIN authentication failed: x\n", at.Format(time.Stamp), i)
		}
		h.append(b.String())
	}
	hourBehind := now.Add(-time.Hour)
	writeAt(20, hourBehind)
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.TotalFailed == 20 })
	h.d.judgeSkew() // the files are read to their end: the next look may judge
	writeAt(20, hourBehind)
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.TotalFailed == 40 })
	h.d.judgeSkew()
	s := h.waitFor("sasl", func(control.JailStatus) bool { return true })
	if s.ClockOffset != 3600 || !strings.Contains(s.ClockAdvice, "steadily 1h0m0s behind") || !strings.Contains(s.ClockAdvice, "set jails.sasl.timezone") {
		t.Fatalf("clock offset %v: %q", s.ClockOffset, s.ClockAdvice)
	}
	_, off := now.Zone()
	h.writeConfig(strings.Replace(cfg, "maxretry = 100", fmt.Sprintf("maxretry = 3\ntimezone = %q", offsetText(off-3600)), 1))
	if err := h.d.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Read in the writer's zone, these are now: three failures of one address ban it.
	h.append(strings.Repeat(fmt.Sprintf("%s mta1 postfix/submission/smtpd[1]: warning: unknown[198.51.100.9]: SASL LOGIN authentication failed: x\n", hourBehind.Format(time.Stamp)), 3))
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 1 })
}

func offsetText(sec int) string {
	sign := "+"
	if sec < 0 {
		sign, sec = "-", -sec
	}
	return fmt.Sprintf("%s%02d:%02d", sign, sec/3600, sec%3600/60)
}
