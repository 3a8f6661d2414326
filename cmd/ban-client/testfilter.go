package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"slices"

	"github.com/logban/logban/filters"
	"github.com/logban/logban/internal/config"
)

const testFilterUsage = `Usage: ban-client test-filter [flags] FILTER|REGEX LOGFILE

Runs a filter over a log file without a server, as fail2ban-regex does: how many lines
it matched, ignored and missed, which addresses failed how often, and which timestamp
formats it found. FILTER is a built-in filter, a [filters.NAME] of -config, or else a
failregex with <HOST>.

Examples:
  ban-client test-filter zimbra-submission /var/log/zimbra.log
  ban-client test-filter 'login failed from <HOST>$' app.log
  ban-client test-filter -json zimbra-dosfilter /opt/zimbra/log/zmmailboxd.out

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
	PatternHits  []int          `json:"pattern_hits"`
	Addresses    map[string]int `json:"addresses"`
	Formats      map[string]int `json:"timestamp_formats"`
	Seconds      float64        `json:"seconds"`
	patterns     []string       // failregex sources, for the text report
	addrCounts   map[netip.Addr]int
	showMissed   bool
	missedOutput io.Writer
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
	fs.Usage = func() { fmt.Fprint(stderr, testFilterUsage); fs.PrintDefaults() }
	configPath := fs.String("config", "", "take FILTER from this configuration `file`'s [filters.NAME]")
	printMissed := fs.Bool("print-missed", false, "print the lines no failregex matched, to tune a filter")
	fs.BoolVar(&jsonOut, "json", jsonOut, "print one JSON object per matched line, then a summary object")
	if err := fs.Parse(args); err != nil {
		return exitUsage, err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return exitUsage, usageError{"test-filter takes FILTER|REGEX and LOGFILE"}
	}
	f, label, err := resolveFilter(fs.Arg(0), *configPath)
	if err != nil {
		return exitUsage, err
	}
	file, err := os.Open(fs.Arg(1))
	if err != nil {
		return exitRefused, err
	}
	defer file.Close()
	r := &filterReport{
		Filter: label, File: fs.Arg(1), PatternHits: make([]int, len(f.Patterns())),
		Addresses: map[string]int{}, Formats: map[string]int{}, addrCounts: map[netip.Addr]int{},
		showMissed: *printMissed, missedOutput: stdout,
	}
	for _, p := range f.Patterns() {
		r.patterns = append(r.patterns, p.String())
	}
	var progress func(read int64)
	if fi, err := file.Stat(); err == nil && isTerminal(stderr) {
		progress = progressPrinter(stderr, fi.Size())
	}
	if err := r.scan(file, f, jsonOut, stdout, progress); err != nil {
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

// resolveFilter finds FILTER: in the configuration, built in, or as a regex.
func resolveFilter(name, configPath string) (*filters.Filter, string, error) {
	if configPath != "" {
		cfg, err := config.Load(configPath)
		if err != nil {
			return nil, "", err
		}
		if fc, ok := cfg.Filters[name]; ok {
			f, err := fc.Compile()
			return f, name + " (from " + configPath + ")", err
		}
	}
	if d, ok, err := filters.Builtin(name); ok {
		if err != nil {
			return nil, "", err
		}
		f, err := filters.New(name, d.FailRegex, d.IgnoreRegex)
		return f, name + " (built in)", err
	}
	f, err := filters.New("regex", []string{name}, nil)
	if errors.Is(err, filters.ErrNoHost) {
		return nil, "", fmt.Errorf("%q is no filter (built in: %v) and, as a regex, has no <HOST>", name, filters.BuiltinNames())
	}
	return f, "regex " + name, err
}

func (r *filterReport) print(w io.Writer) {
	fmt.Fprintf(w, "Filter:   %s\nLog file: %s\n\n", r.Filter, r.File)
	fmt.Fprintf(w, "Failregex: %d matched\n", r.Matched)
	for i, p := range r.patterns {
		fmt.Fprintf(w, "|  %d) [%d] %s\n", i+1, r.PatternHits[i], p)
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
