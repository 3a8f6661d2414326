package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/logban/logban/internal/control"
	"github.com/logban/logban/internal/daemon"
	logbanversion "github.com/logban/logban/internal/version"
)

const testConfig = `
[server]
socket = "logban.sock"
database = "logban.db"
[actions.log]
type = "log"
[jails.sasl]
filter = "zimbra-submission"
logpath = ["zimbra.log"]
actions = ["log"]
`

// startServer runs a real daemon and returns its socket path.
func startServer(t *testing.T) string {
	t.Helper()
	return startServerWith(t, testConfig)
}

func startServerWith(t *testing.T, config string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "logban.toml")
	os.WriteFile(cfg, []byte(config), 0o644)
	return startServerIn(t, dir, cfg)
}

// startServerIn runs a real daemon on the configuration cfg, whose socket is
// logban.sock in dir, and returns the socket's path.
func startServerIn(t *testing.T, dir, cfg string) string {
	t.Helper()
	d, err := daemon.New(daemon.Options{ConfigPath: cfg, Version: "1.2.3", HostPrefixes: func() ([]netip.Prefix, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatal(err)
	}
	return filepath.Join(dir, "logban.sock")
}

func client(args ...string) (code int, stdout, stderr string) {
	var out, errw bytes.Buffer
	code, err := run(context.Background(), args, &out, &errw)
	if err != nil {
		errw.WriteString("ban-client: " + err.Error() + "\n")
	}
	return code, out.String(), errw.String()
}

func TestCommands(t *testing.T) {
	sock := startServer(t)
	// The sasl jail's status, with two bans, up to the list of bans.
	saslStatus := "Status for the jail: sasl\n" +
		"|- Filter\n" +
		"|  |- Currently failed:\t0\n" +
		"|  |- Total failed:\t0\n" +
		"|  |- Bytes behind:\t0\n" +
		"|  `- File list:\tDIR/zimbra.log (not there yet: followed when it appears)\n" +
		"`- Actions\n" +
		"   |- Currently banned:\t2\n" +
		"   |- Total banned:\t2\n"
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string // a substring
	}{
		{[]string{"ping"}, 0, "pong\n", ""},
		{[]string{"status"}, 0, "Status\n|- Number of jail:\t1\n`- Jail list:\tsasl\n", ""},
		{[]string{"banip", "sasl", "203.0.113.5", "2001:db8::1"}, 0, "203.0.113.5 banned (sasl)\n2001:db8::1 banned (sasl)\n", ""},
		{[]string{"banip", "sasl", "127.0.0.1"}, 1, "127.0.0.1 not banned: a loopback address (the host itself): never banned\n", ""},
		{[]string{"status", "sasl"}, 0, saslStatus + "   `- Banned IP list:\t203.0.113.5 2001:db8::1\n", ""},
		{[]string{"status", "sasl", "--brief"}, 0, saslStatus + "   `- Banned IP list:\t(left out: --brief)\n", ""},
		{[]string{"get", "sasl", "maxretry"}, 0, "5\n", ""},
		{[]string{"unbanip", "--jail", "sasl", "203.0.113.5"}, 0, "203.0.113.5 unbanned (sasl)\n", ""},
		{[]string{"unbanip", "203.0.113.5"}, 1, "203.0.113.5 not unbanned: not banned\n", "some addresses were left as they were"},
		{[]string{"status", "nope"}, 1, "", `jail "nope": not found`},
		{[]string{"unbanip", "--jail", "nope", "203.0.113.5"}, 1, "", `jail "nope": not found`},
		{[]string{"banip", "sasl", "mail.example.com"}, 2, "", `"mail.example.com" is not an IP address`},
		{[]string{"banip", "sasl"}, 2, "", "banip needs a jail and at least one address"},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"stauts"}, 2, "", `unknown command "stauts"; did you mean "status"?`},
		{[]string{"unbanp", "203.0.113.5"}, 2, "", `did you mean "unbanip"?`},
		{[]string{"set", "sasl", "bantime", "3600"}, 2, "", "edit bantime under [jails.sasl] in the configuration, then run 'ban-client reload'"},
		{[]string{}, 2, "", "no command given"},
		{[]string{"reload"}, 0, "reloaded\n", ""},
		{[]string{"banip", "sasl", "198.51.100.7"}, 0, "198.51.100.7 banned (sasl)\n", ""},
		{[]string{"get", "sasl", "banned"}, 0, "198.51.100.7\n2001:db8::1\n", ""},
		{[]string{"get", "sasl"}, 2, "", "get takes JAIL banned"},
		{[]string{"version"}, 0, "ban-client " + logbanversion.Of("") + "\nban-server 1.2.3\n", ""},
		{[]string{"banip", "sasl", "198.51.100.7"}, 0, "198.51.100.7 not banned: already banned\n", ""},
		{[]string{"-json", "banip", "sasl", "198.51.100.7"}, 0, "[\n  {\n    \"addr\": \"198.51.100.7\",\n    \"done\": false,\n    \"jails\": [\n      \"sasl\"\n    ],\n    \"note\": \"already banned\"\n  }\n]\n", ""},
		{[]string{"-json", "get", "sasl", "banned"}, 0, "[\n  \"198.51.100.7\",\n  \"2001:db8::1\"\n]\n", ""},
		{[]string{"-json", "status", "nope"}, 1, "{\n  \"error\": \"jail \\\"nope\\\": not found\",\n  \"exit\": 1\n}\n", ""},
		{[]string{"-json", "status"}, 0, "{\n  \"version\": \"1.2.3\",\n  \"jails\": [\n    \"sasl\"\n  ]\n}\n", ""},
		{[]string{"list", "--jail", "nope"}, 1, "", `jail "nope": not found`},
		{[]string{"unban", "--all"}, 0, "2 bans lifted\n", ""},
		{[]string{"unban"}, 2, "", "unban takes --all"},
		{[]string{"list"}, 0, "ADDRESS  JAIL  BANNED AT  EXPIRES IN  FAILURES\n", ""},
		{[]string{"-json", "list"}, 0, "[]\n", ""},
		{[]string{"-json", "reload"}, 0, "{\n  \"reloaded\": true\n}\n", ""},
	}
	for _, tt := range tests {
		// A jail's status is asked again while it differs, for up to ten
		// seconds: the actions' calls run after banip has answered, and
		// the status lists those still queued.
		settle := len(tt.args) == 2 && tt.args[0] == "status"
		var code int
		var stdout, stderr string
		for deadline := time.Now().Add(10 * time.Second); ; {
			code, stdout, stderr = client(append([]string{"-socket", sock}, tt.args...)...)
			stdout = strings.ReplaceAll(stdout, filepath.Dir(sock), "DIR")
			if !settle || stdout == tt.stdout || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if code != tt.code || stdout != tt.stdout || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("ban-client %s:\n exit %d, want %d\n stdout %q\n want   %q\n stderr %q, want it to contain %q",
				strings.Join(tt.args, " "), code, tt.code, stdout, tt.stdout, stderr, tt.stderr)
		}
	}
}

// version answers with the client's version even when no server does.
func TestVersionWithoutAServer(t *testing.T) {
	code, stdout, _ := client("-socket", filepath.Join(t.TempDir(), "none.sock"), "version")
	if code != 0 || !strings.HasPrefix(stdout, "ban-client "+logbanversion.Of("")+"\nban-server: ban-server is not running") {
		t.Errorf("exit %d, stdout %q", code, stdout)
	}
}

func TestUnreachable(t *testing.T) {
	code, _, stderr := client("-socket", filepath.Join(t.TempDir(), "none.sock"), "status")
	if code != exitUnreachable || !strings.Contains(stderr, "ban-server is not running") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

func TestSocketFromConfig(t *testing.T) {
	sock := startServer(t)
	cfg := filepath.Join(filepath.Dir(sock), "logban.toml")
	if code, stdout, stderr := client("-config", cfg, "ping"); code != 0 || stdout != "pong\n" {
		t.Errorf("exit %d, %q %q", code, stdout, stderr)
	}
	t.Setenv("LOGBAN_SOCKET", sock)
	if code, _, stderr := client("ping"); code != 0 {
		t.Errorf("LOGBAN_SOCKET: exit %d, %q", code, stderr)
	}

	// The configuration, being edited, has an error: the client says so and reaches the
	// server at the socket the file still names.
	text, _ := os.ReadFile(cfg)
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(text), "[jails.sasl]", "[jails.sasl]\nmaxretry = \"three\"", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := client("-config", cfg, "ping")
	if code != 0 || stdout != "pong\n" || !strings.Contains(stderr, "jails.sasl.maxretry") || !strings.Contains(stderr, "reaching the server at "+sock+" anyway") {
		t.Errorf("a configuration with an error: exit %d, %q %q", code, stdout, stderr)
	}
}

// Help is asked for in every usual way, prints on stdout and exits 0; a command has its
// own, with examples.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		code, stdout, _ := client(args...)
		if code != 0 || !strings.Contains(stdout, "unbanip [--jail J] [--local] ADDR...") || !strings.Contains(stdout, "-socket path") {
			t.Errorf("%v: exit %d, help:\n%s", args, code, stdout)
		}
	}
	// The commands with flags of their own print theirs, on stdout too.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"test-filter", "-h"}, "Usage: ban-client test-filter"},
		{[]string{"-json", "test-filter", "--help"}, "-print-missed"},
		{[]string{"import-fail2ban", "-h"}, "Usage: ban-client import-fail2ban"},
		{[]string{"help", "import-fail2ban"}, "ban-client import-fail2ban [-o FILE] [--all] [DIR]"},
		{[]string{"help", "test-filter"}, "ban-client test-filter [-config FILE]"},
		{[]string{"completion", "--help"}, "ban-client completion bash|zsh|fish"},
	} {
		if code, stdout, stderr := client(c.args...); code != 0 || !strings.Contains(stdout, c.want) || stderr != "" {
			t.Errorf("%v: exit %d, stderr %q, help:\n%s", c.args, code, stderr, stdout)
		}
	}
	for _, args := range [][]string{{"help", "unbanip"}, {"unbanip", "-h"}, {"unbanip", "--help", "203.0.113.5"}} {
		code, stdout, _ := client(args...)
		if code != 0 || !strings.HasPrefix(stdout, "ban-client unbanip [--jail JAIL] [--local] ADDR...") || !strings.Contains(stdout, "ban-client unbanip 203.0.113.5") {
			t.Errorf("%v: exit %d, help:\n%s", args, code, stdout)
		}
	}
}

// A usage error is the error and one hint line, not the whole help.
func TestUsageErrorIsOneHint(t *testing.T) {
	code, stdout, stderr := client("-socket", "/nonexistent.sock", "banip", "sasl")
	if code != exitUsage || stdout != "" || strings.Count(stderr, "\n") > 2 ||
		!strings.Contains(stderr, "banip needs a jail and at least one address\nrun 'ban-client help banip' for its usage") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// Flags may come after the command and its arguments, as users type them.
func TestFlagsAnywhere(t *testing.T) {
	sock := startServer(t)
	if code, stdout, stderr := client("status", "sasl", "-json", "-socket", sock); code != 0 || !strings.HasPrefix(stdout, "{") {
		t.Errorf("status JAIL -json: exit %d, %q, %q", code, stdout, stderr)
	}
	if code, stdout, stderr := client("status", "sasl", "--json", "--socket="+sock); code != 0 || !strings.HasPrefix(stdout, "{") {
		t.Errorf("status JAIL --json --socket=S: exit %d, %q, %q", code, stdout, stderr)
	}
	log := filepath.Join(t.TempDir(), "zimbra.log")
	os.WriteFile(log, []byte("Nov 29 12:00:00 mta1 postfix/submission/smtpd[1]: warning: unknown[203.0.113.9]: SASL LOGIN authentication failed: x\n"), 0o644)
	if code, stdout, stderr := client("test-filter", "zimbra-submission", log, "--json"); code != 0 || !strings.Contains(stdout, `"host":"203.0.113.9"`) {
		t.Errorf("test-filter NAME FILE --json: exit %d, %q, %q", code, stdout, stderr)
	}
	if code, stdout, stderr := client("-socket", sock, "banip", "sasl", "203.0.113.5"); code != 0 {
		t.Fatalf("banip: exit %d, %q, %q", code, stdout, stderr)
	}
	if code, stdout, stderr := client("unbanip", "203.0.113.5", "--jail", "sasl", "-socket", sock); code != 0 || stdout != "203.0.113.5 unbanned (sasl)\n" {
		t.Errorf("unbanip IP --jail J: exit %d, %q, %q", code, stdout, stderr)
	}
}

func TestListAndJSON(t *testing.T) {
	sock := startServer(t)
	client("-socket", sock, "banip", "sasl", "203.0.113.5")
	code, stdout, stderr := client("-socket", sock, "list")
	if code != 0 || !regexp.MustCompile(`(?m)^203\.0\.113\.5 +sasl +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +(9m5\d|10m0)s +0$`).MatchString(stdout) {
		t.Errorf("list: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = client("-socket", sock, "-json", "list", "--jail", "sasl")
	var bans []struct {
		Jail, Addr string
		Expires    time.Time
	}
	if err := json.Unmarshal([]byte(stdout), &bans); code != 0 || err != nil || len(bans) != 1 || bans[0].Addr != "203.0.113.5" || bans[0].Jail != "sasl" || bans[0].Expires.IsZero() {
		t.Errorf("-json list: exit %d, %v\n%s", code, err, stdout)
	}
	code, stdout, _ = client("-socket", sock, "-json", "status", "sasl")
	var st struct {
		CurrentlyBanned int `json:"currently_banned"`
		Files           []struct{ Path string }
	}
	if err := json.Unmarshal([]byte(stdout), &st); code != 0 || err != nil || st.CurrentlyBanned != 1 || len(st.Files) != 1 {
		t.Errorf("-json status sasl: exit %d, %v\n%s", code, err, stdout)
	}
}

func TestStatusShowsActionErrors(t *testing.T) {
	sock := startServerWith(t, strings.Replace(testConfig, `actions = ["log"]`, `actions = ["log", "broken"]`, 1)+`
[actions.broken]
type = "exec"
ban = ["/nonexistent/firewall-helper", "{ip}"]
unban = ["/nonexistent/firewall-helper", "-d", "{ip}"]
`)
	client("-socket", sock, "banip", "sasl", "203.0.113.5")
	// The actions make their calls on their own time: the status shows the failure once
	// the broken one has tried.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		code, stdout, _ := client("-socket", sock, "status", "sasl")
		if code == 0 && strings.Contains(stdout, "   |- Action errors:\t1\n   |- Retries pending:\t1\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status: exit %d\n%s", code, stdout)
		}
	}
}

// status JAIL names an action that lags, and says when calls found its queue full.
func TestJailStatusShowsQueuedCalls(t *testing.T) {
	var b strings.Builder
	printJailStatus(&b, control.JailStatus{Name: "sasl", ActionQueues: []control.ActionQueue{
		{Action: "route"},
		{Action: "webhook", Queued: 70000, Overflowed: 4464},
	}}, false)
	out := b.String()
	if strings.Contains(out, "route") || !strings.Contains(out, "Calls queued:\twebhook 70000 (4464 found its queue full") {
		t.Errorf("status:\n%s", out)
	}
}

// A journal jail's status names its journal and matches, not a file list, and never
// says they are missing.
func TestJailStatusOfAJournalJail(t *testing.T) {
	var b strings.Builder
	printJailStatus(&b, control.JailStatus{Name: "postfix", Files: []control.FileStatus{
		{Path: "journal _SYSTEMD_UNIT=postfix@-.service", Lines: 12},
	}}, false)
	if out := b.String(); !strings.Contains(out, "|  `- Journal:\tjournal _SYSTEMD_UNIT=postfix@-.service\n") || strings.Contains(out, "File list") {
		t.Errorf("status:\n%s", out)
	}
}

// fail2ban-client's verbs that map cleanly work; the rest say what to run instead.
func TestFail2banVerbs(t *testing.T) {
	sock := startServer(t)
	for _, tt := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"set", "sasl", "banip", "198.51.100.9"}, 0, "198.51.100.9 banned (sasl)\n", ""},
		{[]string{"get", "sasl", "maxretry"}, 0, "5\n", ""},
		{[]string{"get", "sasl", "findtime"}, 0, "10m0s\n", ""},
		{[]string{"get", "sasl", "bantime"}, 0, "10m0s\n", ""},
		{[]string{"-json", "get", "sasl", "maxretry"}, 0, "{\n  \"maxretry\": 5\n}\n", ""},
		{[]string{"set", "sasl", "unbanip", "198.51.100.9"}, 0, "198.51.100.9 unbanned (sasl)\n", ""},
		{[]string{"reload", "sasl"}, 0, "reloaded\n", ""},
		{[]string{"stop", "sasl"}, 2, "", "set enabled = false (or true) in its [jails.NAME] and run ban-client reload"},
		{[]string{"set", "sasl", "bantime", "600"}, 2, "", "edit bantime under [jails.sasl] in the configuration"},
		{[]string{"set", "sasl", "frobnicate", "1"}, 2, "", "set takes JAIL banip IP... or JAIL unbanip IP..."},
	} {
		code, stdout, stderr := client(append([]string{"-socket", sock}, tt.args...)...)
		if code != tt.code || stdout != tt.stdout || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("ban-client %s:\n exit %d, want %d\n stdout %q\n want   %q\n stderr %q, want it to contain %q",
				strings.Join(tt.args, " "), code, tt.code, stdout, tt.stdout, stderr, tt.stderr)
		}
	}
}

func TestWhyAndHistory(t *testing.T) {
	sock := startServer(t)
	if code, stdout, stderr := client("-socket", sock, "why", "203.0.113.77"); code != 0 || stdout != "203.0.113.77 is not banned\n" {
		t.Errorf("why of an address not banned: exit %d, %q, %q", code, stdout, stderr)
	}
	client("-socket", sock, "banip", "sasl", "203.0.113.77")
	code, stdout, stderr := client("-socket", sock, "why", "203.0.113.77")
	if code != 0 || !strings.Contains(stdout, "203.0.113.77 is banned in sasl since ") || !strings.Contains(stdout, ": by hand (ban 1 of this address in this jail)") ||
		!strings.Contains(stdout, "history:\nADDRESS       JAIL  BANS  LAST BANNED\n203.0.113.77  sasl  1") {
		t.Errorf("why: exit %d, %q, %q", code, stdout, stderr)
	}
	if code, stdout, _ := client("-socket", sock, "-json", "history"); code != 0 || !strings.Contains(stdout, `"addr": "203.0.113.77"`) {
		t.Errorf("history: exit %d, %q", code, stdout)
	}
}

// Each of logban's own commands has help with an example.
func TestEveryCommandHasAnExample(t *testing.T) {
	for cmd, help := range commandHelp {
		if cmd == "set" || cmd == "banned" { // fail2ban's words: they point to logban's own
			continue
		}
		if !strings.Contains(help, "\n  ban-client ") {
			t.Errorf("help of %s has no example:\n%s", cmd, help)
		}
	}
}

// status policy shows the policy service; without one, status policy is a jail's.
func TestPolicyStatusCommand(t *testing.T) {
	dir := t.TempDir()
	sock := startServerWith(t, testConfig+`
[policy]
listen = "unix:`+filepath.Join(dir, "policy.sock")+`"
[policy.quotas.outbound]
messages = 200
`)
	code, stdout, stderr := client("-socket", sock, "status", "policy")
	want := "Status of the policy service\n" +
		"|- Listening on:\tunix:" + filepath.Join(dir, "policy.sock") + "\n" +
		"|- State:\taccepting, 0 of at most 1000 connections\n" +
		"|- Requests:\t0 (0 malformed, their connections closed)\n" +
		"|- Answers:\tdunno 0, banned 0, quota 0, default 0\n" +
		"|- Tables:\t0 quota holders, 0 accounts with logins\n" +
		"|- Quota outbound:\tper sasl_username, 200 messages, 0 recipients within 1h0m0s (0: no limit)\n" +
		"|- Near their limits (80%+):\t0\n" +
		"`- Accounts flagged:\t0\n"
	if code != 0 || stdout != want {
		t.Errorf("exit %d\n%s\nwant\n%s\nstderr %s", code, stdout, want, stderr)
	}
	code, _, stderr = client("-socket", startServer(t), "status", "policy")
	if code != 1 || !strings.Contains(stderr, "no policy service: this ban-server's configuration has no [policy] table") {
		t.Errorf("without a policy service: exit %d, %s", code, stderr)
	}
}

// TestFarmStatusSaysWhatToActOn shows a host cut off as ban-client farm prints it: how
// many nodes it does not see, each route, each stream's quorum, and its last write.
func TestFarmStatusSaysWhatToActOn(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	s := control.FarmStatus{Farm: "mailfarm", Node: "mta1", Enforce: true, State: "connected", Server: "tls://10.0.0.1:4222", Synced: true,
		Nodes:   []control.FarmNode{{Name: "mta2", Seen: now.Add(-2 * time.Minute)}},
		Missing: []string{"mbox1", "mta2"},
		Routes: []control.FarmRoute{
			{URL: "nats://10.0.0.2:6222", Server: "mta2", Up: false},
			{URL: "nats://10.0.0.3:6222", Server: "mbox1", Up: true, Since: now.Add(-time.Hour), RTT: "412µs"},
		},
		Streams: []control.FarmStream{
			{Name: "KV_mailfarm_bans", Replicas: 3, Err: "no server answered within 2s"},
			{Name: "mailfarm_fail_sasl", Leader: "mta2", Replicas: 3, Current: 3, Quorum: true},
		},
		LastWrite: now.Add(-95 * time.Second),
		Outbox:    12,
	}
	var out strings.Builder
	printFarm(&out, s, now)
	for _, want := range []string{
		"CUT OFF from 2 of 3 nodes: mbox1 mta2",
		"mta2 DOWN (nats://10.0.0.2:6222)",
		"mbox1 up 1h0m0s (rtt 412µs)",
		"bans NO QUORUM (no server answered within 2s)",
		"fail_sasl led by mta2, 3 of 3 current",
		"Last write:\t1m35s ago",
		"Outbox:\t12 waiting",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("ban-client farm lacks %q:\n%s", want, out.String())
		}
	}
}

// A server in a dry run says so on every screen that lists what it holds.
func TestDryRunOnEveryScreen(t *testing.T) {
	var b strings.Builder
	printStatus(&b, control.Status{Jails: []string{"sasl"}, DryRun: true})
	printJailStatus(&b, control.JailStatus{Name: "sasl", DryRun: true}, false)
	if n := strings.Count(b.String(), dryRunBanner); n != 2 {
		t.Errorf("the banner %d times in:\n%s", n, b.String())
	}
	b.Reset()
	printStatus(&b, control.Status{Jails: []string{"sasl"}})
	if strings.Contains(b.String(), "DRY RUN") {
		t.Errorf("a real server called a dry run:\n%s", b.String())
	}
}
