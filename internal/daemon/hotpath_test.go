package daemon

import (
	"log/slog"
	"testing"
	"time"

	"github.com/logban/logban/filters"
	"github.com/logban/logban/jails"
	"github.com/logban/logban/watcher"
)

// The per-line path, from a batch of lines to the jails, allocates nothing for lines no
// filter wants.
func TestLinesNoFilterWantsAllocateNothing(t *testing.T) {
	var js []*jails.Jail
	for _, name := range []string{"zimbra-submission", "zimbra-smtp-auth", "zimbra-mailbox-auth"} {
		d, _, err := filters.Builtin(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := filters.New(name, d.FailRegex, d.IgnoreRegex)
		if err != nil {
			t.Fatal(err)
		}
		js = append(js, jails.New(name, f, jails.Settings{MaxRetry: 3, FindTime: time.Hour}))
	}
	r := &reader{}
	r.jails.Store(&js)
	d := &Daemon{opts: Options{Clock: jails.SystemClock{}}, manager: jails.NewManager(jails.SystemClock{}, slog.New(slog.DiscardHandler))}
	batch := watcher.Batch{Lines: []watcher.Line{
		{Text: []byte("Mar  5 16:00:00 mta1 postfix/qmgr[123]: 0A1B2C3D4E: from=<a@example.com>, size=1234, nrcpt=1 (queue active)")},
		{Text: []byte("Mar  5 16:00:00 mta1 postfix/submission/smtpd[123]: connect from unknown[203.0.113.1]")},
		{Text: []byte("Mar  5 16:00:00 mta1 postfix/smtpd[123]: disconnect from unknown[203.0.113.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5")},
		{Text: []byte("2026-03-05 16:00:00,001 INFO  [ImapServer-1] [name=a@example.com;mid=5;ip=203.0.113.1;] imap - IDLE stopped")},
	}}
	d.lines(r, batch) // the first call may grow reused buffers
	if n := testing.AllocsPerRun(100, func() { d.lines(r, batch) }); n != 0 {
		t.Errorf("%v allocations per batch, want 0", n)
	}
}

func TestWidestStartWins(t *testing.T) {
	tests := []struct{ a, b, want string }{
		{"", "end", "end"},
		{"end", "resume", "resume"},
		{"resume", "beginning", "beginning"},
		{"beginning", "resume", "beginning"},
		{"resume", "end", "resume"},
	}
	for _, tt := range tests {
		if got := widestStart(tt.a, tt.b); got != tt.want {
			t.Errorf("widestStart(%q, %q) = %q, want %q", tt.a, tt.b, got, tt.want)
		}
	}
}
