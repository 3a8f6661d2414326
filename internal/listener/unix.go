package listener

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// MaxSocketPath is the longest path a unix socket may have on Linux (sun_path less its
// terminating NUL).
const MaxSocketPath = 107

// ErrNotSocket is returned by Unix when its path names something that is not a socket.
var ErrNotSocket = errors.New("exists and is not a socket")

// ErrInUse is returned by Unix when a live server listens on its path.
var ErrInUse = errors.New("another server is listening on it")

// Unix listens on a unix socket at path whose mode is perm and, if gid is not -1, whose
// group is gid, both set before the socket has its name: it is bound in a private
// folder beside path (reached through its descriptor, whatever its name becomes), its
// mode and group set there, and then renamed into place. A socket left at path by a
// server that died is replaced; a live server's socket, or anything else that is not a
// socket, is an error and left alone. The folder holding path must exist.
//
// Closing the listener removes the socket, if path still names it.
func Unix(path string, perm fs.FileMode, gid int) (net.Listener, error) {
	if len(path) > MaxSocketPath {
		return nil, fmt.Errorf("%s: path is %d bytes, longer than a unix socket allows (%d)", path, len(path), MaxSocketPath)
	}
	dir, name := filepath.Split(filepath.Clean(path))
	if dir == "" {
		dir = "."
	}
	dfd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: opening its folder: %w", path, err)
	}
	defer unix.Close(dfd)
	if err := checkStale(dfd, name, path); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}

	// A folder of our own beside path: nobody else can add, swap or remove what is in
	// it, and it is reached through its descriptor even if its name is renamed.
	var rnd [6]byte
	rand.Read(rnd[:]) //nolint:errcheck // crypto/rand.Read never fails
	tmp := "." + name + "." + hex.EncodeToString(rnd[:])
	if err := unix.Mkdirat(dfd, tmp, 0o700); err != nil {
		return nil, fmt.Errorf("%s: making a private folder beside it: %w", path, err)
	}
	defer unix.Unlinkat(dfd, tmp, unix.AT_REMOVEDIR) //nolint:errcheck // empty by then, or left for the next start
	tfd, err := unix.Openat(dfd, tmp, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: opening its private folder: %w", path, err)
	}
	defer unix.Close(tfd)
	var st unix.Stat_t
	if err := unix.Fstat(tfd, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int(st.Uid) != os.Geteuid() || st.Mode&0o077 != 0 {
		return nil, fmt.Errorf("%s: the private folder beside it was replaced by another user's", path)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: fmt.Sprintf("/proc/self/fd/%d/s", tfd), Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(what string, err error) (net.Listener, error) {
		ln.Close()
		unix.Unlinkat(tfd, "s", 0) //nolint:errcheck // the folder goes with it
		return nil, fmt.Errorf("%s: %s: %w", path, what, err)
	}
	if gid != -1 {
		if err := unix.Fchownat(tfd, "s", -1, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fail(fmt.Sprintf("setting its group to %d", gid), err)
		}
	}
	if err := unix.Fchmodat(tfd, "s", uint32(perm.Perm()), 0); err != nil {
		return fail("setting its mode", err)
	}
	if err := unix.Fstatat(tfd, "s", &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fail("reading it back", err)
	}
	if err := unix.Renameat(tfd, "s", dfd, name); err != nil {
		return fail("moving it into place", err)
	}
	return &unixListener{UnixListener: ln, path: path, dev: st.Dev, ino: st.Ino}, nil
}

// checkStale says whether name in the folder dfd may be replaced by a new socket: it is
// absent, or a socket nobody listens on.
func checkStale(dfd int, name, path string) error {
	var st unix.Stat_t
	err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return ErrNotSocket
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return ErrInUse
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
		return nil
	}
	return err
}

// unixListener is a listener made by Unix; it reports its path as its address and
// removes its socket when closed, if path still names that socket.
type unixListener struct {
	*net.UnixListener
	path     string
	dev, ino uint64
	once     sync.Once
}

func (l *unixListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		var st unix.Stat_t
		if unix.Lstat(l.path, &st) == nil && st.Dev == l.dev && st.Ino == l.ino {
			os.Remove(l.path)
		}
	})
	return err
}
