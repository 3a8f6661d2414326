package exepages

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestReadOnlyMapping(t *testing.T) {
	const exe = "/usr/sbin/ban-server"
	for _, tc := range []struct {
		line       string
		start, end uintptr
		ok         bool
	}{
		{"00400000-01155000 r-xp 00000000 fe:00 10010675    /usr/sbin/ban-server", 0x400000, 0x1155000, true},
		{"01155000-01e01000 r--p 00d55000 fe:00 10010675    /usr/sbin/ban-server", 0x1155000, 0x1e01000, true},
		// Written data and bss are the process's own memory, not the binary's pages.
		{"01e01000-01e60000 rw-p 01a01000 fe:00 10010675    /usr/sbin/ban-server", 0, 0, false},
		{"7fcf7b2f1000-7fcf7b447000 r-xp 00026000 fe:00 326269  /usr/lib/x86_64-linux-gnu/libc.so.6", 0, 0, false},
		{"2776e4800000-2776e5000000 rw-p 00000000 00:00 0", 0, 0, false},
		// Another file by the name the binary had: an upgrade put a new one in its place.
		{"00400000-01155000 r-xp 00000000 fe:00 10010675    /usr/sbin/ban-server (deleted)", 0, 0, false},
		{"01155000-00400000 r--p 00d55000 fe:00 10010675    /usr/sbin/ban-server", 0, 0, false},
		{"garbage /usr/sbin/ban-server", 0, 0, false},
	} {
		start, end, ok := readOnlyMapping(tc.line, exe)
		if start != tc.start || end != tc.end || ok != tc.ok {
			t.Errorf("readOnlyMapping(%q) = %#x, %#x, %v; want %#x, %#x, %v", tc.line, start, end, ok, tc.start, tc.end, tc.ok)
		}
	}
}

// TestReleaseDropsTheBinarysPages pages out the test binary itself: the resident pages
// of its read-only mappings must fall. The test binary is the test's own (go test builds
// it), so the kernel may drop its pages, and no other process maps it. Only the binary's
// own mappings are counted: the process's other file pages (the C library of a -race
// build, shared with every other process) stay, as Release leaves them.
func TestReleaseDropsTheBinarysPages(t *testing.T) {
	touchBinary(t) // every page resident, as after start-up, however often the test runs
	before := residentBinaryKiB(t)
	advised, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	if advised == 0 {
		t.Fatal("Release found no mapping of the binary")
	}
	after := residentBinaryKiB(t)
	t.Logf("resident pages of the binary: %d KiB before, %d KiB after", before, after)
	if after > before/2 {
		t.Errorf("resident pages of the binary went from %d KiB to %d KiB; want at most half", before, after)
	}
}

// binaryAnd returns the path of the process's binary and the text of the /proc file
// proc, which lists its mappings.
func binaryAnd(t *testing.T, proc string) (exe, text string) {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(proc)
	if err != nil {
		t.Fatal(err)
	}
	return exe, string(b)
}

// touchBinary reads every page of the process's read-only mappings of its own binary
// (through /proc/self/mem, which faults them in), so that all of them are resident.
func touchBinary(t *testing.T) {
	t.Helper()
	exe, maps := binaryAnd(t, "/proc/self/maps")
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	page := make([]byte, os.Getpagesize())
	for line := range strings.SplitSeq(maps, "\n") {
		if start, end, ok := readOnlyMapping(line, exe); ok {
			for at := start; at < end; at += uintptr(len(page)) {
				if _, err := mem.ReadAt(page, int64(at)); err != nil {
					t.Fatalf("reading the binary's page at %#x: %v", at, err)
				}
			}
		}
	}
}

// residentBinaryKiB returns the resident size of the process's read-only mappings of
// its own binary, from /proc/self/smaps.
func residentBinaryKiB(t *testing.T) int {
	t.Helper()
	exe, smaps := binaryAnd(t, "/proc/self/smaps")
	total, mapped, counting := 0, 0, false
	for line := range strings.SplitSeq(smaps, "\n") {
		if _, _, ok := readOnlyMapping(line, exe); ok {
			counting = true
			mapped++
			continue
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); ok && counting {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			total += n
			counting = false
		}
	}
	if mapped == 0 {
		t.Fatalf("no read-only mapping of %s in /proc/self/smaps", exe)
	}
	return total
}
