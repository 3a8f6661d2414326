package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logban/logban/internal/control"
	"github.com/logban/logban/internal/natsserver/natstest"
)

// TestSIGKILLDuringAFarmBurstLosesNoBan kills one ban-server of a three-host farm while
// it decides a burst of bans, and starts it again: every ban is then in force once on
// every host, and in the farm, and each other host applied each exactly once.
func TestSIGKILLDuringAFarmBurstLosesNoBan(t *testing.T) {
	burst := 10_000
	if raceEnabled {
		burst = 2_000
	}
	c := natstest.Start(t, 3)
	type node struct {
		dir    string
		config string
		client *control.Client
	}
	var nodes []node
	for i, name := range []string{"a", "b", "c"} {
		dir := t.TempDir()
		config := filepath.Join(dir, "logban.toml")
		os.WriteFile(config, []byte(fmt.Sprintf(`
[server]
socket = "logban.sock"
database = "logban.db"
loglevel = "warn"

[farm]
name = "test"
node = %q
servers = ["%s"]
`+banEveryFailure, name, strings.Join(append([]string{c.URL(i)}, c.URLs()...), `", "`))), 0o644)
		os.WriteFile(filepath.Join(dir, "zimbra.log"), nil, 0o644)
		nodes = append(nodes, node{dir, config, control.NewClient(filepath.Join(dir, "logban.sock"))})
	}
	a := startServer(t, nodes[0].config, nodes[0].client)
	for _, n := range nodes[1:] {
		startServer(t, n.config, n.client)
	}
	for _, n := range nodes {
		waitUntil(t, "joined", func() bool { s, err := n.client.Farm(context.Background()); return err == nil && s.Synced })
	}

	var b strings.Builder
	want := map[netip.Addr]bool{}
	stamp := time.Now().Format(time.Stamp)
	for i := range burst {
		addr := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		want[addr] = true
		fmt.Fprintf(&b, "%s mta1 postfix/submission/smtpd[4242]: warning: unknown[%s]: SASL LOGIN authentication failed: x\n", stamp, addr)
	}
	os.WriteFile(filepath.Join(nodes[0].dir, "zimbra.log"), []byte(b.String()), 0o644)
	// Kill a once another host has applied a tenth of its bans: a is deciding and
	// publishing then.
	waitUntil(t, "a tenth of the bans on b", func() bool { return applied(nodes[1].dir) >= burst/10 })
	a.Process.Signal(syscall.SIGKILL)
	a.Wait()
	t.Logf("killed a when b had applied %d of %d bans", applied(nodes[1].dir), burst)
	startServer(t, nodes[0].config, nodes[0].client)

	for _, n := range nodes {
		// a's log counts the bans it applied before the kill too: its list says when the
		// restart has brought back the rest.
		waitUntil(t, "every ban on every host", func() bool {
			bans, err := n.client.List(context.Background(), "sasl")
			return applied(n.dir) >= burst && err == nil && len(bans) >= burst
		})
	}
	for i, n := range nodes {
		bans, err := n.client.List(context.Background(), "sasl")
		if err != nil || len(bans) != burst {
			t.Fatalf("host %d lists %d bans (%v); want %d", i, len(bans), err, burst)
		}
		for _, ban := range bans {
			if !want[ban.Addr] || ban.By != "a" {
				t.Fatalf("host %d holds %v, decided by %q", i, ban.Addr, ban.By)
			}
		}
		if lifted := unbans(n.dir); lifted > 0 { // none ended, and none was lifted in the farm
			t.Errorf("host %d lifted %d bans", i, lifted)
		}
		if i > 0 { // a applied some twice: before the kill and at restart, as a crash must
			if dup := appliedTwice(n.dir); dup != "" {
				t.Errorf("host %d applied %s twice", i, dup)
			}
		}
	}
	keys, err := c.Bucket("test_bans").ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	if n != burst {
		t.Errorf("the farm holds %d bans; want %d", n, burst)
	}
	waitUntil(t, "a's outbox empty", func() bool { s, err := nodes[0].client.Farm(context.Background()); return err == nil && s.Outbox == 0 })
}

// applied counts the bans the log action wrote in dir.
func applied(dir string) int {
	text, _ := os.ReadFile(filepath.Join(dir, "bans.log"))
	return strings.Count(string(text), " ban ")
}

// unbans counts the unbans the log action wrote in dir.
func unbans(dir string) int {
	text, _ := os.ReadFile(filepath.Join(dir, "bans.log"))
	return strings.Count(string(text), " unban ")
}

// appliedTwice returns an address the log action in dir banned twice, or "".
func appliedTwice(dir string) string {
	text, _ := os.ReadFile(filepath.Join(dir, "bans.log"))
	seen := map[string]bool{}
	for _, line := range strings.Split(string(text), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[1] == "ban" {
			if seen[f[3]] {
				return f[3]
			}
			seen[f[3]] = true
		}
	}
	return ""
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(90 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
	}
}
