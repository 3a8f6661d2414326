// Package exepages hands the kernel back the pages of the running binary that the process
// touched once and no longer runs.
//
// A Go binary's start-up reaches across most of its text and function tables (package
// initialisers, type and interface tables, the collector's stack maps), and the kernel maps
// what it reads ahead and around each fault, so a ban-server holds 20-26 MB of its 40 MB
// binary resident while a few MB of it run. Those pages are clean and cost nothing to
// drop: Release pages them out of the process, and marks the mappings for random access so
// that what runs again comes back a page at a time, not 128 KB around each fault.
package exepages

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Release pages out the process's read-only mappings of its own binary and returns how
// many bytes of mappings it advised. The kernel drops only pages no other process maps,
// and only of a binary the process may write or owns; elsewhere it leaves them, silently.
func Release() (int, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("exepages: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("exepages: %w", err)
	}
	defer f.Close()
	advised := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		start, end, ok := readOnlyMapping(sc.Text(), exe)
		if !ok {
			continue
		}
		for _, advice := range []int{unix.MADV_RANDOM, unix.MADV_PAGEOUT} {
			if _, _, e := unix.Syscall(unix.SYS_MADVISE, start, end-start, uintptr(advice)); e != 0 {
				return advised, fmt.Errorf("exepages: madvise %#x-%#x: %w", start, end, e)
			}
		}
		advised += int(end - start)
	}
	if err := sc.Err(); err != nil {
		return advised, fmt.Errorf("exepages: /proc/self/maps: %w", err)
	}
	return advised, nil
}

// readOnlyMapping parses a line of /proc/self/maps and reports the range of a mapping of
// path that the process cannot write.
func readOnlyMapping(line, path string) (start, end uintptr, ok bool) {
	fields := strings.Fields(line)
	if len(fields) < 6 || strings.Join(fields[5:], " ") != path || strings.Contains(fields[1], "w") {
		return 0, 0, false
	}
	lo, hi, found := strings.Cut(fields[0], "-")
	if !found {
		return 0, 0, false
	}
	s, err1 := strconv.ParseUint(lo, 16, 64)
	e, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || e <= s {
		return 0, 0, false
	}
	return uintptr(s), uintptr(e), true
}
