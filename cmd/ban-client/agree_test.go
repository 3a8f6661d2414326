package main

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/logban/logban/internal/control"
)

// test-filter and ban-server judge the same file alike: the same failures, the same
// addresses, with lines longer than max_line_bytes, CRLF line ends, proxied and direct
// logins and trusted proxies among them. ban-server runs for real, with maxretry 1 so
// that every address that failed is banned.
func TestTestFilterAgreesWithTheServer(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "logban.toml")
	os.WriteFile(cfg, []byte(`
[server]
socket          = "logban.sock"
database        = "logban.db"
max_line_bytes  = 1024
trusted_proxies = ["198.51.100.250"]
[actions.log]
type = "log"
path = "bans.log"
[jails.auth]
filter   = "zimbra-mailbox-auth"
logpath  = ["mailbox.log"]
maxretry = 1
findtime = "1d"
bantime  = "1d"
start    = "beginning"
actions  = ["log"]
[jails.dos]
filter   = "zimbra-dosfilter"
logpath  = ["mailbox.log"]
maxretry = 1
findtime = "1d"
bantime  = "1d"
start    = "beginning"
actions  = ["log"]
`), 0o644)

	// Lines of every kind, stamped now so that none is older than findtime.
	r := rand.New(rand.NewPCG(5, 6))
	stamp := time.Now().Format("2006-01-02 15:04:05,000")
	addr := func() string { return fmt.Sprintf("203.0.113.%d", r.IntN(200)) }
	long := func(n int) string { return strings.Repeat("x", n) }
	kinds := []func() string{
		func() string { // proxied, behind the trusted load balancer
			return fmt.Sprintf("%s WARN  [qtp1-2:https://mail.example.com/service/soap/AuthRequest] [name=u@example.com;oip=6.6.6.6, %s, 198.51.100.250;ua=zclient;] security - cmd=Auth; account=u@example.com; protocol=soap; error=authentication failed for [u@example.com], invalid password;", stamp, addr())
		},
		func() string { // a name longer than the limit: the failure is read in its start
			return fmt.Sprintf("%s INFO  [qtp1-2:https://mail.example.com/service/soap/AuthRequest] [oip=%s;] SoapEngine - handler exception: authentication failed for [%s], account not found", stamp, addr(), long(1500))
		},
		func() string { // a user agent longer than the limit: the context is cut, nothing to read
			return fmt.Sprintf("%s WARN  [qtp1-2:https://mail.example.com/service/soap/AuthRequest] [oip=%s;ua=%s;] security - cmd=Auth; account=u@example.com; protocol=soap; error=authentication failed for [u@example.com], invalid password;", stamp, addr(), long(1100))
		},
		func() string {
			return fmt.Sprintf("%s INFO  [ImapSSLServer-3] [ip=%s;] imap - authentication failed for [u@example.com] (invalid password)\r", stamp, addr())
		},
		func() string {
			return fmt.Sprintf("%s INFO  [ImapSSLServer-3] [ip=198.51.100.250;] imap - authentication failed for [u] (invalid password)", stamp)
		},
		func() string {
			return fmt.Sprintf("%s WARN  [qtp1-5] [] DoSFilter - DOS ALERT: Request rejected ip=%s, session=null, user=null", stamp, addr())
		},
		func() string { // an alert past the limit: not read by either
			return fmt.Sprintf("%s WARN  [qtp1-5] [ua=%s;] DoSFilter - DOS ALERT: Request rejected ip=%s, session=null, user=null", stamp, long(1100), addr())
		},
		func() string {
			return fmt.Sprintf("%s INFO  [ImapServer-1] [name=u@example.com;ip=%s;] imap - IDLE stopped", stamp, addr())
		},
	}
	var b strings.Builder
	for range 3000 {
		b.WriteString(kinds[r.IntN(len(kinds))]() + "\n")
	}
	os.WriteFile(filepath.Join(dir, "mailbox.log"), []byte(b.String()), 0o644)
	lines := 3000

	// test-filter, with each jail's filter and the configuration's line limit.
	found := map[string]filterReport{}
	for _, jail := range []string{"auth", "dos"} {
		summary := testFilterSummary(t, "-config", cfg, jail, filepath.Join(dir, "mailbox.log"))
		if summary.Lines != lines || summary.Matched < 100 {
			t.Fatalf("test-filter %s: %+v", jail, summary)
		}
		found[jail] = summary
	}

	// ban-server, on the same file.
	sock := startServerIn(t, dir, cfg)
	c := control.NewClient(sock)
	for _, jail := range []string{"auth", "dos"} {
		want := found[jail]
		deadline := time.Now().Add(20 * time.Second)
		var s control.JailStatus
		for {
			var err error
			if s, err = c.JailStatus(context.Background(), jail); err != nil {
				t.Fatal(err)
			}
			if len(s.Files) == 1 && s.Files[0].Lines == int64(lines) && s.TotalFailed == int64(want.Matched) && len(s.Bans) == len(want.Addresses) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the server counted %d failures and banned %d addresses from %d lines; test-filter %d and %d",
					jail, s.TotalFailed, len(s.Bans), s.Files[0].Lines, want.Matched, len(want.Addresses))
			}
			time.Sleep(10 * time.Millisecond)
		}
		var banned []string
		for _, ban := range s.Bans {
			banned = append(banned, ban.Addr.String())
		}
		slices.Sort(banned)
		if got := slices.Sorted(maps.Keys(want.Addresses)); !slices.Equal(banned, got) {
			t.Errorf("%s: the server banned %v, test-filter found %v", jail, banned, got)
		}
		if s.Files[0].LongLines == 0 {
			t.Errorf("%s: no line was cut: the test does not test the limit", jail)
		}
	}
}
