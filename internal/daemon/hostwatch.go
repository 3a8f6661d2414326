package daemon

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// hostChanges subscribes to the kernel's announcements of the host's addresses and of
// its default routes, in the calling thread's network namespace, and signals on the
// channel it returns when one changed, until ctx ends. Signals coalesce: one waiting
// stands for any number of changes.
//
// It reads the announcements itself, where netlink's subscriptions decode each route in
// full: a burst of 100,000 bans is 100,000 null routes announced, and only a default
// route's gateway matters here, so every other route is skipped on its header. When the
// kernel drops announcements because the socket's buffer is full (ENOBUFS), that counts
// as a change, to be read again, and the subscription goes on; netlink's subscription
// ends at the first overflow, and an attacker's burst would leave the host unwatched.
func hostChanges(ctx context.Context, errs func(error)) (<-chan struct{}, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	var groups uint32
	for _, g := range []uint32{unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV6_IFADDR, unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV6_ROUTE} {
		groups |= 1 << (g - 1)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("subscribing to address and route changes: %w", err)
	}
	f := os.NewFile(uintptr(fd), "netlink-host") // non-blocking: reads wait in the poller
	conn, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	context.AfterFunc(ctx, func() { f.Close() })
	changed := make(chan struct{}, 1)
	signal := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			var n int
			var from unix.Sockaddr
			var rerr error
			err := conn.Read(func(fd uintptr) bool {
				n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
				return rerr != unix.EAGAIN && rerr != unix.EINTR // else wait, and read again
			})
			switch {
			case err != nil: // closed: ctx ended
				return
			case errors.Is(rerr, unix.ENOBUFS):
				signal() // announcements were lost: read the host again
				continue
			case rerr != nil:
				if ctx.Err() == nil {
					errs(rerr)
				}
				return
			}
			if sa, ok := from.(*unix.SockaddrNetlink); !ok || sa.Pid != 0 {
				continue // the kernel's alone count
			}
			if hostChanged(buf[:n]) {
				signal()
			}
		}
	}()
	return changed, nil
}

// hostChanged reports whether the netlink messages in b announce a change of the host's
// addresses or of a default route. It reads only their headers.
func hostChanged(b []byte) bool {
	for len(b) >= unix.SizeofNlMsghdr {
		size := int(binary.NativeEndian.Uint32(b[0:4]))
		typ := binary.NativeEndian.Uint16(b[4:6])
		if size < unix.SizeofNlMsghdr || size > len(b) {
			return false
		}
		body := b[unix.SizeofNlMsghdr:size]
		switch typ {
		case unix.RTM_NEWADDR, unix.RTM_DELADDR:
			return true
		case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
			// struct rtmsg: family, dst_len, ...; a default route's destination has
			// no bits.
			if len(body) >= unix.SizeofRtMsg && body[1] == 0 {
				return true
			}
		}
		b = b[min(len(b), (size+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1)):]
	}
	return false
}
