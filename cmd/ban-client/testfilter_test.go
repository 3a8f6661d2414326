package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logban/logban/internal/journaltest"
)

const submissionSamples = "../../filters/builtin/testdata/zimbra-submission.log"

func TestTestFilterReport(t *testing.T) {
	code, stdout, stderr := client("test-filter", "zimbra-submission", submissionSamples)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"Filter:   zimbra-submission (built in)\n",
		"Failures: 16 matched\n|  1) [16] postfix/submission/smtpd: warning: CLIENT[ADDR]: SASL MECHANISM authentication failed\n",
		"|  [2] RFC 3339\n|  [14] syslog (Mmm dd HH:MM:SS)\n",
		"Lines: 63 lines, 16 matched, 3 ignored, 44 missed",
		"Addresses (16), most failures first:\n       1  82.221.106.233\n",
		"       1  2001:db8:10::5\n       1  fe80::21b:21ff:fe3a:1\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, stdout)
		}
	}
}

func TestTestFilterJSON(t *testing.T) {
	code, stdout, stderr := client("test-filter", "-json", "zimbra-submission", submissionSamples)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 17 {
		t.Fatalf("%d JSON lines, want 16 matches and a summary:\n%s", len(lines), stdout)
	}
	var first matchedLine
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first.Line != 3 || first.Host != "203.0.113.5" || !strings.Contains(first.Time, "-03-05T16:01:34") {
		t.Errorf("first match %+v, %v", first, err)
	}
	var last struct {
		Summary filterReport `json:"summary"`
	}
	if err := json.Unmarshal([]byte(lines[16]), &last); err != nil || last.Summary.Matched != 16 || last.Summary.Ignored != 3 || last.Summary.Addresses["2001:db8:10::5"] != 1 ||
		len(last.Summary.RuleHits) != 1 || last.Summary.RuleHits[0] != 16 {
		t.Errorf("summary %+v, %v", last.Summary, err)
	}
}

func TestTestFilterRegexConfigAndMissed(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	os.WriteFile(log, []byte("login failed from 192.0.2.7\nlogin ok from 192.0.2.8\nlogin failed from 192.0.2.7\n"), 0o644)

	code, stdout, _ := client("test-filter", "-print-missed", `login failed from <HOST>$`, log)
	if code != 0 || !strings.Contains(stdout, "Lines: 3 lines, 2 matched, 0 ignored, 1 missed") || !strings.Contains(stdout, "missed 2: login ok from 192.0.2.8\n") ||
		!strings.Contains(stdout, "       2  192.0.2.7\n") {
		t.Errorf("regex: exit %d\n%s", code, stdout)
	}

	cfg := filepath.Join(dir, "logban.toml")
	os.WriteFile(cfg, []byte("[filters.app]\nfailregex = ['login \\w+ from <HOST>$']\nignoreregex = ['ok']\n"), 0o644)
	code, stdout, _ = client("test-filter", "-config", cfg, "app", log)
	if code != 0 || !strings.Contains(stdout, "Filter:   app (from "+cfg+")") || !strings.Contains(stdout, "2 matched, 1 ignored, 0 missed") {
		t.Errorf("config: exit %d\n%s", code, stdout)
	}

	code, _, stderr := client("test-filter", "no host here", log)
	if code != exitUsage || !strings.Contains(stderr, "has no <HOST>") {
		t.Errorf("no <HOST>: exit %d, %s", code, stderr)
	}
	code, _, stderr = client("test-filter", "zimbra-submission")
	if code != exitUsage || !strings.Contains(stderr, "test-filter takes FILTER|REGEX and LOGFILE") {
		t.Errorf("one argument: exit %d, %s", code, stderr)
	}
}

func TestProgressOnlyOnATerminal(t *testing.T) {
	var b strings.Builder
	p := progressPrinter(&b, 200<<20)
	p(50 << 20)
	p(-1)
	if got := b.String(); got != "\r 25.0% of 200 MB read\r\033[K" {
		t.Errorf("progress %q", got)
	}
	if isTerminal(&b) {
		t.Error("a buffer is a terminal")
	}
	// Under go test, stderr goes to a pipe or file: no progress in test output.
	code, _, stderr := client("test-filter", "zimbra-submission", submissionSamples)
	if code != 0 || strings.Contains(stderr, "% of") {
		t.Errorf("progress written to a non-terminal: %q", stderr)
	}
}

// A file of several batches, with lines longer than the line limit, CRLF and no final
// newline, is judged on every CPU as one pass would: the same line numbers, in order,
// and the same counts. A long line is judged by its first max_line_bytes, as ban-server
// judges it, with the default limit and with -config's.
func TestTestFilterAcrossBatches(t *testing.T) {
	dir := t.TempDir()
	for _, limit := range []int{0, 1000} {
		var b strings.Builder
		var want []matchedLine
		lineNo := 0
		add := func(line string, host string) {
			lineNo++
			b.WriteString(line)
			if host != "" {
				want = append(want, matchedLine{Line: lineNo, Host: host})
			}
		}
		maxLine := 64 << 10
		if limit > 0 {
			maxLine = limit
		}
		for i := 0; lineNo < 5*scanBatchLines; i++ {
			switch {
			case i%1000 == 500: // longer than the limit, the failure in its start: counted
				add("login failed from 192.0.2.9 "+strings.Repeat("x", maxLine+i%7)+"\n", "192.0.2.9")
			case i%1000 == 900: // the failure past the limit: not
				add(strings.Repeat("y", maxLine)+" login failed from 192.0.2.10\n", "")
			case i%3 == 0:
				add(fmt.Sprintf("login failed from 192.0.2.%d\r\n", i%250), fmt.Sprintf("192.0.2.%d", i%250))
			default:
				add(fmt.Sprintf("login ok from 198.51.100.%d, session %d\n", i%250, i), "")
			}
		}
		add("login failed from 203.0.113.1", "203.0.113.1") // no final newline
		log := filepath.Join(dir, "app.log")
		os.WriteFile(log, []byte(b.String()), 0o644)

		args := []string{"test-filter", "-json", `^login failed from <HOST>\b`, log}
		if limit > 0 {
			cfg := filepath.Join(dir, "logban.toml")
			os.WriteFile(cfg, []byte(fmt.Sprintf("[server]\nmax_line_bytes = %d\n", limit)), 0o644)
			args = append([]string{"test-filter", "-config", cfg}, args[1:]...)
		}
		code, stdout, stderr := client(args...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		out := strings.Split(strings.TrimSpace(stdout), "\n")
		if len(out) != len(want)+1 {
			t.Fatalf("limit %d: %d matches, want %d", limit, len(out)-1, len(want))
		}
		for i, w := range want {
			var got matchedLine
			if err := json.Unmarshal([]byte(out[i]), &got); err != nil || got.Line != w.Line || got.Host != w.Host {
				t.Fatalf("limit %d: match %d: %s, want line %d host %s (%v)", limit, i, out[i], w.Line, w.Host, err)
			}
		}
		var last struct {
			Summary filterReport `json:"summary"`
		}
		if err := json.Unmarshal([]byte(out[len(out)-1]), &last); err != nil || last.Summary.Lines != lineNo || last.Summary.Matched != len(want) {
			t.Errorf("limit %d: summary %d lines, %d matched; want %d, %d (%v)", limit, last.Summary.Lines, last.Summary.Matched, lineNo, len(want), err)
		}
	}
}

// Where no line is printed, test-filter searches the file in parts (watcher.SearchFile)
// rather than reading it line by line: its counts and addresses must be those of the
// line-by-line reading -json does, on a file whose lines are longer than the limit, hold
// the failure past it, end in CRLF, are ignored, or have no final newline.
func TestTestFilterSearchesAsItReads(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for i := 0; i < 3*scanBatchLines; i++ {
		switch {
		case i%997 == 1:
			fmt.Fprintf(&b, "login failed from 192.0.2.9 %s\n", strings.Repeat("x", 1000+i%7))
		case i%997 == 2:
			fmt.Fprintf(&b, "%s login failed from 192.0.2.251\n", strings.Repeat("y", 1000))
		case i%5 == 0:
			fmt.Fprintf(&b, "login failed from 192.0.2.%d\r\n", i%250)
		case i%7 == 0:
			fmt.Fprintf(&b, "login failed from 198.51.100.%d ok\n", i%250)
		default:
			fmt.Fprintf(&b, "session %d from 198.51.100.%d\n", i, i%250)
		}
	}
	b.WriteString("login failed from 203.0.113.1")
	log, cfg := filepath.Join(dir, "app.log"), filepath.Join(dir, "logban.toml")
	os.WriteFile(log, []byte(b.String()), 0o644)
	os.WriteFile(cfg, []byte("[server]\nmax_line_bytes = 1000\n[filters.app]\nfailregex = ['login failed from <HOST>\\b']\nignoreregex = [' ok$']\n"), 0o644)

	code, stdout, stderr := client("test-filter", "-config", cfg, "-json", "app", log)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	out := strings.Split(strings.TrimSpace(stdout), "\n")
	var read struct {
		Summary filterReport `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out[len(out)-1]), &read); err != nil {
		t.Fatal(err)
	}
	want := read.Summary
	if want.Lines != 3*scanBatchLines+1 || want.Matched == 0 || want.Ignored == 0 || want.Addresses["192.0.2.9"] == 0 || want.Addresses["192.0.2.251"] != 0 {
		t.Fatalf("line by line: %d lines, %d matched, %d ignored, %v", want.Lines, want.Matched, want.Ignored, want.Addresses)
	}
	code, stdout, stderr = client("test-filter", "-config", cfg, "app", log)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if counts := fmt.Sprintf("Lines: %d lines, %d matched, %d ignored, %d missed", want.Lines, want.Matched, want.Ignored, want.Missed); !strings.Contains(stdout, counts) {
		t.Errorf("searched, the report lacks %q:\n%s", counts, stdout)
	}
	if shown := fmt.Sprintf("Addresses (%d)", len(want.Addresses)); !strings.Contains(stdout, shown) {
		t.Errorf("searched, the report lacks %q", shown)
	}
	for addr, n := range want.Addresses {
		if line := fmt.Sprintf("\n%8d  %s\n", n, addr); !strings.Contains(stdout, line) {
			t.Errorf("searched, the report lacks %q", line)
		}
	}
}

// An imported filter's 20 KB regex is printed cut, saying so; -v prints it whole.
func TestTestFilterCutsLongRegexes(t *testing.T) {
	dir := t.TempDir()
	long := "login failed from <HOST> " + strings.Repeat("(?:x|y)", 3000)
	cfg := filepath.Join(dir, "logban.toml")
	os.WriteFile(cfg, []byte("[filters.big]\nfailregex = ['"+long+"']\n"), 0o644)
	log := filepath.Join(dir, "app.log")
	os.WriteFile(log, []byte("login failed from 203.0.113.9 x\n"), 0o644)
	_, stdout, _ := client("test-filter", "-config", cfg, "big", log)
	if strings.Contains(stdout, long) || !strings.Contains(stdout, "bytes more; -v prints it whole)") {
		t.Errorf("without -v the regex is not cut:\n%.600s", stdout)
	}
	_, stdout, _ = client("test-filter", "-v", "-config", cfg, "big", log)
	if !strings.Contains(stdout, long) {
		t.Errorf("-v does not print the regex whole")
	}
}

// TestTestFilterReadsTheJournal: -journal reads the entries the matches select as the
// lines ban-server makes of them; a journal jail of -config brings its own matches.
func TestTestFilterReadsTheJournal(t *testing.T) {
	j := journaltest.New(t)
	var entries []journaltest.Entry
	for i := range 4 {
		entries = append(entries,
			journaltest.Entry{Host: "mta1", Ident: "postfix/submission/smtpd", PID: 10 + i, Unit: "postfix@-.service",
				Message: fmt.Sprintf("warning: unknown[203.0.113.%d]: SASL LOGIN authentication failed: UGFzc3dvcmQ6", i%2)},
			journaltest.Entry{Host: "mta1", Ident: "postfix/submission/smtpd", PID: 10 + i, Unit: "postfix@-.service",
				Message: "connect from unknown[198.51.100.7]"},
			// What any local user can write: logger -t postfix/submission/smtpd.
			journaltest.Entry{Host: "mta1", Ident: "postfix/submission/smtpd", PID: 99, Unit: "session-3.scope",
				Message: "warning: unknown[192.0.2.66]: SASL LOGIN authentication failed: x"})
	}
	j.Write("", entries...)
	want := []string{
		"Journal:  journal:" + j.Dir + " _SYSTEMD_UNIT=postfix@-.service\n",
		"|  [4] RFC 3339\n",
		"Lines: 8 lines, 4 matched, 0 ignored, 4 missed",
		"Addresses (2), most failures first:\n       2  203.0.113.0\n       2  203.0.113.1\n",
	}
	code, stdout, stderr := client("test-filter", "-journal", "-journal-directory", j.Dir, "zimbra-submission", "_SYSTEMD_UNIT=postfix@-.service")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, w := range want {
		if !strings.Contains(stdout, w) {
			t.Errorf("report lacks %q:\n%s", w, stdout)
		}
	}

	conf := filepath.Join(t.TempDir(), "logban.toml")
	os.WriteFile(conf, []byte(fmt.Sprintf(`[actions.log]
type = "log"
[jails.postfix]
filter = "zimbra-submission"
backend = "journal"
journal_directory = %q
journal_match = ["_SYSTEMD_UNIT=postfix@-.service"]
actions = ["log"]
`, j.Dir)), 0o644)
	code, stdout, stderr = client("test-filter", "-config", conf, "-journal", "postfix")
	if code != 0 || !strings.Contains(stdout, want[2]) {
		t.Errorf("the jail's own matches: exit %d, %s\n%s", code, stderr, stdout)
	}

	code, _, stderr = client("test-filter", "-journal", "-journal-directory", j.Dir, "zimbra-submission", "SYSLOG_IDENTIFIER=postfix/submission/smtpd")
	if code == 0 || !strings.Contains(stderr, "no field journald sets itself") {
		t.Errorf("a match any user's entries pass: exit %d, %s", code, stderr)
	}
}
