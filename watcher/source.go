package watcher

import (
	"bytes"
	"errors"
	"io"
	"os"
)

// source is one open file being read into lines.
type source struct {
	f  *os.File
	id Identity

	buf        []byte
	base       int64 // file offset of buf[0]
	start, end int   // unconsumed bytes are buf[start:end]
	skipping   bool  // discarding the rest of a line that was cut...
	cutFrom    int64 // ...which began at this offset

	head    []byte // the file's first line, newline included (at most headMax bytes)
	scratch []byte // for comparing it
}

func newSource(f *os.File, id Identity, offset int64, bufSize int) (*source, error) {
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, err
	}
	s := &source{f: f, id: id, buf: make([]byte, bufSize), base: offset}
	s.learnHead()
	return s, nil
}

// pos is the offset just past the last complete line consumed: where a restart resumes.
// It is always at a line boundary: while the rest of a cut line is being discarded, it
// stays at that line's start, so a restart never reads the rest (text a client may
// control) as a line of its own; it hands the cut line on again instead.
func (s *source) pos() int64 {
	if s.skipping {
		return s.cutFrom
	}
	return s.base + int64(s.start)
}

// readOffset is how far the file has been read.
func (s *source) readOffset() int64 { return s.base + int64(s.end) }

// rewind starts reading again at offset, dropping what is buffered.
func (s *source) rewind(offset int64) error {
	if _, err := s.f.Seek(offset, io.SeekStart); err != nil {
		return err
	}
	s.base, s.start, s.end, s.skipping = offset, 0, 0, false
	s.head, s.id.Head = nil, 0
	s.learnHead()
	return nil
}

func (s *source) close() { s.f.Close() }

// splitter turns bytes into lines and hands them on in batches.
type splitter struct {
	maxLine  int
	batch    []Line
	from, to int // where the batch's bytes lie in the source's buffer
	handle   func(lines []Line, data []byte)
	cut      func(offset int64) // told of each line cut at maxLine
}

// drain reads s to its current end and hands on every complete line. It returns the
// number of bytes read.
func (sp *splitter) drain(s *source) (int64, error) {
	var total int64
	for {
		if s.end == len(s.buf) {
			s.compact()
		}
		n, err := s.f.Read(s.buf[s.end:])
		s.end += n
		total += int64(n)
		if s.head == nil && n > 0 {
			s.learnHead()
		}
		sp.split(s)
		if errors.Is(err, io.EOF) || (err == nil && n == 0) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// learnHead notes the file's first line once it has one: a truncated file must be
// recognisable by it before the next truncation, when its copy is looked for by it.
func (s *source) learnHead() {
	var b []byte
	if s.base == 0 && s.end > 0 {
		b = s.buf[:s.end]
	} else {
		b = make([]byte, headMax)
		n, err := s.f.ReadAt(b, 0)
		if err != nil && !errors.Is(err, io.EOF) {
			return
		}
		b = b[:n]
	}
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	} else if len(b) < headMax {
		return // no complete first line yet
	} else {
		b = b[:headMax]
	}
	s.head = bytes.Clone(b)
	s.scratch = make([]byte, len(b))
	s.id.Head = headHash(b)
}

// truncated reports whether the file, now size bytes long, was truncated since it was
// read: it is shorter than what was read of it, or its first line is another.
func (s *source) truncated(size int64) bool {
	return size < s.readOffset() || s.replaced()
}

// replaced reports whether the file's first line is no longer the one it had: it was
// truncated and written again (copytruncate) since it was last looked at.
func (s *source) replaced() bool {
	if s.head == nil {
		return false
	}
	n, err := s.f.ReadAt(s.scratch, 0)
	return (err != nil && !errors.Is(err, io.EOF)) || n < len(s.head) || !bytes.Equal(s.scratch, s.head)
}

// compact moves unconsumed bytes to the front of the buffer.
func (s *source) compact() {
	n := copy(s.buf, s.buf[s.start:s.end])
	s.base += int64(s.start)
	s.start, s.end = 0, n
}

// split hands on the complete lines in s's buffer. A line longer than maxLine is handed
// on cut to maxLine and the rest of it, up to its newline, discarded. A trailing partial
// line stays buffered until its newline arrives.
func (sp *splitter) split(s *source) {
	for {
		data := s.buf[s.start:s.end]
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			switch {
			case s.skipping:
				s.start = s.end // the cut line goes on: drop what came of it
				s.compact()
			case len(data) > sp.maxLine: // longer than the limit even without a CR before its newline
				s.cutFrom = s.base + int64(s.start)
				sp.add(data[:sp.maxLine], s.cutFrom+int64(sp.maxLine), s.start, s.start+sp.maxLine)
				sp.cut(s.cutFrom)
				sp.flush(s)
				s.skipping = true
				s.start = s.end
				s.compact()
			}
			break
		}
		if s.skipping {
			s.skipping = false
			s.start += i + 1
			continue
		}
		line := data[:i]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line) > sp.maxLine {
			sp.cut(s.base + int64(s.start))
			line = line[:sp.maxLine]
		}
		from := s.start
		s.start += i + 1
		sp.add(line, s.base+int64(s.start), from, s.start)
		if len(sp.batch) == cap(sp.batch) {
			sp.flush(s)
		}
	}
	sp.flush(s)
}

// add appends a line whose bytes lie at s.buf[from:to].
func (sp *splitter) add(text []byte, offset int64, from, to int) {
	if len(sp.batch) == 0 {
		sp.from = from
	}
	sp.to = to
	sp.batch = append(sp.batch, Line{Text: text, Offset: offset})
}

func (sp *splitter) flush(s *source) {
	if len(sp.batch) > 0 {
		sp.handle(sp.batch, s.buf[sp.from:sp.to])
		sp.batch = sp.batch[:0]
	}
}
