// Package watcher follows log files by name and hands their lines on in batches, each
// line with the offset just past it, which is where reading would resume.
//
// It owns reading and nothing else: it does not interpret lines. It keeps
// github.com/nxadm/tail behind its own small interface, so the way files are read can
// change without touching filters or jails.
//
// Files are polled, every PollInterval. nxadm/tail's inotify mode adds its watch only
// after it first reaches the end of a file (and again after each reopen), so a line
// written in between raises no event and waits for the next write, which on a quiet log
// may never come. Polling compares the size with the read position and cannot miss one.
package watcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/nxadm/tail"
	"github.com/nxadm/tail/watch"
)

// PollInterval is how often a followed file is checked for growth, truncation and
// replacement: the most a line waits before it is read.
const PollInterval = 50 * time.Millisecond

func init() {
	// nxadm/tail keeps its poll interval in a package variable; logban is its only user
	// in the process.
	watch.POLL_DURATION = PollInterval
}

// Line is one line of a followed file, without its line ending.
type Line struct {
	Text []byte
	// Offset is the byte offset just past the line's newline.
	Offset int64
}

// Start says where a file is first read from.
type Start uint8

// The places to start reading.
const (
	FromEnd       Start = iota // only lines written after Follow starts
	FromBeginning              // the whole file, then what is appended
	FromOffset                 // from Options.Offset (a file absent then is read whole)
)

// Size returns the size of the file at path now, or 0 if it does not exist. Following
// FromOffset at Size reads exactly the lines written from this moment on, however long
// the follower takes to start.
func Size(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// Options tune Follow. The zero value follows from the end.
type Options struct {
	Start  Start
	Offset int64 // with FromOffset
	// BatchSize is the most lines handed on at once; 0 means 1024.
	BatchSize int
	// Logger receives read errors; nil discards them.
	Logger *slog.Logger
}

// Handler receives batches of lines. The batch and its lines are only valid during the
// call.
type Handler func(batch []Line)

// Follow reads path, following it by name across rotation, and calls handle with its lines
// until ctx is done. A file that does not exist yet is waited for. Follow returns nil when
// ctx ends, or an error if the file cannot be followed at all.
func Follow(ctx context.Context, path string, opts Options, handle Handler) error {
	cfg := tail.Config{
		ReOpen:        true,
		Follow:        true,
		CompleteLines: true,
		Poll:          true,
		Logger:        tail.DiscardingLogger,
	}
	switch opts.Start {
	case FromEnd:
		cfg.Location = &tail.SeekInfo{Offset: 0, Whence: io.SeekEnd}
	case FromOffset:
		cfg.Location = &tail.SeekInfo{Offset: opts.Offset, Whence: io.SeekStart}
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	batchSize := opts.BatchSize
	if batchSize <= 0 {
		batchSize = 1024
	}
	t, err := tail.TailFile(path, cfg)
	if err != nil {
		return fmt.Errorf("following %s: %w", path, err)
	}
	defer t.Cleanup()
	defer t.Stop() //nolint:errcheck // the tail's own end error is reported below

	batch := make([]Line, 0, batchSize)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return nil
		case l, ok := <-t.Lines:
			if !ok {
				return tailEnded(path, t)
			}
			batch = appendLine(batch, l, logger)
		}
	drain:
		for len(batch) < batchSize {
			select {
			case l, ok := <-t.Lines:
				if !ok {
					break drain
				}
				batch = appendLine(batch, l, logger)
			default:
				break drain
			}
		}
		if len(batch) > 0 {
			handle(batch)
		}
	}
}

func appendLine(batch []Line, l *tail.Line, logger *slog.Logger) []Line {
	if l.Err != nil {
		logger.Warn("reading", "err", l.Err)
		return batch
	}
	text := bytes.TrimSuffix([]byte(l.Text), []byte{'\r'})
	return append(batch, Line{Text: text, Offset: l.SeekInfo.Offset})
}

func tailEnded(path string, t *tail.Tail) error {
	if err := t.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("following %s: %w", path, err)
	}
	return fmt.Errorf("following %s: stopped", path)
}
