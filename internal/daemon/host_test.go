package daemon

import (
	"context"
	"encoding/binary"
	"log/slog"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

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

// The kernel keeps a burst's null routes from the host watch: the watch's socket
// receives none of 200 bans' routes, IPv4 and IPv6, but an address added and a default
// route added after them, which it exists to see.
func TestTheHostWatchIsNotWokenByNullRoutes(t *testing.T) {
	lab := netnstest.New(t)
	ctx := context.Background()
	route := actions.NewRoute(actions.RouteOptions{Type: "blackhole", Table: 254, Protocol: actions.DefaultRouteProtocol}, slog.New(slog.DiscardHandler))
	var fd int
	lab.Do(func() {
		var err error
		if fd, err = hostSocket(); err != nil {
			t.Fatal(err)
		}
		if err := route.Start(ctx); err != nil {
			t.Fatal(err)
		}
		var bans []actions.Ban
		for i := range 200 {
			a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
			if i%2 == 1 {
				a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})
			}
			bans = append(bans, actions.Ban{Jail: "sasl", Addr: a})
		}
		for _, err := range route.BanBatch(ctx, bans) {
			if err != nil {
				t.Fatal(err)
			}
		}
		link, err := netlink.LinkByName("veth-srv")
		if err != nil {
			t.Fatal(err)
		}
		a, _ := netlink.ParseAddr("192.0.2.77/24")
		if err := netlink.AddrAdd(link, a); err != nil {
			t.Fatal(err)
		}
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: netnstest.Client4.AsSlice()}); err != nil {
			t.Fatal(err)
		}
	})
	defer unix.Close(fd)
	// The kernel announces each change before the call that made it returns.
	var nullRoutes, addrs, defaults, overflows int
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EAGAIN {
			break
		}
		if err == unix.ENOBUFS { // announcements queued beyond the socket's room
			overflows++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.RTM_NEWADDR:
				addrs++
			case unix.RTM_NEWROUTE:
				if len(m.Data) >= 2 && m.Data[1] == 0 {
					defaults++
				} else {
					nullRoutes++
				}
			}
		}
	}
	if nullRoutes > 0 || overflows > 0 || addrs == 0 || defaults == 0 {
		t.Errorf("the watch received %d routes with a destination (and overflowed %d times), %d addresses, %d default routes; want none, some, some",
			nullRoutes, overflows, addrs, defaults)
	}
}

// routeFilter drops a datagram of one route announcement with a destination, and passes
// a default route's, an address's, one too short to be a route, and one of several
// messages (hostChanged reads those whole), as the kernel would run it.
func TestRouteFilterDropsOnlyRoutesWithADestination(t *testing.T) {
	prog, err := routeFilter()
	if err != nil {
		t.Fatal(err)
	}
	insns := make([]bpf.RawInstruction, len(prog))
	for i, f := range prog {
		insns[i] = bpf.RawInstruction{Op: f.Code, Jt: f.Jt, Jf: f.Jf, K: f.K}
	}
	var dis []bpf.Instruction
	for _, r := range insns {
		dis = append(dis, r.Disassemble())
	}
	vm, err := bpf.NewVM(dis)
	if err != nil {
		t.Fatal(err)
	}
	msg := func(typ uint16, body ...byte) []byte {
		b := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
		b = append(b, body...)
		binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
		binary.NativeEndian.PutUint16(b[4:6], typ)
		return b
	}
	rtmsg := func(dstLen byte) []byte { return []byte{unix.AF_INET, dstLen, 0, 0, 254, 4, 0, 1, 0, 0, 0, 0} }
	for _, c := range []struct {
		name string
		data []byte
		pass bool
	}{
		{"a null route", msg(unix.RTM_NEWROUTE, rtmsg(32)...), false},
		{"a null route removed", msg(unix.RTM_DELROUTE, rtmsg(128)...), false},
		{"a network's route", msg(unix.RTM_NEWROUTE, rtmsg(24)...), false},
		{"a default route", msg(unix.RTM_NEWROUTE, rtmsg(0)...), true},
		{"a default route removed", msg(unix.RTM_DELROUTE, rtmsg(0)...), true},
		{"an address", msg(unix.RTM_NEWADDR, unix.AF_INET, 24, 0, 0, 2, 0, 0, 0), true},
		{"an address removed", msg(unix.RTM_DELADDR, unix.AF_INET, 24, 0, 0, 2, 0, 0, 0), true},
		{"a header alone", msg(unix.RTM_NEWROUTE), true},
		{"a null route then a default route", append(msg(unix.RTM_NEWROUTE, rtmsg(32)...), msg(unix.RTM_NEWROUTE, rtmsg(0)...)...), true},
	} {
		n, err := vm.Run(c.data)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if pass := n > 0; pass != c.pass {
			t.Errorf("%s: passed %v, want %v", c.name, pass, c.pass)
		}
	}
}
