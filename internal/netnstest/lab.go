// Package netnstest builds a throwaway network for kernel tests: a server and a client
// network namespace joined by a veth pair, both created by the test and removed after it.
// Code under test runs inside the server namespace (Lab.Do); connections come from the
// client's addresses (Lab.Connect), so a test sees what a banned client sees.
//
// The addresses are from the documentation ranges (192.0.2.0/24, 2001:db8::/64) and exist
// only inside the two namespaces: no packet leaves the machine.
package netnstest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/logban/logban/internal/testenv"
)

// The lab's addresses. The client has two of each family, so a test can show that a ban
// of one leaves the other alone.
var (
	Server4  = netip.MustParseAddr("192.0.2.1")
	Client4  = netip.MustParseAddr("192.0.2.2")
	Other4   = netip.MustParseAddr("192.0.2.3")
	Server6  = netip.MustParseAddr("2001:db8::1")
	Client6  = netip.MustParseAddr("2001:db8::2")
	Other6   = netip.MustParseAddr("2001:db8::3")
	labCount atomic.Int64
)

// Networks of addresses beyond the client, for bans of whole networks: the client holds
// the addresses Remote4 and Remote6 list, and the server reaches 198.51.100.0/23 and
// 2001:db8:1::/48 on the link to it. RemoteNet4 and RemoteNet6 are the /24 and /64 holding the
// first five of each; the last of each lies in the next /24 or /64.
var (
	RemoteNet4 = netip.MustParsePrefix("198.51.100.0/24")
	RemoteNet6 = netip.MustParsePrefix("2001:db8:1:1::/64")
	Remote4    = addrs("198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4", "198.51.100.5", "198.51.100.6", "198.51.101.1")
	Remote6    = addrs("2001:db8:1:1::1", "2001:db8:1:1::2", "2001:db8:1:1::3", "2001:db8:1:1::4", "2001:db8:1:1::5", "2001:db8:1:1::6", "2001:db8:1:2::1")
)

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

// Lab is a server and a client namespace joined by a veth pair.
type Lab struct {
	t              testing.TB
	Server, Client netns.NsHandle
	serverName     string
	clientName     string
}

// New builds a lab, removed when the test ends. It needs root; without it the test is
// skipped (or failed under LOGBAN_REQUIRE_PRIVILEGED=1).
func New(t testing.TB) *Lab {
	t.Helper()
	testenv.RequireRoot(t)
	n := labCount.Add(1)
	l := &Lab{t: t,
		serverName: fmt.Sprintf("lb-srv-%d-%d", syscall.Getpid(), n),
		clientName: fmt.Sprintf("lb-cli-%d-%d", syscall.Getpid(), n),
	}
	if err := l.build(); err != nil {
		l.Close()
		t.Fatalf("building the test network: %v", err)
	}
	t.Cleanup(l.Close)
	return l
}

func (l *Lab) build() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	home, err := netns.Get()
	if err != nil {
		return err
	}
	defer home.Close()
	defer netns.Set(home) //nolint:errcheck // if this fails, the thread stays locked and dies with it
	// NewNamed enters each namespace it makes; IPv6 duplicate address detection is
	// switched off there so link-local addresses, which neighbour discovery needs, are
	// usable at once.
	if l.Server, err = netns.NewNamed(l.serverName); err != nil {
		return err
	}
	if err := noDAD(); err != nil {
		return err
	}
	if l.Client, err = netns.NewNamed(l.clientName); err != nil {
		return err
	}
	if err := noDAD(); err != nil {
		return err
	}
	if err := netns.Set(home); err != nil {
		return err
	}
	hs, err := netlink.NewHandleAt(l.Server)
	if err != nil {
		return err
	}
	defer hs.Close()
	hc, err := netlink.NewHandleAt(l.Client)
	if err != nil {
		return err
	}
	defer hc.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth-srv"}, PeerName: "veth-cli", PeerNamespace: netlink.NsFd(l.Client)}
	if err := hs.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth: %w", err)
	}
	for _, side := range []struct {
		h     *netlink.Handle
		link  string
		addrs []string
	}{
		{hs, "veth-srv", []string{"192.0.2.1/24", "2001:db8::1/64"}},
		{hc, "veth-cli", slices.Concat([]string{"192.0.2.2/24", "192.0.2.3/24", "2001:db8::2/64", "2001:db8::3/64"}, hostPrefixes(Remote4), hostPrefixes(Remote6))},
	} {
		link, err := side.h.LinkByName(side.link)
		if err != nil {
			return err
		}
		for _, a := range side.addrs {
			addr, _ := netlink.ParseAddr(a)
			addr.Flags = syscall.IFA_F_NODAD // usable at once, no duplicate detection wait
			if err := side.h.AddrAdd(link, addr); err != nil {
				return fmt.Errorf("address %s: %w", a, err)
			}
		}
		if err := side.h.LinkSetUp(link); err != nil {
			return err
		}
		lo, err := side.h.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := side.h.LinkSetUp(lo); err != nil {
			return err
		}
	}
	link, err := hs.LinkByName("veth-srv")
	if err != nil {
		return err
	}
	// On the link, each address's neighbour entry made by hand: neighbour discovery for
	// a dozen addresses at once does not always answer in time.
	for _, r := range []string{"198.51.100.0/23", "2001:db8:1::/48"} {
		_, dst, _ := net.ParseCIDR(r)
		if err := hs.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK}); err != nil {
			return fmt.Errorf("route to %s: %w", r, err)
		}
	}
	peer, err := hc.LinkByName("veth-cli")
	if err != nil {
		return err
	}
	for _, a := range slices.Concat(Remote4, Remote6) {
		family := netlink.FAMILY_V4
		if a.Is6() {
			family = netlink.FAMILY_V6
		}
		if err := hs.NeighAdd(&netlink.Neigh{LinkIndex: link.Attrs().Index, Family: family, State: netlink.NUD_PERMANENT,
			IP: a.AsSlice(), HardwareAddr: peer.Attrs().HardwareAddr}); err != nil {
			return fmt.Errorf("neighbour %s: %w", a, err)
		}
	}
	return nil
}

// hostPrefixes writes each address as a prefix of its own length.
func hostPrefixes(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = netip.PrefixFrom(a, a.BitLen()).String()
	}
	return out
}

// noDAD switches off IPv6 duplicate address detection in the current thread's namespace.
func noDAD() error {
	for _, conf := range []string{"all", "default"} {
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+conf+"/accept_dad", []byte("0"), 0); err != nil {
			return fmt.Errorf("disabling DAD: %w", err)
		}
	}
	return nil
}

// Close removes the namespaces.
func (l *Lab) Close() {
	for _, name := range []string{l.serverName, l.clientName} {
		netns.DeleteNamed(name) //nolint:errcheck // gone already is fine
	}
	l.Server.Close()
	l.Client.Close()
}

// Do runs f on an OS thread inside the server namespace. Netlink calls made by f, and
// commands it starts, act there.
func (l *Lab) Do(f func()) { l.in(l.Server, f) }

func (l *Lab) in(ns netns.NsHandle, f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		home, err := netns.Get()
		if err != nil {
			l.t.Error(err)
			return
		}
		defer home.Close()
		if err := netns.Set(ns); err != nil {
			l.t.Error(err)
			return
		}
		f()
		if err := netns.Set(home); err != nil {
			return // the thread is left locked, and so ends with this goroutine
		}
		runtime.UnlockOSThread()
	}()
	<-done
}

// Run runs a command in the server namespace and returns its output.
func (l *Lab) Run(name string, args ...string) string {
	l.t.Helper()
	var out []byte
	var err error
	l.Do(func() { out, err = exec.Command(name, args...).CombinedOutput() })
	if err != nil {
		l.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Listen accepts TCP connections in the server namespace on every address, until the
// test ends, and returns the port.
func (l *Lab) Listen() int {
	l.t.Helper()
	var ln net.Listener
	var err error
	l.Do(func() { ln, err = net.Listen("tcp", "[::]:0") })
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// ConnectTimeout is how long one connection attempt waits for an answer. On a veth pair
// an answer takes well under a millisecond.
const ConnectTimeout = 300 * time.Millisecond

// Reachable connects from the client's address src to the server, trying a few times so
// that a first neighbour resolution cannot pass for a block.
func (l *Lab) Reachable(src netip.Addr, port int) error {
	var err error
	for range 5 {
		if err = l.Connect(src, port); err == nil {
			return nil
		}
	}
	return err
}

// Connect makes one attempt at a TCP connection from the client's address src to the
// server's address of the same family.
func (l *Lab) Connect(src netip.Addr, port int) error {
	conn, err := l.Dial(src, port)
	if err != nil {
		return err
	}
	return conn.Close()
}

// Dial opens a TCP connection from src, an address of the client namespace, to port
// on the server's address of src's family. The connection stays in the client
// namespace wherever it is used.
func (l *Lab) Dial(src netip.Addr, port int) (net.Conn, error) {
	dst := Server4
	if src.Is6() {
		dst = Server6
	}
	var conn net.Conn
	var err error
	l.in(l.Client, func() {
		d := net.Dialer{Timeout: ConnectTimeout, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		conn, err = d.Dial("tcp", netip.AddrPortFrom(dst, uint16(port)).String())
	})
	return conn, err
}

// SilentServer accepts TCP connections on 127.0.0.1 and never answers, as a hung HTTP
// endpoint does, until the test ends, and returns its address. in runs the listening:
// Lab.Do puts it in a lab's server namespace; nil leaves it in the test's own.
func SilentServer(t testing.TB, in func(func())) string {
	t.Helper()
	if in == nil {
		in = func(f func()) { f() }
	}
	var ln net.Listener
	var err error
	in(func() { ln, err = net.Listen("tcp", "127.0.0.1:0") })
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	return ln.Addr().String()
}
