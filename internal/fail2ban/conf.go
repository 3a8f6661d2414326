package fail2ban

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// conf is a configuration unit read as fail2ban's ConfigReader reads one: its files, in
// the order read, merged.
type conf struct {
	files    []string
	defaults map[string]string
	sections map[string]map[string]string // also KNOWN/NAME: the values later files replaced
	order    []string                     // section names in order of first appearance
}

// maxValue bounds a value as interpolation and tags grow it: a file that doubles a value
// at each of ten levels is refused, not followed to a gigabyte.
const maxValue = 1 << 20

// errNoOption is a key that no section, [DEFAULT] or variable holds.
var errNoOption = errors.New("not set")

// readConf reads the unit name under dir (jail, filter.d/sshd, action.d/iptables):
// name.conf, name.d/*.conf, name.local and name.d/*.local, each that exists, with the
// files each includes before and after it. It fails if none exists.
func readConf(dir, name string) (*conf, error) {
	base := filepath.Join(dir, name)
	candidates := []string{base + ".conf"}
	confs, _ := filepath.Glob(filepath.Join(base+".d", "*.conf"))
	slices.Sort(confs)
	candidates = append(candidates, confs...)
	candidates = append(candidates, base+".local")
	locals, _ := filepath.Glob(filepath.Join(base+".d", "*.local"))
	slices.Sort(locals)
	candidates = append(candidates, locals...)
	var top []string
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			top = append(top, c)
		}
	}
	if len(top) == 0 {
		return nil, fmt.Errorf("no %s.conf or %s.local in %s", filepath.Base(name), filepath.Base(name), filepath.Dir(base))
	}
	c := &conf{defaults: map[string]string{}, sections: map[string]map[string]string{}}
	files, err := includes(withLocals(top), nil)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		c.merge(f)
		c.files = append(c.files, f.path)
	}
	return c, nil
}

// withLocals puts each file's .local beside it, where it exists and is not listed.
func withLocals(files []string) []string {
	var out []string
	for _, f := range files {
		out = append(out, f)
		local := strings.TrimSuffix(f, filepath.Ext(f)) + ".local"
		if local != f && !slices.Contains(files, local) {
			if _, err := os.Stat(local); err == nil {
				out = append(out, local)
			}
		}
	}
	return out
}

// includes reads each file and expands it into the files of its [INCLUDES] before,
// itself, and the files of its after, recursively, in the order they are merged; a file
// already on the way is not read again.
func includes(files, seen []string) ([]*iniFile, error) {
	var out []*iniFile
	for _, path := range files {
		f, err := readINI(path)
		if err != nil {
			if os.IsNotExist(err) {
				continue // fail2ban skips an include that is not there
			}
			return nil, err
		}
		var before, after []*iniFile
		for _, part := range []struct {
			key  string
			list *[]*iniFile
		}{{"before", &before}, {"after", &after}} {
			v, ok := f.values["INCLUDES"][part.key]
			if !ok {
				continue
			}
			for inc := range strings.SplitSeq(v, "\n") {
				if inc = strings.TrimSpace(inc); inc == "" {
					continue
				}
				if !filepath.IsAbs(inc) {
					inc = filepath.Join(filepath.Dir(path), inc)
				}
				if slices.Contains(seen, inc) {
					continue
				}
				more, err := includes(withLocals([]string{inc}), append(slices.Clone(seen), path))
				if err != nil {
					return nil, err
				}
				*part.list = append(*part.list, more...)
			}
		}
		out = append(out, before...)
		out = append(out, f)
		out = append(out, after...)
	}
	return out, nil
}

// merge lays f over c: [DEFAULT] keys replace, each section's keys replace, and the
// values replaced are kept in KNOWN/SECTION. A conditional section ([Init?family=inet6])
// is kept under its name with the condition on each key, where nothing reads it.
func (c *conf) merge(f *iniFile) {
	for k, v := range f.defaults {
		c.defaults[k] = v
	}
	for _, name := range f.sections {
		s := f.values[name]
		if base, cond, ok := strings.Cut(name, "?"); ok && base != "" {
			name = base
			cs := map[string]string{}
			for k, v := range s {
				cs[k+"?"+cond] = v
			}
			s = cs
		}
		old, ok := c.sections[name]
		if !ok {
			c.sections[name] = map[string]string{}
			c.order = append(c.order, name)
			old = c.sections[name]
		} else {
			known := c.sections["KNOWN/"+name]
			if known == nil {
				known = map[string]string{}
				c.sections["KNOWN/"+name] = known
			}
			for k := range s {
				if v, ok := old[k]; ok {
					known[k] = v
				}
			}
		}
		for k, v := range s {
			old[k] = v
		}
	}
}

// raw returns key of section as written, looked up as configparser does: the variables
// first, then the section, then [DEFAULT]; __name__ is the section's name.
func (c *conf) raw(section, key string, vars map[string]string) (string, bool) {
	if key == "__name__" {
		return section, true
	}
	if v, ok := vars[key]; ok {
		return v, true
	}
	if v, ok := c.sections[section][key]; ok {
		return v, true
	}
	v, ok := c.defaults[key]
	return v, ok
}

var interpolation = regexp.MustCompile(`%\(([^)]+)\)s`)

// get returns key of section with %(name)s and %(section/name)s interpolated, as
// fail2ban's configparser does: names are looked up as raw does, in section's context,
// to a depth of 10; %(known/name)s is the value a later file replaced, else [DEFAULT]'s;
// %(default/name)s is [DEFAULT]'s; %% is a %.
func (c *conf) get(section, key string, vars map[string]string) (string, error) {
	v, ok := c.raw(section, key, vars)
	if !ok {
		return "", fmt.Errorf("[%s] %s: %w", section, key, errNoOption)
	}
	return c.interpolate(section, key, v, vars, 0)
}

func (c *conf) interpolate(section, key, v string, vars map[string]string, depth int) (string, error) {
	if !strings.Contains(v, "%") {
		return v, nil
	}
	if depth > 10 {
		return "", fmt.Errorf("[%s] %s: interpolation deeper than 10: a loop?", section, key)
	}
	var b strings.Builder
	for len(v) > 0 {
		i := strings.IndexByte(v, '%')
		if i < 0 {
			b.WriteString(v)
			break
		}
		b.WriteString(v[:i])
		v = v[i:]
		if strings.HasPrefix(v, "%%") {
			b.WriteByte('%')
			v = v[2:]
			continue
		}
		m := interpolation.FindStringSubmatchIndex(v)
		if m == nil || m[0] != 0 {
			return "", fmt.Errorf("[%s] %s: a %% that is neither %%%% nor %%(name)s: %q", section, key, v)
		}
		name := strings.ToLower(v[m[2]:m[3]])
		ref, ok := c.lookup(section, name, vars)
		if !ok {
			return "", fmt.Errorf("[%s] %s: %%(%s)s: %w", section, key, name, errNoOption)
		}
		s, err := c.interpolate(section, key, ref, vars, depth+1)
		if err != nil {
			return "", err
		}
		if b.Len()+len(s) > maxValue {
			return "", fmt.Errorf("[%s] %s: interpolated past %d bytes", section, key, maxValue)
		}
		b.WriteString(s)
		v = v[m[1]:]
	}
	return b.String(), nil
}

// lookup finds the value %(name)s stands for in section's context.
func (c *conf) lookup(section, name string, vars map[string]string) (string, bool) {
	if v, ok := c.raw(section, name, vars); ok {
		return v, true
	}
	sec, opt, ok := strings.Cut(name, "/")
	if !ok {
		return "", false
	}
	switch strings.ToLower(sec) {
	case "known":
		if v, ok := c.sections["KNOWN/"+section][opt]; ok {
			return v, true
		}
	case "default":
	default:
		for s, values := range c.sections {
			if strings.EqualFold(s, sec) {
				if v, ok := values[opt]; ok {
					return v, true
				}
			}
		}
	}
	v, ok := c.defaults[opt]
	return v, ok
}

// getEx is fail2ban's get_ex: key may name a section (known/name, default/name,
// SECTION/name), tried before section's own key.
func (c *conf) getEx(section, key string, vars map[string]string) (string, error) {
	if sec, opt, ok := strings.Cut(key, "/"); ok {
		var tries []string
		switch strings.ToLower(sec) {
		case "known":
			tries = []string{"KNOWN/" + section, section}
		case "default":
			tries = []string{""}
		default:
			tries = []string{sec}
		}
		for _, s := range tries {
			if s == "" {
				if v, ok := c.defaults[opt]; ok {
					return c.interpolate(section, key, v, nil, 0)
				}
				continue
			}
			if _, ok := c.sections[s]; !ok {
				continue
			}
			if v, err := c.get(s, opt, nil); err == nil {
				return v, nil
			}
		}
	}
	return c.get(section, key, vars)
}

// options lists the keys section sets itself (not [DEFAULT]'s), sorted.
func (c *conf) options(section string) []string {
	var keys []string
	for k := range c.sections[section] {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

var tagRef = regexp.MustCompile(`<([^ <>]+)>`)

// substituteTags replaces each <tag> in the values of opts by the value of the option of
// that name, or by more(tag) where opts has none, again and again until nothing changes
// (fail2ban's substituteRecursiveTags). A tag with neither stays as it is: <HOST>,
// <F-USER> and the like are the regex's. ignore lists options left alone.
func substituteTags(opts map[string]string, ignore []string, more func(string) (string, bool)) (map[string]string, error) {
	out := make(map[string]string, len(opts))
	for k, v := range opts {
		out[k] = v
	}
	const maxReplace = 25
	counts := map[string]map[string]int{}
	for changed := true; changed; {
		changed = false
		for tag, value := range out {
			if slices.Contains(ignore, tag) || !strings.Contains(value, "<") {
				continue
			}
			orig := value
			pos := 0
			for {
				m := tagRef.FindStringSubmatchIndex(value[pos:])
				if m == nil {
					break
				}
				rtag := value[pos+m[2] : pos+m[3]]
				repl, ok := out[rtag]
				if !ok && more != nil {
					repl, ok = more(rtag)
				}
				if !ok || slices.Contains(ignore, rtag) {
					pos += m[1]
					continue
				}
				if rtag == tag || counts[tag][rtag] > maxReplace {
					return nil, fmt.Errorf("%s: <%s> refers to itself", tag, rtag)
				}
				if counts[tag] == nil {
					counts[tag] = map[string]int{}
				}
				counts[tag][rtag]++
				value = strings.ReplaceAll(value, "<"+rtag+">", repl)
				if len(value) > maxValue {
					return nil, fmt.Errorf("%s: grows past %d bytes as its tags are replaced", tag, maxValue)
				}
				pos += m[0]
			}
			if value != orig {
				out[tag] = value
				if tagRef.MatchString(value) {
					changed = true
				}
			}
		}
	}
	return out, nil
}

var (
	optionName    = regexp.MustCompile(`(?s)^([^\[]+)(?:\[(.*)\])?\s*$`)
	optionExtract = regexp.MustCompile(`(?s)\s*([\w\-_.]+)=(?:"([^"]*)"|'([^']*)'|([^,\]]*))(?:,|\]\s*\[|$)|,?\s*$`)
	optionSplit   = regexp.MustCompile(`(?s)(?:[^\[\s]+(?:\s*\[\s*(?:[\w\-_.]+=(?:"[^"]*"|'[^']*'|[^,\]]*)\s*(?:,|\]\s*\[)?\s*)*\])?|\S+)`)
)

// extractOptions splits "name[k1=v1, k2="v 2"]" into its name and options, as
// fail2ban's extractOptions does.
func extractOptions(s string) (string, map[string]string, error) {
	m := optionName.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return "", nil, fmt.Errorf("%q: not NAME or NAME[key=value, ...]", s)
	}
	opts := map[string]string{}
	rest := m[2]
	for len(strings.TrimSpace(rest)) > 0 {
		o := optionExtract.FindStringSubmatchIndex(rest)
		if o == nil || o[0] != 0 || o[1] == 0 {
			return "", nil, fmt.Errorf("%q: cannot read the options at %q", s, rest)
		}
		if o[2] >= 0 {
			var v string
			for g := 2; g <= 4; g++ {
				if o[2*g] >= 0 {
					v = rest[o[2*g]:o[2*g+1]]
					break
				}
			}
			opts[strings.TrimSpace(rest[o[2]:o[3]])] = strings.TrimSpace(v)
		}
		rest = rest[o[1]:]
	}
	return strings.TrimSpace(m[1]), opts, nil
}

// splitWithOptions splits a list of "name[options]" written across lines or spaces
// (a jail's action) into its entries.
func splitWithOptions(s string) []string {
	var out []string
	for _, e := range optionSplit.FindAllString(s, -1) {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}
