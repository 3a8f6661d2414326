package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/logban/logban/internal/fail2ban"
)

const importUsage = `Usage: ban-client import-fail2ban [-o FILE] [--all] [DIR]

Reads the fail2ban configuration in DIR (default /etc/fail2ban) as fail2ban does
(jail.conf, jail.local, jail.d/, filter.d/ and action.d/ with their includes, [DEFAULT],
%(name)s and <tag> interpolation) and prints a logban configuration: the enabled jails
(every jail with --all), their filters as [filters.NAME] and their actions as logban's
kinds. What it cannot convert it says on standard error, per jail and per regex, with
the reason, and as comments in the configuration, which loads as it is.

Examples:
  ban-client import-fail2ban
  ban-client import-fail2ban -o /etc/logban/jail.d/fail2ban.toml
  ban-client import-fail2ban --all /srv/old-host/etc/fail2ban > all-jails.toml

Flags:
`

func importFail2ban(args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("import-fail2ban", flag.ContinueOnError)
	fs.SetOutput(stderr)
	usage := func(w io.Writer) { fmt.Fprint(w, importUsage); fs.SetOutput(w); fs.PrintDefaults() }
	fs.Usage = func() {} // -h is answered below, on stdout
	out := fs.String("o", "", "write the configuration to this `file` instead of standard output")
	all := fs.Bool("all", false, "convert every jail, not only the enabled ones")
	if err := fs.Parse(flagsFirst(fs, args)); err != nil {
		return ownHelp(err, "import-fail2ban", usage, stdout)
	}
	if fs.NArg() > 1 {
		usage(stderr)
		return exitUsage, usageError{"import-fail2ban takes at most one folder"}
	}
	dir := "/etc/fail2ban"
	if fs.NArg() == 1 {
		dir = fs.Arg(0)
	}
	res, err := fail2ban.Import(dir, fail2ban.Options{All: *all})
	if err != nil {
		return exitRefused, fmt.Errorf("import-fail2ban: %w", err)
	}
	for _, p := range res.Problems {
		fmt.Fprintf(stderr, "every jail: %s\n", p)
	}
	converted, enabled := 0, 0
	for _, j := range res.Jails {
		if j.Enabled {
			enabled++
		}
		switch {
		case j.Converted:
			converted++
			fmt.Fprintf(stderr, "%s: converted (filter %s, %d of %d failregexes)\n", j.Name, j.Filter, j.RegexesConverted, j.Regexes)
		case j.Enabled || *all:
			fmt.Fprintf(stderr, "%s: NOT converted\n", j.Name)
		default:
			continue
		}
		for _, p := range j.Problems {
			fmt.Fprintf(stderr, "  %s\n", strings.ReplaceAll(p, "\n", " "))
		}
	}
	fmt.Fprintf(stderr, "%d jails in %s (%d enabled): %d converted\n", len(res.Jails), dir, enabled, converted)
	if *out == "" {
		_, err := stdout.Write(res.TOML)
		return 0, err
	}
	if err := os.WriteFile(*out, res.TOML, 0o640); err != nil {
		return exitRefused, err
	}
	fmt.Fprintf(stderr, "wrote %s; check it with: ban-server -check -config %s\n", *out, *out)
	return 0, nil
}

// ownHelp answers a parse error of a command with flags of its own: -h prints the
// command's help on stdout and succeeds, as ban-client -h does; any other error, which
// the flag package has told, gets one line naming the help.
func ownHelp(err error, command string, usage func(io.Writer), stdout io.Writer) (int, error) {
	if errors.Is(err, flag.ErrHelp) {
		usage(stdout)
		return 0, nil
	}
	return exitUsage, fmt.Errorf("run 'ban-client %s -h' for its flags", command)
}
