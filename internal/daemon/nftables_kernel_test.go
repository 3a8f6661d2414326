package daemon

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/control"
	"github.com/logban/logban/internal/netnstest"
	"github.com/logban/logban/internal/testenv"
)

// Someone runs `nft flush ruleset` (or a firewall reload takes logban's table with it):
// the nftables action notices, puts its table back, and every ban in force is applied
// again at once, counted as restored; reconcile_interval is off, so nothing else brings
// them back.
func TestNFTablesPutBackAfterFlush(t *testing.T) {
	testenv.RequireTool(t, "nft", "nftables")
	lab, h := startInLab(t, `
[server]
socket = "run/logban.sock"
database = "run/logban.db"
reconcile_interval = 0

[actions.nft]
type = "nftables"
check_interval = "100ms"

[jails.sasl]
filter = "zimbra-submission"
logpath = ["zimbra.log"]
maxretry = 3
findtime = "10m"
bantime = "1h"
actions = ["nft"]
`)
	port := lab.Listen()
	banned := []netip.Addr{netnstest.Client4, netnstest.Client6}
	for _, a := range banned {
		h.fail(a.String(), 3)
	}
	for _, a := range banned {
		until(t, a.String()+" is blocked", func() bool { return lab.Connect(a, port) != nil })
	}
	lab.Run("nft", "flush", "ruleset")
	until(t, "the table and both bans are back", func() bool {
		out := lab.Run("nft", "list", "ruleset")
		return strings.Contains(out, netnstest.Client4.String()) && strings.Contains(out, netnstest.Client6.String())
	})
	for _, a := range banned {
		if err := lab.Connect(a, port); err == nil {
			t.Errorf("%v connects after the table was put back", a)
		}
	}
	if err := lab.Reachable(netnstest.Other4, port); err != nil {
		t.Errorf("%v, never banned, cannot connect: %v", netnstest.Other4, err)
	}
	until(t, "the repair is counted", func() bool { return h.d.manager.Queues()["nft"].Restored == 2 })
}

// The two stages of examples/throttle.toml, through the server: three failures slow an
// address down (a few of its connections go through), six refuse it (none do); an
// address that never failed keeps every connection.
func TestThrottleThenBan(t *testing.T) {
	testenv.RequireTool(t, "nft", "nftables")
	lab, h := startInLab(t, `
[server]
socket = "run/logban.sock"
database = "run/logban.db"

[actions.slow]
type  = "throttle"
rate  = "10/minute"
burst = 2

[actions.refuse]
type      = "nftables"
protocol  = "tcp"
blocktype = "REJECT"

[jails.throttle]
filter   = "zimbra-submission"
logpath  = ["zimbra.log"]
maxretry = 3
findtime = "10m"
bantime  = "1h"
actions  = ["slow"]

[jails.ban]
filter   = "zimbra-submission"
logpath  = ["zimbra.log"]
maxretry = 6
findtime = "10m"
bantime  = "1h"
actions  = ["refuse"]
`)
	port := lab.Listen()
	tries := func(a netip.Addr) int {
		ok := 0
		for range 10 {
			if lab.Connect(a, port) == nil {
				ok++
			}
		}
		return ok
	}
	h.fail(netnstest.Client4.String(), 3)
	h.waitFor("throttle", func(s control.JailStatus) bool { return s.CurrentlyBanned == 1 })
	until(t, "the throttle is in the kernel", func() bool {
		return strings.Contains(lab.Run("nft", "list", "set", "inet", actions.NFTablesTable, "slow-throttle-4"), netnstest.Client4.String())
	})
	if got := tries(netnstest.Client4); got < 1 || got > 3 {
		t.Errorf("throttled: %d of 10 connections went through; want 1 to 3", got)
	}
	if got := tries(netnstest.Other4); got != 10 {
		t.Errorf("never failing: %d of 10 connections went through", got)
	}
	h.fail(netnstest.Client4.String(), 3)
	h.waitFor("ban", func(s control.JailStatus) bool { return s.CurrentlyBanned == 1 })
	until(t, "the ban is in the kernel", func() bool { return lab.Connect(netnstest.Client4, port) != nil && tries(netnstest.Client4) == 0 })
}
