package fail2ban

import (
	"fmt"
	"strings"
)

// write renders the converted configuration.
func (im *importer) write() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# logban configuration imported from the fail2ban configuration in %s\n", im.dir)
	b.WriteString("# by ban-client import-fail2ban. Check it with:\n")
	b.WriteString("#   ban-server -check -config FILE\n")
	b.WriteString("# What could not be converted is said where it was, in comments starting \"not converted\".\n")
	converted, total := 0, 0
	for _, j := range im.res.Jails {
		total++
		if j.Converted {
			converted++
		}
	}
	fmt.Fprintf(&b, "# Jails: %d looked at, %d converted.\n\n", total, converted)
	for _, p := range im.res.Problems {
		b.WriteString("# not converted: " + p + "\n")
	}
	b.WriteString("[server]\n")
	if len(im.serverIgnore) > 0 {
		b.WriteString("ignoreip = " + tomlList(im.serverIgnore) + "  # fail2ban's [DEFAULT] ignoreip\n")
	}
	b.WriteString("\n")
	for _, name := range im.actionOrder {
		a := im.actions[name]
		for _, n := range a.notes {
			b.WriteString("# " + n + "\n")
		}
		if a.kind == "" {
			fmt.Fprintf(&b, "# [actions.%s]\n# type = \"exec\"\n\n", name)
			continue
		}
		fmt.Fprintf(&b, "[actions.%s]\ntype = %s\n", name, tomlString(a.kind))
		for _, o := range a.options {
			b.WriteString(o + "\n")
		}
		b.WriteString("\n")
	}
	for _, name := range im.filterOrder {
		f := im.filters[name]
		fmt.Fprintf(&b, "[filters.%s]  # %s\n", name, f.source)
		writeList(&b, "failregex", f.fail)
		if len(f.ignore) > 0 {
			writeList(&b, "ignoreregex", f.ignore)
		}
		for _, n := range f.notes {
			for i, l := range strings.Split(n, "\n") {
				if i == 0 {
					b.WriteString("# " + l + "\n")
				} else {
					b.WriteString("#   " + l + "\n")
				}
			}
		}
		b.WriteString("\n")
	}
	for _, j := range im.jailsOut {
		fmt.Fprintf(&b, "[jails.%s]\n", j.name)
		fmt.Fprintf(&b, "filter = %s\n", tomlString(j.filter))
		if j.journalMatch != nil {
			fmt.Fprintf(&b, "backend = 'journal'\njournal_match = %s\n", tomlList(j.journalMatch))
		} else {
			fmt.Fprintf(&b, "logpath = %s\n", tomlList(j.logpath))
		}
		if j.maxretry > 0 {
			fmt.Fprintf(&b, "maxretry = %d\n", j.maxretry)
		}
		for _, d := range []struct{ key, v string }{{"findtime", j.findtime}, {"bantime", j.bantime}} {
			switch d.v {
			case "":
			case "-1":
				fmt.Fprintf(&b, "%s = -1\n", d.key)
			default:
				fmt.Fprintf(&b, "%s = %s\n", d.key, tomlString(d.v))
			}
		}
		if len(j.ignoreip) > 0 {
			fmt.Fprintf(&b, "ignoreip = %s\n", tomlList(j.ignoreip))
		}
		fmt.Fprintf(&b, "actions = %s\n", tomlList(j.actions))
		if j.regexes > j.converted {
			fmt.Fprintf(&b, "# not converted: %d of the filter's %d failregexes (see [filters.%s])\n", j.regexes-j.converted, j.regexes, j.filter)
		}
		for _, n := range j.notes {
			if !strings.HasPrefix(n, "filter "+j.filter+": ") {
				b.WriteString("# not converted: " + strings.ReplaceAll(n, "\n", " ") + "\n")
			}
		}
		if len(j.increment) > 0 {
			fmt.Fprintf(&b, "[jails.%s.bantime_increment]\n", j.name)
			for _, l := range j.increment {
				b.WriteString(l + "\n")
			}
		}
		b.WriteString("\n")
	}
	var left []string
	for _, j := range im.res.Jails {
		if !j.Converted && (j.Enabled || len(j.Problems) > 0) {
			left = append(left, fmt.Sprintf("# [jails.%s] not converted: %s", j.Name, strings.Join(j.Problems, "; ")))
		}
	}
	if len(left) > 0 {
		b.WriteString("# Jails not converted:\n")
		for _, l := range left {
			b.WriteString(strings.ReplaceAll(l, "\n", " ") + "\n")
		}
	}
	return []byte(b.String())
}

func writeList(b *strings.Builder, key string, items []string) {
	b.WriteString(key + " = [\n")
	for _, it := range items {
		b.WriteString("  " + tomlString(it) + ",\n")
	}
	b.WriteString("]\n")
}

func tomlList(items []string) string {
	var q []string
	for _, it := range items {
		q = append(q, tomlString(it))
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// tomlString quotes s as TOML: a literal string where it can be (no escapes to read in
// a regex), else a basic string.
func tomlString(s string) string {
	if !strings.ContainsAny(s, "'\n\r\t") && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "'" + s + "'"
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
