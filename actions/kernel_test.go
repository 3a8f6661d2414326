package actions

import (
	"context"
	"flag"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/logban/logban/internal/netnstest"
	"github.com/logban/logban/internal/testenv"
	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with the kernel state the tests see")

// golden compares got with testdata/NAME.golden, or rewrites it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("kernel state differs from %s:\n--- got\n%s--- want\n%s", path, got, want)
	}
}

var quiet = slog.New(slog.DiscardHandler)

func ban(addr netip.Addr, jail string) Ban {
	now := time.Now()
	return Ban{Jail: jail, Addr: addr, Failures: 3, BannedAt: now, Expires: now.Add(time.Hour)}
}

// checkBlocking bans and unbans each client address through a, checking the connection
// from it at each step, and that the client's other address is never blocked. between
// runs while both addresses are banned.
func checkBlocking(t *testing.T, lab *netnstest.Lab, a Action, jail string, between func()) {
	t.Helper()
	ctx := context.Background()
	port := lab.Listen()
	pairs := [][2]netip.Addr{{netnstest.Client4, netnstest.Other4}, {netnstest.Client6, netnstest.Other6}}
	for _, p := range pairs {
		if err := lab.Reachable(p[0], port); err != nil {
			t.Fatalf("before the ban, %v cannot connect: %v", p[0], err)
		}
	}
	for _, p := range pairs {
		var err error
		lab.Do(func() {
			if err = a.Ban(ctx, ban(p[0], jail)); err == nil {
				err = a.Ban(ctx, ban(p[0], jail)) // twice is once
			}
		})
		if err != nil {
			t.Fatalf("ban %v: %v", p[0], err)
		}
		if err := lab.Connect(p[0], port); err == nil {
			t.Errorf("banned %v still connects", p[0])
		}
		if err := lab.Reachable(p[1], port); err != nil {
			t.Errorf("%v, not banned, cannot connect: %v", p[1], err)
		}
	}
	between()
	for _, p := range pairs {
		var err error
		lab.Do(func() {
			if err = a.Unban(ctx, ban(p[0], jail)); err == nil {
				err = a.Unban(ctx, ban(p[0], jail)) // unban of an absent ban is fine
			}
		})
		if err != nil {
			t.Fatalf("unban %v: %v", p[0], err)
		}
		if err := lab.Reachable(p[0], port); err != nil {
			t.Errorf("after unban, %v cannot connect: %v", p[0], err)
		}
	}
}

// routes returns the lab server's routes of logban's protocol, both families.
func routes(lab *netnstest.Lab) string {
	return lab.Run("ip", "-4", "route", "show", "table", "all", "proto", "178") +
		lab.Run("ip", "-6", "route", "show", "table", "all", "proto", "178")
}

func TestRouteInTheKernel(t *testing.T) {
	for _, typ := range []string{"blackhole", "unreachable", "prohibit"} {
		t.Run(typ, func(t *testing.T) {
			lab := netnstest.New(t)
			opts := &RouteOptions{Type: typ, Table: 254, Protocol: DefaultRouteProtocol}
			if err := opts.Validate(); err != nil {
				t.Fatal(err)
			}
			r := NewRoute(*opts, quiet)
			ctx := context.Background()
			var err error
			lab.Do(func() { err = r.Start(ctx) })
			if err != nil {
				t.Fatal(err)
			}
			checkBlocking(t, lab, r, "sasl", func() {
				golden(t, "route-"+typ, routes(lab))
				var got []netip.Prefix
				lab.Do(func() { got, err = r.Holds(ctx, "") })
				if err != nil || len(got) != 2 || got[0] != Host(netnstest.Client4) || got[1] != Host(netnstest.Client6) {
					t.Errorf("Holds() = %v, %v", got, err)
				}
			})
			// Stop removes logban's routes and nothing else.
			lab.Run("ip", "route", "add", "blackhole", "198.51.100.9/32")
			lab.Do(func() {
				r.Ban(ctx, ban(netnstest.Client4, "sasl"))
				err = r.Stop(ctx)
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := routes(lab); got != "" {
				t.Errorf("routes left after stop:\n%s", got)
			}
			if !regexp.MustCompile(`blackhole 198\.51\.100\.9`).MatchString(lab.Run("ip", "route")) {
				t.Error("stop removed a route that was not logban's")
			}
		})
	}
}

// firewall returns the lab server's filter rules and sets as text, with what changes from
// run to run (hash seeds, the seconds left on an entry) written as placeholders.
func firewall(lab *netnstest.Lab) string {
	sets := lab.Run("ipset", "save")
	sets = regexp.MustCompile(`initval 0x[0-9a-f]+`).ReplaceAllString(sets, "initval X")
	sets = regexp.MustCompile(`(?m)^(add .*) timeout [1-9][0-9]*$`).ReplaceAllString(sets, "$1 timeout N")
	return "# iptables -S\n" + lab.Run("iptables", "-S") +
		"# ip6tables -S\n" + lab.Run("ip6tables", "-S") +
		"# ipset save\n" + sets
}

func requireFirewallTools(t *testing.T) {
	testenv.RequireTool(t, "iptables", "iptables")
	testenv.RequireTool(t, "ipset", "ipset")
}

func TestFirewallsInTheKernel(t *testing.T) {
	kinds := []struct {
		name string
		opts FirewallOptions
		make func(FirewallOptions) Action
	}{
		{"iptables", defaultFirewallOptions(), func(o FirewallOptions) Action { a, _ := NewIPTables(o, quiet); return a }},
		{"iptables-reject-tcp-ports", FirewallOptions{Chain: "INPUT", Protocol: "tcp", Ports: []string{"1:65535"}, BlockType: "REJECT"},
			func(o FirewallOptions) Action { a, _ := NewIPTables(o, quiet); return a }},
		{"ipset", defaultFirewallOptions(), func(o FirewallOptions) Action { return NewIPSet(o, quiet) }},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			requireFirewallTools(t)
			lab := netnstest.New(t)
			if err := k.opts.Validate(); err != nil {
				t.Fatal(err)
			}
			a := k.make(k.opts)
			ctx := context.Background()
			var err error
			lab.Do(func() { err = a.Start(ctx) })
			if err != nil {
				t.Fatal(err)
			}
			before := firewall(lab)
			// A jail's chain or set is made when the jail takes the action, before any ban.
			lab.Do(func() { err = a.(JailPreparer).PrepareJail(ctx, "zimbra-submission") })
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(firewall(lab), "logban-zimbra-submission") {
				t.Errorf("PrepareJail made nothing:\n%s", firewall(lab))
			}
			checkBlocking(t, lab, a, "zimbra-submission", func() {
				golden(t, k.name, firewall(lab))
				var held []netip.Prefix
				lab.Do(func() { held, err = a.(Reconciler).Holds(ctx, "zimbra-submission") })
				slices.SortFunc(held, netip.Prefix.Compare)
				if err != nil || !slices.Equal(held, []netip.Prefix{Host(netnstest.Client4), Host(netnstest.Client6)}) {
					t.Errorf("Holds() = %v, %v", held, err)
				}
				if lab.Do(func() { held, err = a.(Reconciler).Holds(ctx, "another-jail") }); err != nil || len(held) != 0 {
					t.Errorf("Holds(another jail) = %v, %v", held, err)
				}
			})
			lab.Do(func() { err = a.Stop(ctx) })
			if err != nil {
				t.Fatal(err)
			}
			if after := firewall(lab); after != before {
				t.Errorf("stop left the firewall changed:\n%s\nwas:\n%s", after, before)
			}
		})
	}
}

func TestCleanupRemovesLogbansAndNothingElse(t *testing.T) {
	requireFirewallTools(t)
	lab := netnstest.New(t)
	ctx := context.Background()
	// Someone else's rules, chain, set and route.
	lab.Run("iptables", "-N", "f2b-sshd")
	lab.Run("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "f2b-sshd")
	lab.Run("ipset", "create", "blocklist", "hash:ip")
	lab.Run("iptables", "-A", "INPUT", "-m", "set", "--match-set", "blocklist", "src", "-j", "DROP")
	lab.Run("ip", "route", "add", "blackhole", "198.51.100.9/32")
	requireNFT(t)
	lab.Run("nft", "add", "table", "inet", "mine")
	nullRoutes := func() string {
		return lab.Run("ip", "-4", "route", "show", "table", "all", "type", "blackhole") +
			lab.Run("ip", "-6", "route", "show", "table", "all", "type", "blackhole")
	}
	foreign := firewall(lab) + nullRoutes()

	ipt, _ := NewIPTables(defaultFirewallOptions(), quiet)
	set := NewIPSet(FirewallOptions{Chain: "FORWARD", Protocol: "tcp", Ports: []string{"25", "587"}, BlockType: "REJECT"}, quiet)
	route := NewRoute(RouteOptions{Type: "blackhole", Table: 254, Protocol: DefaultRouteProtocol}, quiet)
	kinds := []Action{ipt, set, route, NewNFTables("nft", defaultNFTablesOptions(), quiet)}
	lab.Do(func() {
		for _, a := range kinds {
			for _, addr := range []netip.Addr{netnstest.Client4, netnstest.Client6} {
				if err := a.Ban(ctx, ban(addr, "sasl")); err != nil {
					t.Error(err)
				}
				a.Ban(ctx, ban(addr, "a-jail-with-a-very-long-name-indeed"))
			}
		}
	})
	if firewall(lab)+nullRoutes() == foreign {
		t.Fatal("the bans changed nothing")
	}
	// A fresh action, as ban-server -cleanup makes, knows nothing of what was made.
	var errs []error
	lab.Do(func() {
		fresh, _ := NewIPTables(defaultFirewallOptions(), quiet)
		for _, c := range []Cleaner{fresh, NewIPSet(defaultFirewallOptions(), quiet), NewRoute(RouteOptions{Table: 254, Protocol: DefaultRouteProtocol}, quiet),
			NewNFTables("nftables", defaultNFTablesOptions(), quiet)} {
			errs = append(errs, c.Cleanup(ctx))
		}
	})
	if tables := lab.Run("nft", "list", "tables"); strings.Contains(tables, "inet "+NFTablesTable) || !strings.Contains(tables, "table inet mine") {
		t.Errorf("after cleanup, nft list tables:\n%s\nwant inet mine, and no inet %s", tables, NFTablesTable)
	}
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := firewall(lab) + nullRoutes(); got != foreign {
		t.Errorf("after cleanup:\n%s\nwant what was there before logban:\n%s", got, foreign)
	}
}

func TestRouteInAnotherTable(t *testing.T) {
	lab := netnstest.New(t)
	r := NewRoute(RouteOptions{Type: "blackhole", Table: 100, Protocol: DefaultRouteProtocol}, quiet)
	ctx := context.Background()
	var err error
	lab.Do(func() { err = r.Ban(ctx, ban(netnstest.Client6, "sasl")) })
	if err != nil {
		t.Fatal(err)
	}
	if got := lab.Run("ip", "-6", "route", "show", "table", "100", "proto", "178"); !strings.HasPrefix(got, "blackhole 2001:db8::2 ") {
		t.Errorf("table 100 holds %q", got)
	}
	if got := lab.Run("ip", "-6", "route", "show", "table", "main", "proto", "178"); got != "" {
		t.Errorf("main table holds %q", got)
	}
	lab.Do(func() { err = r.Stop(ctx) })
	if got := lab.Run("ip", "-6", "route", "show", "table", "100"); err != nil || got != "" {
		t.Errorf("after stop: %v, table 100 holds %q", err, got)
	}
}

// A ban of a network blocks every address of it, ones that never failed included, and
// leaves the next network alone; its unban lets them all through again. Each kernel
// action holds the network as one entry, and lists it as such for reconciling.
func TestNetworkBansInTheKernel(t *testing.T) {
	kinds := []struct {
		name string
		make func() Action
	}{
		{"route", func() Action {
			return NewRoute(RouteOptions{Type: "blackhole", Table: unix.RT_TABLE_MAIN, Protocol: DefaultRouteProtocol}, quiet)
		}},
		{"iptables", func() Action { a, _ := NewIPTables(defaultFirewallOptions(), quiet); return a }},
		{"ipset", func() Action { return NewIPSet(defaultFirewallOptions(), quiet) }},
		{"nftables", func() Action { return NewNFTables("nftables", defaultNFTablesOptions(), quiet) }},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			requireFirewallTools(t)
			lab := netnstest.New(t)
			port := lab.Listen()
			a := k.make()
			ctx := context.Background()
			var err error
			lab.Do(func() { err = a.Start(ctx) })
			if err != nil {
				t.Fatal(err)
			}
			defer lab.Do(func() { a.Stop(ctx) })
			nets := []netip.Prefix{netnstest.RemoteNet4, netnstest.RemoteNet6}
			for _, remote := range [][]netip.Addr{netnstest.Remote4, netnstest.Remote6} {
				for _, addr := range remote {
					if err := lab.Reachable(addr, port); err != nil {
						t.Fatalf("before the ban, %v cannot connect: %v", addr, err)
					}
				}
			}
			for _, n := range nets {
				lab.Do(func() { err = a.Ban(ctx, BanOf("sasl", n)) })
				if err != nil {
					t.Fatalf("ban of %v: %v", n, err)
				}
			}
			for _, remote := range [][]netip.Addr{netnstest.Remote4, netnstest.Remote6} {
				inside, next := remote[:6], remote[6]
				for _, addr := range inside {
					if err := lab.Connect(addr, port); err == nil {
						t.Errorf("%v, in a banned network, still connects", addr)
					}
				}
				if err := lab.Reachable(next, port); err != nil {
					t.Errorf("%v, in the next network, cannot connect: %v", next, err)
				}
			}
			var held []netip.Prefix
			lab.Do(func() { held, err = a.(Reconciler).Holds(ctx, "sasl") })
			slices.SortFunc(held, netip.Prefix.Compare)
			if err != nil || !slices.Equal(held, nets) {
				t.Errorf("Holds() = %v, %v; want %v", held, err, nets)
			}
			for _, n := range nets {
				lab.Do(func() { err = a.Unban(ctx, BanOf("sasl", n)) })
				if err != nil {
					t.Fatalf("unban of %v: %v", n, err)
				}
			}
			for _, remote := range [][]netip.Addr{netnstest.Remote4, netnstest.Remote6} {
				for _, addr := range remote {
					if err := lab.Reachable(addr, port); err != nil {
						t.Errorf("after the unban, %v cannot connect: %v", addr, err)
					}
				}
			}
		})
	}
}

// A hash:ip set of the jail's name, as an older logban made them and keep_on_stop left,
// is replaced by a hash:net set when the jail takes the action, its rule with it: a
// network's ban then goes in.
func TestIPSetReplacesAnOldHashIPSet(t *testing.T) {
	requireFirewallTools(t)
	lab := netnstest.New(t)
	lab.Run("ipset", "create", "logban-sasl-4", "hash:ip", "timeout", "0")
	lab.Run("iptables", "-I", "INPUT", "1", "-m", "set", "--match-set", "logban-sasl-4", "src", "-j", "DROP")
	a := NewIPSet(defaultFirewallOptions(), quiet)
	ctx := context.Background()
	var err error
	lab.Do(func() {
		if err = a.Start(ctx); err == nil {
			if err = a.PrepareJail(ctx, "sasl"); err == nil {
				err = a.Ban(ctx, BanOf("sasl", netip.MustParsePrefix("198.51.100.0/24")))
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Do(func() { a.Stop(ctx) })
	sets := lab.Run("ipset", "save", "logban-sasl-4")
	if !strings.Contains(sets, "create logban-sasl-4 hash:net") || !strings.Contains(sets, "add logban-sasl-4 198.51.100.0/24") {
		t.Errorf("the set after the jail took the action:\n%s", sets)
	}
	if rules := lab.Run("iptables", "-S", "INPUT"); strings.Count(rules, "--match-set logban-sasl-4 src") != 1 {
		t.Errorf("INPUT holds the set's rule other than once:\n%s", rules)
	}
}
