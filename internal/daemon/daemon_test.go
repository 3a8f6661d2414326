package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/control"
	"github.com/logban/logban/internal/netnstest"
)

// harness runs a daemon on a temp config and log.
type harness struct {
	t       *testing.T
	dir     string
	log     string // the followed zimbra.log
	bans    string // the log action's output
	client  *control.Client
	d       *Daemon
	stop    context.CancelFunc
	stopped chan error
	// in, if set, runs the daemon: netnstest.Lab.Do runs it in a lab's namespace.
	in func(func())
	// logged keeps every line the daemon logged, for tests that read its log.
	logged lockedBuffer
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const baseConfig = `
[server]
socket = "run/logban.sock"
database = "run/logban.db"
ignoreip = ["192.0.2.0/24"]

[actions.log]
type = "log"
path = "bans.log"

[jails.sasl]
filter = "zimbra-submission"
logpath = ["zimbra.log"]
maxretry = 3
findtime = "1h"
bantime = "10h"
actions = ["log"]
`

func start(t *testing.T, config string, opts Options) *harness {
	t.Helper()
	return startIn(t, nil, config, opts)
}

// startIn starts a daemon as start does, run by in (nil: in the test's namespace).
func startIn(t *testing.T, in func(func()), config string, opts Options) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{t: t, dir: dir, log: filepath.Join(dir, "zimbra.log"), bans: filepath.Join(dir, "bans.log"), in: in}
	h.writeConfig(config)
	if err := os.WriteFile(h.log, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h.run(opts)
	t.Cleanup(h.shutdown)
	return h
}

// startInLab starts a daemon on config in a new lab's server namespace, its own
// addresses the lab server's, as startIn does.
func startInLab(t *testing.T, config string) (*netnstest.Lab, *harness) {
	t.Helper()
	lab := netnstest.New(t)
	h := startIn(t, lab.Do, config, Options{HostPrefixes: func() ([]netip.Prefix, error) {
		return []netip.Prefix{actions.Host(netnstest.Server4), actions.Host(netnstest.Server6)}, nil
	}})
	return lab, h
}

// run starts a daemon on the harness's folder.
func (h *harness) run(opts Options) {
	h.t.Helper()
	opts.ConfigPath = filepath.Join(h.dir, "logban.toml")
	opts.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(testWriter{h.t}, &h.logged), &slog.HandlerOptions{Level: slog.LevelDebug}))
	if opts.HostPrefixes == nil {
		opts.HostPrefixes = func() ([]netip.Prefix, error) {
			return []netip.Prefix{netip.MustParsePrefix("198.51.100.1/32")}, nil
		}
	}
	d, err := New(opts)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.d, h.stop, h.stopped = d, cancel, make(chan error, 1)
	in := h.in
	if in == nil {
		in = func(f func()) { f() }
	}
	go in(func() { h.stopped <- d.Run(ctx) })
	select {
	case <-d.Ready():
	case err := <-h.stopped:
		h.t.Fatalf("Run: %v", err)
	}
	h.client = control.NewClient(filepath.Join(h.dir, "run", "logban.sock"))
}

func (h *harness) shutdown() {
	if h.stop == nil {
		return
	}
	h.stop()
	h.stop = nil
	if err := <-h.stopped; err != nil {
		h.t.Errorf("Run: %v", err)
	}
}

func (h *harness) writeConfig(text string) {
	if err := os.WriteFile(filepath.Join(h.dir, "logban.toml"), []byte(text), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// fail appends n submission failures of addr, stamped now, to the followed log.
func (h *harness) fail(addr string, n int) {
	h.t.Helper()
	var b strings.Builder
	for range n {
		fmt.Fprintf(&b, "%s mta1 postfix/submission/smtpd[4242]: warning: unknown[%s]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n",
			time.Now().Format(time.Stamp), addr)
	}
	h.append(b.String())
}

func (h *harness) append(text string) {
	h.t.Helper()
	f, err := os.OpenFile(h.log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		h.t.Fatal(err)
	}
}

// waitFor polls the jail's status until cond holds; lines arrive through inotify, on
// their own time.
func (h *harness) waitFor(jail string, cond func(control.JailStatus) bool) control.JailStatus {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := h.client.JailStatus(context.Background(), jail)
		if err != nil {
			h.t.Fatal(err)
		}
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("gave up waiting; status %+v", s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func bannedAddrs(s control.JailStatus) []string {
	var out []string
	for _, b := range s.Bans {
		out = append(out, b.Addr.String())
	}
	return out
}

func (h *harness) banLog() string {
	b, _ := os.ReadFile(h.bans)
	return string(b)
}

func TestEndToEnd(t *testing.T) {
	ctx := context.Background()
	h := start(t, baseConfig, Options{})

	h.append("Nov 22 00:00:00 mta1 postfix/qmgr[1]: 0A1B: from=<a@example.com>, size=1, nrcpt=1 (queue active)\n")
	h.fail("203.0.113.5", 2)
	h.fail("2001:db8::bad", 2)
	h.fail("127.0.0.1", 5)    // loopback
	h.fail("192.0.2.44", 5)   // server ignoreip
	h.fail("198.51.100.1", 5) // the host's own address
	h.fail("203.0.113.5", 1)  // third strike
	h.append("Nov 22 00:00:00 mta1 postfix/submission/smtpd[1]: 0A: client=unknown[198.51.100.9], sasl_method=PLAIN, sasl_username=postfix/submission/smtpd[2]: warning: unknown[203.0.113.66]: SASL LOGIN authentication failed\n")

	s := h.waitFor("sasl", func(s control.JailStatus) bool {
		return s.CurrentlyBanned == 1 && s.CurrentlyFailed >= 1 && queuesEmpty(s)
	})
	if got := bannedAddrs(s); !slices.Equal(got, []string{"203.0.113.5"}) {
		t.Fatalf("banned %v, want only 203.0.113.5", got)
	}
	if s.TotalFailed != 5 || s.CurrentlyFailed != 1 || s.TotalBanned != 1 {
		t.Errorf("status %+v; want 5 failures counted (ignored addresses not), 1 address still failing", s)
	}
	if b := s.Bans[0]; b.Failures != 3 || b.Expires.Sub(b.BannedAt) != 10*time.Hour {
		t.Errorf("ban %+v", b)
	}
	if !strings.Contains(h.banLog(), " ban jail=sasl addr=203.0.113.5 failures=3 expires=") {
		t.Errorf("log action output:\n%s", h.banLog())
	}

	// The IPv6 attacker's third failure bans it too.
	h.fail("2001:db8::bad", 1)
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 2 })

	rs, err := h.client.UnbanIP(ctx, "", actions.Host(netip.MustParseAddr("203.0.113.5")))
	if err != nil || len(rs) != 1 || !rs[0].Done || !slices.Equal(rs[0].Jails, []string{"sasl"}) {
		t.Fatalf("UnbanIP = %+v, %v", rs, err)
	}
	s = h.waitFor("sasl", queuesEmpty)
	if got := bannedAddrs(s); !slices.Equal(got, []string{"2001:db8::bad"}) {
		t.Errorf("after unban: banned %v", got)
	}
	if !strings.Contains(h.banLog(), " unban jail=sasl addr=203.0.113.5 ") {
		t.Errorf("no unban in the log action output:\n%s", h.banLog())
	}
	rs, _ = h.client.UnbanIP(ctx, "", actions.Host(netip.MustParseAddr("203.0.113.5")))
	if rs[0].Done || rs[0].Note != "not banned" {
		t.Errorf("second unban: %+v", rs)
	}

	// By hand: ignored addresses are refused, others banned once.
	rs, err = h.client.BanIP(ctx, "sasl", actions.Host(netip.MustParseAddr("127.0.0.1")), actions.Host(netip.MustParseAddr("192.0.2.1")),
		actions.Host(netip.MustParseAddr("198.51.100.1")), actions.Host(netip.MustParseAddr("203.0.113.77")), actions.Host(netip.MustParseAddr("2001:db8::bad")))
	if err != nil {
		t.Fatal(err)
	}
	var done []string
	for _, r := range rs {
		if r.Done {
			done = append(done, r.Addr.String())
		}
	}
	if !slices.Equal(done, []string{"203.0.113.77"}) || rs[4].Note != "already banned" {
		t.Errorf("BanIP results %+v", rs)
	}
	if _, err := h.client.BanIP(ctx, "nope", actions.Host(netip.MustParseAddr("203.0.113.78"))); err == nil {
		t.Error("ban in an unknown jail succeeded")
	}
}

func TestReload(t *testing.T) {
	ctx := context.Background()
	h := start(t, baseConfig, Options{})
	h.fail("203.0.113.5", 3)
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 1 })

	// A bad configuration is refused and changes nothing.
	h.writeConfig(baseConfig + "\n[jails.extra]\nfilter = \"zimbra-submission\"\nlogpath = [\"other.log\"]\nactions = [\"log\"]\nmaxretry = 0\n")
	err := h.client.Reload(ctx)
	if err == nil || !strings.Contains(err.Error(), "jails.extra.maxretry: must be at least 1, got 0") {
		t.Fatalf("bad reload: %v", err)
	}
	if s, _ := h.client.Status(ctx); !slices.Equal(s.Jails, []string{"sasl"}) {
		t.Errorf("jails after refused reload %v", s.Jails)
	}

	// A jail added, the surviving jail changed: its ban stays.
	h.writeConfig(strings.Replace(baseConfig, "maxretry = 3", "maxretry = 2", 1) +
		"\n[jails.extra]\nfilter = \"zimbra-submission\"\nlogpath = [\"zimbra.log\"]\nactions = [\"log\"]\nmaxretry = 1\n")
	if err := h.client.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if s, _ := h.client.Status(ctx); !slices.Equal(s.Jails, []string{"extra", "sasl"}) {
		t.Errorf("jails after reload %v", s.Jails)
	}
	s, _ := h.client.JailStatus(ctx, "sasl")
	if got := bannedAddrs(s); !slices.Equal(got, []string{"203.0.113.5"}) {
		t.Errorf("sasl bans after reload %v", got)
	}
	// One reader feeds both jails; the changed jail counts with its new maxretry.
	h.fail("203.0.113.9", 2)
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 2 })
	h.waitFor("extra", func(s control.JailStatus) bool { return s.CurrentlyBanned == 1 })

	// A jail removed: its bans are lifted through its actions.
	h.writeConfig(strings.Replace(baseConfig, "[jails.sasl]", "[jails.renamed]", 1))
	if err := h.d.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if s, _ := h.client.Status(ctx); !slices.Equal(s.Jails, []string{"renamed"}) {
		t.Errorf("jails %v", s.Jails)
	}
	h.waitFor("renamed", queuesEmpty)
	if n := strings.Count(h.banLog(), " unban "); n != 3 {
		t.Errorf("%d unbans after removing jails, want 3:\n%s", n, h.banLog())
	}
}

func TestRestartMissesNothingAndCountsNothingTwice(t *testing.T) {
	h := start(t, baseConfig, Options{})
	h.fail("203.0.113.1", 3)
	h.fail("203.0.113.2", 2)
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.TotalFailed == 5 })
	h.shutdown()

	// While the server is down: a failure in the old file, a rotation, two in the new.
	h.fail("203.0.113.3", 1)
	if err := os.Rename(h.log, h.log+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.log, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h.fail("203.0.113.3", 2)

	h.run(Options{})
	s := h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 2 })
	// 203.0.113.1's ban is restored; 203.0.113.3 failed once before the rotation, twice after.
	if got := bannedAddrs(s); !slices.Equal(got, []string{"203.0.113.1", "203.0.113.3"}) {
		t.Errorf("banned %v after restart, want 203.0.113.1 (restored) and 203.0.113.3", got)
	}
	h.fail("203.0.113.4", 1) // a line after the restart marks the end of what was read
	s = h.waitFor("sasl", func(s control.JailStatus) bool { return s.TotalFailed >= 4 })
	if s.TotalFailed != 4 {
		t.Errorf("%d failures counted after restart, want 4: lines read before the stop were read again", s.TotalFailed)
	}
}

// A dry run shows what it would ban, and leaves no trace: no action's file, no
// database, and so nothing for the next normal start to restore or apply.
func TestDryRunTouchesNothing(t *testing.T) {
	h := start(t, baseConfig, Options{DryRun: true})
	h.fail("203.0.113.5", 3)
	s := h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 1 })
	if st, err := h.client.Status(context.Background()); err != nil || !st.DryRun || !s.DryRun {
		t.Errorf("a dry run's status does not say so: %+v, %v; jail's %v", st, err, s.DryRun)
	}
	h.shutdown()
	if _, err := os.Stat(h.bans); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dry run opened the action's file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(h.dir, "run", "logban.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dry run wrote the database: %v", err)
	}
	h.run(Options{})
	if s, _ := h.client.JailStatus(context.Background(), "sasl"); s.CurrentlyBanned != 0 {
		t.Errorf("the start after a dry run holds %d bans: %v", s.CurrentlyBanned, bannedAddrs(s))
	}
	h.fail("203.0.113.6", 3) // a real ban, so the action's file exists and can be read
	waitText(t, h.banLog, "203.0.113.6")
	if strings.Contains(h.banLog(), "203.0.113.5") {
		t.Errorf("the start after a dry run applied what the dry run found:\n%s", h.banLog())
	}
}

func TestSecondServerOnOneSocketRefused(t *testing.T) {
	h := start(t, baseConfig, Options{})
	d, err := New(Options{ConfigPath: filepath.Join(h.dir, "logban.toml")})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "another server is listening") {
		t.Errorf("second Run: %v", err)
	}
}

func TestStopReturnsCleanly(t *testing.T) {
	h := start(t, baseConfig, Options{})
	h.shutdown()
	if err := h.client.Ping(context.Background()); !errors.Is(err, control.ErrUnreachable) {
		t.Errorf("after stop: %v", err)
	}
}

// testWriter sends the daemon's log to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func TestABrokenActionDoesNotStopTheOthers(t *testing.T) {
	cfg := strings.Replace(baseConfig, `actions = ["log"]`, `actions = ["broken", "log"]`, 1) + `
[actions.broken]
type = "exec"
ban = ["/nonexistent/firewall-helper", "{ip}"]
unban = ["/nonexistent/firewall-helper", "-d", "{ip}"]
`
	h := start(t, cfg, Options{})
	h.fail("203.0.113.5", 3)
	h.waitFor("sasl", func(s control.JailStatus) bool {
		return s.CurrentlyBanned == 1 && s.ActionErrors == 1 && s.ActionsPending == 1 && queuesEmpty(s)
	})
	if !strings.Contains(h.banLog(), " ban jail=sasl addr=203.0.113.5 ") {
		t.Errorf("the log action did not ban:\n%s", h.banLog())
	}
}

func TestAJailAskingForTheBeginningGetsIt(t *testing.T) {
	dir := t.TempDir()
	h := &harness{t: t, dir: dir, log: filepath.Join(dir, "zimbra.log"), bans: filepath.Join(dir, "bans.log")}
	h.writeConfig(baseConfig + "\n[jails.whole]\nfilter = \"zimbra-submission\"\nlogpath = [\"zimbra.log\"]\nactions = [\"log\"]\nmaxretry = 3\nstart = \"beginning\"\n")
	if err := os.WriteFile(h.log, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h.fail("203.0.113.5", 3) // written before the server starts
	h.run(Options{})
	t.Cleanup(h.shutdown)
	// The file is read once, from the widest start its jails ask for: both jails see it.
	h.waitFor("whole", func(s control.JailStatus) bool { return s.CurrentlyBanned == 1 })
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 1 })
}

// queuesEmpty reports whether the jail's actions have made every call handed to them.
func queuesEmpty(s control.JailStatus) bool {
	for _, q := range s.ActionQueues {
		if q.Queued > 0 {
			return false
		}
	}
	return true
}

// The log action's file, moved away by logrotate, is reopened at the reload its
// postrotate asks for: later bans go to the new file.
func TestReloadReopensTheLogActionsFile(t *testing.T) {
	h := start(t, baseConfig, Options{})
	h.fail("203.0.113.5", 3)
	waitText(t, h.banLog, "203.0.113.5")
	rotated := h.bans + ".1"
	if err := os.Rename(h.bans, rotated); err != nil {
		t.Fatal(err)
	}
	if err := h.client.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.fail("203.0.113.6", 3)
	waitText(t, h.banLog, "203.0.113.6")
	if old, _ := os.ReadFile(rotated); strings.Contains(string(old), "203.0.113.6") {
		t.Errorf("a ban after the reload went to the rotated file:\n%s", old)
	}
}

// A logpath pattern is expanded at start, and again as files come to match it: a file
// created later is followed from its beginning.
func TestLogpathPatternsFollowEveryMatchingFile(t *testing.T) {
	defer func(was time.Duration) { globInterval = was }(globInterval)
	globInterval = 50 * time.Millisecond
	cfg := strings.Replace(baseConfig, `logpath = ["zimbra.log"]`, `logpath = ["logs/*.log"]`, 1)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
	line := func(addr string) string {
		return fmt.Sprintf("%s mta1 postfix/submission/smtpd[4242]: warning: unknown[%s]: SASL LOGIN authentication failed: x\n", time.Now().Format(time.Stamp), addr)
	}
	os.WriteFile(filepath.Join(dir, "logs", "mta1.log"), nil, 0o644)
	h := &harness{t: t, dir: dir, log: filepath.Join(dir, "logs", "mta1.log"), bans: filepath.Join(dir, "bans.log")}
	h.writeConfig(cfg)
	h.run(Options{})
	t.Cleanup(h.shutdown)
	h.fail("203.0.113.5", 3)
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 1 })

	// A second file, written at once: its lines are read from its beginning.
	os.WriteFile(filepath.Join(dir, "logs", "mta2.log"), []byte(strings.Repeat(line("203.0.113.6"), 3)), 0o644)
	s := h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 2 })
	if len(s.Files) != 2 {
		t.Errorf("status lists %d files; want both: %+v", len(s.Files), s.Files)
	}
}

// why shows an address's ban, the lines that counted, and its history, and the lines
// outlive a restart.
func TestWhyShowsTheLinesThatCounted(t *testing.T) {
	h := start(t, baseConfig, Options{})
	h.fail("203.0.113.5", 3)
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 1 })
	h.shutdown()
	h.run(Options{}) // restored from the database
	why, err := h.client.Why(context.Background(), actions.Host(netip.MustParseAddr("203.0.113.5")))
	if err != nil {
		t.Fatal(err)
	}
	if len(why.Bans) != 1 || why.Bans[0].Why != "3 failures" || why.Bans[0].Count != 1 || len(why.Bans[0].Lines) != 3 ||
		!strings.Contains(why.Bans[0].Lines[2], "unknown[203.0.113.5]: SASL LOGIN authentication failed") {
		t.Errorf("why: %+v", why.Bans)
	}
	if len(why.History) != 1 || why.History[0].Jail != "sasl" || why.History[0].Count != 1 {
		t.Errorf("history: %+v", why.History)
	}
	if h, err := h.client.History(context.Background(), actions.Host(netip.Addr{})); err != nil || len(h) != 1 {
		t.Errorf("history of every address: %+v, %v", h, err)
	}
	if why, _ := h.client.Why(context.Background(), actions.Host(netip.MustParseAddr("203.0.113.6"))); len(why.Bans) != 0 {
		t.Errorf("why of an address never banned: %+v", why)
	}
}

// banip of a network wider than /16 (one eighth of the IPv4 internet, for 128.0.0.0/3)
// is refused unless forced; a /16 is taken.
func TestBanIPRefusesAProvider(t *testing.T) {
	h := start(t, baseConfig, Options{})
	ctx := context.Background()
	rs, err := h.client.BanIP(ctx, "sasl", netip.MustParsePrefix("128.0.0.0/3"), netip.MustParsePrefix("2001::/16"), netip.MustParsePrefix("203.0.0.0/16"))
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Done || rs[1].Done || !strings.Contains(rs[0].Note, "--force") || !rs[2].Done {
		t.Fatalf("results %+v: want the /3 and the IPv6 /16 refused, the /16 banned", rs)
	}
	rs, err = h.client.BanIPForce(ctx, "sasl", netip.MustParsePrefix("128.0.0.0/3"))
	if err != nil || !rs[0].Done {
		t.Fatalf("forced: %+v, %v", rs, err)
	}
}
