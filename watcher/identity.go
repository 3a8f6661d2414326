package watcher

import (
	"bytes"
	"cmp"
	"errors"
	"hash/fnv"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/logban/logban/internal/openfile"
)

// headMax bounds the bytes of the first line that go into an Identity.
const headMax = 4096

// Identity tells one file's contents from another's, whatever its name.
type Identity struct {
	Device uint64
	Inode  uint64
	// Head is a hash of the file's first line (at most headMax bytes), or 0 while the
	// file has no complete first line. Inodes are recycled; first lines, which carry a
	// timestamp, practically are not.
	Head uint64
}

// Position is where reading a file stands: the offset just past the last line handed on.
type Position struct {
	File   Identity
	Offset int64
	// Cursor is, for a position in the systemd journal (package journal), the journal's
	// cursor of the last entry handed on; File and Offset are then zero. "" for a file.
	Cursor string
}

// IsZero reports whether p was never set.
func (p Position) IsZero() bool { return p == Position{} }

// sameFile reports whether id is the file that was, with head, recorded as was. A head
// still unknown on either side matches any.
func (id Identity) sameFile(was Identity) bool {
	return id.Device == was.Device && id.Inode == was.Inode &&
		(id.Head == 0 || was.Head == 0 || id.Head == was.Head)
}

// identify returns the identity of the open file f.
func identify(f *os.File) (Identity, int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return Identity{}, 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return Identity{}, 0, errors.New("no inode information")
	}
	head, err := readHead(f)
	if err != nil {
		return Identity{}, 0, err
	}
	return Identity{Device: uint64(st.Dev), Inode: st.Ino, Head: head}, fi.Size(), nil
}

// readHead hashes the first line of f without moving its offset.
func readHead(f *os.File) (uint64, error) {
	buf := make([]byte, headMax)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	return headHash(buf[:n]), nil
}

// headHash hashes the first line in b: up to its newline, or headMax bytes if the line
// is longer. It returns 0 if b holds no complete first line yet.
func headHash(b []byte) uint64 {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	} else if len(b) < headMax {
		return 0
	} else {
		b = b[:headMax]
	}
	h := fnv.New64a()
	h.Write(b)
	if s := h.Sum64(); s != 0 {
		return s
	}
	return 1
}

// compressed names the suffixes of rotated files that cannot be read as text.
var compressed = []string{".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip"}

// candidate is a file beside a followed path that may be the path's file rotated, or a
// copy of it: open, and identified.
type candidate struct {
	path string
	f    *os.File
	id   Identity
	size int64
}

// candidates yields the regular, uncompressed files beside path whose names begin with
// its name (zimbra.log.1, zimbra.log-20261122). The loop's body owns each file, and
// closes those it does not keep.
func candidates(path string) iter.Seq[candidate] {
	return func(yield func(candidate) bool) {
		dir, base := filepath.Split(path)
		entries, err := os.ReadDir(filepath.Clean(dir))
		if err != nil {
			return
		}
		for _, e := range entries {
			name := e.Name()
			if name == base || !strings.HasPrefix(name, base) || hasSuffix(name, compressed) || !e.Type().IsRegular() {
				continue
			}
			f, err := openRegular(filepath.Join(dir, name))
			if err != nil {
				continue
			}
			id, size, err := identify(f)
			if err != nil {
				f.Close()
				continue
			}
			if !yield(candidate{filepath.Join(dir, name), f, id, size}) {
				return
			}
		}
	}
}

// findRotated looks beside path for the file recorded as was, under another name,
// holding at least offset bytes. A file with the same inode is preferred; failing that,
// a copy with the same first line (copytruncate). It returns nil if there is none.
func findRotated(path string, was Identity, offset int64) (*os.File, Identity) {
	if was.Head == 0 && offset > 0 {
		return nil, Identity{} // nothing to recognise a copy by
	}
	var copyFile *os.File
	var copyID Identity
	for c := range candidates(path) {
		switch {
		case c.size < offset || (was.Head != 0 && c.id.Head != was.Head):
			c.f.Close()
		case c.id.Device == was.Device && c.id.Inode == was.Inode:
			if copyFile != nil {
				copyFile.Close()
			}
			return c.f, c.id
		case copyFile == nil && was.Head != 0:
			copyFile, copyID = c.f, c.id
		default:
			c.f.Close()
		}
	}
	return copyFile, copyID
}

// shorterCopy returns the name and size of a copy of the file was beside path (same
// first line, another inode) that ends at or before offset: one whose every line was read
// before the file was truncated. It returns "" if there is none.
func shorterCopy(path string, was Identity, offset int64) (string, int64) {
	if was.Head == 0 {
		return "", 0
	}
	for c := range candidates(path) {
		c.f.Close()
		if c.id.Head == was.Head && c.size <= offset && (c.id.Device != was.Device || c.id.Inode != was.Inode) {
			return c.path, c.size
		}
	}
	return "", 0
}

func hasSuffix(s string, suffixes []string) bool {
	for _, x := range suffixes {
		if strings.HasSuffix(s, x) {
			return true
		}
	}
	return false
}

// rotatedSince lists the rotated files beside path (logrotate's numbered zimbra.log.1 or
// dated zimbra.log-20261122 names, uncompressed) last written after the file old, oldest
// first, leaving out old itself: the files that came and went while nobody was reading.
// It leaves out too a copy of what the file at path, current, holds now (the same first
// line): copytruncate's copy, made and not yet followed by its truncation, whose lines
// are read from the file itself and would otherwise come twice.
func rotatedSince(path string, old, current *os.File) []string {
	oldInfo, err := old.Stat()
	if err != nil {
		return nil
	}
	currentHead, _ := readHead(current)
	dir, base := filepath.Split(path)
	entries, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return nil
	}
	type file struct {
		path  string
		mtime int64
	}
	var files []file
	for _, e := range entries {
		suffix, ok := strings.CutPrefix(e.Name(), base)
		if !ok || !isRotationSuffix(suffix) || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil || os.SameFile(fi, oldInfo) || !fi.ModTime().After(oldInfo.ModTime()) {
			continue
		}
		name := filepath.Join(dir, e.Name())
		if currentHead != 0 && headOf(name) == currentHead {
			continue
		}
		files = append(files, file{name, fi.ModTime().UnixNano()})
	}
	slices.SortFunc(files, func(a, b file) int { return cmp.Compare(a.mtime, b.mtime) })
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.path
	}
	return out
}

// headOf returns the first-line hash of the file at name, or 0 if it cannot be read or
// has no complete first line.
func headOf(name string) uint64 {
	f, err := openRegular(name)
	if err != nil {
		return 0
	}
	defer f.Close()
	h, _ := readHead(f)
	return h
}

// isRotationSuffix reports whether s is ".N" or "-DIGITS" (with no compression suffix).
func isRotationSuffix(s string) bool {
	if len(s) < 2 || (s[0] != '.' && s[0] != '-') {
		return false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// ErrNotRegular reports a path that names something other than a regular file: a
// directory, a FIFO, a socket, a device, or a link that another user than root owns. A
// follower never opens one: opening a FIFO for reading would block until a writer came,
// and the daemon with it; and the owner of a log folder must not make root read a file
// through a link (a log replaced by a link to /etc/shadow).
var ErrNotRegular = errors.New("not a regular file")

// openRegular opens name for reading if it is a regular file, through links root owns
// only (openfile.Regular). It opens without blocking, so that a FIFO cannot hold it up.
func openRegular(name string) (*os.File, error) {
	f, err := openfile.Regular(name, os.O_RDONLY, 0)
	if errors.Is(err, openfile.ErrRefused) {
		return nil, notRegularError{err}
	}
	return f, err
}

// notRegularError is openfile's refusal, read as ErrNotRegular.
type notRegularError struct{ err error }

func (e notRegularError) Error() string   { return e.err.Error() }
func (e notRegularError) Unwrap() []error { return []error{e.err, ErrNotRegular} }

// Kind names what a file mode says a path is (openfile.Kind).
func Kind(m fs.FileMode) string { return openfile.Kind(m) }
