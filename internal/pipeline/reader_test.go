package pipeline

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/logban/logban/filters"
	"github.com/logban/logban/jails"
	"github.com/logban/logban/watcher"
)

// A reader stopped while its tickets wait for room in the ban queue does not move its
// position past the lines they came from: the next start reads them again, and the bans
// are made then.
func TestAReaderStoppedBeforeItsTicketsAreQueuedKeepsItsPosition(t *testing.T) {
	m, ledger := gatedManager()
	defer m.Close(context.Background())
	bans := NewBanQueue(context.Background(), m)
	defer bans.Close()
	defer close(ledger.gate)
	big := make([]jails.Ticket, mergeMax)
	for i := range big {
		big[i] = ticket(i)[0]
	}
	for range queueLen + 1 { // the queue is full
		bans.Add(context.Background(), big)
	}

	path := filepath.Join(t.TempDir(), "zimbra.log")
	quiet := "Mar  5 16:00:00 mta1 postfix/qmgr[1]: 0A1B: removed\n"
	fail := "Mar  5 16:00:01 mta1 postfix/submission/smtpd[1]: warning: unknown[203.0.113.7]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n"
	if err := os.WriteFile(path, []byte(quiet), 0o644); err != nil {
		t.Fatal(err)
	}
	def, _, _ := filters.Builtin("zimbra-submission")
	f, err := filters.New("zimbra-submission", def, filters.Options{})
	if err != nil {
		t.Fatal(err)
	}
	js := []*jails.Jail{jails.New("sasl", f, jails.Settings{MaxRetry: 1, FindTime: 24 * 365 * time.Hour})}
	r, err := Open(path, js, watcher.Options{Start: watcher.FromBeginning})
	if err != nil {
		t.Fatal(err)
	}
	r.Start(context.Background(), bans, jails.SystemClock{}, slog.New(slog.DiscardHandler))
	wait := func(what string, done func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !done(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				r.Stop()
				t.Fatalf("waited 10s for %s", what)
			}
		}
	}
	wait("the first line", func() bool { return r.Stats().Lines == 1 })
	appendTo(t, path, fail+quiet)
	wait("the failure", func() bool { return js[0].Counts(time.Now()).TotalFailed == 1 })
	r.Stop()
	if got, want := r.Position().Offset, int64(len(quiet)); got != want {
		t.Errorf("position %d after a stop with the batch's ticket unqueued, want %d (the batch's start)", got, want)
	}
}

func appendTo(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}
