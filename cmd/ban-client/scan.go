package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"strings"
	"time"

	"github.com/logban/logban/filters"
)

// scanBlock is how much of the file a worker judges at a time, and how much of a longer
// line is judged: its start.
const scanBlock = 1 << 20

// block is a run of whole lines of the file and what a worker made of them.
type block struct {
	data      []byte
	firstLine int // the number of its first line, counting from 1
	done      chan struct{}

	lines, matched, ignored, missed int
	hits                            []int
	addrs                           map[netip.Addr]int
	formats                         map[string]int
	out                             []byte // its -json or -print-missed output, in order
}

// scan judges the file's lines on every CPU: one goroutine cuts the file into blocks of
// whole lines, workers judge blocks, and the report takes them back in file order, so
// output and line numbers are those of a single pass.
func (r *filterReport) scan(in io.Reader, f *filters.Filter, jsonOut bool, out io.Writer, progress func(int64)) error {
	start := time.Now()
	workers := runtime.GOMAXPROCS(0)
	work, ordered := make(chan *block), make(chan *block, 2*workers)
	// Blocks' buffers go round: fresh memory costs page faults, more than judging does.
	buffers := make(chan []byte, 2*workers+2)
	var readErr error
	go func() {
		defer close(ordered)
		defer close(work)
		line := 1
		readErr = cutBlocks(in, buffers, func(data []byte) {
			b := &block{data: data, firstLine: line, done: make(chan struct{})}
			line += bytes.Count(data, []byte{'\n'})
			if len(data) > 0 && data[len(data)-1] != '\n' {
				line++ // the last line, without its newline, or a long line's start
			}
			ordered <- b
			work <- b
		})
	}()
	for range workers {
		go func() {
			for b := range work {
				r.judge(b, f, jsonOut)
				close(b.done)
			}
		}()
	}
	var read int64
	var writeErr error // once output fails, blocks are still taken, so that every goroutine ends
	lastProgress := start
	for b := range ordered {
		<-b.done
		r.Lines += b.lines
		r.Matched += b.matched
		r.Ignored += b.ignored
		r.Missed += b.missed
		for i, n := range b.hits {
			r.PatternHits[i] += n
		}
		for a, n := range b.addrs {
			r.addrCounts[a] += n
		}
		for k, n := range b.formats {
			r.Formats[k] += n
		}
		if writeErr == nil {
			_, writeErr = out.Write(b.out)
		}
		read += int64(len(b.data))
		if cap(b.data) == scanBlock { // not one that began after a long line's rest
			select {
			case buffers <- b.data[:0]:
			default:
			}
		}
		if now := time.Now(); progress != nil && now.Sub(lastProgress) > time.Second/2 {
			progress(read)
			lastProgress = now
		}
	}
	if progress != nil {
		progress(-1)
	}
	r.Seconds = time.Since(start).Seconds()
	return cmp.Or(writeErr, readErr)
}

// judge runs the filter over a block's lines. Where the filter has a literal every match
// holds, and missed lines are only counted, it looks for the literal in the whole block,
// as grep does, and judges only the lines that hold it: the lines between are counted,
// not split.
func (r *filterReport) judge(b *block, f *filters.Filter, jsonOut bool) {
	b.hits = make([]int, len(r.PatternHits))
	b.addrs, b.formats = map[netip.Addr]int{}, map[string]int{}
	j := judgement{r: r, b: b, f: f, jsonOut: jsonOut, now: time.Now()}
	if lit := f.Literal(); lit == "" || strings.Contains(lit, "\n") || (r.showMissed && !jsonOut) {
		lineNo := b.firstLine - 1
		for data := b.data; len(data) > 0; {
			text := data
			if i := bytes.IndexByte(data, '\n'); i >= 0 {
				text, data = data[:i], data[i+1:]
			} else {
				data = nil
			}
			lineNo++
			j.line(text, lineNo)
		}
		return
	}
	data, lineNo := b.data, b.firstLine-1
	for len(data) > 0 {
		k := f.Next(data)
		if k < 0 {
			n := bytes.Count(data, []byte{'\n'})
			if data[len(data)-1] != '\n' {
				n++
			}
			b.lines += n
			b.missed += n
			return
		}
		start := bytes.LastIndexByte(data[:k], '\n') + 1
		skipped := bytes.Count(data[:start], []byte{'\n'})
		b.lines += skipped
		b.missed += skipped
		lineNo += skipped + 1
		text := data[start:]
		data = nil
		if i := bytes.IndexByte(text, '\n'); i >= 0 {
			text, data = text[:i], text[i+1:]
		}
		j.line(text, lineNo)
	}
}

// judgement is one worker's judging of one block.
type judgement struct {
	r       *filterReport
	b       *block
	f       *filters.Filter
	jsonOut bool
	now     time.Time
	times   filters.TimeParser
}

// line judges one line, without its newline.
func (j *judgement) line(text []byte, lineNo int) {
	b := j.b
	text = bytes.TrimSuffix(text, []byte{'\r'})
	b.lines++
	m, res := j.f.Match(text, j.now)
	switch res {
	case filters.Matched:
		b.matched++
		b.hits[m.Pattern]++
		b.addrs[m.Addr]++
		if _, format, ok := j.times.ParseFormat(text, j.now); ok {
			b.formats[format]++
		}
		if j.jsonOut {
			out, _ := json.Marshal(matchedLine{Line: lineNo, Host: m.Addr.String(), Time: m.Time.Format(time.RFC3339)})
			b.out = append(append(b.out, out...), '\n')
		}
	case filters.Ignored:
		b.ignored++
	default:
		b.missed++
		if j.r.showMissed && !j.jsonOut {
			b.out = fmt.Appendf(b.out, "missed %d: %s\n", lineNo, text)
		}
	}
}

// cutBlocks reads in and hands emit its lines in blocks of whole lines, each block at most
// scanBlock bytes at the start of a buffer from free (or a new one), which emit then owns.
// A line longer than that is handed on as its first scanBlock bytes, alone; the rest of
// it is skipped.
func cutBlocks(in io.Reader, free <-chan []byte, emit func([]byte)) error {
	var carry []byte
	skipping := false // inside a long line's rest
	for {
		var buf []byte
		select {
		case buf = <-free:
			buf = buf[:scanBlock]
		default:
			buf = make([]byte, scanBlock)
		}
		n := copy(buf, carry)
		m, err := io.ReadFull(in, buf[n:])
		n += m
		buf, carry = buf[:n], nil
		if skipping {
			i := bytes.IndexByte(buf, '\n')
			if i < 0 {
				if err != nil {
					return ignoreEOF(err)
				}
				continue
			}
			buf, skipping = buf[i+1:], false
		}
		if err != nil { // the end: what is left is whole lines and maybe a last one
			if len(buf) > 0 {
				emit(buf)
			}
			return ignoreEOF(err)
		}
		i := bytes.LastIndexByte(buf, '\n')
		switch {
		case i >= 0:
			carry = bytes.Clone(buf[i+1:])
			emit(buf[:i+1])
		case len(buf) == scanBlock: // one line fills the block
			emit(buf)
			skipping = true
		default: // the start of a line, after a long line's rest
			carry = bytes.Clone(buf)
		}
	}
}

func ignoreEOF(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return nil
	}
	return err
}
