package watcher

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// inotifyInstances counts the process's inotify descriptors.
func inotifyInstances(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	n := 0
	for _, e := range entries {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.Contains(target, "inotify") {
			n++
		}
	}
	return n
}

// 300 logs of one glob, each followed: they share one inotify instance (the user has
// 128), and each follower still hears of its own file's writes at once, with no
// interval to fall back on.
func TestFollowersShareOneInotifyInstance(t *testing.T) {
	dir := t.TempDir()
	const files = 300
	var fs []*running
	for i := range files {
		path := filepath.Join(dir, fmt.Sprintf("app%03d.log", i))
		write(t, path, "")
		fs = append(fs, follow(t, path, Options{Start: FromBeginning, CheckInterval: time.Hour}))
	}
	// Every follower has subscribed once its first check ran; wait for the watches.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		shared.mu.Lock()
		n := len(shared.dirs[dir])
		shared.mu.Unlock()
		if n == files {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d followers watch the folder", n, files)
		}
	}
	if n := inotifyInstances(t); n > 1 {
		t.Errorf("%d followers hold %d inotify instances, want 1", files, n)
	}
	for i := range files {
		write(t, filepath.Join(dir, fmt.Sprintf("app%03d.log", i)), fmt.Sprintf("line %d\n", i))
	}
	for i, f := range fs {
		f.got.waitFor(t, 1)
		if got := f.got.texts(); len(got) != 1 || got[0] != fmt.Sprintf("line %d", i) {
			t.Fatalf("follower %d got %q", i, got)
		}
	}
	for _, f := range fs {
		f.stop()
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if n := len(shared.dirs[dir]); n != 0 {
		t.Errorf("%d subscriptions left on the folder after every follower stopped", n)
	}
}
