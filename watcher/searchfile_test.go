package watcher

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

// hostileLog returns a log of about size bytes whose lines hold needle here and there:
// at their start, their end, past a line limit of 64, split by a carriage return; lines
// longer than the limit, longer than the buffer, empty, CRLF-ended, and (if unended) a
// last line without its newline.
func hostileLog(r *rand.Rand, size int, needle string, unended bool) string {
	var b strings.Builder
	for b.Len() < size {
		switch r.IntN(14) {
		case 0:
			b.WriteString(strings.Repeat("L", 60+r.IntN(600)) + needle + "\n") // the needle past the cut
		case 1:
			b.WriteString(needle + strings.Repeat("L", 100+r.IntN(3000)) + "\n") // cut, the needle kept
		case 2:
			b.WriteString("crlf " + needle + "\r\n")
		case 3:
			b.WriteString("\n")
		case 4:
			b.WriteString(needle[:2] + "\r" + needle[2:] + "\n") // not the needle
		case 5:
			b.WriteString(needle + needle + " twice\n")
		case 6:
			fmt.Fprintf(&b, "%s%s\r\n", strings.Repeat("C", 59+r.IntN(10)), needle) // around the limit with its CR
		default:
			fmt.Fprintf(&b, "line %s %s\n", strings.Repeat("x", r.IntN(80)), needle[:r.IntN(len(needle)+1)])
		}
	}
	if unended {
		b.WriteString("last " + needle)
	}
	return b.String()
}

// TestSearchFileFindsWhatReadFileFinds reads hostile logs both ways: whole, through
// ReadFile and Batch.Search, and in parts through SearchFile. Each must count the same
// lines and hand on the same lines that hold the needle, in order; with small buffers, so
// that lines and needles lie across the buffer's ends and the parts'.
func TestSearchFileFindsWhatReadFileFinds(t *testing.T) {
	defer func(n int) { searchBufSize = n }(searchBufSize)
	const needle = "DOS ALERT"
	find := func(data []byte) int { return bytes.Index(data, []byte(needle)) }
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 40 {
		text := hostileLog(r, 2000+r.IntN(60_000), needle, i%2 == 1)
		if i == 0 {
			text = ""
		}
		path := filepath.Join(t.TempDir(), "app.log")
		write(t, path, text)

		var wantLines int64
		var want []string
		opts := Options{MaxLineSize: 64, BatchSize: 7}
		if err := ReadFile(path, opts, func(b Batch) {
			wantLines += int64(len(b.Lines))
			b.Search(find, func(k int) {
				if line := b.Lines[k].Text; bytes.Contains(line, []byte(needle)) {
					want = append(want, string(line))
				}
			})
		}); err != nil {
			t.Fatal(err)
		}
		if got := int64(strings.Count(text, "\n")); wantLines != got+int64(i%2) && text != "" {
			t.Fatalf("file %d: ReadFile read %d lines of %d newlines", i, wantLines, got)
		}

		searchBufSize = 128 + r.IntN(400)
		parts := 1 + r.IntN(6)
		byPart := make([][]string, parts)
		var read atomic.Int64
		lines, err := SearchFile(path, Search{MaxLineSize: 64, Parts: parts, Find: find, Read: &read}, func(part int) func([]byte) {
			return func(line []byte) {
				if bytes.Contains(line, []byte(needle)) {
					byPart[part] = append(byPart[part], string(line))
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := slices.Concat(byPart...); lines != wantLines || !slices.Equal(got, want) {
			t.Errorf("file %d, %d parts, buffer %d: %d lines, %d with the needle; ReadFile: %d, %d",
				i, parts, searchBufSize, lines, len(got), wantLines, len(want))
		}
		if read.Load() != int64(len(text)) {
			t.Errorf("file %d: %d bytes counted as read of %d", i, read.Load(), len(text))
		}
	}
}

// TestSearchFileRefusesWhatReadFileRefuses: a path that is no regular file is not read.
func TestSearchFileRefusesWhatReadFileRefuses(t *testing.T) {
	_, err := SearchFile(t.TempDir(), Search{Find: func([]byte) int { return 0 }}, func(int) func([]byte) { return func([]byte) {} })
	if !errors.Is(err, ErrNotRegular) {
		t.Fatalf("a folder searched: %v", err)
	}
}
