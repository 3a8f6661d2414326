// Package listener opens and serves ban-server's own sockets (the control socket, the
// Postfix policy service) so that nobody else can take them over or wear them down:
//
//   - unix.go makes a unix socket with its mode and group already set when its name
//     appears, without a chmod through a path that the folder's owner could swap for a
//     link, and replaces only a stale socket, never another file;
//   - serve.go accepts connections within a cap, rides out a failed accept (no
//     descriptors, no buffers) with a growing pause, and says whether it is accepting,
//     degraded or stopped;
//   - peer.go names the user that owns a connection's other end: the kernel's word for
//     a unix socket (SO_PEERCRED) and for TCP over the host's own addresses (sock_diag).
//
// It knows nothing of what is said over the connections.
package listener
