package watcher

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// ReadFile hands on what a Follower reading the file from its beginning hands on: the
// same lines, cut at the same length, the same offsets, in the same layout; and then the
// last line even without its newline.
func TestReadFileReadsAsAFollowerDoes(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	var b strings.Builder
	lines := 0
	for b.Len() < 3<<20 {
		switch r.IntN(40) {
		case 0:
			b.WriteString(strings.Repeat("L", 1000+r.IntN(3000)) + " long\n") // over the limit below
		case 1:
			b.WriteString("crlf line\r\n")
		case 2:
			b.WriteString("\n")
		default:
			fmt.Fprintf(&b, "line %d %s\n", lines, strings.Repeat("x", r.IntN(200)))
		}
		lines++
	}
	path := filepath.Join(t.TempDir(), "app.log")
	write(t, path, b.String())
	opts := Options{Start: FromBeginning, MaxLineSize: 1024, BatchSize: 100}

	f := follow(t, path, opts)
	f.got.waitFor(t, lines)
	f.stop()

	read := &got{notify: make(chan struct{}, 1)}
	if err := ReadFile(path, opts, read.handle); err != nil {
		t.Fatal(err)
	}
	if read.bad != "" {
		t.Error(read.bad)
	}
	if !slices.Equal(read.lines, f.got.lines) {
		t.Fatalf("ReadFile gave %d lines, the follower %d; first difference at %d", len(read.lines), len(f.got.lines), firstDiff(read.lines, f.got.lines))
	}

	// The last line, without its newline, and with a carriage return.
	write(t, path, "last\r")
	read = &got{notify: make(chan struct{}, 1)}
	if err := ReadFile(path, opts, read.handle); err != nil {
		t.Fatal(err)
	}
	if n := len(read.lines); n != lines+1 || read.lines[n-1].text != "last" || read.lines[n-1].offset != int64(b.Len()+5) {
		t.Errorf("last line %+v of %d", read.lines[n-1], n)
	}
}

func firstDiff(a, b []gotLine) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// Search finds, by searching a batch's bytes once, the lines that judging every line
// finds, whatever the lines hold; a copy made by CopyTo, into fresh or reused memory,
// holds the same lines in the same layout.
func TestSearchAgreesWithEveryLine(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	kinds := []string{"has NEEDLE in it", "NEEDLE", "NEEDL", "EEDLE", "nothing", "", "x NEEDLENEEDLE y"}
	find := func(data []byte) int { return bytes.Index(data, []byte("NEEDLE")) }
	var reused Batch
	for trial := range 500 {
		var b Batch
		at := int64(r.IntN(1000))
		for range r.IntN(40) + 1 {
			text := kinds[r.IntN(len(kinds))]
			raw := text + pick(r, "\n", "\r\n")
			b.Data = append(b.Data, raw...)
			at += int64(len(raw))
			b.Lines = append(b.Lines, Line{Text: []byte(text), Offset: at})
		}
		for i := range b.Lines { // texts inside Data, as the watcher makes them
			end := int(b.Lines[i].Offset - (at - int64(len(b.Data))))
			start := end - len(b.Lines[i].Text) - 1
			if bytes.HasSuffix(b.Data[:end], []byte("\r\n")) {
				start--
			}
			b.Lines[i].Text = b.Data[start : start+len(b.Lines[i].Text)]
		}
		var want, got []int
		for i, l := range b.Lines {
			if bytes.Contains(l.Text, []byte("NEEDLE")) {
				want = append(want, i)
			}
		}
		b.Search(find, func(i int) { got = append(got, i) })
		if !slices.Equal(got, want) {
			t.Fatalf("trial %d: Search found %v, every line %v", trial, got, want)
		}
		// SearchAny with two needles finds the lines holding either, once each.
		var wantAny, gotAny []int
		for i, l := range b.Lines {
			if bytes.Contains(l.Text, []byte("NEEDLE")) || bytes.Contains(l.Text, []byte("nothing")) {
				wantAny = append(wantAny, i)
			}
		}
		b.SearchAny([][]byte{[]byte("NEEDLE"), []byte("nothing")}, func(i int) { gotAny = append(gotAny, i) })
		if !slices.Equal(gotAny, wantAny) {
			t.Fatalf("trial %d: SearchAny found %v, every line %v", trial, gotAny, wantAny)
		}
		got = got[:0]
		b.SearchAny([][]byte{[]byte("absent"), []byte("NEEDLE")}, func(i int) { got = append(got, i) })
		if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("trial %d: SearchAny with a needle no line holds found %v, want %v", trial, got, want)
		}
		reused = b.CopyTo(reused)
		for _, c := range []Batch{b.CopyTo(Batch{}), reused} {
			if msg := checkData(c); msg != "" || len(c.Lines) != len(b.Lines) {
				t.Fatalf("trial %d: copy: %s", trial, msg)
			}
			for i := range c.Lines {
				if !bytes.Equal(c.Lines[i].Text, b.Lines[i].Text) || c.Lines[i].Offset != b.Lines[i].Offset {
					t.Fatalf("trial %d: copy's line %d differs", trial, i)
				}
			}
		}
	}
}

func pick(r *rand.Rand, xs ...string) string { return xs[r.IntN(len(xs))] }

// FuzzReadFile: the lines ReadFile hands on are the file's lines, as a plain model cuts
// them (LF ends a line, one CR before it is dropped, a line longer than the limit keeps
// its start, a last line needs no LF), whatever the bytes and the limit; and every
// batch lays its lines out in its Data as documented, at increasing offsets.
// go test -fuzz FuzzReadFile ./watcher
func FuzzReadFile(f *testing.F) {
	f.Add([]byte("one\ntwo\r\nthree"), uint8(4), uint8(2))
	f.Add([]byte("\n\n\r\n\r"), uint8(1), uint8(1))
	f.Add([]byte(strings.Repeat("x", 300)+"\n"+strings.Repeat("y", 40)+"\r\n"), uint8(40), uint8(3))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, limit, batch uint8) {
		maxLine := int(limit)%200 + 1
		path := filepath.Join(dir, "app.log")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		var want []string
		rest := data
		for len(rest) > 0 {
			line := rest
			if i := bytes.IndexByte(rest, '\n'); i >= 0 {
				line, rest = rest[:i], rest[i+1:]
			} else {
				rest = nil
			}
			line = bytes.TrimSuffix(line, []byte{'\r'})
			want = append(want, string(line[:min(len(line), maxLine)]))
		}
		var got []string
		last := int64(0)
		err := ReadFile(path, Options{MaxLineSize: maxLine, BatchSize: int(batch)%20 + 1}, func(b Batch) {
			if msg := checkData(b); msg != "" {
				t.Fatal(msg)
			}
			for _, l := range b.Lines {
				if l.Offset <= last || l.Offset > int64(len(data)) {
					t.Fatalf("offset %d after %d, file of %d bytes", l.Offset, last, len(data))
				}
				last = l.Offset
				got = append(got, string(l.Text))
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("limit %d: got %q, want %q", maxLine, got, want)
		}
	})
}
