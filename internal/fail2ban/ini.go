package fail2ban

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
	"unicode"
)

// iniFile is one INI file as configparser reads it.
type iniFile struct {
	path     string
	defaults map[string]string // [DEFAULT]
	sections []string          // in order of appearance, [DEFAULT] not among them
	values   map[string]map[string]string
}

var (
	sectionLine = regexp.MustCompile(`^\[(.+)\]`)
	optionLine  = regexp.MustCompile(`^(.*?)\s*[=:]\s*(.*)$`)
)

// readINI reads path as fail2ban's configparser does: sections, "key = value" or
// "key: value" (the first of the two splits), continuation lines indented deeper than
// their key, full-line comments starting "#" or ";" (also inside a value), ";" inline
// comments at the start or after white space, blank lines kept inside a value that goes
// on, keys lower-cased, and a later key of a section replacing an earlier one.
func readINI(path string) (*iniFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f := &iniFile{path: path, defaults: map[string]string{}, values: map[string]map[string]string{}}
	var (
		cur         map[string]string // the current section's values
		curName     string
		key         string   // the key a continuation line adds to
		lines       []string // its value's lines so far
		indentLevel int
	)
	flush := func() {
		if cur != nil && key != "" {
			cur[key] = strings.TrimRightFunc(strings.Join(lines, "\n"), unicode.IsSpace)
		}
		key, lines = "", nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSuffix(sc.Text(), "\r")
		value := strings.TrimSpace(line)
		commentStart := -1
		if strings.HasPrefix(value, "#") || strings.HasPrefix(value, ";") {
			commentStart, value = 0, ""
		} else {
			for i := strings.IndexByte(line, ';'); i >= 0; {
				if i == 0 || unicode.IsSpace(rune(line[i-1])) {
					commentStart = i
					break
				}
				j := strings.IndexByte(line[i+1:], ';')
				if j < 0 {
					break
				}
				i += 1 + j
			}
			if commentStart >= 0 {
				value = strings.TrimSpace(line[:commentStart])
			}
		}
		if value == "" {
			// A blank line belongs to a value that goes on; a comment line is skipped.
			if commentStart < 0 && key != "" {
				lines = append(lines, "")
			}
			continue
		}
		indent := len(line) - len(strings.TrimLeftFunc(line, unicode.IsSpace))
		if key != "" && indent > indentLevel {
			lines = append(lines, value)
			continue
		}
		indentLevel = indent
		if m := sectionLine.FindStringSubmatch(value); m != nil {
			flush()
			curName = m[1]
			if curName == "DEFAULT" {
				cur = f.defaults
				continue
			}
			if f.values[curName] == nil {
				f.values[curName] = map[string]string{}
				f.sections = append(f.sections, curName)
			}
			cur = f.values[curName]
			continue
		}
		if cur == nil {
			return nil, fmt.Errorf("%s:%d: a key before any [section]: %q", path, n, value)
		}
		m := optionLine.FindStringSubmatch(value)
		if m == nil || strings.TrimSpace(m[1]) == "" {
			return nil, fmt.Errorf("%s:%d: [%s]: not a key = value line: %q", path, n, curName, value)
		}
		flush()
		key = strings.ToLower(strings.TrimRightFunc(m[1], unicode.IsSpace))
		lines = []string{m[2]}
	}
	flush()
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}
