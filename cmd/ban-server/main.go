// Command ban-server is logban's daemon: it follows mail server logs, counts the failures
// its jails' filters find, and bans the addresses that fail too often.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/config"
	"github.com/logban/logban/internal/daemon"
	logbanversion "github.com/logban/logban/internal/version"
)

// version is set at build time with -ldflags "-X main.version=..."; without it, the
// module version and VCS revision are reported (internal/version).
var version = ""

const usage = `Usage: ban-server [flags]

ban-server follows log files, finds clients that keep failing (SASL brute force,
Jetty DoSFilter alerts, invalid passwords), and bans their addresses through the
actions its jails name. Manage it with ban-client.

Try it without root or a mail server:
  go run ./cmd/ban-server -config examples/demo.toml

Check a configuration without starting anything:
  ban-server -check -config /etc/logban/logban.toml

A farm: three nodes on one machine sharing failures and bans through the NATS
servers they embed (see docs/farm.md):
  go run ./cmd/ban-server -config examples/farm/node1.toml   # and node2, node3

Remove everything logban ever put in the kernel (chains and sets named logban-*,
routes of logban's route protocol), and nothing else:
  ban-server -cleanup

Signals:
  SIGHUP            reread the configuration (as 'ban-client reload'); a bad one
                    is refused and the running configuration stays
  SIGTERM, SIGINT   stop: readers first, then each action's stop

Flags:
`

func main() {
	if os.Getenv("GOGC") == "" {
		go tuneGC(time.Second)
	}
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			// One problem a line, each line prefixed: a configuration's problems are many.
			fmt.Fprintln(os.Stderr, "ban-server: "+strings.ReplaceAll(err.Error(), "\n", "\nban-server: "))
		}
		os.Exit(exitCode(err))
	}
}

func exitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp): // help asked for is an answer
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	return 1
}

var errUsage = errors.New("usage")

// usageText is the help as this binary should give it: from a clone, the commands a
// clone runs (go run ./cmd/ban-server, examples/); installed by a package, which sets
// version, the installed commands and the packaged examples.
func usageText() string {
	if version == "" {
		return usage
	}
	return strings.NewReplacer(
		`Try it without root or a mail server:
  go run ./cmd/ban-server -config examples/demo.toml`, `See what the installed configuration would ban, changing nothing (actions only
log, a temporary database, no farm):
  ban-server -dry-run -config /etc/logban/logban.toml`,
		`A farm: three nodes on one machine sharing failures and bans through the NATS
servers they embed (see docs/farm.md):
  go run ./cmd/ban-server -config examples/farm/node1.toml   # and node2, node3`, `A farm: hosts sharing failures and bans through NATS, and the configurations
to start from: logban(7), and /usr/share/doc/logban/examples/farm/.`,
	).Replace(usage)
}

// run runs ban-server with args: answers (-check's summary, -dump, -version) go to
// stdout, the log and warnings to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ban-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText())
		fs.PrintDefaults()
	}
	configPath := fs.String("config", "/etc/logban/logban.toml", "configuration `file`; drop-ins in jail.d/*.toml beside it are read too")
	dryRun := fs.Bool("dry-run", false, "find and count, and show in ban-client what would be banned: every action only logs, bans and file positions go to a temporary database removed at stop, no farm is joined")
	check := fs.Bool("check", false, "check the configuration, print a summary, and exit")
	dumpConfig := fs.Bool("dump", false, "print every jail's effective configuration, after drop-ins and [defaults], with where each key comes from, and exit")
	cleanup := fs.Bool("cleanup", false, "remove all logban chains, sets and routes from the kernel, and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "-help" || a == "--help" }) {
		fs.SetOutput(stdout) // help asked for: on stdout, as an answer
		fmt.Fprint(stdout, usageText())
		fs.PrintDefaults()
		return flag.ErrHelp
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *showVersion {
		fmt.Fprintln(stdout, "ban-server", logbanversion.Of(version))
		return nil
	}
	if *cleanup {
		return cleanKernel(ctx, *configPath, stderr)
	}
	if *dumpConfig {
		cfg, err := config.Load(*configPath)
		if err != nil {
			return err
		}
		dump(stdout, cfg)
		return nil
	}
	if *check {
		cfg, err := config.Load(*configPath)
		if err != nil {
			return err
		}
		warnings := cfg.Warnings()
		for _, w := range warnings {
			fmt.Fprintf(stderr, "%s: warning: %s\n", *configPath, w)
		}
		fmt.Fprintf(stdout, "%s: OK, %s, %s, %s read, %s\n", *configPath, count(len(cfg.Jails), "jail"),
			count(len(cfg.Actions), "action"), count(len(cfg.Files), "configuration file"), count(len(warnings), "warning"))
		return nil
	}

	level := new(slog.LevelVar)
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	d, err := daemon.New(daemon.Options{
		ConfigPath: *configPath,
		DryRun:     *dryRun,
		Logger:     logger,
		Level:      level,
		Version:    logbanversion.Of(version),
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Once stopping, a second SIGINT or SIGTERM is no longer caught: it ends the process
	// at once, as without a handler.
	context.AfterFunc(ctx, func() {
		stop()
		logger.Info("stopping; a second SIGINT or SIGTERM stops at once, leaving bans in the kernel")
	})
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				logger.Info("SIGHUP: reloading")
				d.Reload(ctx) //nolint:errcheck // Reload logs its own outcome
			}
		}
	}()
	return d.Run(ctx)
}

// cleanKernel runs every kernel action kind's Cleanup: with its defaults, and with each
// configured action's options (another route table, say) if the configuration loads.
func cleanKernel(ctx context.Context, configPath string, stderr io.Writer) error {
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	type cleaner struct {
		name string
		c    actions.Cleaner
	}
	var cleaners []cleaner
	add := func(name, kind string, opts any) {
		a, err := actions.New(kind, name, opts, logger)
		if err != nil {
			return
		}
		if c, ok := a.(actions.Cleaner); ok {
			cleaners = append(cleaners, cleaner{name, c})
		}
	}
	for _, kind := range actions.Kinds() {
		k, _ := actions.Lookup(kind)
		add(kind+" (defaults)", kind, k.Options())
	}
	if cfg, err := config.Load(configPath); err == nil {
		for _, name := range slices.Sorted(maps.Keys(cfg.Actions)) {
			add(name, cfg.Actions[name].Type, cfg.Actions[name].Options)
		}
	} else {
		fmt.Fprintf(stderr, "configuration not read (%v); cleaning with each kind's defaults\n", err)
	}
	var errs []error
	for _, c := range cleaners {
		if err := c.c.Cleanup(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
			continue
		}
		fmt.Fprintf(stderr, "cleaned: %s\n", c.name)
	}
	return errors.Join(errs...)
}

// count writes n things: "1 jail", "2 jails", "0 warnings".
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
