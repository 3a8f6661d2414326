package watcher

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// lines returns "name 0".."name n-1", each with a newline.
func lines(name string, from, n int) string {
	var b strings.Builder
	for i := from; i < from+n; i++ {
		fmt.Fprintf(&b, "%s %d\n", name, i)
	}
	return b.String()
}

func names(name string, from, n int) []string {
	return strings.Split(strings.TrimSuffix(lines(name, from, n), "\n"), "\n")
}

// runUntilStopped follows path until it has handed on want lines, then stops and returns
// what it saw and where it stood.
func runUntilStopped(t *testing.T, path string, opts Options, want int) ([]string, Position) {
	t.Helper()
	r := follow(t, path, opts)
	r.got.waitFor(t, want)
	r.stop()
	return r.got.texts(), r.fw.Position()
}

func TestRestartResumes(t *testing.T) {
	tests := []struct {
		name string
		// whileDown changes the files while no follower runs.
		whileDown func(t *testing.T, dir, path string)
		want      []string // lines the second follower hands on
	}{
		{"same file", func(t *testing.T, dir, path string) {
			write(t, path, lines("a", 100, 50))
		}, names("a", 100, 50)},
		{"rotated by rename", func(t *testing.T, dir, path string) {
			write(t, path, lines("a", 100, 50)) // after the stop, before the rotation
			must(t, os.Rename(path, path+".1"))
			write(t, path, lines("b", 0, 30))
		}, slices.Concat(names("a", 100, 50), names("b", 0, 30))},
		{"rotated twice", func(t *testing.T, dir, path string) {
			write(t, path, lines("a", 100, 50))
			must(t, os.Rename(path, path+".1"))
			time.Sleep(10 * time.Millisecond) // distinct modification times
			write(t, path, lines("b", 0, 30))
			must(t, os.Rename(path+".1", path+".2"))
			must(t, os.Rename(path, path+".1"))
			time.Sleep(10 * time.Millisecond)
			write(t, path, lines("c", 0, 20))
		}, slices.Concat(names("a", 100, 50), names("b", 0, 30), names("c", 0, 20))},
		{"copytruncate", func(t *testing.T, dir, path string) {
			write(t, path, lines("a", 100, 50))
			copyFile(t, path, path+".1")
			must(t, os.Truncate(path, 0))
			write(t, path, lines("b", 0, 30))
		}, slices.Concat(names("a", 100, 50), names("b", 0, 30))},
		// Stopped while logrotate's next copytruncate had made its copy and not yet
		// truncated: the copy holds what the file does, read once, from the file.
		{"copytruncate, and the next copy made", func(t *testing.T, dir, path string) {
			write(t, path, lines("a", 100, 50))
			copyFile(t, path, path+".1")
			must(t, os.Truncate(path, 0))
			write(t, path, lines("b", 0, 30))
			time.Sleep(10 * time.Millisecond) // a later modification time than the first copy's
			copyFile(t, path, path+".2")
		}, slices.Concat(names("a", 100, 50), names("b", 0, 30))},
		{"replaced and the old file gone: from the end", func(t *testing.T, dir, path string) {
			must(t, os.Remove(path))
			write(t, path, lines("b", 0, 30))
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "zimbra.log")
			write(t, path, lines("a", 0, 100))
			seen, pos := runUntilStopped(t, path, Options{Start: FromBeginning}, 100)
			if !slices.Equal(seen, names("a", 0, 100)) {
				t.Fatalf("first run saw %d lines", len(seen))
			}
			tt.whileDown(t, dir, path)

			r := follow(t, path, Options{Start: Resume, Resume: pos})
			write(t, path, "after restart\n")
			want := append(slices.Clone(tt.want), "after restart")
			r.got.waitFor(t, len(want))
			r.stop()
			if got := r.got.texts(); !slices.Equal(got, want) {
				t.Errorf("second run saw %d lines:\n%q\nwant %d:\n%q", len(got), got, len(want), want)
			}
		})
	}
}

func TestRecycledInodeIsNotTheOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "zimbra.log")
	write(t, path, "new first line\nsecond\n")
	f, _ := os.Open(path)
	id, _, err := identify(f)
	f.Close()
	must(t, err)
	// A saved position whose inode the new file now has, but whose first line differs.
	was := Position{File: Identity{Device: id.Device, Inode: id.Inode, Head: headHash([]byte("old first line\n"))}, Offset: 5}
	r := follow(t, path, Options{Start: Resume, Resume: was})
	write(t, path, "third\n")
	r.got.waitFor(t, 1)
	r.stop()
	if got := r.got.texts(); !slices.Equal(got, []string{"third"}) {
		t.Errorf("lines %q; the recycled inode was taken for the old file", got)
	}
}

func TestResumeWithoutPositionStartsAtTheEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zimbra.log")
	write(t, path, lines("old", 0, 10))
	r := follow(t, path, Options{Start: Resume})
	write(t, path, "new\n")
	r.got.waitFor(t, 1)
	r.stop()
	if got := r.got.texts(); !slices.Equal(got, []string{"new"}) {
		t.Errorf("lines %q", got)
	}
}
