package journal

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logban/logban/internal/journaltest"
	"github.com/logban/logban/watcher"
)

const postfixUnit = "postfix@-.service"

var unitMatch = []string{"_SYSTEMD_UNIT=" + postfixUnit}

func failure(i int) journaltest.Entry {
	return journaltest.Entry{Host: "mta1", Ident: "postfix/submission/smtpd", PID: 4242, Unit: postfixUnit,
		Message: fmt.Sprintf("warning: unknown[203.0.113.%d]: SASL LOGIN authentication failed: UGFzc3dvcmQ6", i)}
}

func failures(from, to int) []journaltest.Entry {
	var out []journaltest.Entry
	for i := from; i < to; i++ {
		out = append(out, failure(i))
	}
	return out
}

// open opens a follower, failing the test if it cannot.
func open(t *testing.T, opts Options) *Follower {
	t.Helper()
	f, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// reading runs f until the test ends, and gathers the lines it hands on.
type reading struct {
	mu      sync.Mutex
	lines   []string
	seqnums []int64
	cancel  context.CancelFunc
	done    chan struct{}
}

func run(t *testing.T, f *Follower) *reading {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &reading{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		f.Run(ctx, func(b watcher.Batch) {
			r.mu.Lock()
			defer r.mu.Unlock()
			if len(b.Seqnums) != len(b.Lines) {
				t.Errorf("a batch of %d lines has %d sequence numbers", len(b.Lines), len(b.Seqnums))
			}
			// The lines lie in Data as a file's do, so a search over Data finds them.
			b.Search(func(data []byte) int { return bytes.Index(data, []byte("mta1")) }, func(i int) {
				r.lines = append(r.lines, string(b.Lines[i].Text))
			})
			r.seqnums = append(r.seqnums, b.Seqnums...)
		})
	}()
	t.Cleanup(r.stop)
	return r
}

func (r *reading) stop() {
	r.cancel()
	<-r.done
}

// wait returns the lines once there are n, failing the test if they do not come.
func (r *reading) wait(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r.mu.Lock()
		got := slices.Clone(r.lines)
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d lines read, want %d:\n%s", len(got), n, strings.Join(got, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// addresses returns the last octets of the failing addresses the lines name, in order.
func addresses(t *testing.T, lines []string) []int {
	t.Helper()
	var out []int
	for _, l := range lines {
		var n int
		i := strings.Index(l, "unknown[203.0.113.")
		if i < 0 {
			t.Fatalf("not a failure: %q", l)
		}
		fmt.Sscanf(l[i+len("unknown[203.0.113."):], "%d", &n)
		out = append(out, n)
	}
	return out
}

func seq(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func TestAnEntryBecomesTheLineSyslogWrites(t *testing.T) {
	j := journaltest.New(t)
	at := time.Date(2026, 12, 7, 10, 0, 1, 234567000, time.UTC)
	e := failure(7)
	e.Time = at
	j.Write("", e)
	f := open(t, Options{Directory: j.Dir, Matches: unitMatch, Start: watcher.FromBeginning, Location: time.UTC})
	got := run(t, f).wait(t, 1)
	want := "2026-12-07T10:00:01.234567+00:00 mta1 postfix/submission/smtpd[4242]: warning: unknown[203.0.113.7]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"
	if got[0] != want {
		t.Errorf("line:\n got %q\nwant %q", got[0], want)
	}
}

// TestEntriesWrittenWhileReadingAreRead: from the beginning, from the end, and appended
// to the journal while the follower runs.
func TestEntriesWrittenWhileReadingAreRead(t *testing.T) {
	j := journaltest.New(t)
	j.Write("", failures(0, 3)...)
	all := open(t, Options{Directory: j.Dir, Matches: unitMatch, Start: watcher.FromBeginning})
	end := open(t, Options{Directory: j.Dir, Matches: unitMatch, Start: watcher.FromEnd})
	fromAll, fromEnd := run(t, all), run(t, end)
	fromAll.wait(t, 3)
	j.Write("", failures(3, 10)...)
	if got := addresses(t, fromAll.wait(t, 10)); !slices.Equal(got, seq(0, 10)) {
		t.Errorf("from the beginning: read %v, want 0-9 once each, in order", got)
	}
	if got := addresses(t, fromEnd.wait(t, 7)); !slices.Equal(got, seq(3, 10)) {
		t.Errorf("from the end: read %v, want 3-9 once each, in order", got)
	}
}

// TestARestartResumesAtTheCursor: a follower opened on the position another left reads
// the entries written since, and none twice, whether or not more matched in between.
func TestARestartResumesAtTheCursor(t *testing.T) {
	j := journaltest.New(t)
	j.Write("", failures(0, 5)...)
	first := open(t, Options{Directory: j.Dir, Matches: unitMatch, Start: watcher.FromBeginning})
	r := run(t, first)
	r.wait(t, 5)
	r.stop()
	pos := first.Position()
	if pos.Cursor == "" || pos.Offset != 0 || pos.File != (watcher.Identity{}) {
		t.Fatalf("position %+v: want a cursor and nothing else", pos)
	}
	j.Write("", failures(5, 9)...)
	second := open(t, Options{Directory: j.Dir, Matches: unitMatch, Start: watcher.Resume, Resume: pos})
	if got := addresses(t, run(t, second).wait(t, 4)); !slices.Equal(got, seq(5, 9)) {
		t.Errorf("after the restart: read %v, want 5-8", got)
	}
	if second.Vacuumed() != 0 {
		t.Errorf("the cursor's entry is there, yet %d vacuums were reported", second.Vacuumed())
	}
}

// TestAVacuumedCursorResumesFromTheOldestEntry: the file holding the saved cursor's entry
// was rotated and vacuumed away while the reader was stopped; reading resumes from the
// oldest entry the journal holds, with a warning, and reads nothing twice.
func TestAVacuumedCursorResumesFromTheOldestEntry(t *testing.T) {
	j := journaltest.New(t)
	j.Write("", failures(0, 3)...)
	first := open(t, Options{Directory: j.Dir, Matches: unitMatch, Start: watcher.FromBeginning})
	r := run(t, first)
	r.wait(t, 3)
	r.stop()
	archived := j.Rotate("")
	j.Write("", failures(3, 6)...)
	j.Remove(archived)
	var logs bytes.Buffer
	second, err := Open(Options{Directory: j.Dir, Matches: unitMatch, Start: watcher.Resume, Resume: first.Position(),
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if got := addresses(t, run(t, second).wait(t, 3)); !slices.Equal(got, seq(3, 6)) {
		t.Errorf("after the vacuum: read %v, want 3-5", got)
	}
	if second.Vacuumed() != 1 || !strings.Contains(logs.String(), "no longer holds") {
		t.Errorf("vacuums counted %d, log %q: want one, and a warning", second.Vacuumed(), logs.String())
	}
}

// TestFilesRotatedUnderTheReader: the journal's file is archived and a new one begun
// while the follower reads, twice; every entry is read once.
func TestFilesRotatedUnderTheReader(t *testing.T) {
	j := journaltest.New(t)
	f := open(t, Options{Directory: j.Dir, Matches: unitMatch, Start: watcher.FromBeginning})
	j.Write("", failures(0, 4)...)
	r := run(t, f)
	r.wait(t, 4)
	for round := 1; round <= 2; round++ {
		j.Rotate("")
		j.Write("", failures(4*round, 4*round+4)...)
		r.wait(t, 4*round+4)
	}
	time.Sleep(200 * time.Millisecond) // anything read twice would come now
	if got := addresses(t, r.wait(t, 12)); !slices.Equal(got, seq(0, 12)) {
		t.Errorf("across two rotations: read %v, want 0-11 once each", got)
	}
}

// TestMatchesAsJournalctlTakesThem: terms of one field are ORed, of different fields
// ANDed, and "+" ORs groups.
func TestMatchesAsJournalctlTakesThem(t *testing.T) {
	j := journaltest.New(t)
	entry := func(i int, unit, ident string) journaltest.Entry {
		e := failure(i)
		e.Unit, e.Ident = unit, ident
		return e
	}
	j.Write("",
		entry(0, "postfix@-.service", "postfix/submission/smtpd"),
		entry(1, "postfix@-.service", "postfix/smtpd"),
		entry(2, "dovecot.service", "dovecot"),
		entry(3, "sshd.service", "sshd"),
		entry(4, "postfix@-.service", "postfix/submission/smtpd"),
		entry(5, "", "postfix/submission/smtpd"), // a local user's logger -t
	)
	for _, tc := range []struct {
		matches []string
		want    []int
	}{
		{[]string{"_SYSTEMD_UNIT=postfix@-.service"}, []int{0, 1, 4}},
		{[]string{"_SYSTEMD_UNIT=postfix@-.service", "_SYSTEMD_UNIT=dovecot.service"}, []int{0, 1, 2, 4}},
		{[]string{"_SYSTEMD_UNIT=postfix@-.service", "SYSLOG_IDENTIFIER=postfix/submission/smtpd"}, []int{0, 4}},
		{[]string{"_SYSTEMD_UNIT=postfix@-.service", "SYSLOG_IDENTIFIER=postfix/submission/smtpd", "+", "_SYSTEMD_UNIT=sshd.service"}, []int{0, 3, 4}},
	} {
		f := open(t, Options{Directory: j.Dir, Matches: tc.matches, Start: watcher.FromBeginning})
		r := run(t, f)
		r.wait(t, len(tc.want))
		time.Sleep(200 * time.Millisecond) // an entry the matches should not take would come now
		if got := addresses(t, r.wait(t, len(tc.want))); !slices.Equal(got, tc.want) {
			t.Errorf("%q: read %v, want %v", tc.matches, got, tc.want)
		}
		r.stop()
	}
}

// TestAnEntryIsOneLine: a message with a newline, as a client may make a server log one,
// does not become two lines; the second cannot pass for a line of its own.
func TestAnEntryIsOneLine(t *testing.T) {
	j := journaltest.New(t)
	e := failure(1)
	e.Message = "warning: unknown[203.0.113.1]: SASL LOGIN authentication failed: x\nDec  7 10:00:00 mta1 postfix/submission/smtpd[1]: warning: unknown[198.51.100.9]: SASL LOGIN authentication failed: y"
	j.Write("", e, failure(2))
	f := open(t, Options{Directory: j.Dir, Matches: unitMatch, Start: watcher.FromBeginning})
	got := run(t, f).wait(t, 2)
	if len(got) != 2 || !strings.Contains(got[0], "failed: x#012Dec  7 10:00:00 mta1") {
		t.Errorf("lines %q: want the first entry as one line, its newline written #012", got)
	}
}

// TestJournalFilesComingAndGoing: a folder with no journal file yet is read once one
// appears (journalctl refuses an empty folder, and is started again); an archived file
// vacuumed away while the follower reads loses nothing it had not read.
func TestJournalFilesComingAndGoing(t *testing.T) {
	j := journaltest.New(t)
	f := open(t, Options{Directory: j.Dir, Matches: unitMatch, Start: watcher.Resume, Retry: 10 * time.Millisecond})
	r := run(t, f)
	for deadline := time.Now().Add(10 * time.Second); f.Stats().Rotations == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("journalctl kept running on a folder with no journal file; want it stopped and started again")
		}
	}
	j.Write("", failures(0, 3)...)
	r.wait(t, 3)
	archived := j.Rotate("")
	j.Write("", failures(3, 6)...)
	r.wait(t, 6)
	j.Remove(archived)
	j.Write("", failures(6, 9)...)
	time.Sleep(200 * time.Millisecond) // anything read twice would come now
	if got := addresses(t, r.wait(t, 9)); !slices.Equal(got, seq(0, 9)) {
		t.Errorf("read %v, want 0-8 once each", got)
	}
}

// TestJournalctlStoppingLosesNothing: journalctl killed under the follower is started
// again at the last entry handed on; nothing is lost or read twice.
func TestJournalctlStoppingLosesNothing(t *testing.T) {
	j := journaltest.New(t)
	j.Write("", failures(0, 3)...)
	f := open(t, Options{Directory: j.Dir, Matches: unitMatch, Start: watcher.FromBeginning, Retry: 10 * time.Millisecond})
	r := run(t, f)
	r.wait(t, 3)
	for round := 1; round <= 2; round++ {
		out, err := exec.Command("pkill", "-f", "journalctl.*--directory="+j.Dir).CombinedOutput()
		if err != nil {
			t.Fatalf("pkill: %v %s", err, out)
		}
		for f.Stats().Rotations < int64(round) {
			time.Sleep(10 * time.Millisecond)
		}
		j.Write("", failures(3*round, 3*round+3)...)
		r.wait(t, 3*round+3)
	}
	time.Sleep(200 * time.Millisecond) // anything read twice would come now
	if got := addresses(t, r.wait(t, 9)); !slices.Equal(got, seq(0, 9)) {
		t.Errorf("read %v, want 0-8 once each", got)
	}
	if f.Vacuumed() != 0 {
		t.Errorf("%d vacuums reported; the journal held every cursor", f.Vacuumed())
	}
}
