package watcher

import (
	"bytes"
	"fmt"
)

// ReadFile reads the file at path once, from its start to its end, and hands its lines to
// handle cut and batched exactly as a Follower would (opts.MaxLineSize and
// opts.BatchSize; the rest of opts does not apply), then the last line even if no newline
// ends it: a finished file's last line is finished. Batches are handed on in file order,
// and each is valid only during its call.
//
// It is how a file is read to judge it whole (ban-client test-filter), so that what is
// judged is what ban-server would have judged.
func ReadFile(path string, opts Options, handle Handler) error {
	if opts.MaxLineSize <= 0 {
		opts.MaxLineSize = DefaultMaxLineSize
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1024
	}
	f, err := openRegular(path)
	if err != nil {
		return err
	}
	defer f.Close()
	id, _, err := identify(f)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	src, err := newSource(f, id, 0, max(256<<10, 2*opts.MaxLineSize))
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	sp := splitter{
		maxLine: opts.MaxLineSize,
		batch:   make([]Line, 0, opts.BatchSize),
		handle:  func(lines []Line, data []byte) { handle(Batch{File: id, Lines: lines, Data: data}) },
		cut:     func(int64) {},
	}
	if _, err := sp.drain(src); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if rest := src.buf[src.start:src.end]; len(rest) > 0 && !src.skipping {
		// The last line, without its newline: shorter than MaxLineSize, or drain would
		// have handed it on cut.
		text := bytes.TrimSuffix(rest, []byte{'\r'})
		sp.add(text, src.readOffset(), src.start, src.end)
		sp.flush(src)
	}
	return nil
}
