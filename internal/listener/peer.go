package listener

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNotLocal is returned by PeerUID for a TCP peer that is not a socket of this host
// (in this network namespace): the kernel cannot say who owns it.
var ErrNotLocal = errors.New("the peer is not on this host")

// Peers names the owners of connections' other ends, asking the kernel of one network
// namespace: the one its maker ran in.
type Peers struct{ h *netlink.Handle }

// NewPeers returns a Peers of the calling thread's network namespace.
func NewPeers() (*Peers, error) {
	h, err := netlink.NewHandle(unix.NETLINK_INET_DIAG)
	if err != nil {
		return nil, fmt.Errorf("opening a sock_diag socket: %w", err)
	}
	return &Peers{h: h}, nil
}

// Close releases p's netlink socket.
func (p *Peers) Close() { p.h.Close() }

// PeerUID returns the user that owns conn's other end, as p.UID does, asking the
// kernel of the calling thread's network namespace.
func PeerUID(conn net.Conn) (uint32, error) { return (*Peers)(nil).UID(conn) }

// UID returns the user that owns conn's other end: for a unix socket, the user that
// connected (SO_PEERCRED); for TCP, the owner of the peer's socket if it is on this host,
// else ErrNotLocal. Both come from the kernel, not from anything the peer says.
func (p *Peers) UID(conn net.Conn) (uint32, error) {
	switch c := conn.(type) {
	case *net.UnixConn:
		raw, err := c.SyscallConn()
		if err != nil {
			return 0, err
		}
		var cred *unix.Ucred
		var credErr error
		if err := raw.Control(func(fd uintptr) {
			cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		}); err != nil {
			return 0, err
		}
		if credErr != nil {
			return 0, fmt.Errorf("reading the peer's credentials: %w", credErr)
		}
		return cred.Uid, nil
	case *net.TCPConn:
		// The peer's socket has our remote address as its local one.
		get := netlink.SocketGet
		if p != nil {
			get = p.h.SocketGet
		}
		s, err := get(c.RemoteAddr(), c.LocalAddr())
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				return 0, ErrNotLocal
			}
			return 0, fmt.Errorf("asking the kernel who owns %s: %w", c.RemoteAddr(), err)
		}
		return s.UID, nil
	}
	return 0, fmt.Errorf("a %T has no owner the kernel knows", conn)
}
