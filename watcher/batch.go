package watcher

import (
	"bytes"
	"slices"
)

// Line is one line of a followed file, without its line ending (LF or CRLF). Its bytes
// are only valid during the Handler call that receives it.
type Line struct {
	Text []byte
	// Offset is the byte offset just past the line's newline in its file.
	Offset int64
}

// Batch is a run of consecutive lines of one file.
type Batch struct {
	File  Identity
	Lines []Line
	// Data is the bytes the lines were cut from, newlines and carriage returns included:
	// each line's Text lies in it, in order, with nothing between one line and the next.
	// It ends at the last line's Offset, so a byte at index k of Data lies at file offset
	// Start() + k. A consumer can search the whole batch at once and find the lines by
	// their offsets.
	Data []byte
	// Seqnums holds, for a batch read from the systemd journal (package journal), the
	// sequence number of each line's entry, and File.Head then tells the journal's
	// sequences apart; the offsets count the lines' bytes since the reading began. nil
	// for a file's batch.
	Seqnums []int64
}

// Handler receives batches. When it returns, the lines count as handled: Position moves
// past them.
type Handler func(Batch)

// Start returns the file offset where the batch begins: its Data's first byte, the start
// of its first line. It needs the Data the watcher gives a batch; 0 for no lines.
func (b Batch) Start() int64 {
	if len(b.Lines) == 0 {
		return 0
	}
	return b.Lines[len(b.Lines)-1].Offset - int64(len(b.Data))
}

// SearchAny calls each, in order, with the index of every line of the batch that holds
// any of needles, searching for each needle once over the batch's bytes however many
// lines hold the others: the next place of each is remembered until the search passes
// it. With no needles it calls each for every line. It allocates nothing for up to
// four needles.
func (b Batch) SearchAny(needles [][]byte, each func(i int)) {
	if len(needles) == 1 {
		needle := needles[0]
		b.Search(func(data []byte) int { return bytes.Index(data, needle) }, each)
		return
	}
	if len(needles) == 0 {
		b.Search(func([]byte) int { return 0 }, each)
		return
	}
	var buf [4]int
	next := buf[:0]
	if len(needles) > len(buf) {
		next = make([]int, 0, len(needles))
	}
	for range needles {
		next = append(next, -2) // not searched yet
	}
	data := b.Data
	b.Search(func(rest []byte) int {
		from := len(data) - len(rest)
		best := -1
		for k, needle := range needles {
			if next[k] == -2 || next[k] >= 0 && next[k] < from {
				if i := bytes.Index(rest, needle); i >= 0 {
					next[k] = from + i
				} else {
					next[k] = -1 // none left
				}
			}
			if next[k] >= 0 && (best < 0 || next[k] < best) {
				best = next[k]
			}
		}
		if best < 0 {
			return -1
		}
		return best - from
	}, each)
}

// Search calls each, in order, with the index of every line of the batch in which find
// says text it looks for may lie. find returns the index in data of the first place
// such text begins, or -1 if there is none; a line that cannot hold it costs its share
// of one search over the batch's bytes, as grep would, and no call. A find that returns
// 0 for everything calls each for every line. A batch without its Data (one made by
// hand) has each called for every line.
func (b Batch) Search(find func(data []byte) int, each func(i int)) {
	lines, data := b.Lines, b.Data
	if len(lines) == 0 {
		return
	}
	if data == nil {
		for i := range lines {
			each(i)
		}
		return
	}
	start := b.Start()
	for i, from := 0, 0; i < len(lines); i++ {
		k := find(data[from:])
		if k < 0 {
			return
		}
		hit := start + int64(from+k)
		n, _ := slices.BinarySearchFunc(lines[i:], hit, func(l Line, at int64) int {
			if l.Offset <= at {
				return -1 // the line ends at or before the hit
			}
			return 1
		})
		if i += n; i == len(lines) {
			return
		}
		each(i)
		from = int(lines[i].Offset - start)
	}
}

// CopyTo returns a copy of the batch that owns its bytes, so that it stays valid after
// the Handler that received the batch returns. The copy is made in dst's memory where it
// has room: a consumer that copies many batches can hand back the ones it is done with.
func (b Batch) CopyTo(dst Batch) Batch {
	dst.File = b.File
	dst.Data = append(dst.Data[:0], b.Data...)
	if b.Data == nil {
		dst.Data = nil
	}
	dst.Lines = append(dst.Lines[:0], b.Lines...)
	dst.Seqnums = append(dst.Seqnums[:0], b.Seqnums...)
	if b.Seqnums == nil {
		dst.Seqnums = nil
	}
	if len(dst.Lines) == 0 {
		return dst
	}
	if b.Data == nil { // made by hand: each line on its own
		for i := range dst.Lines {
			dst.Lines[i].Text = bytes.Clone(dst.Lines[i].Text)
		}
		return dst
	}
	// Each line's text begins where the one before it ends in Data.
	start := dst.Start()
	from := 0
	for i := range dst.Lines {
		n := len(dst.Lines[i].Text)
		dst.Lines[i].Text = dst.Data[from : from+n : from+n]
		from = int(dst.Lines[i].Offset - start)
	}
	return dst
}
