package watcher

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// Search is a search of a whole file for the lines worth a look (SearchFile).
type Search struct {
	// MaxLineSize cuts longer lines, as Options.MaxLineSize; 0 means DefaultMaxLineSize.
	MaxLineSize int
	// Parts is how many parts of the file are read at once, each by its own goroutine;
	// below 1, one.
	Parts int
	// Find returns where in data the next line worth a look may be, or -1 if none is:
	// what Batch.Search takes (filters.Filter.Next).
	Find func(data []byte) int
	// Read, if set, counts the bytes read as they are read, for progress.
	Read *atomic.Int64
}

// searchBufSize is the buffer each part is read through; tests make it small.
var searchBufSize = 256 << 10

// SearchFile reads the file at path from its start to its end for the lines Find may hit,
// and returns how many lines it has. Its lines are those ReadFile hands on: cut at
// MaxLineSize, without their line endings, the last one even if no newline ends it; and
// Find sees the bytes Batch.Search would give it. Unlike ReadFile it cuts out only the
// lines Find hits, and counts the others; so it goes about as fast as the file can be
// read, on every CPU Parts asks for.
//
// The file is read in Parts runs of whole lines, at once: found(part) is asked, before
// any reading, for the function that takes part's lines, which is then called from one
// goroutine at a time, with each line's text (valid during the call), in file order. The
// parts are numbered in file order.
//
// A line longer than MaxLineSize may be handed on for a hit in the rest that was cut
// off; its text then holds none. A file that changes while it is read is read as it is
// found, part by part.
func SearchFile(path string, s Search, found func(part int) func(text []byte)) (lines int64, err error) {
	if s.MaxLineSize <= 0 {
		s.MaxLineSize = DefaultMaxLineSize
	}
	s.Parts = max(s.Parts, 1)
	f, err := openRegular(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	starts, err := partStarts(f, fi.Size(), s.Parts)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	takes := make([]func([]byte), s.Parts)
	for i := range takes {
		takes[i] = found(i)
	}
	counts, errs := make([]int64, s.Parts), make([]error, s.Parts)
	var wg sync.WaitGroup
	for i, take := range takes {
		from, to := starts[i], int64(-1) // the last part reads on to the end, as ReadFile does
		if i+1 < s.Parts {
			to = starts[i+1]
		}
		wg.Go(func() { counts[i], errs[i] = searchPart(f, from, to, s, take) })
	}
	wg.Wait()
	for _, n := range counts {
		lines += n
	}
	if err := errors.Join(errs...); err != nil {
		return lines, fmt.Errorf("reading %s: %w", path, err)
	}
	return lines, nil
}

// partStarts returns where each of n parts of a file size bytes long begins: part k at
// the first line that begins at or past k n-ths of the file.
func partStarts(f *os.File, size int64, n int) ([]int64, error) {
	starts := make([]int64, n)
	buf := make([]byte, 4<<10)
	for k := 1; k < n; k++ {
		at, err := lineStart(f, max(size*int64(k)/int64(n), starts[k-1]), size, buf)
		if err != nil {
			return nil, err
		}
		starts[k] = at
	}
	return starts, nil
}

// lineStart returns the first offset at or past at where a line of f begins (at 0, or
// past a newline), or size if none does. buf is its reading buffer.
func lineStart(f *os.File, at, size int64, buf []byte) (int64, error) {
	if at == 0 {
		return 0, nil
	}
	for off := at - 1; off < size; {
		m, err := f.ReadAt(buf, off)
		if i := bytes.IndexByte(buf[:m], '\n'); i >= 0 {
			return off + int64(i) + 1, nil
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
		off += int64(m)
	}
	return size, nil
}

// searchPart reads the lines that begin in [from, to) of f (to -1: to the end), cut as
// the splitter cuts them, hands the ones s.Find hits to take, and returns how many lines
// it read.
func searchPart(f *os.File, from, to int64, s Search, take func([]byte)) (lines int64, err error) {
	var r io.Reader
	if to < 0 {
		r = io.NewSectionReader(f, from, 1<<62)
	} else {
		r = io.NewSectionReader(f, from, to-from)
	}
	buf := make([]byte, max(searchBufSize, 2*s.MaxLineSize))
	start, end := 0, 0
	skipping := false // discarding the rest of a line that was cut
	for {
		if end == len(buf) {
			end = copy(buf, buf[start:end])
			start = 0
		}
		n, err := r.Read(buf[end:])
		end += n
		if s.Read != nil {
			s.Read.Add(int64(n))
		}
		data := buf[start:end]
		if skipping {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				start = end
			} else {
				start += i + 1
				skipping = false
			}
			data = buf[start:end]
		}
		if !skipping {
			if last := bytes.LastIndexByte(data, '\n'); last >= 0 {
				lines += int64(bytes.Count(data[:last+1], []byte{'\n'}))
				searchLines(data[:last+1], s, take)
				start += last + 1
				data = buf[start:end]
			}
			if len(data) > s.MaxLineSize { // longer than the limit, no newline yet: cut it
				lines++
				if s.Find(data[:s.MaxLineSize]) >= 0 {
					take(data[:s.MaxLineSize])
				}
				skipping = true
				start = end
			}
		}
		if errors.Is(err, io.EOF) || err == nil && n == 0 {
			break
		}
		if err != nil {
			return lines, err
		}
	}
	if rest := buf[start:end]; len(rest) > 0 && !skipping { // the last line, without its newline
		lines++
		if s.Find(rest) >= 0 {
			take(bytes.TrimSuffix(rest, []byte{'\r'}))
		}
	}
	return lines, nil
}

// searchLines hands take the lines of data (whole lines, newlines included) that s.Find
// hits, each cut as the splitter cuts it.
func searchLines(data []byte, s Search, take func([]byte)) {
	for from := 0; from < len(data); {
		k := s.Find(data[from:])
		if k < 0 {
			return
		}
		hit := from + k
		begin := from + bytes.LastIndexByte(data[from:hit], '\n') + 1
		end := hit + bytes.IndexByte(data[hit:], '\n') // data ends with a newline
		line := data[begin:end]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		take(line[:min(len(line), s.MaxLineSize)])
		from = end + 1
	}
}
