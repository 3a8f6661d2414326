// Package openfile opens the files ban-server reads and writes by a path that another
// user may control part of (the zimbra user owns /opt/zimbra/log), so that the owner
// of a folder cannot make root read or write a file that owner could not: a symbolic
// link is followed only if root (or the user running ban-server) owns it, the
// administrator's and not the folder owner's,
// and only a regular file is opened; a file to write must have no other name (a hard
// link to /etc/shadow is not our log).
//
// It knows nothing of what the files hold.
package openfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrRefused is wrapped by every error that says why a path was not opened: it names
// a link another user owns, something that is not a regular file, or a file to write
// with more than one name.
var ErrRefused = errors.New("refused")

// maxLinks bounds the links followed for one path, as the kernel's 40 does.
const maxLinks = 8

// Regular opens path with flag (os.O_RDONLY, or os.O_WRONLY|os.O_APPEND|os.O_CREATE
// ...) and perm, if path names a regular file, through links root owns only. It never
// blocks on a FIFO. The file is returned in blocking mode.
func Regular(path string, flag int, perm fs.FileMode) (*os.File, error) {
	return open(path, flag, perm, 0)
}

func open(path string, flag int, perm fs.FileMode, depth int) (*os.File, error) {
	f, err := os.OpenFile(path, flag|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, perm)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EMLINK) {
		target, err := rootLink(path)
		if err != nil {
			return nil, err
		}
		if depth >= maxLinks {
			return nil, fmt.Errorf("%s: more than %d links: %w", path, maxLinks, ErrRefused)
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		return open(target, flag, perm, depth+1)
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is %s, not a regular file: %w", path, Kind(fi.Mode()), ErrRefused)
	}
	if flag&(os.O_WRONLY|os.O_RDWR) != 0 {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			f.Close()
			return nil, fmt.Errorf("%s has %d names (a hard link): not written to: %w", path, st.Nlink, ErrRefused)
		}
	}
	if err := unix.SetNonblock(int(f.Fd()), false); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// rootLink returns the target of the link at path if root owns the link. It reads the
// link it looked at, not whatever the name holds a moment later.
func rootLink(path string) (string, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return "", fmt.Errorf("%s changed while being opened: %w", path, ErrRefused)
	}
	if st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return "", fmt.Errorf("%s is a link owned by user %d, not root: not followed: %w", path, st.Uid, ErrRefused)
	}
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: path, Err: err}
	}
	return string(buf[:n]), nil
}

// Kind names what a file mode says a path is: "a directory", "a FIFO", "a socket", "a
// device", or "a regular file".
func Kind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&(fs.ModeDevice|fs.ModeCharDevice) != 0:
		return "a device"
	}
	return "not a regular file"
}
