package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/netnstest"
)

// Five addresses of one /24 (and of one /64) failing once each, none near maxretry, ban
// the network in the kernel: a sixth address of it that never failed cannot connect,
// an address of the next network can. A network holding an ignored address is not
// banned, and the refusal is counted. (One that logged in is: a login spares its own
// address for its own account only; TestOneLoginDoesNotShieldItsNetwork.) Unbanning the
// network lets its addresses through.
func TestSubnetBanInTheKernel(t *testing.T) {
	lab, h := startInLab(t, `
[server]
socket = "run/logban.sock"
database = "run/logban.db"
ignoreip = ["198.51.101.200"]

[actions.route]
type = "route"

[jails.sasl]
filter = "zimbra-submission"
logpath = ["zimbra.log"]
maxretry = 3
findtime = "10m"
bantime = "1h"
actions = ["route"]

[jails.sasl.subnet]
ipv4 = 24
ipv6 = 64
addresses = 5
findtime = "1h"
bantime = "1d"
`)
	port := lab.Listen()
	// Five addresses of 198.51.101.0/24, which holds an ignored address, fail first:
	// the refusal is counted once the lines are read.
	for i := range 5 {
		h.fail(fmt.Sprintf("198.51.101.%d", 10+i), 1)
	}
	until(t, "the refusal is counted", func() bool {
		s, err := h.client.JailStatus(context.Background(), "sasl")
		return err == nil && s.Subnet != nil && s.Subnet.Refused == 1
	})
	for _, remote := range [][]netip.Addr{netnstest.Remote4, netnstest.Remote6} {
		for _, a := range remote[:5] {
			h.fail(a.String(), 1)
		}
	}
	for _, remote := range [][]netip.Addr{netnstest.Remote4, netnstest.Remote6} {
		sixth, next := remote[5], remote[6]
		until(t, sixth.String()+", never failing, is blocked with its network", func() bool { return lab.Connect(sixth, port) != nil })
		if err := lab.Reachable(next, port); err != nil {
			t.Errorf("%v, in the next network, cannot connect: %v", next, err)
		}
	}
	bans, err := h.client.List(context.Background(), "sasl")
	var listed []string
	for _, b := range bans {
		listed = append(listed, b.String()+" "+b.Why)
	}
	want := "198.51.100.0/24 5 addresses of 198.51.100.0/24 failed within 1h0m0s," +
		"2001:db8:1:1::/64 5 addresses of 2001:db8:1:1::/64 failed within 1h0m0s"
	if err != nil || strings.Join(listed, ",") != want {
		t.Errorf("list: %q, %v; want %q", listed, err, want)
	}
	if r := lab.Run("ip", "route", "show", "proto", "178"); !strings.Contains(r, "blackhole 198.51.100.0/24") {
		t.Errorf("the kernel holds no route of the /24:\n%s", r)
	}
	if err := lab.Reachable(netnstest.Remote4[6], port); err != nil {
		t.Errorf("198.51.101.1, in the network holding an ignored address, cannot connect: %v", err)
	}

	why, err := h.client.Why(context.Background(), actions.Host(netnstest.Remote4[5]))
	if err != nil || len(why.Bans) != 0 || len(why.HeldBy) != 1 || why.HeldBy[0].String() != "198.51.100.0/24" {
		t.Errorf("why of an address the network holds: %+v, %v", why, err)
	}
	rs, err := h.client.UnbanIP(context.Background(), "", actions.Host(netnstest.Remote4[5]))
	if err != nil || len(rs) != 1 || rs[0].Done || !strings.Contains(rs[0].Note, "held by the ban of 198.51.100.0/24 (jail sasl)") {
		t.Errorf("unban of an address the network holds: %+v, %v", rs, err)
	}
	rs, err = h.client.UnbanIP(context.Background(), "", netnstest.RemoteNet4)
	if err != nil || len(rs) != 1 || !rs[0].Done {
		t.Fatalf("unban of the network: %+v, %v", rs, err)
	}
	if err := lab.Reachable(netnstest.Remote4[5], port); err != nil {
		t.Errorf("after the network's unban, %v cannot connect: %v", netnstest.Remote4[5], err)
	}
}
