package actions

import (
	"fmt"
	"sync"

	"github.com/vishvananda/netlink"
)

// netlinkSocket is a netlink handle opened on first use, in the network namespace of the
// thread that first uses it. Every request then goes over the one socket, where
// netlink's package functions open and close a socket each: that was 40% of the time of a
// null-route ban, measured with BenchmarkKernelBans.
type netlinkSocket struct {
	proto int // unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER

	mu sync.Mutex
	h  *netlink.Handle
}

// get returns the handle, opening it if need be.
func (s *netlinkSocket) get() (*netlink.Handle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h == nil {
		h, err := netlink.NewHandle(s.proto)
		if err != nil {
			return nil, fmt.Errorf("opening netlink: %w", err)
		}
		s.h = h
	}
	return s.h, nil
}

// close closes the handle; the next get opens a new one.
func (s *netlinkSocket) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h != nil {
		s.h.Close()
		s.h = nil
	}
}
