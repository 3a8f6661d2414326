package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const submissionSamples = "../../filters/builtin/testdata/zimbra-submission.log"

func TestTestFilterReport(t *testing.T) {
	code, stdout, stderr := client("test-filter", "zimbra-submission", submissionSamples)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"Filter:   zimbra-submission (built in)\n",
		"Failregex: 6 matched\n|  1) [6] ^",
		"|  [1] RFC 3339\n|  [5] syslog (Mmm dd HH:MM:SS)\n",
		"Lines: 26 lines, 6 matched, 1 ignored, 19 missed",
		"Addresses (6), most failures first:\n       1  203.0.113.5\n",
		"       1  2001:db8:10::5\n",
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
	if len(lines) != 7 {
		t.Fatalf("%d JSON lines, want 6 matches and a summary:\n%s", len(lines), stdout)
	}
	var first matchedLine
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first.Line != 3 || first.Host != "203.0.113.5" || !strings.Contains(first.Time, "-03-05T16:01:34") {
		t.Errorf("first match %+v, %v", first, err)
	}
	var last struct {
		Summary filterReport `json:"summary"`
	}
	if err := json.Unmarshal([]byte(lines[6]), &last); err != nil || last.Summary.Matched != 6 || last.Summary.Ignored != 1 || last.Summary.Addresses["2001:db8:10::5"] != 1 {
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
