package journal

import (
	"fmt"
	"strings"
)

// CheckMatches checks journal matches as journalctl takes them: "FIELD=value" terms,
// where terms of the same field are ORed and of different fields ANDed, and "+" between
// groups that are ORed. Each group must match a field journald sets itself (its name
// begins with an underscore, like _SYSTEMD_UNIT): any local user can write entries with
// any other field, SYSLOG_IDENTIFIER included.
func CheckMatches(matches []string) error {
	if len(matches) == 0 {
		return fmt.Errorf("no match: the journal holds every service's entries and any local user's; match the service's unit, like \"_SYSTEMD_UNIT=postfix@-.service\"")
	}
	trusted := false
	for i, m := range matches {
		if m == "+" {
			if i == 0 || i == len(matches)-1 || matches[i-1] == "+" {
				return fmt.Errorf("match %d: \"+\" stands between two groups of matches", i+1)
			}
			if !trusted {
				return untrusted(matches[:i])
			}
			trusted = false
			continue
		}
		field, _, ok := strings.Cut(m, "=")
		if !ok || !validField(field) {
			return fmt.Errorf("match %d: %q is not FIELD=value with FIELD in capitals, digits and underscores, like \"_SYSTEMD_UNIT=postfix@-.service\"", i+1, m)
		}
		if strings.HasPrefix(field, "_") && !strings.HasPrefix(field, "__") {
			trusted = true
		}
	}
	if !trusted {
		start := 0
		for i, m := range matches {
			if m == "+" {
				start = i + 1
			}
		}
		return untrusted(matches[start:])
	}
	return nil
}

func untrusted(group []string) error {
	return fmt.Errorf("%s: no field journald sets itself; any local user can write entries that match (logger -t); add the service's unit, like \"_SYSTEMD_UNIT=postfix@-.service\", or another field beginning with _", strings.Join(group, " "))
}

// validField reports whether name is a journal field name journalctl takes in a match:
// capitals, digits and underscores, not starting with a digit, at most 64 bytes.
func validField(name string) bool {
	if name == "" || len(name) > 64 || name[0] >= '0' && name[0] <= '9' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Key names a journal reader among the followed sources: the journal's directory ("" for
// the system journal) and its matches. Jails reading the same journal with the same
// matches share one reader, and its position is saved under this key.
func Key(directory string, matches []string) string {
	k := "journal"
	if directory != "" {
		k += ":" + directory
	}
	return k + " " + strings.Join(matches, " ")
}

// IsKey reports whether a followed source's name is a journal's Key, not a file's path.
func IsKey(name string) bool {
	return strings.HasPrefix(name, "journal ") || strings.HasPrefix(name, "journal:")
}
