// Package watcher follows log files by name and hands their lines on in batches, each
// line with the offset just past it, which is where reading would resume.
//
// It owns reading and nothing else: it does not interpret lines. It keeps
// github.com/nxadm/tail behind its own small interface, so the way files are read can
// change without touching filters or jails.
package watcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/nxadm/tail"
)

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
)

// Options tune Follow. The zero value follows from the end with inotify.
type Options struct {
	Start Start
	// Poll checks the file periodically instead of using inotify (for filesystems where
	// inotify sees nothing, such as some network mounts).
	Poll bool
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
		Poll:          opts.Poll,
		Logger:        tail.DiscardingLogger,
	}
	if opts.Start == FromEnd {
		cfg.Location = &tail.SeekInfo{Offset: 0, Whence: io.SeekEnd}
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
