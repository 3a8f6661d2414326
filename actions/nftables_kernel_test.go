package actions

import (
	"context"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/logban/logban/internal/netnstest"
	"github.com/logban/logban/internal/testenv"
)

// nftList returns `nft list table inet logban` in the lab, with what changes from run to
// run (the time an element has left, a timeout rounded either way) written as T.
func nftList(lab *netnstest.Lab) string {
	out := lab.Run("nft", "list", "table", "inet", NFTablesTable)
	out = regexp.MustCompile(` expires [0-9dhms]+`).ReplaceAllString(out, "")
	return regexp.MustCompile(`timeout [0-9dhms]+`).ReplaceAllString(out, "timeout T")
}

func requireNFT(t *testing.T) string {
	return testenv.RequireTool(t, "nft", "nftables")
}

func startNFTables(t *testing.T, lab *netnstest.Lab, opts NFTablesOptions) *NFTables {
	t.Helper()
	if err := opts.Validate(); err != nil {
		t.Fatal(err)
	}
	a := NewNFTables("nftables", opts, quiet)
	var err error
	lab.Do(func() { err = a.Start(context.Background()) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Do(func() { a.Stop(context.Background()) }) })
	return a
}

// startThrottle starts a throttle action in the lab, stopped when the test ends.
func startThrottle(t *testing.T, lab *netnstest.Lab, opts ThrottleOptions) *NFTables {
	t.Helper()
	if err := opts.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := NewThrottle("throttle", opts, quiet)
	if err != nil {
		t.Fatal(err)
	}
	lab.Do(func() { err = a.Start(context.Background()) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Do(func() { a.Stop(context.Background()) }) })
	return a
}

func TestNFTablesInTheKernel(t *testing.T) {
	for _, k := range []struct {
		name string
		opts NFTablesOptions
	}{
		{"nftables", defaultNFTablesOptions()},
		{"nftables-reject-tcp-ports", NFTablesOptions{Hooks: []string{"input", "forward"}, Priority: -10, Protocol: "tcp",
			Ports: []string{"25", "587", "1024:65535"}, BlockType: "REJECT", CheckInterval: "2s"}},
	} {
		t.Run(k.name, func(t *testing.T) {
			requireNFT(t)
			lab := netnstest.New(t)
			a := startNFTables(t, lab, k.opts)
			ctx := context.Background()
			var err error
			lab.Do(func() { err = a.PrepareJail(ctx, "zimbra-submission") })
			if err != nil {
				t.Fatal(err)
			}
			checkBlocking(t, lab, a, "zimbra-submission", func() {
				golden(t, k.name, nftList(lab))
				var held []netip.Prefix
				lab.Do(func() { held, err = a.Holds(ctx, "zimbra-submission") })
				slices.SortFunc(held, netip.Prefix.Compare)
				if err != nil || !slices.Equal(held, []netip.Prefix{Host(netnstest.Client4), Host(netnstest.Client6)}) {
					t.Errorf("Holds() = %v, %v", held, err)
				}
			})
			lab.Do(func() { err = a.Stop(ctx) })
			if err != nil {
				t.Fatal(err)
			}
			if got := lab.Run("nft", "list", "tables"); strings.Contains(got, NFTablesTable) {
				t.Errorf("stop left the table:\n%s", got)
			}
		})
	}
}

// The table after bans of addresses (one for an hour, one until unbanned), of networks,
// after a ban's kernel timeout ran out, and after unbans.
func TestNFTablesGolden(t *testing.T) {
	requireNFT(t)
	lab := netnstest.New(t)
	a := startNFTables(t, lab, NFTablesOptions{Hooks: []string{"input"}, Priority: -10, Protocol: "tcp", Ports: []string{"25", "465", "587"}, BlockType: "DROP", CheckInterval: "1h"})
	ctx := context.Background()
	now := time.Now()
	hour := func(b Ban) Ban { b.BannedAt, b.Expires = now, now.Add(time.Hour); return b }
	bans := []Ban{
		hour(Ban{Jail: "sasl", Addr: netip.MustParseAddr("203.0.113.5")}),
		{Jail: "sasl", Addr: netip.MustParseAddr("2001:db8::5"), BannedAt: now}, // until unbanned
		hour(BanOf("sasl", netip.MustParsePrefix("198.51.100.0/24"))),
		hour(BanOf("sasl", netip.MustParsePrefix("2001:db8:1:1::/64"))),
		hour(Ban{Jail: "sasl", Addr: netip.MustParseAddr("198.51.100.7")}), // inside a network banned: its own ban stays
		{Jail: "sasl", Addr: netip.MustParseAddr("203.0.113.9"), BannedAt: now, Expires: now.Add(time.Second)},
		{Jail: "sasl", Addr: netip.MustParseAddr("203.0.113.64"), Bits: 26, BannedAt: now, Expires: now.Add(time.Second)},
	}
	var errs []error
	lab.Do(func() { errs = a.BanBatch(ctx, bans) })
	for i, err := range errs {
		if err != nil {
			t.Fatalf("ban %v: %v", bans[i].Target(), err)
		}
	}
	var text strings.Builder
	text.WriteString("# after the bans\n" + nftList(lab))
	for deadline := time.Now().Add(10 * time.Second); strings.Contains(nftList(lab), "203.0.113.9") || strings.Contains(nftList(lab), "203.0.113.64/26"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the kernel timeouts did not end the bans:\n%s", nftList(lab))
		}
	}
	text.WriteString("# after the kernel timeouts of 203.0.113.9 and 203.0.113.64/26\n" + nftList(lab))
	lab.Do(func() { errs = a.UnbanBatch(ctx, []Ban{bans[0], bans[2], bans[5]}) }) // the last is gone already
	for i, err := range errs {
		if err != nil {
			t.Fatalf("unban %d: %v", i, err)
		}
	}
	text.WriteString("# after the unbans of 203.0.113.5, 198.51.100.0/24 and 203.0.113.9 (gone already)\n" + nftList(lab))
	golden(t, "nftables-timeline", text.String())
	var held []netip.Prefix
	var err error
	lab.Do(func() { held, err = a.Holds(ctx, "sasl") })
	slices.SortFunc(held, netip.Prefix.Compare)
	want := []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32"), netip.MustParsePrefix("2001:db8::5/128"), netip.MustParsePrefix("2001:db8:1:1::/64")}
	if err != nil || !slices.Equal(held, want) {
		t.Errorf("Holds() = %v, %v; want %v", held, err, want)
	}
}

// Beside a firewall that filters itself, logban's table drops what it bans and lets
// through what the other allows. allow opens the lab's high ports in the other
// firewall, which must first be seen closing them.
func checkBeside(t *testing.T, lab *netnstest.Lab, allow func()) {
	t.Helper()
	port := lab.Listen()
	if err := lab.Connect(netnstest.Other4, port); err == nil {
		t.Fatal("the other firewall lets everything through: the test would show nothing")
	}
	allow()
	if err := lab.Reachable(netnstest.Other4, port); err != nil {
		t.Fatalf("the other firewall's allow rule does not let %v through: %v", netnstest.Other4, err)
	}
	a := startNFTables(t, lab, defaultNFTablesOptions())
	checkBlocking(t, lab, a, "sasl", func() {})
}

// firewalld on RHEL: its inet firewalld table, as firewalld writes it.
func TestNFTablesBesideFirewalld(t *testing.T) {
	requireNFT(t)
	lab := netnstest.New(t)
	lab.Run("nft", "-f", "testdata/firewalld.nft")
	checkBeside(t, lab, func() {
		lab.Run("nft", "add", "rule", "inet", "firewalld", "filter_IN_public_allow", "tcp", "dport", "1024-65535", "accept")
	})
	if got := lab.Run("nft", "list", "tables"); !strings.Contains(got, "table inet firewalld") {
		t.Errorf("firewalld's table is gone:\n%s", got)
	}
}

// ufw on Ubuntu: enabled, its own rules loaded (through iptables-nft on Debian and
// Ubuntu), incoming denied but for the ports allowed.
func TestNFTablesBesideUFW(t *testing.T) {
	requireNFT(t)
	ufw := testenv.RequireTool(t, "ufw", "ufw")
	lab := netnstest.New(t)
	root := ufwRoot(t)
	run := func(cmd ...string) string {
		return lab.Run(ufw, append([]string{"--rootdir=" + root, "--datadir=" + root}, cmd...)...)
	}
	run("default", "deny", "incoming")
	run("--force", "enable")
	checkBeside(t, lab, func() { run("allow", "1024:65535/tcp") })
}

// accepted counts the connections from src that the lab's server accepts, of n tried
// one after another.
func accepted(lab *netnstest.Lab, src netip.Addr, port, n int) int {
	ok := 0
	for range n {
		if lab.Connect(src, port) == nil {
			ok++
		}
	}
	return ok
}

// A throttled address gets no more than its burst (and what the rate adds meanwhile) of
// 20 connections tried at once; an address not throttled gets all 20; after the unban,
// the throttled one gets all 20 again.
func TestThrottleInTheKernel(t *testing.T) {
	requireNFT(t)
	lab := netnstest.New(t)
	port := lab.Listen()
	opts := defaultThrottleOptions()
	opts.Rate, opts.Burst, opts.Ports = "10/minute", 3, []string{"1024:65535"}
	a := startThrottle(t, lab, opts)
	ctx := context.Background()
	var err error
	const tries = 20
	for _, p := range [][2]netip.Addr{{netnstest.Client4, netnstest.Other4}, {netnstest.Client6, netnstest.Other6}} {
		throttled, free := p[0], p[1]
		lab.Do(func() { err = a.Ban(ctx, ban(throttled, "sasl")) })
		if err != nil {
			t.Fatal(err)
		}
		// Within the seconds the tries take, 10/minute adds a connection at most.
		got := accepted(lab, throttled, port, tries)
		t.Logf("throttled %v: %d of %d connections accepted", throttled, got, tries)
		if got < 1 || got > opts.Burst+1 {
			t.Errorf("throttled %v: %d of %d connections accepted; want 1 to %d", throttled, got, tries, opts.Burst+1)
		}
		if got := accepted(lab, free, port, tries); got != tries {
			t.Errorf("%v, not throttled: %d of %d connections accepted", free, got, tries)
		}
		lab.Do(func() { err = a.Unban(ctx, ban(throttled, "sasl")) })
		if err != nil {
			t.Fatal(err)
		}
		if got := accepted(lab, throttled, port, tries); got != tries {
			t.Errorf("after the unban, %v: %d of %d connections accepted", throttled, got, tries)
		}
	}
	golden(t, "throttle", nftList(lab))
}

// Check finds what a flush removed, the whole table or a chain's rules, and puts it back
// (the sets, emptied by the flush, come back empty: the bans are the manager's to apply
// again); with nothing missing it does nothing. A throttle's meters come back too.
func TestNFTablesCheckPutsBackWhatWasRemoved(t *testing.T) {
	requireNFT(t)
	opts := NFTablesOptions{Hooks: []string{"input"}, Priority: -10, Protocol: "all", BlockType: "DROP", CheckInterval: "1h"}
	throttle := ThrottleOptions{NFTablesOptions: opts, Rate: "10/minute", Burst: 5}
	for _, kind := range []string{"nftables", "throttle"} {
		t.Run(kind, func(t *testing.T) {
			lab := netnstest.New(t)
			var a *NFTables
			if kind == "throttle" {
				a = startThrottle(t, lab, throttle)
			} else {
				a = startNFTables(t, lab, opts)
			}
			checkPutsBack(t, lab, a)
		})
	}
}

func checkPutsBack(t *testing.T, lab *netnstest.Lab, a *NFTables) {
	ctx := context.Background()
	var err error
	lab.Do(func() { err = a.Ban(ctx, ban(netnstest.Client4, "sasl")) })
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(nftList(lab), "elements = { 192.0.2.2 timeout T }", "", 1)
	want = regexp.MustCompile(`\n\t\t\n`).ReplaceAllString(want, "\n")
	check := func(what string, repairs bool) {
		t.Helper()
		var repaired bool
		lab.Do(func() { repaired, err = a.Check() })
		if err != nil || repaired != repairs {
			t.Fatalf("%s: Check() = %v, %v; want %v", what, repaired, err, repairs)
		}
	}
	check("nothing removed", false)
	lab.Run("nft", "flush", "ruleset")
	check("after nft flush ruleset", true)
	if got := nftList(lab); got != want {
		t.Errorf("after nft flush ruleset, put back:\n%s\nwant:\n%s", got, want)
	}
	lab.Run("nft", "flush", "chain", "inet", NFTablesTable, a.chainName("input"))
	check("after nft flush chain", true)
	if got := nftList(lab); got != want {
		t.Errorf("after nft flush chain, put back:\n%s\nwant:\n%s", got, want)
	}
	check("once put back", false)
	if n := a.Restored(); n != 2 {
		t.Errorf("Restored() = %d, want 2", n)
	}
}

// keep_on_stop leaves the table and the bans in it when the action stops; a new action
// of the same name takes them over.
func TestNFTablesKeepOnStop(t *testing.T) {
	requireNFT(t)
	lab := netnstest.New(t)
	opts := defaultNFTablesOptions()
	opts.KeepOnStop = true
	a := NewNFTables("nftables", opts, quiet)
	ctx := context.Background()
	var err error
	lab.Do(func() {
		if err = a.Start(ctx); err == nil {
			if err = a.Ban(ctx, ban(netnstest.Client4, "sasl")); err == nil {
				err = a.Stop(ctx)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := nftList(lab); !strings.Contains(got, "192.0.2.2") {
		t.Fatalf("keep_on_stop: the ban is gone:\n%s", got)
	}
	b := startNFTables(t, lab, defaultNFTablesOptions())
	var held []netip.Prefix
	lab.Do(func() {
		if err = b.PrepareJail(ctx, "sasl"); err == nil {
			held, err = b.Holds(ctx, "sasl")
		}
	})
	if err != nil || !slices.Equal(held, []netip.Prefix{Host(netnstest.Client4)}) {
		t.Errorf("the next action holds %v, %v", held, err)
	}
	if got := strings.Count(nftList(lab), "@nftables-sasl-4 drop"); got != 1 {
		t.Errorf("%d rules for the set after the restart; want 1:\n%s", got, nftList(lab))
	}
}
