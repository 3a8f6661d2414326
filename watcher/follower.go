package watcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Start says where a file is first read from.
type Start uint8

// The places to start reading.
const (
	// FromEnd reads only lines completed after Open.
	FromEnd Start = iota
	// FromBeginning reads the whole file, then what is appended.
	FromBeginning
	// Resume continues from Options.Resume: in the same file at its offset; if the file
	// was rotated since, the rest of the old one (found beside it by identity) is read,
	// then the new one whole; if the old one cannot be found, from the end. A zero
	// Resume is FromEnd.
	Resume
)

// Options tune a Follower; the zero value is usable.
type Options struct {
	Start  Start
	Resume Position
	// MaxLineSize cuts longer lines: the first MaxLineSize bytes are handed on and the
	// rest discarded, counted and reported. 0 means DefaultMaxLineSize.
	MaxLineSize int
	// BatchSize is the most lines per Batch; 0 means 1024.
	BatchSize int
	// CheckInterval is how often the file is checked for rotation and growth when no
	// event says so (a backstop for filesystems without inotify); 0 means one second.
	CheckInterval time.Duration
	// RotateGrace is how long a rotated-away file is still read after it last grew,
	// for writers that have not yet reopened the new one; 0 means five seconds.
	RotateGrace time.Duration
	// Logger receives rotations and cut lines; nil discards them.
	Logger *slog.Logger
}

// DefaultMaxLineSize is the default for Options.MaxLineSize.
const DefaultMaxLineSize = 64 << 10

// Stats are a follower's counters.
type Stats struct {
	Lines     int64 // lines handed on
	Bytes     int64 // bytes read
	LongLines int64 // lines cut at MaxLineSize
	Rotations int64 // times the path came to name another file, or was truncated
	// Behind is how many bytes the file at the path holds past the last line handed on.
	Behind int64
}

// Follower follows one path. Open positions it; Run reads.
type Follower struct {
	path   string
	opts   Options
	logger *slog.Logger

	// Owned by Run.
	cur     *source    // the file the path names, or nil while it names none
	retired []*retired // files rotated away, still read for a while
	sp      splitter
	emitSrc *source
	emitFn  Handler

	warnedNotRegular bool // the path names no regular file, and a warning said so

	mu  sync.Mutex
	pos Position

	lines, bytes, longLines, rotations atomic.Int64
}

type retired struct {
	src        *source
	quietSince time.Time
}

// Open positions a follower on path as opts.Start says. A path that names no file yet is
// fine: the file is read from its beginning when it appears. Any other error opening it
// is returned.
func Open(path string, opts Options) (*Follower, error) {
	if opts.MaxLineSize <= 0 {
		opts.MaxLineSize = DefaultMaxLineSize
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1024
	}
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = time.Second
	}
	if opts.RotateGrace <= 0 {
		opts.RotateGrace = 5 * time.Second
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	fw := &Follower{path: path, opts: opts, logger: logger}
	fw.sp = splitter{
		maxLine: opts.MaxLineSize,
		batch:   make([]Line, 0, opts.BatchSize),
		handle:  fw.emit,
		cut:     fw.cutLine,
	}
	if err := fw.position(); err != nil {
		return nil, fmt.Errorf("following %s: %w", path, err)
	}
	return fw, nil
}

// bufSize is the read buffer of a source: room for a full-length line and then some.
func (fw *Follower) bufSize() int { return max(256<<10, 2*fw.opts.MaxLineSize) }

func (fw *Follower) position() error {
	f, err := openRegular(fw.path)
	if errors.Is(err, fs.ErrNotExist) || fw.notRegular(err) {
		return nil
	}
	if err != nil {
		return err
	}
	id, size, err := identify(f)
	if err != nil {
		f.Close()
		return err
	}
	offset := int64(0)
	switch fw.opts.Start {
	case FromEnd:
		offset = lineStartBefore(f, size)
	case Resume:
		p := fw.opts.Resume
		switch {
		case p.IsZero():
			offset = lineStartBefore(f, size)
		case id.sameFile(p.File) && size >= p.Offset:
			offset = p.Offset
		default:
			if old, oldID := findRotated(fw.path, p.File, p.Offset); old != nil {
				src, err := newSource(old, oldID, p.Offset, fw.bufSize())
				if err != nil {
					old.Close()
					f.Close()
					return err
				}
				fw.retired = append(fw.retired, &retired{src: src, quietSince: time.Now()})
				fw.logger.Info("rotated while stopped; reading the rest of the old file first", "old", old.Name(), "offset", p.Offset)
				// Rotated more than once: the files in between are read whole, in order.
				for _, name := range rotatedSince(fw.path, old, f) {
					if err := fw.retireWhole(name, f); err != nil {
						fw.logger.Warn("reading a file rotated while stopped", "file", name, "err", err)
					}
				}
			} else {
				offset = lineStartBefore(f, size)
				fw.logger.Warn("saved position not found (file replaced and its old copy gone); reading from the end", "offset", p.Offset)
			}
		}
	}
	fw.cur, err = newSource(f, id, offset, fw.bufSize())
	if err != nil {
		f.Close()
		return err
	}
	fw.pos = Position{File: id, Offset: offset}
	return nil
}

// retireWhole queues the file at name to be read whole, unless it is current.
func (fw *Follower) retireWhole(name string, current *os.File) error {
	src, err := fw.openSource(name, 0)
	if err != nil || src == nil {
		return err
	}
	fi, err1 := src.f.Stat()
	ci, err2 := current.Stat()
	if err := errors.Join(err1, err2); err != nil || os.SameFile(fi, ci) {
		src.close()
		return err
	}
	fw.retired = append(fw.retired, &retired{src: src, quietSince: time.Now()})
	return nil
}

// openSource opens the file at name to be read from offset. A file that does not exist,
// or is not a regular file, is no error: it returns nil.
func (fw *Follower) openSource(name string, offset int64) (*source, error) {
	f, err := openRegular(name)
	if errors.Is(err, fs.ErrNotExist) || fw.notRegular(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	id, _, err := identify(f)
	var src *source
	if err == nil {
		src, err = newSource(f, id, offset, fw.bufSize())
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return src, nil
}

// notRegular reports whether err says the path names no regular file; it is then
// followed as if absent, and the first time this is so, a warning says what it names.
func (fw *Follower) notRegular(err error) bool {
	if !errors.Is(err, ErrNotRegular) {
		fw.warnedNotRegular = false
		return false
	}
	if !fw.warnedNotRegular {
		fw.logger.Warn("not following: the path does not name a regular file; waiting for one", "err", err)
		fw.warnedNotRegular = true
	}
	return true
}

// lineStartBefore returns the offset just past the last newline before size, so that
// reading "from the end" starts on a line boundary.
func lineStartBefore(f *os.File, size int64) int64 {
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	for end := size; end > 0; {
		start := max(end-chunk, 0)
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return size
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return start + int64(i) + 1
		}
		end = start
	}
	return 0
}

// Position returns where reading stands in the file the path names: resuming there
// later reads every line not yet handed on, and none twice.
func (fw *Follower) Position() Position {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return fw.pos
}

// Path returns the followed path.
func (fw *Follower) Path() string { return fw.path }

// Stats returns the follower's counters.
func (fw *Follower) Stats() Stats {
	s := Stats{
		Lines:     fw.lines.Load(),
		Bytes:     fw.bytes.Load(),
		LongLines: fw.longLines.Load(),
		Rotations: fw.rotations.Load(),
	}
	if fi, err := os.Stat(fw.path); err == nil {
		p := fw.Position()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Ino == p.File.Inode && uint64(st.Dev) == p.File.Device {
			s.Behind = max(fi.Size()-p.Offset, 0)
		} else {
			s.Behind = fi.Size()
		}
	}
	return s
}

// Run reads until ctx is done, calling handle with every line. It returns nil when ctx
// ends; it does not give up on a file that disappears, but waits for it to come back.
func (fw *Follower) Run(ctx context.Context, handle Handler) error {
	fw.emitFn = handle
	defer fw.closeAll()

	sub := fw.startWatching()
	var wake <-chan struct{}
	if sub != nil {
		defer sub.close()
		wake = sub.wake
	}
	tick := time.NewTicker(fw.opts.CheckInterval)
	defer tick.Stop()

	// check: look at what the path names. A write that brings nothing new to read is
	// checked too: that is how a truncation shows.
	check, written := true, false
	for {
		idle, err := fw.readAll()
		if err != nil {
			return err
		}
		if check || (idle && written) {
			if err := fw.checkPath(); err != nil {
				fw.logger.Warn("checking", "err", err)
			}
			if sub != nil {
				fw.watchDirs(sub)
			}
			check, written = false, false
			continue // read what a new or recovered file holds
		}
		written = false
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			check = true
		case <-wake:
			wrote, other, err := sub.take()
			if err != nil {
				fw.logger.Warn("file events", "err", err)
				other = true
			}
			written, check = wrote, check || other
		}
	}
}

// readAll reads the retired files, then the current one. idle reports that the current
// file had nothing new, which is when a truncation would show.
func (fw *Follower) readAll() (idle bool, err error) {
	now := time.Now()
	kept := fw.retired[:0]
	for _, r := range fw.retired {
		n, err := fw.drain(r.src)
		if err != nil {
			fw.logger.Warn("reading rotated file", "file", r.src.f.Name(), "err", err)
		}
		if n > 0 {
			r.quietSince = now
		}
		if err != nil || now.Sub(r.quietSince) > fw.opts.RotateGrace {
			fw.logger.Debug("done with rotated file", "inode", r.src.id.Inode, "read_to", r.src.readOffset())
			r.src.close()
			continue
		}
		kept = append(kept, r)
	}
	clear(fw.retired[len(kept):])
	fw.retired = kept
	if fw.cur == nil {
		return false, nil
	}
	// A file smaller than what was read of it, or with another first line, was truncated
	// (copytruncate): look before reading, or the read would start in the middle of its
	// new contents.
	if fi, err := fw.cur.f.Stat(); err == nil && fw.cur.truncated(fi.Size()) {
		fw.recoverTruncated()
	}
	n, err := fw.drain(fw.cur)
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", fw.path, err)
	}
	return n == 0, nil
}

func (fw *Follower) drain(s *source) (int64, error) {
	fw.emitSrc = s
	n, err := fw.sp.drain(s)
	fw.bytes.Add(n)
	return n, err
}

// emit hands a batch on and moves the position past it.
func (fw *Follower) emit(lines []Line, data []byte) {
	s := fw.emitSrc
	fw.emitFn(Batch{File: s.id, Lines: lines, Data: data})
	fw.lines.Add(int64(len(lines)))
	if s == fw.cur {
		fw.mu.Lock()
		fw.pos = Position{File: s.id, Offset: s.pos()}
		fw.mu.Unlock()
	}
}

func (fw *Follower) cutLine(offset int64) {
	if n := fw.longLines.Add(1); n == 1 || n%1000 == 0 {
		fw.logger.Warn("line longer than the limit cut", "offset", offset, "limit", fw.opts.MaxLineSize, "cut_so_far", n)
	}
}

// checkPath looks at what the path names now and follows it: a new file (rotation by
// rename or delete and create, a repointed link), a truncated one (copytruncate), or
// none (deleted, or renamed with no new file yet).
func (fw *Follower) checkPath() error {
	fi, err := os.Stat(fw.path)
	if errors.Is(err, fs.ErrNotExist) {
		if fw.cur != nil {
			fw.logger.Info("file gone; reading what is left of it and waiting for a new one")
			fw.retire()
		}
		return nil
	}
	if err != nil {
		return err
	}
	if fw.cur == nil {
		return fw.openNew()
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if st == nil || uint64(st.Dev) != fw.cur.id.Device || st.Ino != fw.cur.id.Inode {
		if _, err := fw.drain(fw.cur); err != nil {
			return err
		}
		fw.logger.Info("file rotated; following the new one")
		fw.retire()
		return fw.openNew()
	}
	if fw.cur.truncated(fi.Size()) {
		fw.recoverTruncated()
	}
	return nil
}

// recoverTruncated handles a file truncated in place: the lines between the position and
// the truncation are read from its copy (copytruncate's zimbra.log.1), found by its first
// line, and any copy made since (when the file was truncated more than once before this
// was seen) read whole; then the file is read again from its start.
func (fw *Follower) recoverTruncated() {
	fw.rotations.Add(1)
	from := fw.cur.pos()
	if f, id := findRotated(fw.path, fw.cur.id, from); f != nil && (id.Device != fw.cur.id.Device || id.Inode != fw.cur.id.Inode) {
		fw.drainFile(f, id, from)
		for _, name := range rotatedSince(fw.path, f, fw.cur.f) {
			src, err := fw.openSource(name, 0)
			if err == nil && src != nil {
				_, err = fw.drain(src)
				src.close()
			}
			if err != nil {
				fw.logger.Warn("reading a copy of the file", "copy", name, "err", err)
			}
		}
		f.Close()
		fw.logger.Info("file truncated; read the rest from its copy", "copy", f.Name(), "offset", from)
	} else if copyName, size := shorterCopy(fw.path, fw.cur.id, from); copyName != "" {
		// Read at full speed, the follower was past the end of logrotate's copy: it had
		// read everything the copy holds, and more.
		fw.logger.Info("file truncated; everything its copy holds was read already", "copy", copyName, "copy_size", size, "offset", from)
	} else {
		fw.logger.Warn("file truncated and no copy of it found; lines written just before may be lost", "offset", from)
	}
	if err := fw.cur.rewind(0); err != nil {
		fw.logger.Warn("rewinding", "err", err)
	}
	fw.mu.Lock()
	fw.pos = Position{File: fw.cur.id, Offset: 0}
	fw.mu.Unlock()
}

// drainFile reads the open file f from offset to its end.
func (fw *Follower) drainFile(f *os.File, id Identity, offset int64) {
	src, err := newSource(f, id, offset, fw.bufSize())
	if err == nil {
		_, err = fw.drain(src)
	}
	if err != nil {
		fw.logger.Warn("reading a copy of the file", "copy", f.Name(), "err", err)
	}
}

// retire moves the current file to the retired ones, still read for RotateGrace.
func (fw *Follower) retire() {
	fw.retired = append(fw.retired, &retired{src: fw.cur, quietSince: time.Now()})
	fw.cur = nil
}

// openNew follows the file the path names now, from its beginning: every line in it was
// written after the file it replaces was last read.
func (fw *Follower) openNew() error {
	src, err := fw.openSource(fw.path, 0)
	if err != nil || src == nil {
		return err
	}
	fw.cur = src
	fw.rotations.Add(1)
	fw.logger.Debug("following new file", "inode", src.id.Inode)
	fw.mu.Lock()
	fw.pos = Position{File: src.id, Offset: 0}
	fw.mu.Unlock()
	return nil
}

func (fw *Follower) closeAll() {
	if fw.cur != nil {
		fw.cur.close()
	}
	for _, r := range fw.retired {
		r.src.close()
	}
	fw.retired = nil
}

// startWatching watches the folders of the path and of its link target, through the
// process's one inotify instance. Without inotify the follower still works, on
// CheckInterval, and returns nil.
func (fw *Follower) startWatching() *subscription {
	sub, err := shared.subscribe()
	if err != nil {
		fw.logger.Warn("no file events; checking every interval instead", "err", err, "interval", fw.opts.CheckInterval)
		return nil
	}
	fw.watchDirs(sub)
	return sub
}

// watchDirs watches the folders that changes to the path show in (its own, and its
// link target's, which may change), for the names that concern it.
func (fw *Follower) watchDirs(sub *subscription) {
	dirs := []string{filepath.Dir(fw.path)}
	names := []string{filepath.Base(fw.path)}
	if target, err := filepath.EvalSymlinks(fw.path); err == nil && target != fw.path {
		dirs = append(dirs, filepath.Dir(target))
		names = append(names, filepath.Base(target))
	}
	if err := sub.watch(dirs, names); err != nil {
		fw.logger.Debug("watching folders", "dirs", dirs, "err", err)
	}
}

// BatchStart returns the position before the batch b: its file, at the start of its
// first line.
func (fw *Follower) BatchStart(b Batch) Position { return Position{File: b.File, Offset: b.Start()} }

// Close releases the files of a follower that will not Run. Run closes them itself.
func (fw *Follower) Close() { fw.closeAll() }
