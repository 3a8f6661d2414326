package netnstest

import (
	"fmt"
	"net/netip"
	"runtime"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/logban/logban/internal/testenv"
)

// Network is a farm's network: a namespace per host, each with one address, all on one
// bridge in a namespace of its own, as hosts on one switch. A host's link can be cut
// and healed (Cut, Heal): a partition as the farm meets one, packets lost without a word.
type Network struct {
	t     testing.TB
	hub   netns.NsHandle
	hosts []netns.NsHandle
	names []string // the namespaces' names: the hub's first
}

// HostAddr is the address of host i (from 0) of a Network: 10.99.0.1 and on.
func HostAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 99, 0, byte(i + 1)}) }

// NewNetwork builds a network of n hosts, removed when the test ends. It needs root;
// without it the test is skipped (or failed under LOGBAN_REQUIRE_PRIVILEGED=1).
func NewNetwork(t testing.TB, n int) *Network {
	t.Helper()
	testenv.RequireRoot(t)
	id := labCount.Add(1)
	nw := &Network{t: t}
	nw.names = append(nw.names, fmt.Sprintf("lb-hub-%d-%d", syscall.Getpid(), id))
	for i := range n {
		nw.names = append(nw.names, fmt.Sprintf("lb-h%d-%d-%d", i, syscall.Getpid(), id))
	}
	t.Cleanup(nw.close)
	if err := nw.build(n); err != nil {
		t.Fatalf("building the farm's network: %v", err)
	}
	return nw
}

func (nw *Network) build(n int) error {
	var err error
	if nw.hub, err = newNamespace(nw.names[0]); err != nil {
		return err
	}
	for i := range n {
		ns, err := newNamespace(nw.names[i+1])
		if err != nil {
			return err
		}
		nw.hosts = append(nw.hosts, ns)
	}
	hub, err := netlink.NewHandleAt(nw.hub)
	if err != nil {
		return err
	}
	defer hub.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := hub.LinkAdd(br); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	if err := hub.LinkSetUp(br); err != nil {
		return err
	}
	for i, ns := range nw.hosts {
		port := nw.port(i)
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port, MasterIndex: br.Index}, PeerName: "eth0", PeerNamespace: netlink.NsFd(ns)}
		if err := hub.LinkAdd(veth); err != nil {
			return fmt.Errorf("veth of host %d: %w", i, err)
		}
		if err := hub.LinkSetUp(veth); err != nil {
			return err
		}
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			return err
		}
		err = upWith(h, "eth0", netip.PrefixFrom(HostAddr(i), 24))
		h.Close()
		if err != nil {
			return fmt.Errorf("host %d: %w", i, err)
		}
	}
	return nil
}

// newNamespace makes a named namespace and returns its handle, leaving the calling
// thread where it was.
func newNamespace(name string) (netns.NsHandle, error) {
	ch := make(chan struct{})
	var ns netns.NsHandle
	var err error
	go func() {
		defer close(ch)
		runtime.LockOSThread()
		// The thread enters the new namespace and is not unlocked: it ends with the
		// goroutine instead of serving others from inside.
		ns, err = netns.NewNamed(name)
	}()
	<-ch
	return ns, err
}

// upWith brings link up with addr, and the loopback.
func upWith(h *netlink.Handle, link string, addr netip.Prefix) error {
	l, err := h.LinkByName(link)
	if err != nil {
		return err
	}
	a, _ := netlink.ParseAddr(addr.String())
	if err := h.AddrAdd(l, a); err != nil {
		return err
	}
	if err := h.LinkSetUp(l); err != nil {
		return err
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	return h.LinkSetUp(lo)
}

func (nw *Network) port(i int) string { return fmt.Sprintf("h%d", i) }

// Do runs f on an OS thread inside host i's namespace: commands it starts run there.
func (nw *Network) Do(i int, f func()) {
	l := Lab{t: nw.t}
	l.in(nw.hosts[i], f)
}

// Cut takes host i off the network: its link to the bridge goes down, and whatever it
// or the others send to each other is lost.
func (nw *Network) Cut(i int) { nw.setPort(i, false) }

// Heal puts host i back on the network.
func (nw *Network) Heal(i int) { nw.setPort(i, true) }

func (nw *Network) setPort(i int, up bool) {
	nw.t.Helper()
	hub, err := netlink.NewHandleAt(nw.hub)
	if err != nil {
		nw.t.Fatal(err)
	}
	defer hub.Close()
	l, err := hub.LinkByName(nw.port(i))
	if err == nil {
		if up {
			err = hub.LinkSetUp(l)
		} else {
			err = hub.LinkSetDown(l)
		}
	}
	if err != nil {
		nw.t.Fatalf("host %d's link: %v", i, err)
	}
}

func (nw *Network) close() {
	for _, name := range nw.names {
		netns.DeleteNamed(name) //nolint:errcheck // gone already is fine
	}
	nw.hub.Close()
	for _, h := range nw.hosts {
		h.Close()
	}
}
