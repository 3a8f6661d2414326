package daemon

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// hostChanges subscribes to the kernel's announcements of the host's addresses and of
// its default routes, in the calling thread's network namespace, and signals on the
// channel it returns when one changed, until ctx ends. Signals coalesce: one waiting
// stands for any number of changes.
//
// A burst of 100,000 bans is 100,000 null routes announced, and only a default route's
// gateway matters here: a socket filter (routeFilter) leaves the others in the kernel,
// and what passes is read here on its headers (hostChanged), where netlink's
// subscriptions decode each route in full. When the
// kernel drops announcements because the socket's buffer is full (ENOBUFS), that counts
// as a change, to be read again, and the subscription goes on; netlink's subscription
// ends at the first overflow, and an attacker's burst would leave the host unwatched.
func hostChanges(ctx context.Context, errs func(error)) (<-chan struct{}, error) {
	fd, err := hostSocket()
	if err != nil {
		return nil, err
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

// hostSocket returns a non-blocking netlink socket subscribed to the announcements of
// the host's addresses and routes, in the calling thread's network namespace, with
// routeFilter attached: the kernel keeps the null routes of a burst of bans to itself.
func hostSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return -1, fmt.Errorf("netlink socket: %w", err)
	}
	prog, err := routeFilter()
	if err == nil {
		err = unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("filtering route announcements: %w", err)
	}
	var groups uint32
	for _, g := range []uint32{unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV6_IFADDR, unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV6_ROUTE} {
		groups |= 1 << (g - 1)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("subscribing to address and route changes: %w", err)
	}
	return fd, nil
}

// routeFilter is a socket filter, run by the kernel on each datagram before it is
// queued, that drops a datagram holding one route announcement whose destination has
// bits: a null route, as each ban through the route action makes, not a default route.
// Anything else passes, to be judged by hostChanged: the watch is then woken by what
// may concern it, not by every ban of a burst.
func routeFilter() ([]unix.SockFilter, error) {
	// Classic BPF loads are big-endian; netlink's fields are in the host's order. at[k]
	// is the offset of the byte of significance k in nlmsg_len, at the datagram's start.
	var order [4]byte
	binary.NativeEndian.PutUint32(order[:], 0x03020100)
	var at [4]uint32
	for i, k := range order {
		at[k] = uint32(i)
	}
	typ := func(t uint16) uint32 { // nlmsg_type as a 2-byte load reads it
		var b [2]byte
		binary.NativeEndian.PutUint16(b[:], t)
		return uint32(binary.BigEndian.Uint16(b[:]))
	}
	const hdr = unix.SizeofNlMsghdr // struct rtmsg follows: family, dst_len, ...
	insns := []bpf.Instruction{
		/* 0 */ bpf.LoadExtension{Num: bpf.ExtLen},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpLessThan, Val: hdr + 2, SkipTrue: 22}, // too short for a route: pass
		/* 2 */ bpf.StoreScratch{Src: bpf.RegA, N: 0},
		// A = nlmsg_len, byte by byte
		/* 3 */ bpf.LoadAbsolute{Off: at[3], Size: 1},
		/* 4 */ bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 24},
		/* 5 */ bpf.TAX{},
		/* 6 */ bpf.LoadAbsolute{Off: at[2], Size: 1},
		/* 7 */ bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 16},
		/* 8 */ bpf.ALUOpX{Op: bpf.ALUOpOr},
		/* 9 */ bpf.TAX{},
		/* 10 */ bpf.LoadAbsolute{Off: at[1], Size: 1},
		/* 11 */ bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 8},
		/* 12 */ bpf.ALUOpX{Op: bpf.ALUOpOr},
		/* 13 */ bpf.TAX{},
		/* 14 */ bpf.LoadAbsolute{Off: at[0], Size: 1},
		/* 15 */ bpf.ALUOpX{Op: bpf.ALUOpOr},
		/* 16 */ bpf.LoadScratch{Dst: bpf.RegX, N: 0},
		/* 17 */ bpf.JumpIfX{Cond: bpf.JumpEqual, SkipFalse: 6}, // more than one message: pass
		/* 18 */ bpf.LoadAbsolute{Off: 4, Size: 2}, // nlmsg_type
		/* 19 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: typ(unix.RTM_NEWROUTE), SkipTrue: 1},
		/* 20 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: typ(unix.RTM_DELROUTE), SkipFalse: 3}, // not a route: pass
		/* 21 */ bpf.LoadAbsolute{Off: hdr + 1, Size: 1}, // rtm_dst_len
		/* 22 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: 1}, // a default route: pass
		/* 23 */ bpf.RetConstant{Val: 0},
		/* 24 */ bpf.RetConstant{Val: 0xffffffff},
	}
	raw, err := bpf.Assemble(insns)
	if err != nil {
		return nil, err
	}
	prog := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		prog[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return prog, nil
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
