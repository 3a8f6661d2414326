package actions

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/logban/logban/internal/netnstest"
)

// batchAddrs returns n addresses from the benchmarking ranges, both families.
func batchAddrs(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		if i%2 == 0 {
			out[i] = netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		} else {
			a := netip.MustParseAddr("2001:2::").As16()
			a[14], a[15] = byte(i>>8), byte(i)
			out[i] = netip.AddrFrom16(a)
		}
	}
	return out
}

func bansOf(addrs []netip.Addr, jail string) []Ban {
	out := make([]Ban, len(addrs))
	for i, a := range addrs {
		out[i] = ban(a, jail)
	}
	return out
}

func noErrors(t testing.TB, what string, errs []error) {
	t.Helper()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s, call %d: %v", what, i, err)
		}
	}
}

// kernelState is what a batcher's bans leave in the lab's kernel, as text, its lines
// sorted: a set lists its entries in hash order.
func kernelState(lab *netnstest.Lab, kind string) string {
	state := routes(lab)
	if kind == "ipset" {
		state = firewall(lab)
	}
	lines := strings.Split(state, "\n")
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// A batch leaves the kernel as the same calls made one at a time do, blocks and frees
// as they do, and keeps their idempotence: banning twice, unbanning what is not there.
func TestBatchesAreTheSameCallsAtOnce(t *testing.T) {
	kinds := []struct {
		name string
		make func() Action
	}{
		{"route", func() Action {
			return NewRoute(RouteOptions{Type: "blackhole", Table: 254, Protocol: DefaultRouteProtocol}, quiet)
		}},
		{"route-table-1000", func() Action {
			return NewRoute(RouteOptions{Type: "prohibit", Table: 1000, Protocol: DefaultRouteProtocol}, quiet)
		}},
		{"ipset", func() Action { return NewIPSet(defaultFirewallOptions(), quiet) }},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			if k.name == "ipset" {
				requireFirewallTools(t)
			}
			lab := netnstest.New(t)
			ctx := context.Background()
			addrs := append(batchAddrs(6), netnstest.Client4, netnstest.Client6)

			one := k.make()
			lab.Do(func() {
				one.Start(ctx)
				for _, a := range addrs {
					if err := one.Ban(ctx, ban(a, "sasl")); err != nil {
						t.Fatal(err)
					}
				}
			})
			want := kernelState(lab, k.name)
			lab.Do(func() { one.Stop(ctx) })

			a := k.make()
			var errs []error
			lab.Do(func() {
				a.Start(ctx)
				errs = a.(Batcher).BanBatch(ctx, bansOf(addrs, "sasl"))
			})
			noErrors(t, "first batch", errs)
			if got := kernelState(lab, k.name); got != want {
				t.Errorf("after the batch:\n%s\nafter the same calls one at a time:\n%s", got, want)
			}
			lab.Do(func() { errs = a.(Batcher).BanBatch(ctx, bansOf(addrs, "sasl")) })
			noErrors(t, "the same batch again", errs)

			port := lab.Listen()
			blocks := k.name != "route-table-1000" // no rule sends packets to table 1000
			if blocks && (lab.Connect(netnstest.Client4, port) == nil || lab.Connect(netnstest.Client6, port) == nil) {
				t.Error("an address banned by the batch connects")
			}
			if err := lab.Reachable(netnstest.Other4, port); err != nil {
				t.Errorf("an address not banned cannot connect: %v", err)
			}
			lab.Do(func() { errs = a.(Batcher).UnbanBatch(ctx, bansOf(addrs, "sasl")) })
			noErrors(t, "unban batch", errs)
			for _, c := range []netip.Addr{netnstest.Client4, netnstest.Client6} {
				if err := lab.Reachable(c, port); err != nil {
					t.Errorf("after the unban batch %v cannot connect: %v", c, err)
				}
			}
			lab.Do(func() { errs = a.(Batcher).UnbanBatch(ctx, bansOf(addrs, "sasl")) })
			noErrors(t, "the same unban batch again", errs)
			lab.Do(func() { a.Stop(ctx) })
		})
	}
}

// A batch larger than one sendmsg carries is sent in several. The kernel answers only
// failures (and each batch's last request); when those answers overflow a receive
// buffer too small for them (a batch of routes that are all there already), the
// requests not known to have failed are sent again one at a time. Nothing is lost
// either way, and a repeat is no error.
func TestBigBatchesAndLostAcks(t *testing.T) {
	lab := netnstest.New(t)
	ctx := context.Background()
	addrs := batchAddrs(2*batchMax + 100)
	for _, tiny := range []bool{false, true} {
		r := NewRoute(RouteOptions{Type: "blackhole", Table: 254, Protocol: DefaultRouteProtocol}, quiet)
		var errs []error
		var banned []netip.Prefix
		var err error
		lab.Do(func() {
			if err = r.Start(ctx); err != nil {
				return
			}
			if tiny {
				r.nl.raw.SetReceiveBufferSize(0, true) // the kernel's least: a few acks
			}
			errs = r.BanBatch(ctx, bansOf(addrs, "sasl"))
			noErrors(t, "ban batch", errs)
			errs = r.BanBatch(ctx, bansOf(addrs, "sasl")) // every route there: answered EEXIST
			banned, err = r.Holds(ctx, "")
		})
		if err != nil {
			t.Fatal(err)
		}
		noErrors(t, "the same ban batch again", errs)
		if len(banned) != len(addrs) {
			t.Errorf("tiny buffer %v: %d routes in the kernel, want %d", tiny, len(banned), len(addrs))
		}
		if resent := r.nl.resent.Load(); tiny != (resent > 0) {
			t.Errorf("tiny buffer %v: %d requests sent again one at a time", tiny, resent)
		}
		lab.Do(func() {
			errs = r.UnbanBatch(ctx, bansOf(addrs, "sasl"))
			banned, err = r.Holds(ctx, "")
		})
		noErrors(t, "unban batch", errs)
		if err != nil || len(banned) != 0 {
			t.Errorf("tiny buffer %v: %d routes left after the unban batch (%v)", tiny, len(banned), err)
		}
		lab.Do(func() { r.Stop(ctx) })
	}
}

// Stop removes every route logban's protocol holds in the table, more than a batch of
// them and whatever their type (one made under another configuration), and no one
// else's.
func TestStopRemovesEveryRouteOfLogbansWhateverItsType(t *testing.T) {
	lab := netnstest.New(t)
	ctx := context.Background()
	addrs := batchAddrs(2*batchMax + 100)
	lab.Run("ip", "route", "add", "unreachable", "198.51.100.7/32", "proto", fmt.Sprint(DefaultRouteProtocol))
	lab.Run("ip", "route", "add", "blackhole", "198.51.100.9/32") // someone else's
	r := NewRoute(RouteOptions{Type: "prohibit", Table: 254, Protocol: DefaultRouteProtocol}, quiet)
	var errs []error
	var err error
	lab.Do(func() {
		if err = r.Start(ctx); err != nil {
			return
		}
		errs = r.BanBatch(ctx, bansOf(addrs, "sasl"))
		err = r.Stop(ctx)
	})
	noErrors(t, "ban batch", errs)
	if err != nil {
		t.Fatal(err)
	}
	proto := fmt.Sprint(DefaultRouteProtocol)
	if left := lab.Run("ip", "-4", "route", "show", "proto", proto) + lab.Run("ip", "-6", "route", "show", "proto", proto); left != "" {
		t.Errorf("after stop, logban's routes left:\n%.500s", left)
	}
	if got := lab.Run("ip", "route", "show", "type", "blackhole"); !strings.Contains(got, "198.51.100.9") {
		t.Errorf("after stop, someone else's route is gone: %q", got)
	}
}
