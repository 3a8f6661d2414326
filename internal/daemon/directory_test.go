package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/logban/logban/internal/control"
	"github.com/logban/logban/internal/slapdtest"
)

// A Zimbra farm's directory, read by [zimbra]: a server added is never banned from the
// next read on (here a reload's), one removed can be banned again. Against a real
// OpenLDAP server holding Zimbra's server entries; the servers' names resolve as the
// farm's DNS would.
func TestTheDirectorysServersAreNeverBanned(t *testing.T) {
	ldap, h := startWithDirectory(t)
	ctx := context.Background()
	// Each round fails the server addresses, then a witness whose ban says every line
	// before it was read.
	round := 0
	check := func(wantBanned ...string) {
		t.Helper()
		round++
		witness := fmt.Sprintf("192.0.2.%d", 100+round)
		h.fail("203.0.113.11", 2)
		h.fail("203.0.113.12", 2)
		h.fail(witness, 2)
		s := h.waitFor("sasl", func(s control.JailStatus) bool { return slices.Contains(bannedAddrs(s), witness) })
		for _, a := range []string{"203.0.113.11", "203.0.113.12"} {
			if got, want := slices.Contains(bannedAddrs(s), a), slices.Contains(wantBanned, a); got != want {
				t.Errorf("round %d: %s banned %v, want %v (bans %v)", round, a, got, want, bannedAddrs(s))
			}
		}
	}
	check("203.0.113.12") // mta1 is the directory's; mta2 is not yet

	ldap.Modify(t, `dn: cn=mta2.farm.test,cn=servers,cn=zimbra
changetype: add
objectClass: zimbraServer
cn: mta2.farm.test
zimbraServiceEnabled: mta
`)
	if _, err := h.client.UnbanIP(ctx, "", netip.MustParsePrefix("203.0.113.12/32")); err != nil {
		t.Fatal(err)
	}
	if err := h.client.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	h.waitLoggedN("the farm's directory changed what is never banned", 2) // the start's read, and this one
	check()                                                               // both are the farm's now

	ldap.Modify(t, `dn: cn=mta1.farm.test,cn=servers,cn=zimbra
changetype: delete
`)
	if err := h.client.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	h.waitLoggedN("the farm's directory changed what is never banned", 3)
	check("203.0.113.11") // mta1 left the farm: it can be banned again
}

// waitLoggedN waits until the daemon has logged text n times.
func (h *harness) waitLoggedN(text string, n int) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(h.logged.String(), text) < n {
		if time.Now().After(deadline) {
			h.t.Fatalf("%q not logged %d times:\n%s", text, n, h.logged.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The directory's last good read is kept: a start while the directory does not answer
// spares the farm's servers all the same, and says so.
func TestTheDirectorysLastReadOutlivesItsOutage(t *testing.T) {
	ldap, h := startWithDirectory(t)
	h.shutdown()
	ldap.Stop()
	h.run(Options{Resolve: farmDNS})
	h.waitLoggedN("the farm's directory does not answer: its last read's addresses are never banned until it does", 1)
	h.fail("203.0.113.11", 2)
	h.fail("192.0.2.101", 2)
	s := h.waitFor("sasl", func(s control.JailStatus) bool { return slices.Contains(bannedAddrs(s), "192.0.2.101") })
	if slices.Contains(bannedAddrs(s), "203.0.113.11") {
		t.Errorf("the farm's server was banned while its directory was away: %v", bannedAddrs(s))
	}
}

// farmDNS resolves the test farm's server names as its DNS would.
func farmDNS(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, ok := map[string]string{"mta1.farm.test": "203.0.113.11", "mta2.farm.test": "203.0.113.12"}[host]; ok {
		return []netip.Addr{netip.MustParseAddr(a)}, nil
	}
	return nil, errors.New("no such host")
}

// startWithDirectory runs a real OpenLDAP holding one server of the farm, mta1, and a
// daemon following it through [zimbra], with a jail that bans at 2 failures.
func startWithDirectory(t *testing.T) (*slapdtest.Server, *harness) {
	ldap := slapdtest.Start(t, `dn: cn=mta1.farm.test,cn=servers,cn=zimbra
objectClass: zimbraServer
cn: mta1.farm.test
zimbraServiceEnabled: mta
`)
	root := ldap.InstallRoot(t, "zimbra", "mta1.farm.test", "zimbra")
	return ldap, start(t, fmt.Sprintf(`
[server]
socket = "run/logban.sock"
database = "run/logban.db"

[zimbra]
root = %q

[actions.log]
type = "log"
path = "bans.log"

[jails.sasl]
filter = "zimbra-submission"
logpath = ["zimbra.log"]
maxretry = 2
findtime = "1h"
bantime = "10h"
actions = ["log"]
`, root), Options{Resolve: farmDNS})
}
