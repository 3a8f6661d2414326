package config

import (
	"fmt"
	"regexp"
	"strings"
)

// fail2banINI matches what only a fail2ban INI file holds: its [DEFAULT] and [INCLUDES]
// sections, %(name)s interpolation, and bare durations (bantime = 10h).
var fail2banINI = regexp.MustCompile(`(?m)^\s*\[(DEFAULT|INCLUDES|Definition|Init)\]\s*$|%\([a-z_]+\)s|^\s*(bantime|findtime)\s*=\s*[0-9]+[smhdw]\s*$|^\s*failregex\s*=\s*[^\s\['"]`)

// fail2banFile matches the sections only a whole fail2ban file has: such a file gets one
// piece of advice, not a complaint per line.
var fail2banFile = regexp.MustCompile(`(?m)^\s*\[(DEFAULT|INCLUDES|Definition|Init)\]\s*$`)

// bareValue matches a key set to a bare word, which INI allows and TOML does not:
// loglevel = info, port = ssh.
var bareValue = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*([A-Za-z][^"'\[{]*?)\s*$`)

// syntaxAdvice says what to write instead of line, which TOML could not parse, where it
// can tell (a fail2ban INI line, a text without quotes), else the parser's message.
func syntaxAdvice(line, parserMessage string) string {
	if fail2banINI.MatchString(line) {
		return "this line looks like fail2ban's INI: " + fail2banAdvice[strings.Index(fail2banAdvice, "write"):]
	}
	if m := bareValue.FindStringSubmatch(line); m != nil && m[2] != "true" && m[2] != "false" {
		return fmt.Sprintf("text needs quotes in TOML: write %s = %q (a fail2ban INI line? its jails convert with ban-client import-fail2ban)", m[1], m[2])
	}
	return parserMessage
}

// looksLikeFail2ban reports whether a file that TOML could not read is a fail2ban INI
// file (a pasted jail.local): it gets advice, not a TOML parser's complaint.
func looksLikeFail2ban(text []byte) bool { return fail2banINI.Match(text) }

const fail2banAdvice = `this looks like fail2ban's INI (jail.local, filter.d), and logban reads TOML: ` +
	`write [jails.NAME] for [NAME] and [defaults] for [DEFAULT]; quote durations and text (bantime = "10h", filter = "sshd"); ` +
	`write lists in brackets (ignoreip = ["127.0.0.1/8", "192.0.2.0/24"], logpath = ["/var/log/auth.log"]); ` +
	`%(name)s has no equivalent: write the value; in failregex, <HOST> stays and <ADDR> becomes <HOST>`

// typeWords turns BurntSushi/toml's type messages into what to write.
var typeWords = regexp.MustCompile(`incompatible types: TOML value has type (\w+); destination has type (\w+)`)

// inUsersWords says a type mismatch at key as what to write there, where it can.
func inUsersWords(key, msg string) string {
	m := typeWords.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	field := key[strings.LastIndex(key, ".")+1:]
	switch got, want := m[1], m[2]; {
	case want == "slice":
		example := `["..."]`
		switch field {
		case "logpath":
			example = `["/var/log/zimbra.log"]`
		case "ignoreip", "trusted_proxies":
			example = `["192.0.2.7", "10.0.0.0/8"]`
		case "actions":
			example = `["blackhole"]`
		case "failregex", "ignoreregex":
			example = `['failed from <HOST>']`
		case "servers", "routes":
			example = `["nats://nats1:4222"]`
		}
		return "must be a list, like " + example + " (a " + got + " was given)"
	case want == "integer" || want == "int" || want == "int64":
		return "must be a whole number, without quotes (a " + got + " was given)"
	case want == "bool":
		return "must be true or false, without quotes (a " + got + " was given)"
	case want == "string":
		return `must be text in quotes, like "..." (a ` + got + " was given)"
	}
	return msg
}

// keyIndex is a list index at the end of a key path: logpath[2].
var keyIndex = regexp.MustCompile(`\[\d+\]$`)

// lineOf returns the line of text where the key at keyPath ("jails.sasl.maxretry",
// "jails.sasl.logpath[1]") is set, else the line of its table's header, else 0. It reads
// the plain layout configurations are written in: [a.b] headers and key = value lines.
func lineOf(text, keyPath string) int {
	// Names are compared without spaces and quotes: [policy.quotas."out bound"] is
	// the table policy.quotas.out bound.
	bare := strings.NewReplacer(" ", "", `"`, "", "'", "").Replace
	keyPath = bare(keyPath)
	path := strings.Split(keyIndex.ReplaceAllString(keyPath, ""), ".")
	table, key := path[:len(path)-1], path[len(path)-1]
	headerOf := func(line string) (string, bool) {
		t := strings.TrimSpace(line)
		if !strings.HasPrefix(t, "[") || strings.HasPrefix(t, "[[") {
			return "", false
		}
		end := strings.Index(t, "]")
		if end < 0 {
			return "", false
		}
		return bare(t[1:end]), true
	}
	want := strings.Join(table, ".")
	in, headerLine := want == "", 0
	for i, line := range strings.Split(text, "\n") {
		if h, ok := headerOf(line); ok {
			in = h == want
			if in && headerLine == 0 {
				headerLine = i + 1
			}
			if h == keyPath { // the key is a table itself
				return i + 1
			}
			continue
		}
		if in {
			t := strings.TrimSpace(line)
			if name, _, ok := strings.Cut(t, "="); ok && bare(name) == key {
				return i + 1
			}
		}
	}
	return headerLine
}
