package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logban/logban/internal/control"
)

func TestHelpTeaches(t *testing.T) {
	var out bytes.Buffer
	var errOut bytes.Buffer
	err := run(context.Background(), []string{"--help"}, &out, &errOut)
	if !errors.Is(err, flag.ErrHelp) || exitCode(err) != 0 || errOut.Len() != 0 {
		t.Errorf("err %v, exit %d, stderr %q", err, exitCode(err), errOut.String())
	}
	for _, want := range []string{"-config file", "-dry-run", "-check", "SIGHUP", "examples/demo.toml"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}

func TestCheck(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-check", "-config", "../../examples/demo.toml"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "demo.toml: OK, 1 jail, 1 action, 1 configuration file read") {
		t.Errorf("output %q", out.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("[jails.x]\nmaxretry = 0\n"), 0o644)
	err := run(context.Background(), []string{"-check", "-config", bad}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "bad.toml:2: jails.x.maxretry: must be at least 1, got 0") {
		t.Errorf("bad config: %v", err)
	}
}

func TestUnexpectedArgument(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"-config", "x.toml", "extra"}, &out, &out)
	if exitCode(err) != 2 || !strings.Contains(err.Error(), `unexpected argument "extra"`) {
		t.Errorf("err %v", err)
	}
}

func TestRunsReloadsOnSIGHUPAndStops(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "logban.toml")
	os.WriteFile(cfg, []byte(`
[server]
socket = "s.sock"
database = "logban.db"
[actions.log]
type = "log"
[jails.sasl]
filter = "zimbra-submission"
logpath = ["zimbra.log"]
actions = ["log"]
`), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	c, done := runInProcess(t, ctx, cfg, filepath.Join(dir, "s.sock"))

	// SIGHUP rereads the configuration.
	f, _ := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("[jails.second]\nfilter = \"zimbra-submission\"\nlogpath = [\"zimbra.log\"]\nactions = [\"log\"]\n")
	f.Close()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		s, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Jails) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP did not reload: jails %v", s.Jails)
		}
		time.Sleep(5 * time.Millisecond)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
}

var quietLogger = slog.New(slog.DiscardHandler)

// A log path that turns into a FIFO while ban-server runs is skipped, not opened (which
// would block until a writer came): SIGTERM still stops the server at once.
func TestFIFOLogpathDoesNotHoldTheServer(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "logban.toml")
	log := filepath.Join(dir, "zimbra.log")
	os.WriteFile(log, nil, 0o644)
	os.WriteFile(cfg, []byte("[server]\nsocket = \"s.sock\"\ndatabase = \"logban.db\"\n[actions.log]\ntype = \"log\"\n[jails.sasl]\nfilter = \"zimbra-submission\"\nlogpath = [\"zimbra.log\"]\nactions = [\"log\"]\n"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	c, done := runInProcess(t, ctx, cfg, filepath.Join(dir, "s.sock"))
	os.Remove(log)
	if err := syscall.Mkfifo(log, 0o600); err != nil {
		t.Skip("no FIFO here:", err)
	}
	// The follower looks at the path on its next event or check: then the server must
	// still answer, and stop.
	for range 3 {
		if err := c.Ping(ctx); err != nil {
			t.Fatalf("server stopped answering: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not stop within 5 s")
	}
}

// runInProcess runs ban-server on cfg in this process until ctx ends, and returns a
// client of its socket, once it answers, and where run's error will come.
func runInProcess(t *testing.T, ctx context.Context, cfg, socket string) (*control.Client, chan error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-config", cfg}, io.Discard, io.Discard) }()
	c := control.NewClient(socket)
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatal("server did not answer")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return c, done
}

// -check warns of a logpath pattern that matches nothing and a plain path not there yet,
// and still passes: both are followed once there is something to follow.
func TestCheckWarnsOfLogpathsNotThereYet(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "logban.toml")
	os.WriteFile(cfg, []byte(`
[actions.log]
type = "log"
[jails.sasl]
filter = "zimbra-submission"
logpath = ["logs/*.log", "zimbra.log"]
actions = ["log"]
`), 0o644)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-check", "-config", cfg}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"warning: jails.sasl.logpath: " + filepath.Join(dir, "logs/*.log") + " matches no file yet",
		"warning: jails.sasl.logpath: " + filepath.Join(dir, "zimbra.log") + " does not exist yet",
		"OK, 1 jail,",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-check said %q; want %q in it", out.String(), want)
		}
	}
	os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
	os.WriteFile(filepath.Join(dir, "logs", "a.log"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "zimbra.log"), nil, 0o644)
	out.Reset()
	if err := run(context.Background(), []string{"-check", "-config", cfg}, &out, &out); err != nil || strings.Contains(out.String(), "warning:") {
		t.Errorf("with both there, -check said %q, %v", out.String(), err)
	}
}

// -check warns of a configuration with no jail, and of the examples' placeholder
// addresses left in ignore lists.
func TestCheckWarnsOfNoJailAndPlaceholders(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.toml")
	os.WriteFile(empty, nil, 0o644)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-check", "-config", empty}, &out, &out); err != nil ||
		!strings.Contains(out.String(), "warning: no jail is enabled: ban-server would read nothing and ban nobody") {
		t.Errorf("empty configuration: %q, %v", out.String(), err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"-check", "-config", "../../examples/zimbra.toml"}, &out, &out); err != nil ||
		!strings.Contains(out.String(), "warning: server.ignoreip: 192.0.2.20/32 is a documentation address (RFC 5737, RFC 3849), the examples' placeholder: put the real one") {
		t.Errorf("the Zimbra example's placeholders: %q, %v", out.String(), err)
	}
}

// -dump prints each jail's effective keys, and where each comes from.
func TestDumpShowsEffectiveKeysAndTheirOrigin(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "logban.toml")
	os.WriteFile(cfg, []byte(`
[defaults]
maxretry = 3
actions = ["log"]
[actions.log]
type = "log"
[jails.sasl]
filter = "zimbra-submission"
logpath = ["/var/log/zimbra.log"]
bantime = -1
key = "user"
[jails.sasl.subnet]
ipv4 = 24
[jails.postfix]
filter = "zimbra-submission"
backend = "journal"
journal_match = ["_SYSTEMD_UNIT=postfix@-.service"]
[policy]
listen = "127.0.0.1:10031"
[policy.quotas.outbound]
messages = 200
`), 0o644)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-dump", "-config", cfg}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{
		`(?m)^\[jails\.sasl\]$`,
		`(?m)^maxretry\s+= 3\s+# ` + regexp.QuoteMeta(cfg) + ` \[defaults\]$`,
		`(?m)^bantime\s+= -1\s+# ` + regexp.QuoteMeta(cfg) + `$`,
		`(?m)^findtime\s+= "10m"\s+# default$`,
		`(?m)^actions\s+= \["log"\]\s+# ` + regexp.QuoteMeta(cfg) + ` \[defaults\]$`,
		`(?m)^key\s+= "user"\s+# ` + regexp.QuoteMeta(cfg) + `$`,
		`(?m)^trust_time\s+= "30d"\s+# default$`,
		`(?m)^\[jails\.postfix\]\nfilter\s+= "zimbra-submission"\s+# .*\nbackend\s+= "journal"\s+# ` + regexp.QuoteMeta(cfg) + `\njournal_match\s+= \["_SYSTEMD_UNIT=postfix@-.service"\]\s+# ` + regexp.QuoteMeta(cfg) + `\njournal_directory\s+= ""\s+# default\nmaxretry`,
		`(?m)^subnet = \{ ipv4 = 24, ipv6 = 64, addresses = 5, findtime = "10m", bantime = -1 \} # ` + regexp.QuoteMeta(cfg) + `$`,
		`(?m)^\[policy\]\nlisten        = "127.0.0.1:10031"\nreject_banned = "554 5.7.1 Access denied: \{jail\}"\ndefault       = "DUNNO"\ntimeout       = "100ms"$`,
		`(?m)^quotas.outbound = \{ key = "sasl_username", messages = 200, recipients = 0, window = "1h", action = "DEFER_IF_PERMIT Sending quota exceeded, try later" \}$`,
	} {
		if !regexp.MustCompile(re).MatchString(out.String()) {
			t.Errorf("-dump lacks %s:\n%s", re, out.String())
		}
	}
}

// -check's summary is its answer, on stdout; its warnings go to stderr.
func TestCheckAnswersOnStdout(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"-check", "-config", "../../examples/zimbra.toml"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "zimbra.toml: OK, 4 jails") || strings.Contains(stdout.String(), "warning:") ||
		!strings.Contains(stderr.String(), "warning: server.ignoreip") {
		t.Errorf("stdout %q\nstderr %q", stdout.String(), stderr.String())
	}
}

// An installed ban-server (a package sets its version) speaks of installed commands in
// its help, not of a clone's go run and examples/.
func TestInstalledHelpSpeaksOfInstalledCommands(t *testing.T) {
	was := version
	t.Cleanup(func() { version = was })
	version = "1.2.3"
	var out strings.Builder
	if err := run(context.Background(), []string{"-h"}, &out, io.Discard); err != nil && !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	if h := out.String(); strings.Contains(h, "go run") || strings.Contains(h, " examples/") || !strings.Contains(h, "ban-server -dry-run -config /etc/logban/logban.toml") {
		t.Errorf("the installed help:\n%s", h)
	}
}
