package fail2ban

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/logban/logban/filters"
	"github.com/logban/logban/internal/config"
)

func TestReadINI(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.conf")
	os.WriteFile(path, []byte(`# a comment
[Definition]
FailRegex = ^one <HOST>$
            # a comment inside the value is skipped
            ^two #<HOST>$

            ^three <HOST>$ ; an inline comment
Key: value with ; no space before;semicolon
empty =
[DEFAULT]
x = 1
`), 0o644)
	f, err := readINI(path)
	if err != nil {
		t.Fatal(err)
	}
	d := f.values["Definition"]
	if want := "^one <HOST>$\n^two #<HOST>$\n\n^three <HOST>$"; d["failregex"] != want {
		t.Errorf("failregex = %q; want %q", d["failregex"], want)
	}
	if d["key"] != "value with" || d["empty"] != "" || f.defaults["x"] != "1" {
		t.Errorf("key %q, empty %q, x %q", d["key"], d["empty"], f.defaults["x"])
	}
	bad := filepath.Join(t.TempDir(), "bad.conf")
	os.WriteFile(bad, []byte("[s]\nno delimiter here\n"), 0o644)
	if _, err := readINI(bad); err == nil || !strings.Contains(err.Error(), "bad.conf:2") {
		t.Errorf("a line without = or : : %v", err)
	}
}

func TestReadConfLayersAndInterpolates(t *testing.T) {
	c, err := readConf("testdata/etc", "jail")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range c.files {
		names = append(names, strings.TrimPrefix(f, "testdata/etc/"))
	}
	if want := []string{"paths.conf", "jail.conf", "jail.d/10-demo.conf", "jail.local"}; !slices.Equal(names, want) {
		t.Errorf("read %v; want %v", names, want)
	}
	for _, tt := range []struct{ section, key, want string }{
		{"demo", "port", "smtp,submission,465"},                                // %(known/port)s: jail.conf's
		{"demo", "filter", "demo[mode=strict]"},                                // %(__name__)s, and jail.local's mode
		{"demo", "maxretry", "3"},                                              // jail.d
		{"demo", "logpath", "/var/log/demo.log\n/var/log/demo-extra.log tail"}, // paths.conf's [DEFAULT]
		{"demo", "action", `iptables-multiport-log[port="smtp,submission,465", protocol="tcp"]`},
		{"other", "logpath", "/var/log/other.log"},
		{"other", "findtime", "1h 30m"},
	} {
		if got, err := c.get(tt.section, tt.key, nil); err != nil || got != tt.want {
			t.Errorf("[%s] %s = %q, %v; want %q", tt.section, tt.key, got, err, tt.want)
		}
	}
	if _, err := c.get("demo", "nothing", nil); err == nil {
		t.Error("a key set nowhere has a value")
	}
}

func TestOptionSyntax(t *testing.T) {
	name, opts, err := extractOptions(`iptables[port="http,https", protocol=tcp, name='a b']`)
	if err != nil || name != "iptables" || opts["port"] != "http,https" || opts["protocol"] != "tcp" || opts["name"] != "a b" {
		t.Errorf("%q %v %v", name, opts, err)
	}
	got := splitWithOptions("iptables[port=\"1, 2\"]\n   sendmail-whois[dest=root]  route")
	if want := []string{`iptables[port="1, 2"]`, "sendmail-whois[dest=root]", "route"}; !slices.Equal(got, want) {
		t.Errorf("split %q; want %q", got, want)
	}
}

func TestDuration(t *testing.T) {
	for in, want := range map[string]string{
		"600": "10m", "10m": "10m", "1h": "1h", "1h 30m": "1h30m", "36h": "1d12h" /* below */, "1d": "1d",
		"2w": "2w", "1w": "1w", "-1": "-1", "90": "1m30s", "1 day": "1d", "10 minutes": "10m", "1mo": "",
	} {
		got, err := duration(in)
		if in == "36h" {
			want = "36h"
		}
		if in == "1mo" {
			if err != nil || got == "" {
				t.Errorf("1mo: %q %v", got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("duration(%q) = %q, %v; want %q", in, got, err, want)
		}
		if d, err := config.ParseDuration(got); err != nil && got != "-1" {
			t.Errorf("duration(%q) = %q, which logban does not read: %v (%v)", in, got, err, d)
		}
	}
	if _, err := duration("soon"); err == nil {
		t.Error(`duration("soon") passed`)
	}
}

func TestRegexReasons(t *testing.T) {
	for _, tt := range []struct{ regex, reason string }{
		{`^(?<=x)a <HOST>`, "look-behind"},
		{`^a (?=b)<HOST>`, "look-ahead"},
		{`^(?P<x>a)* (?(x)b|c) <HOST>`, "conditional"},
		{`^a (?!b)c <HOST>|d`, "look-ahead"},
		{`^(?P<u>\S+) <HOST> (?P=u)`, "back-reference"},
		{`^(\S+) <HOST> \1`, "back-reference"},
		{`^a<SKIPLINES>b <HOST>`, "several lines"},
		{`^a\nb <HOST>`, "several lines"},
		{`^<F-NOFAIL>a</F-NOFAIL> <HOST>`, "F-NOFAIL"},
		{`^user <F-USER>\S+</F-USER> failed`, "has no address"},
		{`^net <SUBNET>`, "SUBNET"},
		{`^from <HOST> \p{Greek`, "does not compile"},
	} {
		_, _, err := convertRegex(tt.regex, filterContext{}, false)
		if err == nil || !strings.Contains(err.Error(), tt.reason) {
			t.Errorf("%s: %v; want a reason with %q", tt.regex, err, tt.reason)
		}
	}
	// A literal \n (an escaped backslash, then n) is one line.
	if _, _, err := convertRegex(`^error '\\n' from <HOST>`, filterContext{}, false); err != nil {
		t.Errorf("escaped backslash: %v", err)
	}
}

// The converted filter matches what fail2ban's would on lines with a date fail2ban cuts
// out: the prefix, the date forms, <ADDR> in brackets, the look-ahead as an ignoreregex.
// importAndLoad imports the fail2ban configuration in dir and loads what it writes.
func importAndLoad(t *testing.T, dir string) (*Result, *config.Config) {
	t.Helper()
	res, err := Import(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "logban.toml")
	os.WriteFile(out, res.TOML, 0o644)
	cfg, err := config.Load(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, res.TOML)
	}
	return res, cfg
}

func TestImportSmallConfiguration(t *testing.T) {
	res, cfg := importAndLoad(t, "testdata/etc")
	for _, j := range res.Jails {
		if j.Name == "allow-after-login" && (j.Converted || !slices.ContainsFunc(j.Problems, func(p string) bool {
			return strings.Contains(p, "blocktype RETURN lets the address through")
		})) {
			t.Errorf("a jail whose action lets its addresses through: converted %v, %q", j.Converted, j.Problems)
		}
	}
	demo, other := cfg.Jails["demo"], cfg.Jails["other"]
	if len(cfg.Jails) != 2 || demo.MaxRetry != 3 || demo.BanTime != 24*time.Hour || other.FindTime != 90*time.Minute {
		t.Fatalf("jails %v\n%s", cfg.Jails, res.TOML)
	}
	if !slices.Equal(demo.LogPath, []string{"/var/log/demo.log", "/var/log/demo-extra.log"}) {
		t.Errorf("demo logpath %v", demo.LogPath)
	}
	text := string(res.TOML)
	for _, want := range []string{
		"ignoreip = ['127.0.0.0/8', '::1']",
		"ports = ['25', '587', '465']",
		"blocktype = 'REJECT'",
		"route_type = 'unreachable'",
		"# [actions.mystery]",
		"#   echo <ip> >> /tmp/banned",
		"failregex 1 not converted: a look-behind",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in:\n%s", want, text)
		}
	}
	f, err := cfg.Filters[demo.Filter].Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	expectMatches(t, f, now, map[string]string{
		"Nov 29 10:00:00 mx demo[12]: login failed from 203.0.113.5":                      "203.0.113.5",
		"2026-11-29T10:00:00.123+01:00 mx demo[12]: login failed from 203.0.113.5":        "203.0.113.5",
		"2026-11-29 10:00:00,123 mx demo[12]: slow from [2001:db8::1] after 5%":           "2001:db8::1",
		"Nov 29 10:00:00 mx demo[12]: bad user x from 203.0.113.6":                        "203.0.113.6",
		"Nov 29 10:00:00 mx demo[12]: bad user x from 203.0.113.6 trusted":                "",
		"Nov 29 10:00:00 mx demo[12]: bad user x from 203.0.113.9 (monitor)":              "",
		"Nov 29 10:00:00 mx demo[12]: login failed from 203.0.113.5 as user from 1.2.3.4": "",
		"Nov 29 10:00:00 mx other[12]: login failed from 203.0.113.5":                     "",
	})
	var reported []string
	for _, j := range res.Jails {
		reported = append(reported, j.Problems...)
	}
	for _, want := range []string{
		"action mystery has no logban kind",
		"filter other: failregex 1 not converted: a look-behind",
		"action iptables-multiport-log: the LOG rule", // and the rest of it converted
	} {
		if !slices.ContainsFunc(reported, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("not reported: %q in %q", want, reported)
		}
	}
}

// notContaining's regex takes exactly the strings without x, for every x of the kinds
// fail2ban's tempered tokens use, on every short string of x's letters and one other.
func TestNotContaining(t *testing.T) {
	for _, x := range []string{" from ", "aa", "aab", "abab", "ip=", "x"} {
		re := regexp.MustCompile("^" + notContaining(x) + "$")
		letters := []byte(x + "z")
		var walk func(s []byte)
		walk = func(s []byte) {
			if got, want := re.Match(s), !strings.Contains(string(s), x); got != want {
				t.Fatalf("x %q, %q: matched %v", x, s, got)
			}
			if len(s) == 6 {
				return
			}
			for _, c := range slices.Compact(slices.Sorted(slices.Values(letters))) {
				walk(append(slices.Clone(s), c))
			}
		}
		walk(nil)
	}
}

// Conditionals and <F-NOFAIL> in one alternative are written out as fail2ban reads
// them: sshd's "Failed" line, whose user name may hold anything but " from ".
func TestConditionalsAndNoFail(t *testing.T) {
	sshd := `^Failed (?:<F-NOFAIL>publickey</F-NOFAIL>|\S+) for (?P<cond_inv>invalid user )?<F-USER>(?P<cond_user>\S+)|(?(cond_inv)(?:(?! from ).)*?|[^:]+)</F-USER> from <HOST>(?: (?:port \d+|on \S+)){0,2}(?: ssh\d*)?(?(cond_user): |(?:(?:(?! from ).)*)$)`
	fail, ignores, err := convertRegex(sshd, filterContext{}, false)
	if err != nil {
		t.Fatal(err)
	}
	var ignore []string
	for _, d := range ignores {
		ignore = append(ignore, d.logban)
	}
	f, err := filters.New("sshd", filters.Definition{FailRegex: []string{fail}, IgnoreRegex: ignore}, filters.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	expectMatches(t, f, now, map[string]string{
		"Failed password for root from 203.0.113.1 port 22 ssh2":                               "203.0.113.1",
		"Failed password for invalid user admin from 203.0.113.2 port 22 ssh2":                 "203.0.113.2",
		"Failed password for invalid user two words from 203.0.113.3 port 22 ssh2":             "203.0.113.3",
		"Failed password for root from 203.0.113.4 port 22 ssh2: RSA SHA256:abc":               "203.0.113.4",
		"Failed publickey for root from 203.0.113.5 port 22 ssh2: RSA SHA256:abc":              "",            // NOFAIL
		"Failed password for invalid user x from 6.6.6.6 from 203.0.113.6 port 22 ssh2":        "203.0.113.6", // never the user's 6.6.6.6
		"Failed password for invalid user x from 6.6.6.6 port 22 ssh2 from 203.0.113.7 port 2": "203.0.113.7", // as fail2ban-regex finds
	})
}

// expectMatches checks what f finds in each line: the address, or "" for nothing.
func expectMatches(t *testing.T, f *filters.Filter, now time.Time, lines map[string]string) {
	t.Helper()
	for line, want := range lines {
		m, r := f.Match([]byte(line), now)
		switch {
		case want == "" && r == filters.Matched:
			t.Errorf("%q: matched %v", line, m.Addr)
		case want != "" && (r != filters.Matched || m.Addr.String() != want):
			t.Errorf("%q: %v %v; want %s", line, m.Addr, r, want)
		}
	}
}

// A value that doubles at each level of interpolation or tags is refused, not grown.
func TestValuesDoNotGrowWithoutBound(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("[DEFAULT]\nv0 = " + strings.Repeat("x", 4096) + "\n")
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&b, "v%d = %%(v%d)s%%(v%d)s\n", i, i-1, i-1)
	}
	b.WriteString("[j]\nk = %(v10)s\n")
	os.WriteFile(filepath.Join(dir, "jail.conf"), []byte(b.String()), 0o644)
	c, err := readConf(dir, "jail")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.get("j", "k", nil); err == nil || !strings.Contains(err.Error(), "past") {
		t.Errorf("a value of 4 MiB: %v", err)
	}
	opts := map[string]string{"t0": strings.Repeat("y", 4096)}
	for i := 1; i <= 12; i++ {
		opts[fmt.Sprintf("t%d", i)] = fmt.Sprintf("<t%d><t%d>", i-1, i-1)
	}
	if _, err := substituteTags(opts, nil, nil); err == nil {
		t.Error("tags that grow to 16 MiB were replaced")
	}
}

// A filter's datepattern anchored at the line's start becomes the date its regexes step
// over; one that cuts a date out of the middle of a line is left to the default.
func TestDatePatternPrefix(t *testing.T) {
	for dp, line := range map[string]string{
		`^L %d/%m/%Y - %H:%M:%S`:                    "L 01/01/2014 - 01:25:17",
		`^t=%Y-%m-%dT%H:%M:%S%z`:                    "t=2020-10-19T17:44:33+0200",
		"{^LN-BEG}%b-%d-%Exy %H:%M:%S":              "Apr-07-13 07:08:36",
		"^<W>{DATE}":                                "<W>2015-11-29 16:38:01.818",
		"{^LN-BEG}Epoch\n{^LN-BEG}":                 "1403884279",
		"{^LN-BEG}TAI64N\n{^LN-BEG}":                "@400000004c14b4560b0c6a6c",
		"^%Y:%m:%d-%H:%M:%S":                        "2014:07:02-00:17:45",
		"{^LN-BEG}%ExY(?P<_sep>[-/.])%m":            "2024-01", // a named group cuts nothing of its own
		"{^LN-BEG}%ExY(?P<_sep>[-/.])%m(?P=_sep)%d": "",
		`^[^\[]*(\[{DATE}\s*\])`:                    "",
		`%d/%b[^/]*/%Y:%H:%M:%S %z`:                 "",
		"{^LN-BEG}%Q":                               "",
	} {
		re, ok := datePatternPrefix(dp)
		if line == "" {
			if ok {
				t.Errorf("%q became %q; want the default", dp, re)
			}
			continue
		}
		if !ok || !regexp.MustCompile("^"+re+"$").MatchString(line) {
			t.Errorf("%q: %q, %v does not take %q", dp, re, ok, line)
		}
	}
}

// A failregex refused for a look-ahead that is its prefregex's is told so, with the
// prefregex quoted, not the failregex, which has none.
func TestReasonNamesThePrefregex(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "filter.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "jail.conf"), []byte("[web]\nenabled = true\nfilter = web\nlogpath = /var/log/web.log\naction = route\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "filter.d", "web.conf"), []byte(`[Definition]
prefregex = ^\[(?!evasive)\S+\] \[client <HOST>\] <F-CONTENT>.+</F-CONTENT>$
failregex = ^user \S+ not found\b
`), 0o644)
	res, err := Import(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(res.Jails[0].Problems, "\n")
	if !strings.Contains(text, "in the filter's prefregex") || !strings.Contains(text, `(?!evasive)`) || strings.Contains(text, `: ^user \S+ not found`) {
		t.Errorf("the reason does not name the prefregex:\n%s", text)
	}
}

// A jail on fail2ban's systemd backend becomes a journal jail with its journalmatch;
// Debian's Postfix unit is matched beside fail2ban's; a journalmatch any local user's
// entries pass is refused, with the reason.
func TestImportJournalJails(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/etc")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "jail.d", "20-journal.conf"), []byte(`
[postfix-journal]
enabled = true
filter = demo
backend = systemd
journalmatch = _SYSTEMD_UNIT=postfix.service

[user-journal]
enabled = true
filter = demo
backend = systemd[journalflags=1]
journalmatch = SYSLOG_IDENTIFIER=demo
`), 0o644)
	res, cfg := importAndLoad(t, dir)
	pj, ok := cfg.Jails["postfix-journal"]
	if !ok || pj.Backend != config.BackendJournal || !slices.Equal(pj.JournalMatch, []string{"_SYSTEMD_UNIT=postfix.service", "_SYSTEMD_UNIT=postfix@-.service"}) {
		t.Errorf("postfix-journal: %+v\n%s", pj, res.TOML)
	}
	if _, ok := cfg.Jails["user-journal"]; ok {
		t.Errorf("user-journal converted, reading entries any local user can write:\n%s", res.TOML)
	}
	var reported []string
	for _, j := range res.Jails {
		reported = append(reported, j.Problems...)
	}
	for _, want := range []string{
		"Debian's Postfix runs as postfix@-.service",
		`not converted: reads the systemd journal (journalmatch = "SYSLOG_IDENTIFIER=demo"): SYSLOG_IDENTIFIER=demo: no field journald sets itself`,
	} {
		if !slices.ContainsFunc(reported, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("not reported: %q in %q", want, reported)
		}
	}
}
