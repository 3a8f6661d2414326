package daemon

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/netnstest"
	"github.com/logban/logban/internal/testenv"
)

// Someone runs `nft flush ruleset` (or a firewall reload takes logban's table with it):
// the nftables action notices, puts its table back, and every ban in force is applied
// again at once, counted as restored; reconcile_interval is off, so nothing else brings
// them back.
func TestNFTablesPutBackAfterFlush(t *testing.T) {
	testenv.RequireTool(t, "nft", "nftables")
	lab := netnstest.New(t)
	port := lab.Listen()
	h := startIn(t, lab.Do, `
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
`, Options{HostPrefixes: func() ([]netip.Prefix, error) {
		return []netip.Prefix{actions.Host(netnstest.Server4), actions.Host(netnstest.Server6)}, nil
	}})
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
