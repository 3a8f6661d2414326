package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"slices"
	"unicode/utf8"

	"github.com/logban/logban/filters"
	"github.com/logban/logban/internal/config"
	"github.com/logban/logban/journal"
	"github.com/logban/logban/watcher"
)

const testFilterUsage = `Usage: ban-client test-filter [flags] FILTER|JAIL|REGEX LOGFILE
       ban-client test-filter -journal [flags] FILTER|JAIL|REGEX [MATCH...]

Runs a filter over a log file without a server, as fail2ban-regex does: how many lines
it matched, ignored and missed, which addresses failed how often, and which timestamp
formats it found. FILTER is a built-in filter or a [filters.NAME] of -config; JAIL is a
jail of -config, whose filter is run with the jail's trusted_proxies; else a failregex
with <HOST>. Lines are read and cut as ban-server reads them: longer than -config's
server.max_line_bytes (64 KiB by default), a line is judged by its start.

With -journal, it reads the systemd journal's entries that the matches select (as
journalctl takes them: FIELD=value, "+" between groups), each as the line ban-server
makes of it; a jail of -config with backend = "journal" brings its own matches and
folder.

Examples:
  ban-client test-filter zimbra-submission /var/log/zimbra.log
  ban-client test-filter -config /etc/logban/logban.toml zimbra-mailbox-auth /opt/zimbra/log/audit.log
  ban-client test-filter 'login failed from <HOST>$' app.log
  ban-client test-filter -json zimbra-dosfilter /opt/zimbra/log/zmmailboxd.out
  ban-client test-filter -journal zimbra-submission _SYSTEMD_UNIT=postfix@-.service

Flags:
`

// filterReport is what test-filter found.
type filterReport struct {
	Filter       string         `json:"filter"`
	File         string         `json:"file"`
	Lines        int            `json:"lines"`
	Matched      int            `json:"matched"`
	Ignored      int            `json:"ignored"`
	Missed       int            `json:"missed"`
	RuleHits     []int          `json:"rule_hits"`
	Addresses    map[string]int `json:"addresses"`
	Formats      map[string]int `json:"timestamp_formats"`
	Seconds      float64        `json:"seconds"`
	rules        []string       // what counts a line, for the text report
	addrCounts   map[netip.Addr]int
	showMissed   bool
	missedOutput io.Writer
	verbose      bool // rules printed whole
}

// ruleShown is how much of a rule (a failregex) the text report prints unless -v asks
// for all of it: an imported filter's regexes run to 20 KB.
const ruleShown = 200

// shownRule returns p, cut to ruleShown bytes unless whole, saying what was cut.
func shownRule(p string, whole bool) string {
	if whole || len(p) <= ruleShown {
		return p
	}
	cut := ruleShown
	for cut > 0 && !utf8.RuneStart(p[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes more; -v prints it whole)", p[:cut], len(p)-cut)
}

// matchedLine is one line of -json output.
type matchedLine struct {
	Line int    `json:"lineno"`
	Host string `json:"host"`
	Time string `json:"time"`
}

func testFilter(args []string, jsonOut bool, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("test-filter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	usage := func(w io.Writer) { fmt.Fprint(w, testFilterUsage); fs.SetOutput(w); fs.PrintDefaults() }
	fs.Usage = func() {} // -h is answered below, on stdout
	configPath := fs.String("config", "", "take FILTER from this configuration `file`'s [filters.NAME] or jails, and its line limit")
	printMissed := fs.Bool("print-missed", false, "print the lines no failregex matched, to tune a filter")
	verbose := fs.Bool("v", false, "print each failregex whole (longer ones are cut at 200 bytes)")
	fs.BoolVar(&jsonOut, "json", jsonOut, "print one JSON object per matched line, then a summary object")
	fromJournal := fs.Bool("journal", false, "read the systemd journal's entries that the MATCH arguments select, not a file")
	journalDir := fs.String("journal-directory", "", "with -journal, read the journal files in this `folder`, not the system journal")
	if err := fs.Parse(flagsFirst(fs, args)); err != nil {
		return ownHelp(err, "test-filter", usage, stdout)
	}
	if *fromJournal && fs.NArg() < 1 || !*fromJournal && fs.NArg() != 2 {
		usage(stderr)
		if *fromJournal {
			return exitUsage, usageError{"test-filter -journal takes FILTER|REGEX and the journal's matches"}
		}
		return exitUsage, usageError{"test-filter takes FILTER|REGEX and LOGFILE"}
	}
	f, label, maxLine, jail, err := resolveFilter(fs.Arg(0), *configPath)
	if err != nil {
		return exitUsage, err
	}
	if !jsonOut { // matched lines and missed ones are the log's writers' text
		stdout = escapeWriter{stdout}
	}
	var (
		source   string
		read     func(watcher.Handler) error
		progress func(read int64)
	)
	if *fromJournal {
		opts := journal.Options{Directory: *journalDir, Matches: fs.Args()[1:], Start: watcher.FromBeginning, MaxLineSize: maxLine, BatchSize: scanBatchLines}
		if jail != nil && jail.Backend == config.BackendJournal && len(opts.Matches) == 0 {
			opts.Matches = jail.JournalMatch
			opts.Directory = cmp.Or(opts.Directory, jail.JournalDirectory)
		}
		if err := journal.CheckMatches(opts.Matches); err != nil {
			return exitUsage, err
		}
		source = journal.Key(opts.Directory, opts.Matches)
		read = func(h watcher.Handler) error { return journal.ReadAll(context.Background(), opts, h) }
	} else {
		source = fs.Arg(1)
		fi, err := os.Stat(source)
		if err != nil {
			return exitRefused, err
		}
		read = func(h watcher.Handler) error {
			return watcher.ReadFile(source, watcher.Options{MaxLineSize: maxLine, BatchSize: scanBatchLines}, h)
		}
		if isTerminal(stderr) {
			progress = progressPrinter(stderr, fi.Size())
		}
	}
	r := &filterReport{
		Filter: label, File: source, RuleHits: make([]int, len(f.Rules())), rules: f.Rules(),
		Addresses: map[string]int{}, Formats: map[string]int{}, addrCounts: map[netip.Addr]int{},
		showMissed: *printMissed, missedOutput: stdout, verbose: *verbose,
	}
	if *fromJournal || jsonOut || *printMissed {
		err = r.scan(read, f, jsonOut, stdout, progress)
	} else {
		err = r.search(source, maxLine, f, progress)
	}
	if err != nil {
		return exitRefused, err
	}
	for a, n := range r.addrCounts {
		r.Addresses[a.String()] = n
	}
	if jsonOut {
		return 0, json.NewEncoder(stdout).Encode(map[string]any{"summary": r})
	}
	r.print(stdout)
	return 0, nil
}

// resolveFilter finds FILTER: a jail or filter of the configuration, built in, or a
// regex. It returns the longest line ban-server reads whole, which the configuration
// sets, and the jail, if FILTER names one.
func resolveFilter(name, configPath string) (f *filters.Filter, label string, maxLine int, jail *config.Jail, err error) {
	maxLine = config.DefaultMaxLineBytes
	var trusted []netip.Prefix
	if configPath != "" {
		cfg, err := config.Load(configPath)
		if err != nil {
			return nil, "", 0, nil, err
		}
		maxLine, trusted = cfg.Server.MaxLineBytes, cfg.Server.TrustedProxies
		if j, ok := cfg.Jails[name]; ok {
			f, err := cfg.Filters[j.Filter].Compile(slices.Concat(trusted, j.TrustedProxies))
			return f, fmt.Sprintf("%s (jail of %s, filter %s)", name, configPath, j.Filter), maxLine, &j, err
		}
		if fc, ok := cfg.Filters[name]; ok && !fc.Builtin {
			f, err := fc.Compile(trusted)
			return f, name + " (from " + configPath + ")", maxLine, nil, err
		}
	}
	if d, ok, err := filters.Builtin(name); ok {
		if err != nil {
			return nil, "", 0, nil, err
		}
		f, err := filters.New(name, d, filters.Options{TrustedProxies: trusted})
		return f, name + " (built in)", maxLine, nil, err
	}
	f, err = filters.New("regex", filters.Definition{FailRegex: []string{name}}, filters.Options{})
	if errors.Is(err, filters.ErrNoHost) {
		return nil, "", 0, nil, fmt.Errorf("%q is no filter (built in: %v) and, as a regex, has no <HOST>", name, filters.BuiltinNames())
	}
	return f, "regex " + name, maxLine, nil, err
}

func (r *filterReport) print(w io.Writer) {
	source := "Log file:"
	if journal.IsKey(r.File) {
		source = "Journal: "
	}
	fmt.Fprintf(w, "Filter:   %s\n%s %s\n\n", r.Filter, source, r.File)
	fmt.Fprintf(w, "Failures: %d matched\n", r.Matched)
	for i, p := range r.rules {
		fmt.Fprintf(w, "|  %d) [%d] %s\n", i+1, r.RuleHits[i], shownRule(p, r.verbose))
	}
	fmt.Fprintf(w, "`-\n\nTimestamp formats of matched lines:\n")
	for _, f := range slices.Sorted(maps.Keys(r.Formats)) {
		fmt.Fprintf(w, "|  [%d] %s\n", r.Formats[f], f)
	}
	fmt.Fprintf(w, "`-\n\nLines: %d lines, %d matched, %d ignored, %d missed [processed in %.2f s]\n",
		r.Lines, r.Matched, r.Ignored, r.Missed, r.Seconds)
	if len(r.addrCounts) == 0 {
		return
	}
	addrs := slices.Collect(maps.Keys(r.addrCounts))
	slices.SortFunc(addrs, func(a, b netip.Addr) int {
		return cmp.Or(cmp.Compare(r.addrCounts[b], r.addrCounts[a]), a.Compare(b))
	})
	fmt.Fprintf(w, "\nAddresses (%d), most failures first:\n", len(addrs))
	for _, a := range addrs {
		fmt.Fprintf(w, "%8d  %s\n", r.addrCounts[a], a)
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressPrinter returns a function that shows how far through the file reading is;
// called with -1, it clears the line.
func progressPrinter(w io.Writer, size int64) func(int64) {
	return func(read int64) {
		if read < 0 {
			fmt.Fprint(w, "\r\033[K")
			return
		}
		pct := 0.0
		if size > 0 {
			pct = 100 * float64(read) / float64(size)
		}
		fmt.Fprintf(w, "\r%5.1f%% of %d MB read", pct, size>>20)
	}
}
