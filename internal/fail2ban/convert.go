package fail2ban

import (
	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/logban/logban/filters"
	"github.com/logban/logban/journal"
)

// Options says what Import converts.
type Options struct {
	// All converts every jail, not only the enabled ones.
	All bool
}

// Result is a fail2ban configuration turned into logban's.
type Result struct {
	// TOML is the logban configuration, with what could not be converted in comments.
	TOML []byte
	// Jails is every jail looked at, in the order fail2ban read them.
	Jails []JailReport
	// Files are the fail2ban files read, in order.
	Files []string
	// Filters are the logban filters made, in the order made.
	Filters []FilterReport
	// Problems are what could not be converted of the settings every jail shares.
	Problems []string
}

// FilterReport is a logban filter made from a fail2ban one: what it came from, in
// fail2ban's words after fail2ban's interpolation, and what it kept.
type FilterReport struct {
	Name   string // the [filters.NAME] of logban's
	Source string // filter.d/NAME.conf, with the jail's options
	// Prefregex and Datepattern are fail2ban's, interpolated.
	Prefregex, Datepattern string
	// Converted are the failregexes logban runs, as fail2ban wrote them; Dropped the
	// others; Ignore the ignoreregexes kept; Derived the ignoreregexes made of parts of
	// failregexes (a look-ahead, an <F-NOFAIL>), in fail2ban's syntax.
	Converted, Dropped, Ignore, Derived []string
}

// JailReport is what became of one fail2ban jail.
type JailReport struct {
	Name    string
	Enabled bool
	// Converted says the jail is in the TOML. It may still have lost a regex or an
	// action: Problems says which, and why.
	Converted bool
	// Filter is the logban filter the jail uses, "" when not converted.
	Filter string
	// Regexes and Converted regexes: how many of the filter's failregexes there are, and
	// how many logban runs.
	Regexes, RegexesConverted int
	// Problems are what could not be converted, each with its reason.
	Problems []string
}

// Import reads the fail2ban configuration in dir (jail.conf, jail.local, jail.d/,
// filter.d/, action.d/) as fail2ban does and turns its jails into logban's.
func Import(dir string, opts Options) (*Result, error) {
	jails, err := readConf(dir, "jail")
	if err != nil {
		return nil, err
	}
	jails.defaults["fail2ban_version"] = "1.0.2"
	jails.defaults["fail2ban_confpath"] = dir
	im := &importer{dir: dir, jails: jails, res: &Result{Files: slices.Clone(jails.files)},
		filters: map[string]*filterOut{}, actions: map[string]*actionOut{}}
	if v, err := jails.get("DEFAULT", "ignoreip", nil); err == nil {
		var bad []string
		im.serverIgnore, bad = splitIgnore(v)
		for _, b := range bad {
			im.res.Problems = append(im.res.Problems, fmt.Sprintf("[DEFAULT] ignoreip %q: logban takes addresses and prefixes, never host names (it never resolves one)", b))
		}
	}
	for _, name := range jails.order {
		if name == "INCLUDES" || strings.HasPrefix(name, "KNOWN/") || strings.Contains(name, "?") {
			continue
		}
		im.jail(name, opts)
	}
	im.res.TOML = im.write()
	return im.res, nil
}

type importer struct {
	dir          string
	jails        *conf
	res          *Result
	serverIgnore []string
	filters      map[string]*filterOut // by logban name
	filterOrder  []string
	actions      map[string]*actionOut // by logban name
	actionOrder  []string
	jailsOut     []*jailOut
}

type filterOut struct {
	name, source string
	fail, ignore []string
	notes        []string // comments: what was left out, and why
}

type actionOut struct {
	name    string
	kind    string   // "" for a commented-out exec
	options []string // TOML key = value lines
	notes   []string
}

type jailOut struct {
	name, filter string
	logpath      []string
	journalMatch []string // backend = "journal" when set
	maxretry     int
	findtime     string
	bantime      string
	ignoreip     []string
	actions      []string
	increment    []string
	notes        []string
	// regexes and converted: the filter's failregexes, and those logban runs.
	regexes, converted int
}

func (im *importer) jail(name string, opts Options) {
	rep := JailReport{Name: name}
	get := func(key string) (string, bool) {
		v, err := im.jails.get(name, key, nil)
		return strings.TrimSpace(v), err == nil
	}
	problem := func(format string, a ...any) { rep.Problems = append(rep.Problems, fmt.Sprintf(format, a...)) }
	defer func() { im.res.Jails = append(im.res.Jails, rep) }()

	enabled, _ := get("enabled")
	rep.Enabled = isTrue(enabled)
	if !rep.Enabled && !opts.All {
		return
	}
	j := &jailOut{name: name}
	if backend, _ := get("backend"); strings.HasPrefix(backend, "systemd") {
		match, ok := get("journalmatch")
		if !ok {
			filter, _ := get("filter")
			match = im.journalMatch(filter)
		}
		j.journalMatch, ok = convertJournalMatch(match, problem)
		if !ok {
			return
		}
		if _, opts, _ := extractOptions(backend); len(opts) > 0 {
			problem("backend = %s: its options are not converted; the jail reads the system journal (journal_directory names another folder)", backend)
		}
	} else if v, ok := get("logpath"); ok {
		for p := range strings.SplitSeq(v, "\n") {
			p = strings.TrimSpace(p)
			p = strings.TrimSuffix(strings.TrimSuffix(p, " tail"), " head")
			if p = strings.TrimSpace(p); p != "" {
				j.logpath = append(j.logpath, p)
			}
		}
	}
	if len(j.logpath) == 0 && j.journalMatch == nil {
		problem("has no logpath")
		return
	}
	var err error
	if v, ok := get("maxretry"); ok {
		if j.maxretry, err = strconv.Atoi(v); err != nil {
			problem("maxretry = %q: not a number", v)
			return
		}
	}
	for _, d := range []struct {
		key string
		to  *string
	}{{"findtime", &j.findtime}, {"bantime", &j.bantime}} {
		if v, ok := get(d.key); ok {
			if *d.to, err = duration(v); err != nil {
				problem("%s = %q: %v", d.key, v, err)
				return
			}
		}
	}
	if v, ok := get("ignoreip"); ok {
		ips, bad := splitIgnore(v)
		if !slices.Equal(ips, im.serverIgnore) {
			j.ignoreip = ips
			for _, b := range bad {
				problem("ignoreip %q: logban takes addresses and prefixes, never host names (it never resolves one)", b)
			}
		}
	}
	if v, ok := get("ignorecommand"); ok && v != "" {
		problem("ignorecommand %q: logban runs no program to decide whom to ignore; list the addresses in ignoreip", v)
	}
	im.increment(j, get, problem)

	filter, ok := get("filter")
	if !ok || filter == "" {
		problem("has no filter")
		return
	}
	backend, _ := get("backend")
	f, regexes, converted, probs := im.filter(filter, backend)
	rep.Problems = append(rep.Problems, probs...)
	rep.Regexes, rep.RegexesConverted = regexes, converted
	if f == nil || len(f.fail) == 0 {
		problem("not converted: none of its filter's failregexes can run in logban")
		return
	}
	j.filter = f.name
	j.regexes, j.converted = regexes, converted
	rep.Filter = f.name

	action, _ := get("action")
	for _, a := range splitWithOptions(action) {
		name, note, letsThrough := im.action(name, a)
		if letsThrough {
			problem("not converted: %s", note)
			return
		}
		if note != "" {
			problem("%s", note)
		}
		if name != "" && !slices.Contains(j.actions, name) {
			j.actions = append(j.actions, name)
		}
	}
	if len(j.actions) == 0 {
		problem("no action of its could be converted: it bans through the log action only")
		im.addAction(&actionOut{name: "log", kind: "log", notes: []string{"for the jails none of whose fail2ban actions logban has"}})
		j.actions = []string{"log"}
	}
	j.notes = rep.Problems
	im.jailsOut = append(im.jailsOut, j)
	rep.Converted = true
}

// convertJournalMatch turns a journalmatch ("_SYSTEMD_UNIT=sshd.service + _COMM=sshd")
// into logban's journal_match, or says why it cannot. Debian's Postfix runs as
// postfix@-.service, where fail2ban's filters match postfix.service: both are matched.
func convertJournalMatch(match string, problem func(string, ...any)) ([]string, bool) {
	var out []string
	for _, m := range strings.Fields(match) {
		out = append(out, m)
		if m == "_SYSTEMD_UNIT=postfix.service" {
			out = append(out, "_SYSTEMD_UNIT=postfix@-.service")
			problem("journalmatch %s: Debian's Postfix runs as postfix@-.service; both are matched", m)
		}
	}
	if err := journal.CheckMatches(out); err != nil {
		problem("not converted: reads the systemd journal (journalmatch = %q): %v", match, err)
		return nil, false
	}
	return out, true
}

// journalMatch returns the journalmatch of the filter spec names (NAME[options]), or "".
func (im *importer) journalMatch(spec string) string {
	name, args, err := extractOptions(spec)
	if err != nil {
		return ""
	}
	c, err := readConf(im.dir, filepath.Join("filter.d", name))
	if err != nil {
		return ""
	}
	v, _ := c.get("Definition", "journalmatch", args)
	return strings.TrimSpace(v)
}

// increment converts bantime.increment and its friends.
func (im *importer) increment(j *jailOut, get func(string) (string, bool), problem func(string, ...any)) {
	v, _ := get("bantime.increment")
	if !isTrue(v) {
		return
	}
	j.increment = append(j.increment, "enabled = true")
	if v, ok := get("bantime.factor"); ok && v != "" {
		if _, err := strconv.ParseFloat(v, 64); err == nil {
			j.increment = append(j.increment, "factor = "+v)
		}
	}
	if v, ok := get("bantime.multipliers"); ok && v != "" {
		var ms []string
		for m := range strings.FieldsSeq(v) {
			if _, err := strconv.ParseFloat(m, 64); err == nil {
				ms = append(ms, m)
			}
		}
		j.increment = append(j.increment, "multipliers = ["+strings.Join(ms, ", ")+"]")
	}
	for _, key := range []string{"maxtime", "rndtime"} {
		if v, ok := get("bantime." + key); ok && v != "" {
			if d, err := duration(v); err == nil {
				j.increment = append(j.increment, key+" = "+d)
			}
		}
	}
	if v, _ := get("bantime.overalljails"); isTrue(v) {
		j.increment = append(j.increment, "overalljails = true")
	}
	if v, ok := get("bantime.formula"); ok && v != "" {
		if m, _ := get("bantime.multipliers"); m == "" {
			problem("bantime.formula is Python: logban's increment is bantime x factor x 2^(n-1) (or multipliers)")
		}
	}
}

// filter reads filter.d/NAME with the jail's options (filter = NAME[key=value]) and
// turns it into a [filters.X] of logban's, shared by the jails that read it alike.
func (im *importer) filter(spec, backend string) (f *filterOut, regexes, converted int, problems []string) {
	name, args, err := extractOptions(spec)
	if err != nil {
		return nil, 0, 0, []string{fmt.Sprintf("filter %s", err)}
	}
	c, err := readConf(im.dir, filepath.Join("filter.d", name))
	if err != nil {
		return nil, 0, 0, []string{fmt.Sprintf("filter %q: %v", name, err)}
	}
	im.res.Files = appendNew(im.res.Files, c.files...)
	if strings.HasPrefix(backend, "systemd") && args["logtype"] == "" {
		args["logtype"] = "journal"
	}
	// fail2ban's DefinitionInitConfigReader: the jail's options first, then [Init]'s.
	initOpts := maps.Clone(args)
	for _, opt := range c.options("Init") {
		v, err := c.get("Init", opt, nil)
		if err != nil {
			continue
		}
		if !strings.HasPrefix(opt, "known/") {
			initOpts["known/"+opt] = v
		}
		if _, ok := initOpts[opt]; !ok {
			initOpts[opt] = v
		}
	}
	pOpts := maps.Clone(args)
	combined := map[string]string{}
	for _, opt := range c.options("Definition") {
		if v, err := c.get("Definition", opt, pOpts); err == nil {
			combined[opt] = v
		}
	}
	maps.Copy(combined, initOpts)
	var ignore []string
	for k := range combined {
		if base, _, ok := strings.Cut(k, "?"); ok {
			ignore = append(ignore, base)
		}
	}
	combined, err = substituteTags(combined, ignore, func(tag string) (string, bool) {
		v, err := c.getEx("Definition", tag, pOpts)
		return v, err == nil
	})
	if err != nil {
		return nil, 0, 0, []string{fmt.Sprintf("filter %q: %v", name, err)}
	}

	// The logban name: the filter's, with the options that differ from its own defaults
	// (postfix-auth); the filter of two jails that read it alike is one.
	// An option the filter does not define (jail.conf's mode=normal for a filter without
	// modes) names it only where two jails read it differently.
	label := name
	var undefined []string
	for _, k := range slices.Sorted(maps.Keys(args)) {
		def, err := c.get("Init", k, nil)
		if err != nil {
			def, err = c.get("Definition", k, nil)
		}
		switch {
		case err != nil:
			undefined = append(undefined, sanitize(args[k]))
		case def != args[k]:
			label += "-" + sanitize(args[k])
		}
	}
	out := &filterOut{name: label, source: "filter.d/" + name + ".conf" + orNothing(" ", optionText(args))}
	pref := combined["prefregex"]
	fr := FilterReport{Name: label, Source: out.source, Prefregex: pref, Datepattern: combined["datepattern"]}
	if ml, _ := strconv.Atoi(combined["maxlines"]); ml > 1 {
		out.notes = append(out.notes, fmt.Sprintf("maxlines = %d: logban reads one line at a time; regexes over several lines are left out", ml))
	}
	ctx := filterContext{pref: pref}
	if dp := strings.TrimSpace(combined["datepattern"]); dp != "" {
		date, ok := datePatternPrefix(dp)
		if ok {
			ctx.date = date
		} else {
			out.notes = append(out.notes, fmt.Sprintf("datepattern %q: a date in the middle of a line, which fail2ban cuts out before its regexes see the line; they are matched against the line as it is, with a date at its start stepped over", dp))
		}
		if !knownDatePattern(dp) {
			out.notes = append(out.notes, "logban reads the timestamps it knows (syslog, ISO 8601, log4j); a line with another counts at the time it is read")
		}
	}
	for _, kind := range []string{"failregex", "ignoreregex"} {
		n := 0
		for r := range strings.SplitSeq(combined[kind], "\n") {
			if r = strings.TrimSpace(r); r == "" {
				continue
			}
			n++
			if kind == "failregex" {
				regexes++
			}
			conv, ignores, err := convertRegex(r, ctx, kind == "ignoreregex")
			if err != nil {
				if kind == "failregex" {
					fr.Dropped = append(fr.Dropped, r)
				}
				where, quoted := "", r
				if ctx.pref != "" { // the prefregex's own fault, if the regex alone has not this one
					if _, _, alone := convertRegex(r, filterContext{date: ctx.date}, kind == "ignoreregex"); alone == nil || alone.Error() != err.Error() {
						where, quoted = " in the filter's prefregex, which every failregex follows", ctx.pref
					}
				}
				msg := fmt.Sprintf("filter %s: %s %d not converted: %v%s: %s", label, kind, n, err, where, quoted)
				problems = append(problems, msg)
				out.notes = append(out.notes, fmt.Sprintf("%s %d not converted: %v%s:\n%s", kind, n, err, where, quoted))
				continue
			}
			if kind == "failregex" {
				converted++
				fr.Converted = append(fr.Converted, r)
				out.fail = append(out.fail, conv)
				for _, d := range ignores {
					out.ignore = append(out.ignore, d.logban)
					fr.Derived = append(fr.Derived, d.fail2ban...)
				}
				if len(ignores) > 0 {
					out.notes = append(out.notes, fmt.Sprintf("failregex %d: its look-ahead (?!...) or <F-NOFAIL> part is an ignoreregex here, which logban applies to every failregex of the filter", n))
				}
			} else {
				fr.Ignore = append(fr.Ignore, r)
				out.ignore = append(out.ignore, conv)
			}
		}
	}
	names := []string{label}
	if len(undefined) > 0 {
		names = append(names, label+"-"+strings.Join(undefined, "-"))
	}
	for i := 2; ; i++ {
		have, ok := im.filters[out.name]
		if !ok {
			break
		}
		if slices.Equal(have.fail, out.fail) && slices.Equal(have.ignore, out.ignore) {
			return have, regexes, converted, problems
		}
		out.name = fmt.Sprintf("%s-%d", label, i)
		if i-1 < len(names) {
			out.name = names[i-1]
		}
	}
	label = out.name
	fr.Name = label
	if _, builtin, _ := filters.Builtin(label); builtin {
		out.notes = append(out.notes, "logban has a built-in filter of this name, which this table replaces; delete the table to use the built-in one")
		problems = append(problems, fmt.Sprintf("filter %s: replaces logban's built-in filter of that name", label))
	}
	if len(out.fail) > 0 {
		im.filters[label] = out
		im.filterOrder = append(im.filterOrder, label)
		im.res.Filters = append(im.res.Filters, fr)
	}
	return out, regexes, converted, problems
}

// splitIgnore splits fail2ban's ignoreip into addresses and prefixes logban takes, and
// the entries it does not (host names).
func splitIgnore(v string) (ips, bad []string) {
	for e := range strings.FieldsFuncSeq(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' }) {
		if p, err := netip.ParsePrefix(e); err == nil {
			ips = append(ips, p.Masked().String())
		} else if a, err := netip.ParseAddr(e); err == nil {
			ips = append(ips, a.String())
		} else {
			bad = append(bad, e)
		}
	}
	return ips, bad
}

// timeTerm is one term of a fail2ban time ("1h", "30 minutes"), timeUnit its parts.
var timeTerm = regexp.MustCompile(`(?i)[+-]?\d+(?:\.\d+)?\s*[a-z]*`)

var timeUnit = regexp.MustCompile(`(?i)^([+-]?\d+(?:\.\d+)?)\s*(years?|yy?|months?|mo|weeks?|ww?|days?|dd?|hours?|hh?|minutes?|mins?|mm?|seconds?|secs?|ss?)?$`)

// duration turns fail2ban's time ("600", "10m", "1h 30m", "1d", "1w", "-1") into
// logban's, which takes Go durations with days and weeks, or seconds.
func duration(v string) (string, error) {
	if v == "-1" {
		return "-1", nil
	}
	var total float64
	fields := timeTerm.FindAllString(v, -1)
	if len(fields) == 0 || strings.TrimSpace(timeTerm.ReplaceAllString(v, "")) != "" {
		return "", fmt.Errorf("not a fail2ban time")
	}
	for _, f := range fields {
		m := timeUnit.FindStringSubmatch(strings.TrimSpace(f))
		if m == nil {
			return "", fmt.Errorf("not a fail2ban time (unit of %q)", f)
		}
		n, _ := strconv.ParseFloat(m[1], 64)
		unit := strings.ToLower(m[2])
		switch {
		case unit == "" || strings.HasPrefix(unit, "s"):
		case strings.HasPrefix(unit, "mo"):
			n *= 30.4375 * 86400
		case strings.HasPrefix(unit, "m"):
			n *= 60
		case strings.HasPrefix(unit, "h"):
			n *= 3600
		case strings.HasPrefix(unit, "d"):
			n *= 86400
		case strings.HasPrefix(unit, "w"):
			n *= 7 * 86400
		case strings.HasPrefix(unit, "y"):
			n *= 365.25 * 86400
		}
		total += n
	}
	secs := int64(total)
	switch {
	case secs < 0:
		return "-1", nil
	case secs > 0 && secs%(7*86400) == 0:
		return fmt.Sprintf("%dw", secs/(7*86400)), nil
	case secs > 0 && secs%86400 == 0:
		return fmt.Sprintf("%dd", secs/86400), nil
	}
	s := (time.Duration(secs) * time.Second).String() // 1h30m0s
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s, nil
}

func knownDatePattern(dp string) bool {
	for l := range strings.SplitSeq(dp, "\n") {
		switch strings.TrimSpace(l) {
		case "{^LN-BEG}", "^{DATE}", "{DATE}", "{^LN-BEG}TAI64N", "{^LN-BEG}ExYear(?P<_sep>[-/.])Month(?P=_sep)Day(?:T|  ?)24hour:Minute:Second(?:[.,]Microseconds)?(?:\\s*Zone offset)?":
		default:
			return false
		}
	}
	return true
}

func isTrue(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "yes", "1", "on":
		return true
	}
	return false
}

func orNothing(prefix, v string) string {
	if v == "" {
		return ""
	}
	return prefix + v
}

func optionText(args map[string]string) string {
	if len(args) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(args)) {
		parts = append(parts, k+"="+args[k])
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

var notName = regexp.MustCompile(`[^a-zA-Z0-9_-]+`)

func sanitize(s string) string { return strings.Trim(notName.ReplaceAllString(s, "-"), "-") }

func appendNew(list []string, items ...string) []string {
	for _, it := range items {
		if !slices.Contains(list, it) {
			list = append(list, it)
		}
	}
	return list
}
