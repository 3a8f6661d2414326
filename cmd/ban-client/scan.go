package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/logban/logban/filters"
	"github.com/logban/logban/watcher"
)

// scanBatchLines is how many lines a worker judges at a time.
const scanBatchLines = 4096

// block is a batch of the file's lines, copied out of the reader's buffer, and what a
// worker made of them.
type block struct {
	batch     watcher.Batch
	firstLine int // the number of its first line, counting from 1
	done      chan struct{}

	matched, ignored, missed int
	hits                     []int
	addrs                    map[netip.Addr]int
	formats                  map[string]int
	out                      []byte // its -json or -print-missed output, in order
}

// scan judges the lines readAll hands on, on every CPU, where lines are printed (-json,
// -print-missed) or come from the journal; search does the rest. A file is read and cut
// into lines by the watcher, as ban-server reads it (the same long-line limit, the same
// line endings), the journal by package journal; workers judge batches with the search
// ban-server uses, and the report takes them back in order, so output and line numbers
// are those of a single pass.
func (r *filterReport) scan(readAll func(watcher.Handler) error, f *filters.Filter, jsonOut bool, out io.Writer, progress func(int64)) error {
	start := time.Now()
	workers := runtime.GOMAXPROCS(0)
	work, ordered := make(chan *block), make(chan *block, 2*workers)
	// Blocks go round: fresh memory costs page faults, more than judging does.
	spare := make(chan *block, 2*workers+2)
	var readErr error
	go func() {
		defer close(ordered)
		defer close(work)
		line := 1
		readErr = readAll(func(b watcher.Batch) {
			var blk *block
			select {
			case blk = <-spare:
			default:
				blk = &block{}
			}
			*blk = block{batch: b.CopyTo(blk.batch), firstLine: line, done: make(chan struct{}), out: blk.out[:0]}
			line += len(b.Lines)
			ordered <- blk
			work <- blk
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
	var read atomic.Int64
	stopProgress := showProgress(progress, &read)
	var writeErr error // once output fails, blocks are still taken, so that every goroutine ends
	for b := range ordered {
		<-b.done
		r.Lines += len(b.batch.Lines)
		r.add(b)
		if writeErr == nil {
			_, writeErr = out.Write(b.out)
		}
		if n := len(b.batch.Lines); n > 0 {
			read.Store(b.batch.Lines[n-1].Offset)
		}
		select {
		case spare <- b:
		default:
		}
	}
	stopProgress()
	r.Seconds = time.Since(start).Seconds()
	return cmp.Or(writeErr, readErr)
}

// add counts what a worker made of a block into the report.
func (r *filterReport) add(b *block) {
	r.Matched += b.matched
	r.Ignored += b.ignored
	r.Missed += b.missed
	for i, n := range b.hits {
		r.RuleHits[i] += n
	}
	for a, n := range b.addrs {
		r.addrCounts[a] += n
	}
	for k, n := range b.formats {
		r.Formats[k] += n
	}
}

// search judges a file where no line is printed (no -json, no -print-missed), so that no
// line needs its number: the file is read in parts, one per CPU, and only the lines that
// may hold the filter's literal are cut out and judged (watcher.SearchFile, the lines
// ban-server would judge); the others are counted as missed.
func (r *filterReport) search(path string, maxLine int, f *filters.Filter, progress func(int64)) error {
	start := time.Now()
	parts := runtime.GOMAXPROCS(0)
	blocks := make([]*block, parts)
	var read atomic.Int64
	stopProgress := showProgress(progress, &read)
	lines, err := watcher.SearchFile(path, watcher.Search{MaxLineSize: maxLine, Parts: parts, Find: f.Next, Read: &read},
		func(part int) func([]byte) {
			b := &block{hits: make([]int, len(r.RuleHits)), addrs: map[netip.Addr]int{}, formats: map[string]int{}}
			blocks[part] = b
			j := &judgement{r: r, b: b, f: f, now: time.Now()}
			return func(line []byte) { j.line(line, 0) }
		})
	stopProgress()
	r.Lines = int(lines)
	for _, b := range blocks {
		r.add(b)
	}
	r.Missed = r.Lines - r.Matched - r.Ignored // the lines not judged too
	r.Seconds = time.Since(start).Seconds()
	return err
}

// showProgress calls progress with what read holds every half second, until the function
// it returns is called; that clears it. A nil progress shows nothing.
func showProgress(progress func(int64), read *atomic.Int64) (stop func()) {
	if progress == nil {
		return func() {}
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(time.Second / 2)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				progress(read.Load())
			case <-done:
				progress(-1)
				return
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// judge runs the filter over a block's lines. Where missed lines are only counted, it
// judges only the lines that may hold the filter's literal (watcher.Batch.Search, as
// ban-server does); the lines between are missed without a look.
func (r *filterReport) judge(b *block, f *filters.Filter, jsonOut bool) {
	b.hits = make([]int, len(r.RuleHits))
	b.addrs, b.formats = map[netip.Addr]int{}, map[string]int{}
	j := judgement{r: r, b: b, f: f, jsonOut: jsonOut, now: time.Now()}
	lines := b.batch.Lines
	if r.showMissed && !jsonOut {
		for i := range lines {
			j.line(lines[i].Text, b.firstLine+i)
		}
		return
	}
	judged := 0
	b.batch.Search(f.Next, func(i int) {
		j.line(lines[i].Text, b.firstLine+i)
		judged++
	})
	b.missed += len(lines) - judged
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

// line judges one line.
func (j *judgement) line(text []byte, lineNo int) {
	b := j.b
	m, res := j.f.Match(text, j.now)
	switch res {
	case filters.Matched:
		b.matched++
		b.hits[m.Rule]++
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
