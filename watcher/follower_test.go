package watcher

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logban/logban/internal/testenv"
)

// got is what a follower handed on.
type got struct {
	mu     sync.Mutex
	lines  []gotLine
	notify chan struct{}
	bad    string // the first batch whose Data did not hold its lines as documented
}

type gotLine struct {
	file   Identity
	text   string
	offset int64
}

func (g *got) handle(b Batch) {
	g.mu.Lock()
	if err := checkData(b); err != "" && g.bad == "" {
		g.bad = err
	}
	for _, l := range b.Lines {
		g.lines = append(g.lines, gotLine{b.File, string(l.Text), l.Offset})
	}
	g.mu.Unlock()
	select {
	case g.notify <- struct{}{}:
	default:
	}
}

// checkData says how b.Data fails to hold b's lines where their offsets put them, or "".
func checkData(b Batch) string {
	if len(b.Lines) == 0 {
		return "empty batch"
	}
	start := b.Lines[len(b.Lines)-1].Offset - int64(len(b.Data))
	at := start
	for _, l := range b.Lines {
		from, to := int(at-start), int(l.Offset-start)
		if from < 0 || to > len(b.Data) || from > to || !bytes.HasPrefix(b.Data[from:to], l.Text) {
			return "line " + quoteShort(l.Text) + " not at its place in the batch's data " + quoteShort(b.Data)
		}
		at = l.Offset
	}
	return ""
}

func quoteShort(b []byte) string {
	if len(b) > 80 {
		b = b[:80]
	}
	return `"` + string(b) + `"`
}

func (g *got) texts() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, len(g.lines))
	for i, l := range g.lines {
		out[i] = l.text
	}
	return out
}

func (g *got) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.lines)
}

// waitFor waits until n lines arrived, or fails after a generous deadline: lines come
// through the filesystem on their own time.
func (g *got) waitFor(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for g.count() < n {
		select {
		case <-g.notify:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("got %d lines, want %d", g.count(), n)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.bad != "" {
		t.Error(g.bad)
	}
}

type running struct {
	fw   *Follower
	got  *got
	stop func()
}

func follow(t *testing.T, path string, opts Options) *running {
	t.Helper()
	fw, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	g := &got{notify: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fw.Run(ctx, g.handle) }()
	var once sync.Once
	r := &running{fw: fw, got: g, stop: func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}}
	t.Cleanup(r.stop)
	return r
}

func write(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

func TestLinesFromTheBeginning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zimbra.log")
	write(t, path, "one\r\ntwo\n\nbad \xff\xfe utf8\n")
	r := follow(t, path, Options{Start: FromBeginning})
	r.got.waitFor(t, 4)
	write(t, path, "thr")
	write(t, path, "ee\nfour")
	r.got.waitFor(t, 5)
	r.stop()
	want := []string{"one", "two", "", "bad \xff\xfe utf8", "three"}
	if got := r.got.texts(); !slices.Equal(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
	if p := r.fw.Position(); p.Offset != int64(len("one\r\ntwo\n\nbad \xff\xfe utf8\nthree\n")) {
		t.Errorf("position %d: not just past the last complete line", p.Offset)
	}
	if s := r.fw.Stats(); s.Behind != 4 || s.Lines != 5 {
		t.Errorf("stats %+v; want 4 bytes behind (the partial line), 5 lines", s)
	}
}

func TestFromEndStartsOnALineBoundary(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zimbra.log")
	write(t, path, "old 1\nold 2\npartial ")
	r := follow(t, path, Options{Start: FromEnd})
	write(t, path, "line\nnew\n")
	r.got.waitFor(t, 2)
	if got := r.got.texts(); !slices.Equal(got, []string{"partial line", "new"}) {
		t.Errorf("lines %q", got)
	}
}

func TestLongLinesAreCut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zimbra.log")
	long := strings.Repeat("x", 100)
	// One long line in the buffer whole, one that arrives in pieces longer than the limit.
	write(t, path, "short\n"+long+"\n")
	r := follow(t, path, Options{Start: FromBeginning, MaxLineSize: 10})
	r.got.waitFor(t, 2)
	write(t, path, strings.Repeat("y", 15))
	r.got.waitFor(t, 3)
	write(t, path, strings.Repeat("z", 15)+" fake: unknown[6.6.6.6] tail\nafter\n")
	r.got.waitFor(t, 4)
	want := []string{"short", "xxxxxxxxxx", "yyyyyyyyyy", "after"}
	if got := r.got.texts(); !slices.Equal(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
	if n := r.fw.Stats().LongLines; n != 2 {
		t.Errorf("%d long lines counted, want 2", n)
	}
}

func TestPositionStaysOnALineBoundaryWhileCutting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zimbra.log")
	write(t, path, "ok\n"+strings.Repeat("y", 50))
	r := follow(t, path, Options{Start: FromBeginning, MaxLineSize: 10})
	r.got.waitFor(t, 2)
	r.stop() // the position moves once the handler has returned
	if p := r.fw.Position(); p.Offset != 3 {
		t.Errorf("position %d inside a cut line, want 3 (its start)", p.Offset)
	}
}

func TestFileThatDoesNotExistYet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "later.log")
	r := follow(t, path, Options{Start: FromEnd})
	write(t, path, "first\nsecond\n")
	r.got.waitFor(t, 2)
	if got := r.got.texts(); !slices.Equal(got, []string{"first", "second"}) {
		t.Errorf("lines %q", got)
	}
}

func TestOffsets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "o.log")
	write(t, path, "ab\r\ncde\n")
	r := follow(t, path, Options{Start: FromBeginning})
	r.got.waitFor(t, 2)
	r.got.mu.Lock()
	defer r.got.mu.Unlock()
	if r.got.lines[0].offset != 4 || r.got.lines[1].offset != 8 {
		t.Errorf("offsets %d %d, want 4 8", r.got.lines[0].offset, r.got.lines[1].offset)
	}
}

func TestHeadHash(t *testing.T) {
	if headHash([]byte("no newline yet")) != 0 {
		t.Error("a partial first line has a head")
	}
	a, b := headHash([]byte("Mar  5 16:00:00 a\nrest")), headHash([]byte("Mar  5 16:00:00 a\nother"))
	if a == 0 || a != b {
		t.Error("head depends on more than the first line")
	}
	if headHash(bytes.Repeat([]byte("x"), headMax+10)) == 0 {
		t.Error("a first line longer than headMax has no head")
	}
}

// A path that turns into a FIFO while followed is skipped with a warning, never opened
// blocking: the follower still stops at once, and follows a file that comes back.
func TestPathTurnedFIFOIsNotOpened(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	write(t, path, "one\n")
	f := follow(t, path, Options{Start: FromBeginning, CheckInterval: 10 * time.Millisecond})
	f.got.waitFor(t, 1)

	os.Remove(path)
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skip("no FIFO here:", err)
	}
	// Let the follower look at the FIFO a few times: it must not block on it.
	time.Sleep(100 * time.Millisecond)
	os.Remove(path)
	write(t, path, "two\n")
	f.got.waitFor(t, 2)

	stopped := make(chan struct{})
	go func() { f.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the follower did not stop")
	}
	if got := f.got.texts(); !slices.Equal(got, []string{"one", "two"}) {
		t.Errorf("lines %q", got)
	}
}

// Open at a FIFO neither blocks nor fails: the path is followed as if absent.
func TestOpenAtAFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skip("no FIFO here:", err)
	}
	done := make(chan error, 1)
	go func() {
		fw, err := Open(path, Options{})
		if fw != nil {
			fw.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Open: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Open blocked on a FIFO")
	}
	if err := ReadFile(path, Options{}, func(Batch) {}); !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "is a FIFO") {
		t.Errorf("ReadFile: %v", err)
	}
}

// The owner of the log's folder (zimbra owns /opt/zimbra/log) replaces the log by a
// link to a file only root may read: the follower, running as root, reads nothing of
// it, and reads the log again once a regular file is back.
func TestLinkPlantedInTheFolderIsNotFollowed(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	if err := os.Chown(dir, testenv.Nobody, testenv.Nobody); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(secret, []byte("root:secret-one\nroot:secret-two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "mailbox.log")
	write(t, path, "one\n")
	f := follow(t, path, Options{Start: FromBeginning, CheckInterval: 10 * time.Millisecond})
	f.got.waitFor(t, 1)

	planted := filepath.Join(dir, ".planted") // made whole, then renamed over the log
	if err := os.Symlink(secret, planted); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(planted, testenv.Nobody, testenv.Nobody); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(planted, path); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the follower looks at the link a few times
	os.Remove(path)
	write(t, path, "two\n")
	f.got.waitFor(t, 2)
	f.stop()
	if got := f.got.texts(); !slices.Equal(got, []string{"one", "two"}) {
		t.Errorf("lines %q: the link's target was read", got)
	}
}
