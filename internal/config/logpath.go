package config

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// IsPattern reports whether a logpath is a glob pattern, as fail2ban's are: it holds
// '*', '?' or '['.
func IsPattern(path string) bool { return strings.ContainsAny(path, "*?[") }

// MaxFilesPerPattern bounds the files one logpath pattern follows: the first, in the
// order of their names. Each followed file holds a descriptor, and a pattern over a
// folder another user owns must not let that user make ban-server open any number.
const MaxFilesPerPattern = 256

// ExpandLogPaths returns the files a jail's logpath names now: plain paths as they are
// (followed when they appear), patterns expanded to the regular files matching them, at
// most MaxFilesPerPattern each, in order and without repeats.
func ExpandLogPaths(logpath []string) []string {
	out, _ := expandLogPaths(logpath)
	return out
}

// ExpandLogPath is ExpandLogPaths for one logpath, also saying whether it is a pattern
// that matched more files than it may follow.
func ExpandLogPath(logpath string) (paths []string, capped bool) {
	paths, over := expandLogPaths([]string{logpath})
	return paths, len(over) > 0
}

// expandLogPaths is ExpandLogPaths, also saying which patterns matched more files than
// they may follow.
func expandLogPaths(logpath []string) (out []string, over []string) {
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, p := range logpath {
		if !IsPattern(p) {
			add(p)
			continue
		}
		matches, _ := filepath.Glob(p) // checked by Load
		n := 0
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil && fi.Mode().IsRegular() {
				if n++; n > MaxFilesPerPattern {
					over = append(over, p)
					break
				}
				add(m)
			}
		}
	}
	return out, over
}

// LogPathWarnings says, for each jail, which logpath patterns match no file and which
// plain paths do not exist yet: not errors (both are followed once there is something to
// follow), but likely mistakes.
func (c *Config) LogPathWarnings() []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(c.Jails)) {
		for _, p := range c.Jails[name].LogPath {
			switch {
			case IsPattern(p):
				paths, over := expandLogPaths([]string{p})
				if len(paths) == 0 {
					out = append(out, "jails."+name+".logpath: "+p+" matches no file yet; files are followed as they come to match it")
				}
				if len(over) > 0 {
					out = append(out, fmt.Sprintf("jails.%s.logpath: %s matches more than %d files; only the first %d by name are followed: narrow the pattern", name, p, MaxFilesPerPattern, MaxFilesPerPattern))
				}
			case !IsPattern(p):
				if _, err := os.Stat(p); err != nil {
					out = append(out, "jails."+name+".logpath: "+p+" does not exist yet; it is followed when it appears")
				}
			}
		}
	}
	return out
}

// documentation are the address ranges kept for examples (RFC 5737, RFC 3849): in a
// live configuration they are placeholders someone forgot to replace.
var documentation = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/32"),
}

// Warnings says what in the configuration is likely a mistake, though ban-server runs
// with it: no jail at all, logpaths not there yet (LogPathWarnings), secrets that
// others than their owner may read, and addresses of
// the documentation ranges, the placeholders of the examples, in ignoreip and
// trusted_proxies.
func (c *Config) Warnings() []string {
	var out []string
	if len(c.Jails) == 0 {
		out = append(out, "no jail is enabled: ban-server would read nothing and ban nobody")
	}
	out = append(out, c.LogPathWarnings()...)
	out = append(out, c.secretWarnings()...)
	if c.Farm != nil {
		out = append(out, c.Farm.warnings()...)
	}
	placeholders := func(key string, ps []netip.Prefix) {
		for _, p := range ps {
			for _, d := range documentation {
				if d.Overlaps(p) {
					out = append(out, key+": "+p.String()+" is a documentation address (RFC 5737, RFC 3849), the examples' placeholder: put the real one")
					break
				}
			}
		}
	}
	placeholders("server.ignoreip", c.Server.IgnoreIP)
	placeholders("server.trusted_proxies", c.Server.TrustedProxies)
	for _, name := range slices.Sorted(maps.Keys(c.Jails)) {
		placeholders("jails."+name+".ignoreip", c.Jails[name].IgnoreIP)
		placeholders("jails."+name+".trusted_proxies", c.Jails[name].TrustedProxies)
	}
	return out
}
