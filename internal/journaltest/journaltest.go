// Package journaltest writes real systemd journal files for tests, with Debian's
// systemd-journal-remote, which turns journalctl's export format into journal files: no
// journald needs to run.
package journaltest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logban/logban/internal/testenv"
)

// remote is where Debian installs systemd-journal-remote.
var remote = []string{"/usr/lib/systemd/systemd-journal-remote", "/lib/systemd/systemd-journal-remote"}

// Entry is one journal entry. Fields are added as they are; the others, when set, make
// the fields journald would: _HOSTNAME, SYSLOG_IDENTIFIER, _PID, _SYSTEMD_UNIT, MESSAGE.
type Entry struct {
	Time    time.Time // zero: now
	Host    string
	Ident   string
	PID     int
	Unit    string
	Message string
	Fields  map[string]string
}

// Journal is a folder of journal files a test writes.
type Journal struct {
	Dir string
	t   testing.TB
	bin string

	mu   sync.Mutex
	mono int64 // the last monotonic timestamp written, µs
}

// New makes an empty journal folder for t, or skips (fails, where privileged tests are
// required) without systemd-journal-remote.
func New(t testing.TB) *Journal {
	t.Helper()
	for _, bin := range remote {
		if _, err := os.Stat(bin); err == nil {
			return &Journal{Dir: t.TempDir(), t: t, bin: bin}
		}
	}
	testenv.Skip(t, "systemd-journal-remote is not installed (apt-get install systemd-journal-remote)")
	return nil
}

// bootID is the boot every entry is written in.
const bootID = "5e1f2a3b4c5d6e7f8091a2b3c4d5e6f7"

// Write appends entries to the journal file named file in the folder ("remote.journal"
// if ""), creating it if needed.
func (j *Journal) Write(file string, entries ...Entry) {
	j.t.Helper()
	if file == "" {
		file = "remote.journal"
	}
	var export bytes.Buffer
	j.mu.Lock()
	for _, e := range entries {
		j.mono++
		at := e.Time
		if at.IsZero() {
			at = time.Now()
		}
		field(&export, "__REALTIME_TIMESTAMP", strconv.FormatInt(at.UnixMicro(), 10))
		field(&export, "__MONOTONIC_TIMESTAMP", strconv.FormatInt(j.mono, 10))
		field(&export, "_BOOT_ID", bootID)
		for _, kv := range [][2]string{{"_HOSTNAME", e.Host}, {"SYSLOG_IDENTIFIER", e.Ident}, {"_SYSTEMD_UNIT", e.Unit}, {"MESSAGE", e.Message}} {
			if kv[1] != "" {
				field(&export, kv[0], kv[1])
			}
		}
		if e.PID != 0 {
			field(&export, "_PID", strconv.Itoa(e.PID))
		}
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range e.Fields {
				if !yield(k) {
					return
				}
			}
		}) {
			field(&export, k, e.Fields[k])
		}
		export.WriteByte('\n')
	}
	j.mu.Unlock()
	cmd := exec.Command(j.bin, "--output="+filepath.Join(j.Dir, file), "-")
	cmd.Stdin = &export
	if out, err := cmd.CombinedOutput(); err != nil {
		j.t.Fatalf("systemd-journal-remote: %v\n%s", err, out)
	}
}

// field writes one field in the export format: as text, or length-prefixed where the
// value holds a newline or other control character.
func field(w *bytes.Buffer, name, value string) {
	if !strings.ContainsFunc(value, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		fmt.Fprintf(w, "%s=%s\n", name, value)
		return
	}
	w.WriteString(name + "\n")
	binary.Write(w, binary.LittleEndian, uint64(len(value))) //nolint:errcheck // a bytes.Buffer
	w.WriteString(value + "\n")
}

// Rotate archives the journal file named file as journald does: it takes a name of the
// form NAME@ID-SEQNUM-TIME.journal, and the next Write to file starts a new one.
func (j *Journal) Rotate(file string) string {
	j.t.Helper()
	if file == "" {
		file = "remote.journal"
	}
	archived := strings.TrimSuffix(file, ".journal") + fmt.Sprintf("@%032x-%016x-%016x.journal", time.Now().UnixNano(), 1, time.Now().UnixMicro())
	if err := os.Rename(filepath.Join(j.Dir, file), filepath.Join(j.Dir, archived)); err != nil {
		j.t.Fatal(err)
	}
	return archived
}

// Remove deletes the archived journal file named file, as journalctl --vacuum-* does.
func (j *Journal) Remove(file string) {
	j.t.Helper()
	if err := os.Remove(filepath.Join(j.Dir, file)); err != nil {
		j.t.Fatal(err)
	}
}
