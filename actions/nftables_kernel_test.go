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
