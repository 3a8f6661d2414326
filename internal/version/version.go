// Package version says which logban a binary is: the version its build set, else the
// module version and the VCS revision the go command stamped into it.
package version

import (
	"runtime/debug"
	"strings"
)

// Of returns the binary's version: set, if the build set one (-ldflags "-X
// main.version=..."), else the module's version, else "devel", followed by the VCS
// revision it was built from ("devel 3f2a1b4c9d0e", "+modified" if the tree had
// uncommitted changes), where the go command stamped one.
func Of(set string) string {
	if set != "" {
		return set
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := info.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	var rev string
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value[:min(12, len(s.Value))]
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" || strings.Contains(v, rev) {
		return v
	}
	v += " " + rev
	if modified {
		v += "+modified"
	}
	return v
}
