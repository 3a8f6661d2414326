package watcher

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// collect follows path and sends each line's text on a channel.
func collect(t *testing.T, path string, opts Options) (<-chan string, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan string, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := Follow(ctx, path, opts, func(b []Line) {
			for _, l := range b {
				out <- string(l.Text)
			}
		})
		if err != nil {
			t.Error(err)
		}
	}()
	return out, func() { cancel(); <-done }
}

func next(t *testing.T, c <-chan string) string {
	t.Helper()
	select {
	case s := <-c:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no line within 10s")
		return ""
	}
}

func appendTo(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func TestFollowFromBeginningThenAppended(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zimbra.log")
	appendTo(t, path, "one\r\ntwo\n")
	lines, stop := collect(t, path, Options{Start: FromBeginning})
	defer stop()
	for _, want := range []string{"one", "two"} {
		if got := next(t, lines); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	appendTo(t, path, "thr")
	appendTo(t, path, "ee\n")
	if got := next(t, lines); got != "three" {
		t.Fatalf("partial line: got %q, want three", got)
	}
}

func TestFollowFileCreatedLater(t *testing.T) {
	path := filepath.Join(t.TempDir(), "later.log")
	lines, stop := collect(t, path, Options{Start: FromBeginning})
	defer stop()
	for i := range 3 {
		appendTo(t, path, fmt.Sprintf("line %d\n", i))
	}
	for i := range 3 {
		if got, want := next(t, lines), fmt.Sprintf("line %d", i); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}

func TestFollowOffsets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "o.log")
	appendTo(t, path, "ab\ncde\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan []int64, 1)
	go Follow(ctx, path, Options{Start: FromBeginning}, func(b []Line) {
		var offs []int64
		for _, l := range b {
			offs = append(offs, l.Offset)
		}
		got <- offs
	})
	var offs []int64
	for len(offs) < 2 {
		select {
		case o := <-got:
			offs = append(offs, o...)
		case <-time.After(10 * time.Second):
			t.Fatal("timeout")
		}
	}
	if fmt.Sprint(offs) != "[3 7]" {
		t.Errorf("offsets %v, want [3 7]", offs)
	}
}

func TestFollowFromOffsetMissesNothingWrittenAfterSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.log")
	appendTo(t, path, "old 1\nold 2\n")
	off := Size(path)
	appendTo(t, path, "new 1\n") // written before the follower starts
	lines, stop := collect(t, path, Options{Start: FromOffset, Offset: off})
	defer stop()
	appendTo(t, path, "new 2\n")
	for _, want := range []string{"new 1", "new 2"} {
		if got := next(t, lines); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}
