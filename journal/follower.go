package journal

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logban/logban/watcher"
)

// Options tune a Follower.
type Options struct {
	// Directory is the folder of the journal files to read; "" reads the system journal.
	Directory string
	// Matches select the entries, as journalctl takes them (see CheckMatches).
	Matches []string
	// Start and Resume say where reading begins, as for a file: Resume holds the cursor
	// a restart resumes after.
	Start  watcher.Start
	Resume watcher.Position
	// MaxLineSize cuts longer lines; 0 means watcher.DefaultMaxLineSize.
	MaxLineSize int
	// BatchSize is the most lines per batch; 0 means 1024.
	BatchSize int
	// Location is the zone lines' times are written in; nil is the host's.
	Location *time.Location
	// Journalctl is the journalctl to run; "" looks for it on PATH.
	Journalctl string
	// Retry is how long to wait before starting journalctl again after it stopped,
	// doubled each time it stops without an entry, up to 30 s; 0 means one second.
	Retry time.Duration
	// Logger receives journalctl's stops and a vacuumed position; nil discards them.
	Logger *slog.Logger
}

// Follower follows the journal's entries that match. Open positions it; Run reads.
type Follower struct {
	key    string
	opts   Options
	bin    string
	logger *slog.Logger

	mu     sync.Mutex
	pos    watcher.Position // the cursor of the last entry handed on
	before watcher.Position // the position before the batch being handed on

	lines, bytes, longLines, restarts, vacuumed atomic.Int64
}

// Open positions a follower on the journal as opts say. It is synchronous: reading from
// the end begins after the last entry written before it returns.
func Open(opts Options) (*Follower, error) {
	key := Key(opts.Directory, opts.Matches)
	if err := CheckMatches(opts.Matches); err != nil {
		return nil, fmt.Errorf("following %s: %w", key, err)
	}
	if opts.MaxLineSize <= 0 {
		opts.MaxLineSize = watcher.DefaultMaxLineSize
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1024
	}
	if opts.Location == nil {
		opts.Location = time.Local
	}
	if opts.Retry <= 0 {
		opts.Retry = time.Second
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	bin := opts.Journalctl
	if bin == "" {
		bin = "journalctl"
	}
	bin, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("following %s: backend = \"journal\" needs systemd's journalctl: %w", key, err)
	}
	f := &Follower{key: key, opts: opts, bin: bin, logger: logger}
	switch {
	case opts.Start == watcher.FromBeginning:
	case opts.Start == watcher.Resume && opts.Resume.Cursor != "":
		f.pos = opts.Resume
	default: // the end: after the last entry that matches, if any
		last, err := f.lastCursor()
		if err != nil {
			return nil, fmt.Errorf("following %s: %w", key, err)
		}
		f.pos = watcher.Position{Cursor: last}
	}
	return f, nil
}

// lastCursor returns the cursor of the last entry that matches, "" for none (or no
// journal files yet).
func (f *Follower) lastCursor() (string, error) {
	args := f.args("--lines=1")
	out, err := exec.Command(f.bin, args...).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return "", nil // no journal files yet: every entry to come is new
		}
		return "", err
	}
	d := decoder{r: bufio.NewReader(bytes.NewReader(out)), maxValue: f.opts.MaxLineSize}
	var e entry
	last := ""
	for d.next(&e) == nil {
		last = string(e.cursor)
	}
	return last, nil
}

// args returns journalctl's arguments for reading with extra, then the matches.
func (f *Follower) args(extra ...string) []string {
	args := []string{"--output=export", "--no-pager", "--quiet"}
	if f.opts.Directory != "" {
		args = append(args, "--directory="+f.opts.Directory)
	}
	args = append(args, extra...)
	args = append(args, "--")
	return append(args, f.opts.Matches...)
}

// Path returns the follower's key (see Key), by which its position is saved.
func (f *Follower) Path() string { return f.key }

// Position returns the cursor of the last entry handed on: where a restart resumes.
func (f *Follower) Position() watcher.Position {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pos
}

// BatchStart returns the position before the batch being handed on: a handler that
// cannot keep a batch's lines has its reading resume there.
func (f *Follower) BatchStart(watcher.Batch) watcher.Position {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.before
}

// Stats returns the follower's counters. Rotations counts journalctl's restarts.
func (f *Follower) Stats() watcher.Stats {
	return watcher.Stats{Lines: f.lines.Load(), Bytes: f.bytes.Load(), LongLines: f.longLines.Load(), Rotations: f.restarts.Load()}
}

// Vacuumed counts the starts whose position the journal no longer held.
func (f *Follower) Vacuumed() int64 { return f.vacuumed.Load() }

// Close does nothing: journalctl runs only while Run does.
func (f *Follower) Close() {}

// Run reads the journal's entries and hands them on in batches until ctx is done. When
// journalctl stops, it is started again after the last entry handed on.
func (f *Follower) Run(ctx context.Context, handle watcher.Handler) error {
	wait := f.opts.Retry
	var offset int64
	for {
		handed, err := f.run(ctx, handle, &offset, true)
		if ctx.Err() != nil {
			return nil
		}
		f.restarts.Add(1)
		if handed {
			wait = f.opts.Retry
		}
		f.logger.Warn("journalctl stopped; starting it again", "journal", f.key, "err", err, "after", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// ReadAll reads the entries the journal holds now, from where opts say, and hands them on
// in batches, as a Follower would, then returns: what ban-client test-filter reads.
func ReadAll(ctx context.Context, opts Options, handle watcher.Handler) error {
	f, err := Open(opts)
	if err != nil {
		return err
	}
	var offset int64
	_, err = f.run(ctx, handle, &offset, false)
	if ctx.Err() == nil && err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading %s: %w", f.key, err)
	}
	return nil
}

// run runs journalctl once, following the journal (until it stops or ctx is done) or
// reading what it holds, and reports whether it handed any entry on.
func (f *Follower) run(ctx context.Context, handle watcher.Handler, offset *int64, follow bool) (bool, error) {
	f.mu.Lock()
	pos := f.pos
	f.mu.Unlock()
	// journalctl starts at the cursor's own entry, handed on before, if the journal
	// still holds it; else at the oldest entry after it.
	check := pos.Cursor != ""
	var extra []string
	if follow {
		extra = []string{"--follow", "--no-tail"}
	}
	if pos.Cursor != "" {
		extra = append(extra, "--cursor="+pos.Cursor)
	}
	cmd := exec.CommandContext(ctx, f.bin, f.args(extra...)...)
	cmd.WaitDelay = time.Second
	var stderr tailBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return false, err
	}
	if err := cmd.Start(); err != nil {
		return false, err
	}
	d := decoder{r: bufio.NewReaderSize(out, 256<<10), maxValue: f.opts.MaxLineSize}
	b := batcher{f: f, handle: handle, offset: offset}
	var e entry
	for {
		err = d.next(&e)
		if err != nil {
			break
		}
		if check {
			check = false
			if string(e.cursor) == pos.Cursor {
				continue // the last entry handed on before
			}
			f.vacuumed.Add(1)
			f.logger.Warn("the journal no longer holds the last entry read (vacuumed or rotated away); reading on from the oldest entry after it",
				"journal", f.key, "cursor", pos.Cursor)
		}
		b.add(&e)
		if len(b.lines) >= f.opts.BatchSize || d.r.Buffered() == 0 {
			b.emit()
		}
		f.bytes.Add(d.read)
		d.read = 0
	}
	b.emit()
	out.Close()
	werr := cmd.Wait()
	if msg := strings.TrimSpace(stderr.String()); msg != "" {
		return b.emitted, fmt.Errorf("%s", msg)
	}
	if errors.Is(err, io.EOF) && werr != nil {
		err = werr
	}
	return b.emitted, err
}

// batcher gathers lines into a batch laid out as a file's: each line's Text in Data, in
// order, one newline after each, with offsets counted since the follower started.
type batcher struct {
	f       *Follower
	handle  watcher.Handler
	offset  *int64
	data    []byte
	lines   []watcher.Line
	seqnums []int64
	seqID   uint64 // the hash of the entries' sequence ID ("s=" of the cursor)
	last    []byte // the cursor of the batch's last entry
	emitted bool
}

// add appends e's line to the batch, handing the batch on first if e belongs to another
// sequence of the journal.
func (b *batcher) add(e *entry) {
	seqID, seqnum := cursorSeq(e.cursor)
	if len(b.lines) > 0 && seqID != b.seqID {
		b.emit()
	}
	b.seqID = seqID
	start := len(b.data)
	b.data = appendLine(b.data, e, b.f.opts.Location)
	if max := b.f.opts.MaxLineSize; len(b.data)-start > max || e.messageCut {
		b.data = b.data[:start+min(len(b.data)-start, max)]
		b.f.longLines.Add(1)
	}
	b.data = append(b.data, '\n')
	*b.offset += int64(len(b.data) - start)
	b.lines = append(b.lines, watcher.Line{Offset: *b.offset})
	b.seqnums = append(b.seqnums, seqnum)
	b.last = append(b.last[:0], e.cursor...)
}

// emit hands the batch on, and moves the follower's position past it.
func (b *batcher) emit() {
	if len(b.lines) == 0 {
		return
	}
	start := *b.offset - int64(len(b.data))
	from := 0
	for i := range b.lines {
		end := int(b.lines[i].Offset - start)
		b.lines[i].Text = b.data[from : end-1]
		from = end
	}
	f := b.f
	f.mu.Lock()
	f.before = f.pos
	f.mu.Unlock()
	b.handle(watcher.Batch{File: watcher.Identity{Head: b.seqID}, Lines: b.lines, Data: b.data, Seqnums: b.seqnums})
	f.mu.Lock()
	f.pos = watcher.Position{Cursor: string(b.last)}
	f.mu.Unlock()
	f.lines.Add(int64(len(b.lines)))
	b.data, b.lines, b.seqnums = b.data[:0], b.lines[:0], b.seqnums[:0]
	b.emitted = true
}

// cursorSeq returns the hash of a cursor's sequence ID ("s=") and its sequence number
// ("i=", hexadecimal): together they name an entry for as long as the journal holds it.
func cursorSeq(cursor []byte) (seqID uint64, seqnum int64) {
	for part := range bytes.SplitSeq(cursor, []byte{';'}) {
		switch {
		case bytes.HasPrefix(part, []byte("s=")):
			seqID = 14695981039346656037 // FNV-1a
			for _, c := range part[2:] {
				seqID ^= uint64(c)
				seqID *= 1099511628211
			}
		case bytes.HasPrefix(part, []byte("i=")):
			for _, c := range part[2:] {
				d := hexDigit(c)
				if d < 0 || seqnum > math.MaxInt64>>4 {
					return seqID, 0
				}
				seqnum = seqnum<<4 | int64(d)
			}
		}
	}
	return seqID, seqnum
}

func hexDigit(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// tailBuffer keeps the last 4 KB written to it: journalctl's last words.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4096 {
		t.buf = t.buf[len(t.buf)-4096:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
