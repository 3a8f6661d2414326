package daemon

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/logban/logban/internal/control"
	"github.com/logban/logban/internal/netnstest"
)

// A jail's exec action that hangs for its whole timeout and its webhook to a server
// that never answers hold up neither its null routes nor the next batch's bans: each
// address is blocked in the kernel while those two still hold every call handed to
// them.
func TestHungActionsDelayNoRouteBan(t *testing.T) {
	lab := netnstest.New(t)
	port := lab.Listen()
	cfg := fmt.Sprintf(`
[server]
socket = "run/logban.sock"
database = "run/logban.db"

[actions.hung]
type = "exec"
ban = ["sleep", "60"]
unban = ["sleep", "60"]
timeout = "60s"

[actions.hook]
type = "webhook"
url = "http://%s/ban"
timeout = "60s"

[actions.route]
type = "route"

[jails.sasl]
filter = "zimbra-submission"
logpath = ["zimbra.log"]
maxretry = 3
findtime = "1h"
bantime = "10h"
actions = ["hung", "hook", "route"]
`, netnstest.SilentServer(t, nil))
	// The route action opens its netlink socket at start, in the lab's namespace.
	h := startIn(t, lab.Do, cfg, Options{ActionDrainTime: 100 * time.Millisecond})

	if err := lab.Reachable(netnstest.Client6, port); err != nil {
		t.Fatalf("before any ban: %v", err)
	}
	for i, addr := range []netip.Addr{netnstest.Client4, netnstest.Client6} {
		h.fail(addr.String(), 3) // one batch, then the next
		deadline := time.Now().Add(10 * time.Second)
		for lab.Connect(addr, port) == nil {
			if time.Now().After(deadline) {
				t.Fatalf("%s not blocked after 10 s", addr)
			}
			time.Sleep(10 * time.Millisecond)
		}
		s := h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == i+1 })
		for _, q := range s.ActionQueues {
			if q.Action != "route" && q.Queued != int64(i+1) {
				t.Errorf("after ban %d, %s holds %d calls, want %d: the route was not set while it hung", i+1, q.Action, q.Queued, i+1)
			}
		}
	}
}
