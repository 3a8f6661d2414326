package daemon

import (
	"fmt"
	"slices"
	"testing"

	"github.com/logban/logban/internal/control"
	"github.com/logban/logban/internal/journaltest"
)

// journalConfig is baseConfig's jail reading Postfix's entries in the journal at dir
// (%s), not a file, and a file jail beside it.
const journalConfig = `
[server]
socket = "run/logban.sock"
database = "run/logban.db"

[actions.log]
type = "log"
path = "bans.log"

[jails.postfix]
filter = "zimbra-submission"
backend = "journal"
journal_directory = %q
journal_match = ["_SYSTEMD_UNIT=postfix@-.service", "SYSLOG_IDENTIFIER=postfix/submission/smtpd"]
maxretry = 3
findtime = "1h"
bantime = "10h"
actions = ["log"]
`

func journalFailures(j *journaltest.Journal, addr string, n int, unit string) {
	var entries []journaltest.Entry
	for range n {
		entries = append(entries, journaltest.Entry{Host: "mta1", Ident: "postfix/submission/smtpd", PID: 4242, Unit: unit,
			Message: "warning: unknown[" + addr + "]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"})
	}
	j.Write("", entries...)
}

// TestAJailReadsTheJournal: the built-in filter bans from journal entries written while
// the server runs, not before its first start; entries of another unit, as a local user's
// logger -t makes them, ban nothing; a restart resumes at the saved cursor, reading what
// was written while it was down, and counts nothing twice.
func TestAJailReadsTheJournal(t *testing.T) {
	j := journaltest.New(t)
	journalFailures(j, "203.0.113.7", 3, "postfix@-.service") // before the first start
	h := start(t, fmt.Sprintf(journalConfig, j.Dir), Options{})
	journalFailures(j, "203.0.113.1", 3, "postfix@-.service")
	h.waitFor("postfix", func(s control.JailStatus) bool { return s.CurrentlyBanned == 1 })

	journalFailures(j, "203.0.113.2", 2, "postfix@-.service")
	journalFailures(j, "203.0.113.9", 5, "user@1000.service") // logger -t postfix/submission/smtpd
	h.waitFor("postfix", func(s control.JailStatus) bool { return s.TotalFailed == 5 })
	h.shutdown()

	journalFailures(j, "203.0.113.3", 3, "postfix@-.service") // while the server is down
	h.run(Options{})
	s := h.waitFor("postfix", func(s control.JailStatus) bool { return s.CurrentlyBanned == 2 })
	if got := bannedAddrs(s); !slices.Equal(got, []string{"203.0.113.1", "203.0.113.3"}) {
		t.Errorf("banned %v, want 203.0.113.1 (restored) and 203.0.113.3 (written while down); never 203.0.113.9", got)
	}
	journalFailures(j, "203.0.113.4", 1, "postfix@-.service") // marks the end of what was read
	s = h.waitFor("postfix", func(s control.JailStatus) bool { return s.TotalFailed >= 4 })
	if s.TotalFailed != 4 {
		t.Errorf("%d failures counted after the restart, want 4: entries read before the stop were read again", s.TotalFailed)
	}
	if len(s.Files) != 1 || s.Files[0].Missing || s.Files[0].Lines != 4 {
		t.Errorf("status of the journal reader: %+v; want one, not missing, 4 lines read since the start", s.Files)
	}
}
