package daemon

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/logban/logban/internal/netnstest"
)

// The daemon keeps the kernel in step with its bans: a null route deleted by hand comes
// back, and a route of logban's protocol with no ban behind it goes, within a reconcile
// interval; both repairs are counted.
func TestKernelReconciled(t *testing.T) {
	lab := netnstest.New(t)
	port := lab.Listen()
	cfg := `
[server]
socket = "run/logban.sock"
database = "run/logban.db"
reconcile_interval = "1s"

[actions.route]
type = "route"

[jails.sasl]
filter = "zimbra-submission"
logpath = ["zimbra.log"]
maxretry = 3
findtime = "1h"
bantime = "10h"
actions = ["route"]
`
	h := startIn(t, lab.Do, cfg, Options{})
	blocked := func(a netip.Addr) func() bool { return func() bool { return lab.Connect(a, port) != nil } }
	free := func(a netip.Addr) func() bool { return func() bool { return lab.Reachable(a, port) == nil } }

	h.fail(netnstest.Client4.String(), 3)
	until(t, "the ban blocks", blocked(netnstest.Client4))

	lab.Run("ip", "route", "del", "blackhole", netnstest.Client4.String()+"/32")
	lab.Run("ip", "route", "add", "blackhole", netnstest.Other4.String()+"/32", "proto", "178")
	if !free(netnstest.Client4)() || !blocked(netnstest.Other4)() {
		t.Fatal("the hand-made changes did not take")
	}
	until(t, "the deleted route is back", blocked(netnstest.Client4))
	until(t, "the route without a ban is gone", free(netnstest.Other4))

	counted := false
	for _, m := range h.d.snapshot().Actions {
		counted = counted || m.Name == "route" && m.Restored == 1 && m.Removed == 1
	}
	if !counted {
		t.Errorf("repairs not counted: %+v", h.d.snapshot().Actions)
	}
	if s, err := h.client.JailStatus(context.Background(), "sasl"); err != nil || s.CurrentlyBanned != 1 {
		t.Errorf("status %+v, %v", s, err)
	}
}

// until waits up to 10 s for cond, and fails the test with what if it never holds.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %s", what)
		}
	}
}

// At start, before any line is read, a route a crash left behind with no recorded ban
// behind it goes, even with reconciling otherwise off.
func TestKernelReconciledAtStart(t *testing.T) {
	lab := netnstest.New(t)
	port := lab.Listen()
	lab.Run("ip", "route", "add", "blackhole", netnstest.Other6.String()+"/128", "proto", "178")
	startIn(t, lab.Do, `
[server]
socket = "run/logban.sock"
database = "run/logban.db"
reconcile_interval = 0
[actions.route]
type = "route"
[jails.sasl]
filter = "zimbra-submission"
logpath = ["zimbra.log"]
actions = ["route"]
`, Options{})
	for deadline := time.Now().Add(10 * time.Second); lab.Reachable(netnstest.Other6, port) != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stray route is still there 10 s after the start")
		}
	}
}
