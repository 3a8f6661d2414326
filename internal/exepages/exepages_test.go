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

// TestReleaseDropsTheBinarysPages pages out the test binary itself: its resident file
// pages must fall. The test binary is the test's own (go test builds it), so the kernel
// may drop its pages, and no other process maps it.
func TestReleaseDropsTheBinarysPages(t *testing.T) {
	before := residentFileKiB(t)
	advised, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	if advised == 0 {
		t.Fatal("Release found no mapping of the binary")
	}
	after := residentFileKiB(t)
	t.Logf("resident file pages: %d KiB before, %d KiB after", before, after)
	if after > before/2 {
		t.Errorf("resident file pages went from %d KiB to %d KiB; want at most half", before, after)
	}
}

func residentFileKiB(t *testing.T) int {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}
