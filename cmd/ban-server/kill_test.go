package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logban/logban/internal/control"
)

// TestMain lets the test binary be ban-server itself, so a test can start it as a
// process of its own and kill it.
func TestMain(m *testing.M) {
	if os.Getenv("LOGBAN_TEST_BE_SERVER") == "1" {
		if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startServer starts ban-server as a process and waits until it answers.
func startServer(t *testing.T, config string, c *control.Client) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-config", config)
	cmd.Env = append(os.Environ(), "LOGBAN_TEST_BE_SERVER=1")
	cmd.Stderr = os.Stderr
	if !testing.Verbose() {
		cmd.Stderr = nil
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for c.Ping(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("ban-server did not answer")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cmd
}

func TestSIGKILLDuringABanBurstLosesNoBan(t *testing.T) {
	burst := 100_000
	if raceEnabled {
		burst = 3_000
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "logban.toml")
	os.WriteFile(config, []byte(`
[server]
socket = "logban.sock"
database = "logban.db"
loglevel = "warn"
`+banEveryFailure), 0o644)
	logPath := filepath.Join(dir, "zimbra.log")
	os.WriteFile(logPath, nil, 0o644)
	c := control.NewClient(filepath.Join(dir, "logban.sock"))
	ctx := context.Background()

	first := startServer(t, config, c)
	// A burst: one failure from each of 100,000 addresses, each a ban.
	var b strings.Builder
	want := map[netip.Addr]bool{}
	base := netip.MustParseAddr("198.18.0.0").As4()
	stamp := time.Now().Format(time.Stamp)
	for i := range burst {
		a := base
		a[1], a[2], a[3] = a[1]+byte(i>>16), byte(i>>8), byte(i)
		addr := netip.AddrFrom4(a)
		want[addr] = true
		fmt.Fprintf(&b, "%s mta1 postfix/submission/smtpd[4242]: warning: unknown[%s]: SASL LOGIN authentication failed: x\n", stamp, addr)
	}
	os.WriteFile(logPath, []byte(b.String()), 0o644)
	// Kill once a twentieth of the bans are applied, as the log action's file tells:
	// asking the server would list every ban and slow it.
	for {
		applied, _ := os.ReadFile(filepath.Join(dir, "bans.log"))
		if strings.Count(string(applied), " ban ") >= burst/20 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	first.Process.Signal(syscall.SIGKILL)
	first.Wait()
	before, _ := os.ReadFile(filepath.Join(dir, "bans.log"))
	killedAt := strings.Count(string(before), " ban ")
	if killedAt >= burst {
		t.Fatalf("the burst was over (%d bans) before the kill; make it larger", killedAt)
	}
	os.Rename(filepath.Join(dir, "bans.log"), filepath.Join(dir, "bans-before-kill.log"))

	startServer(t, config, c)
	deadline := time.Now().Add(60 * time.Second)
	var bans []control.BanInfo
	for {
		var err error
		if bans, err = c.List(ctx, "sasl"); err == nil && len(bans) >= burst {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bans after restart, want %d", len(bans), burst)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, ban := range bans {
		if !want[ban.Addr] {
			t.Fatalf("banned %v, which never failed", ban.Addr)
		}
	}
	// Applied exactly once by the new process: restored, or banned from the lines it read.
	// The log action writes on its own time: wait until it has written them all.
	var after []byte
	for deadline := time.Now().Add(60 * time.Second); strings.Count(string(after), " ban ") < burst; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d bans applied after restart, want %d", strings.Count(string(after), " ban "), burst)
		}
		after, _ = os.ReadFile(filepath.Join(dir, "bans.log"))
	}
	applied := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(after)), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[1] == "ban" {
			applied[strings.TrimPrefix(f[3], "addr=")]++
		}
	}
	for addr := range want {
		if n := applied[addr.String()]; n != 1 {
			t.Fatalf("%v applied %d times after the restart, want once", addr, n)
		}
	}
	t.Logf("killed after %d of %d bans; after restart all %d are in force, each applied once", killedAt, burst, len(bans))
}

// An orderly stop that waits on an action (here an exec whose stop command hangs) ends
// at a second SIGTERM, at once.
func TestSecondSIGTERMStopsAtOnce(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "logban.toml")
	os.WriteFile(filepath.Join(dir, "zimbra.log"), nil, 0o644)
	os.WriteFile(config, []byte(`
[server]
socket = "logban.sock"
database = "logban.db"
[actions.slow]
type = "exec"
ban = ["true"]
unban = ["true"]
stop = ["sleep", "10"]
timeout = "10s"
[jails.sasl]
filter = "zimbra-submission"
logpath = ["zimbra.log"]
actions = ["slow"]
`), 0o644)
	cmd := startServer(t, config, control.NewClient(filepath.Join(dir, "logban.sock")))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		t.Fatalf("stopped before its stop command ended: %v", err)
	case <-time.After(time.Second): // the stop command runs
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a second SIGTERM did not stop ban-server within 5 s")
	}
}

// banEveryFailure is the jail the process tests run: every SASL failure in zimbra.log
// bans for an hour, through a log action writing bans.log, where the test counts them.
const banEveryFailure = `
[actions.log]
type = "log"
path = "bans.log"

[jails.sasl]
filter = "zimbra-submission"
logpath = ["zimbra.log"]
maxretry = 1
findtime = "1h"
bantime = "1h"
actions = ["log"]
`
