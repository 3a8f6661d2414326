package pipeline

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
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
	for _, name := range []string{"zimbra-submission", "zimbra-smtp-auth", "zimbra-mailbox-auth", "zimbra-dosfilter"} {
		d, _, err := filters.Builtin(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := filters.New(name, d, filters.Options{})
		if err != nil {
			t.Fatal(err)
		}
		js = append(js, jails.New(name, f, jails.Settings{MaxRetry: 3, FindTime: time.Hour}))
	}
	now := time.Now()
	batch := makeBatch(0,
		"Mar  5 16:00:00 mta1 postfix/qmgr[123]: 0A1B2C3D4E: from=<a@example.com>, size=1234, nrcpt=1 (queue active)\n",
		"Mar  5 16:00:00 mta1 postfix/submission/smtpd[123]: connect from unknown[203.0.113.1]\n",
		"Mar  5 16:00:00 mta1 postfix/smtpd[123]: disconnect from unknown[203.0.113.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5\n",
		"2026-03-05 16:00:00,001 INFO  [ImapServer-1] [name=a@example.com;mid=5;ip=203.0.113.1;] imap - IDLE stopped\n",
		"2026-03-05 16:00:00,001 INFO  [qtp1-2:https://mail.example.com/service/soap/SearchRequest] [name=a@example.com;oip=203.0.113.1;ua=zclient;] soap - SearchRequest elapsed=12\n",
	)
	feed(js, batch, now, nil) // the first call may grow reused buffers
	if n := testing.AllocsPerRun(100, func() { feed(js, batch, now, nil) }); n != 0 {
		t.Errorf("%v allocations per batch, want 0", n)
	}
}

// makeBatch makes a batch as the watcher does of raw lines (each with its newline) that
// begin at file offset at.
func makeBatch(at int64, raw ...string) watcher.Batch {
	var b watcher.Batch
	for _, r := range raw {
		b.Data = append(b.Data, r...)
		at += int64(len(r))
		text := strings.TrimSuffix(strings.TrimSuffix(r, "\n"), "\r")
		b.Lines = append(b.Lines, watcher.Line{Text: []byte(text), Offset: at})
	}
	return b
}

// feed, searching a batch's bytes for each filter's literal finds what judging every line
// finds: the same tickets, in the same order, whatever the lines hold.
func TestFeedAgreesWithEveryLine(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	kinds := []string{
		"Mar  5 16:00:00 mta1 postfix/submission/smtpd[1]: warning: unknown[203.0.113.%d]: SASL LOGIN authentication failed: x",
		"Mar  5 16:00:00 mta1 postfix/submission/smtpd[1]: 0A1B: client=unknown[198.51.100.%d], sasl_username=SASL LOGIN",
		"Mar  5 16:00:00 mta1 postfix/smtpd[1]: warning: unknown[203.0.113.%d]: SASL PLAIN authentication failed: x",
		"Mar  5 16:00:00 mta1 postfix/qmgr[1]: 0A1B: from=<a%d@example.com>, size=1, nrcpt=1 (queue active)",
		"SASL ", // the literal alone, at a line's end
		"",
	}
	newJails := func() []*jails.Jail {
		var js []*jails.Jail
		for _, name := range []string{"zimbra-submission", "zimbra-smtp-auth"} {
			d, _, _ := filters.Builtin(name)
			f, _ := filters.New(name, d, filters.Options{})
			js = append(js, jails.New(name, f, jails.Settings{MaxRetry: 2, FindTime: time.Hour}))
		}
		return js
	}
	now := time.Date(2026, 3, 5, 16, 0, 1, 0, time.Local)
	for trial := range 200 {
		var raw []string
		for range r.IntN(40) + 1 {
			line := kinds[r.IntN(len(kinds))]
			if strings.Contains(line, "%d") {
				line = fmt.Sprintf(line, r.IntN(4))
			}
			end := "\n"
			if r.IntN(4) == 0 {
				end = "\r\n"
			}
			raw = append(raw, line+end)
		}
		batch := makeBatch(int64(r.IntN(1000)), raw...)
		whole, each := newJails(), newJails()
		got := feed(whole, batch, now, nil)
		var want []jails.Ticket
		for _, j := range each { // every line judged, jail by jail

			for _, line := range batch.Lines {
				want = append(want, j.Line(line.Text, now)...)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("trial %d: searching the batch gave %v, each line %v\n%q", trial, got, want, raw)
		}
	}
}
