package config

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/filters"
	"github.com/logban/logban/internal/farmkeys"
	"github.com/logban/logban/internal/policy"
	"github.com/logban/logban/jails"
)

// TestInvalid loads every testdata/invalid-*.toml and compares the error with the message
// the file states in its first line, "# want: MESSAGE", where file names are relative to
// testdata.
func TestInvalid(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid-*.toml")
	if err != nil || len(files) == 0 {
		t.Fatal("no testdata/invalid-*.toml", err)
	}
	dir, _ := filepath.Abs("testdata")
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			want := wantLine(t, path)
			_, err := Load(path)
			if err == nil {
				t.Fatalf("loaded without error; want %s", want)
			}
			got := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")
			if got != want {
				t.Errorf("error:\n got: %s\nwant: %s", got, want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("error is not a *config.Error: %T", err)
			}
		})
	}
}

func wantLine(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Scan()
	want, ok := strings.CutPrefix(s.Text(), "# want: ")
	if !ok {
		t.Fatalf("%s: first line is not '# want: MESSAGE'", path)
	}
	return want
}

func TestDropIns(t *testing.T) {
	cfg, err := Load("testdata/dropin/logban.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := filepath.Abs("testdata/dropin")
	if len(cfg.Files) != 3 || cfg.Files[1] != filepath.Join(dir, "jail.d", "10-tune.toml") {
		t.Errorf("files %v", cfg.Files)
	}
	wantServer := Server{
		Socket:       filepath.Join(dir, "run", "logban.sock"),
		SocketGID:    -1,
		Database:     DefaultDatabase,
		IgnoreIP:     []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		LogLevel:     slog.LevelInfo,
		MaxLineBytes: DefaultMaxLineBytes,

		ReconcileInterval: DefaultReconcileInterval,
	}
	if !reflect.DeepEqual(cfg.Server, wantServer) {
		t.Errorf("server %+v, want %+v", cfg.Server, wantServer)
	}
	wantJails := map[string]Jail{
		"sasl": {
			Name: "sasl", Filter: "zimbra-submission", LogPath: []string{"/var/log/zimbra.log"}, Backend: BackendFile,
			MaxRetry: 3, FindTime: time.Hour, BanTime: -1, Actions: []string{"log"}, Start: StartResume, Farm: FarmLocal, Mode: ModeFailures, Key: jails.KeyAddress, TrustTime: DefaultTrustTime, MaxTracked: jails.DefaultMaxTracked,
			Increment: jails.Increment{Enabled: true, Factor: 1, Multipliers: []float64{1, 5, 30}, MaxTime: 7 * 24 * time.Hour, RndTime: 10 * time.Minute, OverallJails: true},
		},
		"dos": {
			Name: "dos", Filter: "dos", LogPath: []string{filepath.Join(dir, "mailbox.log")}, Backend: BackendFile,
			MaxRetry: DefaultMaxRetry, FindTime: 26 * time.Hour, BanTime: DefaultBanTime, Actions: []string{"log"},
			IgnoreIP: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("192.0.2.7/32")},
			Start:    StartResume,
			Farm:     FarmLocal, Mode: ModeFailures, Key: jails.KeyAddress, TrustTime: DefaultTrustTime, MaxTracked: jails.DefaultMaxTracked,
		},
	}
	if !reflect.DeepEqual(cfg.Jails, wantJails) {
		t.Errorf("jails\n got %+v\nwant %+v", cfg.Jails, wantJails)
	}
	if opts := cfg.Actions["log"].Options.(*actions.LogOptions); opts.Path != filepath.Join(dir, "bans.log") {
		t.Errorf("log action path %q not resolved against the config folder", opts.Path)
	}
	if f, ok := cfg.Filters["zimbra-submission"]; !ok || !f.Builtin {
		t.Errorf("built-in filter missing: %+v", cfg.Filters)
	}
	if _, err := cfg.Filters["dos"].Compile(nil); err != nil {
		t.Error(err)
	}
}

func TestDropInErrorNamesItsFile(t *testing.T) {
	_, err := Load("testdata/dropin-bad/logban.toml")
	want := filepath.Join("jail.d", "50-typo.toml") + ":5: jails.sasl.maxretry: must be at least 1, got 0"
	if err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("error %v, want one ending %q", err, want)
	}
}

func TestAllErrorsReportedTogether(t *testing.T) {
	path := filepath.Join(t.TempDir(), "many.toml")
	os.WriteFile(path, []byte(`
[actions.log]
type = "log"
[jails.a]
filter = "zimbra-submission"
logpath = ["x.log"]
actions = ["log"]
maxretry = 0
[jails.b]
filter = "nope"
logpath = ["x.log"]
actions = ["nope"]
`), 0o644)
	_, err := Load(path)
	if err == nil {
		t.Fatal("no error")
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 3 {
		t.Errorf("%d errors, want 3:\n%v", n, err)
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.toml"))
	if err == nil || !strings.HasSuffix(err.Error(), "absent.toml: no such file or directory") {
		t.Errorf("got %v", err)
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"600", 10 * time.Minute, false},
		{"10m", 10 * time.Minute, false},
		{"1h30m", 90 * time.Minute, false},
		{"1d", 24 * time.Hour, false},
		{"2w3d12h", (17*24 + 12) * time.Hour, false},
		{"-1", -1, false},
		{"0", 0, false},
		{"-2", 0, true},
		{"-5m", 0, true},
		{"1x", 0, true},
		{"d", 0, true},
		{"", 0, true},
		{"99999999999999999", 0, true},
		{"10000w10000d2562047h", 0, true}, // wraps past int64
		{"10000w10000d", time.Duration(10000*7+10000) * 24 * time.Hour, false},
		{"2562047h", 2562047 * time.Hour, false},
		{"1d2562047h", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err != nil) != tt.err || (!tt.err && time.Duration(got) != tt.want) {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, error %v", tt.in, time.Duration(got), err, tt.want, tt.err)
		}
	}
}

// The shipped examples are configurations operators copy: they must load.
func TestExamplesLoad(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.toml")
	if len(files) < 3 {
		t.Fatalf("examples: %v", files)
	}
	for _, f := range files {
		cfg, err := Load(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		for name, j := range cfg.Jails {
			if j.MaxRetry < 1 || len(j.Actions) == 0 || len(j.LogPath) == 0 && len(j.JournalMatch) == 0 {
				t.Errorf("%s: jail %s: %+v", f, name, j)
			}
		}
	}
}

// The farm examples load too: the demo's nodes as they are, and the Zimbra farm's hosts
// once the credentials and CA files they name exist.
func TestFarmExamplesLoad(t *testing.T) {
	files, _ := filepath.Glob("../../examples/farm/*.toml")
	if len(files) < 5 {
		t.Fatalf("farm examples: %v", files)
	}
	secrets := t.TempDir()
	for _, name := range []string{"nats.creds", "nats-ca.pem"} {
		os.WriteFile(filepath.Join(secrets, name), nil, 0o600)
	}
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), filepath.Base(f))
		os.WriteFile(path, []byte(strings.ReplaceAll(string(text), "/etc/logban/", secrets+"/")), 0o644)
		if strings.Contains(string(text), `"keys/`) { // the demo's nodes: the keys farm init makes
			keys := filepath.Join(filepath.Dir(path), "keys")
			if err := farmkeys.Init(keys, "demo"); err != nil {
				t.Fatal(err)
			}
			for _, n := range []string{"node1", "node2", "node3"} {
				if _, err := farmkeys.AddNode(keys, n, nil); err != nil {
					t.Fatal(err)
				}
			}
		}
		cfg, err := Load(path)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if cfg.Farm == nil || cfg.Farm.Node == "" || len(cfg.Farm.Servers) == 0 {
			t.Errorf("%s: farm %+v", f, cfg.Farm)
		}
	}
}

// trusted_proxies is read in [server] and in a jail, and a filter may name a parser
// and add its own ignoreregex.
func TestTrustedProxiesAndParser(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logban.toml")
	os.WriteFile(path, []byte(`
[server]
trusted_proxies = ["192.0.2.10", "198.51.100.0/24"]
[filters.auth]
parser      = "zimbra-mailbox-auth"
ignoreregex = ['\[monitor@example\.com\]']
[actions.log]
type = "log"
[jails.auth]
logpath         = ["audit.log"]
actions         = ["log"]
trusted_proxies = ["2001:db8::/32"]
`), 0o644)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32"), netip.MustParsePrefix("198.51.100.0/24")}; !reflect.DeepEqual(cfg.Server.TrustedProxies, want) {
		t.Errorf("server.trusted_proxies %v", cfg.Server.TrustedProxies)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}; !reflect.DeepEqual(cfg.Jails["auth"].TrustedProxies, want) {
		t.Errorf("jails.auth.trusted_proxies %v", cfg.Jails["auth"].TrustedProxies)
	}
	f, err := cfg.Filters["auth"].Compile(cfg.Server.TrustedProxies)
	if err != nil {
		t.Fatal(err)
	}
	line := "2026-03-05 16:01:34,123 INFO  [ImapServer-7] [name=%s;ip=192.0.2.10;oip=203.0.113.9, 198.51.100.7;] imap - authentication failed for [%s] (invalid password)"
	if m, r := f.Match([]byte(strings.ReplaceAll(line, "%s", "u@example.com")), time.Now()); r != filters.Matched || m.Addr != netip.MustParseAddr("203.0.113.9") {
		t.Errorf("parser filter: %v %v", m.Addr, r)
	}
	if _, r := f.Match([]byte(strings.ReplaceAll(line, "%s", "monitor@example.com")), time.Now()); r != filters.Ignored {
		t.Errorf("its ignoreregex: %v", r)
	}
}

// A logpath that names a FIFO (or a socket, a device) is refused: opening a FIFO would
// block the daemon until something wrote to it.
func TestLogpathFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "zimbra.log")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("no FIFO here:", err)
	}
	cfg := filepath.Join(dir, "logban.toml")
	os.WriteFile(cfg, []byte("[actions.log]\ntype = \"log\"\n[jails.sasl]\nfilter = \"zimbra-submission\"\nlogpath = [\"zimbra.log\"]\nactions = [\"log\"]\n"), 0o644)
	_, err := Load(cfg)
	if err == nil || !strings.HasSuffix(err.Error(), "jails.sasl.logpath[0]: "+fifo+" is a FIFO: a logpath must name a log file") {
		t.Errorf("got %v", err)
	}
}

func TestParseTimeZone(t *testing.T) {
	at := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]int{"UTC": 0, "+01:00": 3600, "-0530": -19800, "UTC+0100": 3600, "GMT-05": -18000, "+14:00": 14 * 3600, "Europe/Berlin": 7200} {
		loc, err := ParseTimeZone(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if _, off := at.In(loc).Zone(); off != want {
			t.Errorf("%q: offset %d, want %d", in, off, want)
		}
	}
	for _, in := range []string{"+25:00", "+1:0", "Mars/Olympus", "UTC+", "CEST+1"} {
		if _, err := ParseTimeZone(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestReconcileInterval(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"", DefaultReconcileInterval, ""},
		{`reconcile_interval = "30s"`, 30 * time.Second, ""},
		{`reconcile_interval = 0`, 0, ""},
		{`reconcile_interval = -1`, 0, "server.reconcile_interval: must be 0 (at start only) or at least 1s"},
	} {
		path := filepath.Join(t.TempDir(), "logban.toml")
		os.WriteFile(path, []byte("[server]\n"+tt.in+"\n"), 0o644)
		cfg, err := Load(path)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: error %v, want %q", tt.in, err, tt.err)
		case tt.err == "" && err != nil:
			t.Errorf("%s: %v", tt.in, err)
		case tt.err == "" && cfg.Server.ReconcileInterval != tt.want:
			t.Errorf("%s: %v, want %v", tt.in, cfg.Server.ReconcileInterval, tt.want)
		}
	}
}

// [defaults] gives every jail the keys it does not set itself, as fail2ban's [DEFAULT].
func TestDefaultsFillWhatJailsLeaveOut(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "logban.toml")
	os.WriteFile(path, []byte(`
[defaults]
maxretry = 3
bantime  = "1h"
actions  = ["log"]
ignoreip = ["10.0.0.0/8"]

[defaults.bantime_increment]
enabled = true

[actions.log]
type = "log"

[jails.zimbra-submission]
logpath = ["/var/log/zimbra.log"]

[jails.zimbra-smtp-auth]
logpath  = ["/var/log/zimbra.log"]
maxretry = 10
`), 0o644)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	sub, smtp := cfg.Jails["zimbra-submission"], cfg.Jails["zimbra-smtp-auth"]
	if sub.MaxRetry != 3 || sub.BanTime != time.Hour || !slices.Equal(sub.Actions, []string{"log"}) ||
		len(sub.IgnoreIP) != 1 || !sub.Increment.Enabled {
		t.Errorf("zimbra-submission did not take the defaults: %+v", sub)
	}
	if smtp.MaxRetry != 10 || smtp.BanTime != time.Hour {
		t.Errorf("zimbra-smtp-auth: maxretry %d, bantime %v; want its own 10 and the default 1h", smtp.MaxRetry, smtp.BanTime)
	}
	os.WriteFile(path, []byte("[defaults]\nmaxretries = 3\n"), 0o644)
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "defaults.maxretries: unknown key; valid: actions, backend, ban_addresses, bantime") {
		t.Errorf("a misspelt default: %v", err)
	}
}

// Every semantic problem of a file is reported at once, each with its line.
func TestProblemsComeTogetherWithTheirLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logban.toml")
	os.WriteFile(path, []byte(`[actions.log]
type = "log"

[jails.sasl]
filter   = "zimbra-submision"
logpath  = ["/var/log/zimbra.log"]
maxretry = 0
findtime = "0s"
actions  = ["log", "blackhole"]
`), 0o644)
	_, err := Load(path)
	if err == nil {
		t.Fatal("loaded")
	}
	for _, want := range []string{
		"logban.toml:5: jails.sasl.filter: unknown filter",
		"logban.toml:7: jails.sasl.maxretry: must be at least 1, got 0",
		"logban.toml:8: jails.sasl.findtime: must be longer than 0",
		`logban.toml:9: jails.sasl.actions[1]: unknown action "blackhole"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}

// A file's type mistakes, unknown keys and semantic problems are reported in one go, each
// with its line; a key of the wrong type is not reported again as missing.
func TestEveryKindOfProblemAtOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logban.toml")
	os.WriteFile(path, []byte(`[actions.log]
type = "log"

[jails.sasl]
filter   = "zimbra-submission"
logpath  = "/var/log/zimbra.log"
maxretry = "5"
findtime = "0s"
bantme   = "1h"
actions  = ["log"]
`), 0o644)
	_, err := Load(path)
	if err == nil {
		t.Fatal("loaded")
	}
	for _, want := range []string{
		`logban.toml:6: jails.sasl.logpath: must be a list, like ["/var/log/zimbra.log"] (a string was given)`,
		"logban.toml:7: jails.sasl.maxretry: must be a whole number, without quotes (a string was given)",
		"logban.toml:8: jails.sasl.findtime: must be longer than 0",
		"logban.toml:9: jails.sasl.bantme: unknown key",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "no log files") {
		t.Errorf("a logpath of the wrong type was reported missing too:\n%v", err)
	}
}

// A [subnet] table fills what it leaves out from its defaults and the jail's own times;
// [defaults.subnet] gives it to every jail; a jail without one never escalates.
func TestSubnetTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logban.toml")
	os.WriteFile(path, []byte(`
[defaults.subnet]
addresses = 8

[actions.log]
type = "log"

[jails.zimbra-submission]
logpath  = ["/var/log/zimbra.log"]
actions  = ["log"]
findtime = "30m"
bantime  = "2h"

[jails.zimbra-submission.subnet]
ipv6    = 48
bantime = "1d"

[jails.zimbra-smtp-auth]
logpath = ["/var/log/zimbra.log"]
actions = ["log"]
`), 0o644)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	sub := cfg.Jails["zimbra-submission"]
	want := jails.Subnet{IPv4: 24, IPv6: 48, Addresses: 5, FindTime: 30 * time.Minute}
	if sub.Subnet != want || sub.SubnetBanTime != 24*time.Hour {
		t.Errorf("zimbra-submission: %+v for %v; want %+v for 24h (its own table replaces the default one)", sub.Subnet, sub.SubnetBanTime, want)
	}
	smtp := cfg.Jails["zimbra-smtp-auth"]
	if want := (jails.Subnet{IPv4: 24, IPv6: 64, Addresses: 8, FindTime: DefaultFindTime}); smtp.Subnet != want || smtp.SubnetBanTime != DefaultBanTime {
		t.Errorf("zimbra-smtp-auth: %+v for %v; want the default table's %+v", smtp.Subnet, smtp.SubnetBanTime, want)
	}
	os.WriteFile(path, []byte("[actions.log]\ntype = \"log\"\n[jails.zimbra-submission]\nlogpath = [\"/x\"]\nactions = [\"log\"]\n"), 0o644)
	cfg, err = Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if sn := cfg.Jails["zimbra-submission"].Subnet; sn.On() {
		t.Errorf("a jail without a subnet table escalates: %+v", sn)
	}
}

func TestPolicyTable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "logban.toml")
	os.WriteFile(path, []byte(`
[actions.notify]
type = "log"

[policy]
listen   = "127.0.0.1:10031"
reject_banned = "554 5.7.1 Access denied: {jail}"
default  = "DUNNO"

[policy.quotas.outbound]
key        = "sasl_username"
messages   = 200
recipients = 2000
window     = "1h"
action     = "DEFER_IF_PERMIT Sending quota exceeded, try later"

[policy.quotas.per-sender]
key      = "sender"
messages = 500
window   = "1d"

[policy.compromised]
distinct_addresses = 10
distinct_networks  = 4
window  = "1h"
actions = ["notify"]
`), 0o644)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Policy
	if p == nil || p.Listen != "127.0.0.1:10031" || p.Timeout != DefaultPolicyTimeout || p.Settings.Default != "DUNNO" ||
		len(p.Settings.Quotas) != 2 || !slices.Equal(p.CompromisedActions, []string{"notify"}) {
		t.Fatalf("policy %+v", p)
	}
	want := []policy.Quota{
		{Name: "outbound", Key: "sasl_username", Messages: 200, Recipients: 2000, Window: time.Hour, Action: "DEFER_IF_PERMIT Sending quota exceeded, try later"},
		{Name: "per-sender", Key: "sender", Messages: 500, Window: 24 * time.Hour, Action: "DEFER_IF_PERMIT Sending quota exceeded, try later"},
	}
	if !slices.Equal(p.Settings.Quotas, want) || p.Settings.Compromised != (policy.Compromised{Addresses: 10, Networks: 4, Window: time.Hour}) {
		t.Errorf("quotas %+v, compromised %+v", p.Settings.Quotas, p.Settings.Compromised)
	}
}

// A pattern over a folder with more files than it may follow follows the first by
// name, and -check says so.
func TestLogPathPatternIsCapped(t *testing.T) {
	dir := t.TempDir()
	for i := range MaxFilesPerPattern + 10 {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("a%04d.log", i)), nil, 0o644)
	}
	paths, capped := ExpandLogPath(filepath.Join(dir, "*.log"))
	if len(paths) != MaxFilesPerPattern || !capped || paths[0] != filepath.Join(dir, "a0000.log") {
		t.Errorf("%d paths (capped %v), first %s; want the first %d", len(paths), capped, paths[0], MaxFilesPerPattern)
	}
	cfg := &Config{Jails: map[string]Jail{"many": {Name: "many", LogPath: []string{filepath.Join(dir, "*.log")}}}}
	if w := cfg.LogPathWarnings(); len(w) != 1 || !strings.Contains(w[0], "matches more than 256 files") {
		t.Errorf("warnings %q", w)
	}
}

// A secret others may read is a -check warning: the farm's credentials file, and a
// configuration holding a password.
func TestSecretsReadableByOthersWarn(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "node.creds")
	os.WriteFile(creds, []byte("-----BEGIN NATS USER JWT-----"), 0o644)
	conf := filepath.Join(dir, "logban.toml")
	os.WriteFile(conf, []byte("[farm]\nname = \"f\"\nnode = \"n\"\nservers = [\"nats://127.0.0.1:4222\"]\ncreds = \""+creds+"\"\n"), 0o644)
	cfg, err := Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(cfg.Warnings(), "\n"); !strings.Contains(w, "farm.creds: "+creds+" is mode 0644") {
		t.Errorf("warnings:\n%s", w)
	}
	os.Chmod(creds, 0o600)
	os.WriteFile(conf, []byte("[farm]\nname = \"f\"\nnode = \"n\"\nservers = [\"nats://127.0.0.1:4222\"]\nuser = \"n\"\npassword = \"s3cret\"\n"), 0o644)
	cfg, err = Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(cfg.Warnings(), "\n"); !strings.Contains(w, "the configuration holds farm.password: "+conf+" is mode 0644") {
		t.Errorf("warnings:\n%s", w)
	}
}

// Credentials sent to a farm's server elsewhere over a plaintext URL are a -check
// warning, and so is a farm without its list of node keys.
func TestFarmWarnsOfPlaintextCredentials(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "logban.toml")
	os.WriteFile(conf, []byte("[farm]\nname = \"f\"\nnode = \"n\"\nservers = [\"nats://nats1.example.com:4222\", \"nats://127.0.0.1:4222\"]\nuser = \"n\"\npassword = \"s3cret\"\n"), 0o600)
	cfg, err := Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(cfg.Warnings(), "\n")
	if !strings.Contains(w, "farm.servers[0]: nats://nats1.example.com:4222 is plaintext") || strings.Contains(w, "servers[1]") ||
		!strings.Contains(w, "farm.nodes: no list of the farm's node keys") || strings.Contains(w, "s3cret") {
		t.Errorf("warnings:\n%s", w)
	}
}

// A duration is written as a configuration writes it, and reads back the same.
func TestFormatDuration(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{30 * 24 * time.Hour, "30d"}, {time.Hour, "1h"}, {10 * time.Minute, "10m"}, {90 * time.Second, "1m30s"},
		{36 * time.Hour, "1d12h"}, {1500 * time.Millisecond, "1s500ms"}, {0, "0s"}, {-1, "-1"},
	} {
		got := FormatDuration(tt.d)
		if got != tt.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
		if back, err := ParseDuration(got); err != nil || (tt.d >= 0 && time.Duration(back) != tt.d) {
			t.Errorf("%q reads back as %v, %v", got, time.Duration(back), err)
		}
	}
}

// Six mistakes in one file (a pasted fail2ban jail, a count in quotes, a duration in
// words, a misspelt key, a misspelt filter, a /33) are all named in one run, each at
// its line; the pasted INI and an unquoted text get advice, not the parser's words.
func TestEveryMistakeInOneRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logban.toml")
	if err := os.WriteFile(path, []byte(`[server]
socket = "logban.sock"
loglevel = info

[actions.log]
type = "log"

[sshd]
enabled = true
port    = ssh
logpath = %(sshd_log)s

[jails.sasl]
filter   = "zimbra-submision"
logpath  = ["zimbra.log"]
maxretry = "three"
findtime = "1 hour"
bantmie  = "1h"
ignoreip = ["192.0.2.0/33"]
actions  = ["log"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil {
		t.Fatal("loaded")
	}
	for _, want := range []string{
		`:3: server.loglevel: text needs quotes in TOML: write loglevel = "info"`,
		`:8: sshd: unknown key`, `in logban it is [jails.sshd]`,
		`:10: sshd.port: text needs quotes in TOML: write port = "ssh"`,
		`:11: sshd.logpath: this line looks like fail2ban's INI`,
		`:14: jails.sasl.filter: unknown filter "zimbra-submision"`,
		`:16: jails.sasl.maxretry: must be a whole number`,
		`:17: jails.sasl.findtime: invalid duration "1 hour"`,
		`:18: jails.sasl.bantmie: unknown key`,
		`:19: jails.sasl.ignoreip: "192.0.2.0/33" is not an address or CIDR prefix`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("no %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "expected value") || strings.Contains(err.Error(), "expected") && strings.Contains(err.Error(), "instead") {
		t.Errorf("the parser's words, not advice:\n%v", err)
	}
}
