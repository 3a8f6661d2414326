package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/netnstest"
	"github.com/logban/logban/jails"
)

// An address added to the host while the daemon runs, and the gateway of a default
// route added then, are never banned from the moment the kernel has them: the daemon
// watches the host's addresses and routes, where it read them at start only.
func TestHostAddressesAndGatewayAreWatched(t *testing.T) {
	lab := netnstest.New(t)
	d := &Daemon{host: &jails.HostSet{}, logger: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lab.Do(func() {
		read, err := d.readHost(ctx)
		if err != nil {
			t.Fatal(err)
		}
		d.watchHost(ctx, read)
	})
	ignore := jails.NewIgnoreList().WithHost(d.host)
	if why := ignore.Why(netnstest.Server4); why == "" {
		t.Fatalf("the server's own address %s is bannable", netnstest.Server4)
	}
	added, gw := netip.MustParseAddr("192.0.2.77"), netnstest.Client4
	if why := ignore.Why(added); why != "" {
		t.Fatalf("%s is protected before it is the host's: %s", added, why)
	}
	if why := ignore.Why(gw); why != "" {
		t.Fatalf("%s is protected before it is the gateway: %s", gw, why)
	}
	lab.Do(func() {
		link, err := netlink.LinkByName("veth-srv")
		if err != nil {
			t.Fatal(err)
		}
		a, _ := netlink.ParseAddr(added.String() + "/24")
		if err := netlink.AddrAdd(link, a); err != nil {
			t.Fatal(err)
		}
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
			t.Fatal(err)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ignore.Why(added) == "" || ignore.Why(gw) == ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after the change: %s %q, gateway %s %q; want both protected", added, ignore.Why(added), gw, ignore.Why(gw))
		}
	}
	if why := ignore.WhyNet(netip.MustParsePrefix("192.0.2.0/25")); why == "" {
		t.Error("a network holding the gateway is bannable")
	}
}

// A burst of bans is a burst of null routes, and each is announced to the host watch:
// 50,000 of them, more than its socket holds if the watch falls behind. The watch goes
// on, past an overflow if one comes, so the gateway of a default route added after the
// burst is read, and protected.
func TestTheHostWatchOutlivesABurstOfNullRoutes(t *testing.T) {
	lab := netnstest.New(t)
	d := &Daemon{host: &jails.HostSet{}, logger: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	route := actions.NewRoute(actions.RouteOptions{Type: "blackhole", Table: 254, Protocol: actions.DefaultRouteProtocol}, slog.New(slog.DiscardHandler))
	lab.Do(func() {
		read, err := d.readHost(ctx)
		if err != nil {
			t.Fatal(err)
		}
		d.watchHost(ctx, read)
		if err := route.Start(ctx); err != nil {
			t.Fatal(err)
		}
		// 50,000 announcements as fast as the kernel makes them.
		bans := make([]actions.Ban, 0, 1024)
		for i := range 50_000 {
			bans = append(bans, actions.Ban{Jail: "sasl", Addr: netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)})})
			if len(bans) == cap(bans) || i == 49_999 {
				for _, err := range route.BanBatch(ctx, bans) {
					if err != nil {
						t.Fatal(err)
					}
				}
				bans = bans[:0]
			}
		}
	})
	time.Sleep(3 * hostSettle) // the burst's own reading again is over
	gw := netnstest.Client4
	lab.Do(func() {
		link, err := netlink.LinkByName("veth-srv")
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
			t.Fatal(err)
		}
	})
	ignore := jails.NewIgnoreList().WithHost(d.host)
	for deadline := time.Now().Add(10 * time.Second); ignore.Why(gw) == ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway %s of a default route added after a burst of null routes is bannable", gw)
		}
	}
}
