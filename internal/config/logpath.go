package config

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// IsPattern reports whether a logpath is a glob pattern, as fail2ban's are: it holds
// '*', '?' or '['.
func IsPattern(path string) bool { return strings.ContainsAny(path, "*?[") }

// ExpandLogPaths returns the files a jail's logpath names now: plain paths as they are
// (followed when they appear), patterns expanded to the regular files matching them, in
// order and without repeats.
func ExpandLogPaths(logpath []string) []string {
	var out []string
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
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil && fi.Mode().IsRegular() {
				add(m)
			}
		}
	}
	return out
}

// LogPathWarnings says, for each jail, which logpath patterns match no file and which
// plain paths do not exist yet: not errors (both are followed once there is something to
// follow), but likely mistakes.
func (c *Config) LogPathWarnings() []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(c.Jails)) {
		for _, p := range c.Jails[name].LogPath {
			switch {
			case IsPattern(p) && len(ExpandLogPaths([]string{p})) == 0:
				out = append(out, "jails."+name+".logpath: "+p+" matches no file yet; files are followed as they come to match it")
			case !IsPattern(p):
				if _, err := os.Stat(p); err != nil {
					out = append(out, "jails."+name+".logpath: "+p+" does not exist yet; it is followed when it appears")
				}
			}
		}
	}
	return out
}
