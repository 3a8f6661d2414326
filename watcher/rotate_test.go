package watcher

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/logban/logban/internal/testenv"
)

const (
	burstLines = 200_000
	rotations  = 5
)

// logWriter writes numbered lines at full speed, one write per line, as syslog does. Like
// syslog after a HUP, it reopens its file when told to, so lines keep going to the old
// file for a while after a rotation.
type logWriter struct {
	open   func() (*os.File, error)
	f      *os.File
	seq    atomic.Int64 // lines written
	reopen atomic.Bool
	// notice, if set, is the path the writer checks every 100 lines, reopening when it
	// names another file: syslog after logrotate's postrotate HUP.
	notice string
}

func (w *logWriter) run(t *testing.T, n int) {
	var err error
	if w.f, err = w.open(); err != nil {
		t.Error(err)
		return
	}
	buf := make([]byte, 0, 64)
	for i := range n {
		if w.notice != "" && i%100 == 0 && w.moved() {
			w.reopen.Store(true)
		}
		if w.reopen.CompareAndSwap(true, false) {
			w.f.Close()
			if w.f, err = w.open(); err != nil {
				t.Error(err)
				return
			}
		}
		buf = fmt.Appendf(buf[:0], "Mar  5 16:00:00 mta1 line %07d\n", i)
		if _, err := w.f.Write(buf); err != nil {
			t.Error(err)
			return
		}
		w.seq.Store(int64(i + 1))
	}
	w.f.Close()
}

func (w *logWriter) moved() bool {
	fi, err := os.Stat(w.notice)
	if err != nil {
		return false
	}
	own, err := w.f.Stat()
	return err == nil && !os.SameFile(fi, own)
}

// waitSeq waits until the writer has written n lines (or finished).
func (w *logWriter) waitSeq(n int64) {
	for w.seq.Load() < n {
		runtime.Gosched()
	}
}

func appendOpener(path string) func() (*os.File, error) {
	return func() (*os.File, error) {
		return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	}
}

// seqOf returns the number in a line written by logWriter.
func seqOf(t *testing.T, line string) int {
	n, err := strconv.Atoi(line[strings.LastIndexByte(line, ' ')+1:])
	if err != nil {
		t.Fatalf("not a written line: %q", line)
	}
	return n
}

// checkDelivery checks each line arrived at most once, in order within its file, and
// returns the set that arrived.
func checkDelivery(t *testing.T, g *got) map[int]bool {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	seen := map[int]bool{}
	last := map[Identity]int{}
	for _, l := range g.lines {
		n := seqOf(t, l.text)
		if seen[n] {
			t.Fatalf("line %d delivered twice", n)
		}
		seen[n] = true
		file := Identity{Device: l.file.Device, Inode: l.file.Inode}
		if prev, ok := last[file]; ok && n < prev {
			t.Fatalf("line %d after line %d in the same file", n, prev)
		}
		last[file] = n
	}
	return seen
}

func TestRotationDuringBurst(t *testing.T) {
	modes := []struct {
		name   string
		setup  func(dir, path string) func() (*os.File, error) // returns the writer's opener
		rotate func(t *testing.T, dir, path string, k int, w *logWriter)
		// settle, if set, runs after each rotation.
		settle func(t *testing.T, path string, fw *Follower)
	}{
		{"rename-create", nil, func(t *testing.T, dir, path string, k int, w *logWriter) {
			must(t, os.Rename(path, fmt.Sprintf("%s.%d", path, k)))
			must(t, os.WriteFile(path, nil, 0o644))
			w.waitSeq(w.seq.Load() + 500) // the writer goes on in the old file a while
			w.reopen.Store(true)
		}, nil},
		{"delete-recreate", nil, func(t *testing.T, dir, path string, k int, w *logWriter) {
			must(t, os.Remove(path))
			w.waitSeq(w.seq.Load() + 500) // lines written to the deleted file
			must(t, os.WriteFile(path, nil, 0o644))
			w.reopen.Store(true)
		}, nil},
		{"vanish-for-a-while", nil, func(t *testing.T, dir, path string, k int, w *logWriter) {
			if _, err := os.Stat(path); err != nil {
				return // the writer finished during an earlier gap and never recreated it
			}
			must(t, os.Remove(path))
			time.Sleep(100 * time.Millisecond) // no file at the path, seen by the follower
			w.reopen.Store(true)               // the writer recreates it at its next line
			for _, err := os.Stat(path); err != nil && w.seq.Load() < burstLines; _, err = os.Stat(path) {
				runtime.Gosched()
			}
		}, func(t *testing.T, path string, fw *Follower) {
			// The file is back for a while, not an instant: lines in a file created and
			// deleted before any reader could open it are lost to every reader. So the
			// next rotation waits until the follower is on the file that is back.
			fi, err := os.Stat(path)
			if err != nil {
				return // the writer finished in the gap and never made the file again
			}
			ino := fi.Sys().(*syscall.Stat_t).Ino
			waitUntil(t, func() bool { return fw.Position().File.Inode == ino })
		}},
		{"copytruncate", nil, func(t *testing.T, dir, path string, k int, w *logWriter) {
			copyFile(t, path, fmt.Sprintf("%s.%d", path, k))
			must(t, os.Truncate(path, 0))
		}, nil},
		{"symlink-repointed", func(dir, path string) func() (*os.File, error) {
			os.Symlink(filepath.Join(dir, "target.0"), path)
			return func() (*os.File, error) {
				target, _ := os.Readlink(path)
				return os.OpenFile(target, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			}
		}, func(t *testing.T, dir, path string, k int, w *logWriter) {
			next := filepath.Join(dir, fmt.Sprintf("target.%d", k))
			must(t, os.WriteFile(next, nil, 0o644))
			tmp := path + ".new-link"
			must(t, os.Symlink(next, tmp))
			must(t, os.Rename(tmp, path))
			w.waitSeq(w.seq.Load() + 500)
			w.reopen.Store(true)
		}, nil},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "zimbra.log")
			w := &logWriter{}

			open := appendOpener(path)
			if mode.setup != nil {
				open = mode.setup(dir, path)
			} else {
				must(t, os.WriteFile(path, nil, 0o644))
			}
			if mode.name == "symlink-repointed" {
				must(t, os.WriteFile(filepath.Join(dir, "target.0"), nil, 0o644))
			}
			r := follow(t, path, Options{Start: FromBeginning, RotateGrace: 2 * time.Second, Logger: testLogger(t)})
			w.open = open
			var wg sync.WaitGroup
			wg.Go(func() { w.run(t, burstLines) })
			// Rotations begin once the follower is reading: a file truncated and written
			// again before its first line was ever seen cannot be told from one that grew.
			waitUntil(t, func() bool { return r.got.count() > 0 })
			for k := 1; k <= rotations; k++ {
				w.waitSeq(int64(k * burstLines / (rotations + 1)))
				mode.rotate(t, dir, path, k, w)
				if mode.settle != nil {
					mode.settle(t, path, r.fw)
				}
			}
			wg.Wait()

			if mode.name != "copytruncate" {
				r.got.waitFor(t, burstLines)
				r.stop()
				if seen := checkDelivery(t, r.got); len(seen) != burstLines {
					t.Fatalf("%d distinct lines, want %d", len(seen), burstLines)
				}
				return
			}
			// copytruncate loses, on disk, what is written between the copy and the
			// truncation. Every line that is on disk, in a copy or in the file, must
			// arrive; lines read before the truncation arrive even if no copy has them.
			onDisk := linesOnDisk(t, dir)
			waitForAll(t, r.got, onDisk)
			r.stop()
			seen := checkDelivery(t, r.got)
			t.Logf("copytruncate: %d lines delivered, %d on disk, %d lost between copy and truncation by the rotation itself",
				len(seen), len(onDisk), burstLines-len(seen))
			for n := range seen {
				if n >= burstLines {
					t.Fatalf("line %d was never written", n)
				}
			}
		})
	}
}

func TestRealLogrotate(t *testing.T) {
	logrotate := testenv.RequireTool(t, "logrotate", "logrotate")
	for _, mode := range []string{"create", "copytruncate"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "zimbra.log")
			conf := filepath.Join(dir, "logrotate.conf")
			must(t, os.WriteFile(conf, []byte(fmt.Sprintf("%s {\n  rotate 50\n  %s\n  nocompress\n  missingok\n}\n", path, mode)), 0o644))
			must(t, os.WriteFile(path, nil, 0o644))
			r := follow(t, path, Options{Start: FromBeginning, RotateGrace: 2 * time.Second})
			w := &logWriter{open: appendOpener(path), notice: path}
			var wg sync.WaitGroup
			wg.Go(func() { w.run(t, burstLines) })
			waitUntil(t, func() bool { return r.got.count() > 0 })
			for k := 1; k <= rotations; k++ {
				w.waitSeq(int64(k * burstLines / (rotations + 1)))
				out, err := exec.Command(logrotate, "-f", "-s", filepath.Join(dir, "state"), conf).CombinedOutput()
				if err != nil {
					t.Fatalf("logrotate: %v\n%s", err, out)
				}
			}
			wg.Wait()
			onDisk := linesOnDisk(t, dir)
			if mode == "create" && len(onDisk) != burstLines {
				t.Fatalf("%d lines on disk, want %d", len(onDisk), burstLines)
			}
			waitForAll(t, r.got, onDisk)
			r.stop()
			t.Logf("logrotate %s: %d rotations, %d lines delivered of %d written", mode, rotations, len(checkDelivery(t, r.got)), burstLines)
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	must(t, err)
	defer src.Close()
	dst, err := os.Create(to)
	must(t, err)
	defer dst.Close()
	_, err = io.Copy(dst, src)
	must(t, err)
}

// linesOnDisk returns the numbers of the lines in every file of dir.
func linesOnDisk(t *testing.T, dir string) map[int]bool {
	t.Helper()
	out := map[int]bool{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), "zimbra.log") && !strings.HasPrefix(e.Name(), "target.") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		must(t, err)
		// Complete lines only: a copy made while a line was being written ends in part
		// of it, which no reader hands on.
		lines := strings.Split(string(b), "\n")
		for _, line := range lines[:len(lines)-1] {
			if strings.Contains(line, " line ") {
				out[seqOf(t, line)] = true
			}
		}
	}
	return out
}

// waitForAll waits until every line in want has been delivered.
func waitForAll(t *testing.T, g *got, want map[int]bool) {
	t.Helper()
	waitUntil(t, func() bool {
		seen := checkDelivery(t, g)
		for n := range want {
			if !seen[n] {
				return false
			}
		}
		return true
	})
}

// waitUntil waits for cond, which depends on lines arriving through the filesystem.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testLogger sends a follower's log to the test's, to explain a failure.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// A truncation whose copy is shorter than what the follower read (the follower was past
// the copy's end when logrotate truncated) loses nothing the copy holds: it is told as
// such, not warned about; a truncation with no copy at all is warned about.
func TestTruncatedBehindAShorterCopy(t *testing.T) {
	for _, withCopy := range []bool{true, false} {
		dir := t.TempDir()
		path := filepath.Join(dir, "app.log")
		write(t, path, "first line\nsecond\n")
		var logged strings.Builder
		fw, err := Open(path, Options{Start: FromBeginning, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer fw.Close()
		fw.emitFn = func(Batch) {}
		if _, err := fw.readAll(); err != nil {
			t.Fatal(err)
		}
		if withCopy {
			copyFile(t, path, path+".1") // logrotate's copy...
		}
		write(t, path, "third, read after the copy was made\n")
		if _, err := fw.readAll(); err != nil {
			t.Fatal(err)
		}
		must(t, os.Truncate(path, 0)) // ...then its truncation
		write(t, path, "new first line\n")
		if _, err := fw.readAll(); err != nil {
			t.Fatal(err)
		}
		warned := strings.Contains(logged.String(), "no copy of it found")
		told := strings.Contains(logged.String(), "everything its copy holds was read already")
		if withCopy && (warned || !told) || !withCopy && !warned {
			t.Errorf("with a copy %v:\n%s", withCopy, logged.String())
		}
	}
}
