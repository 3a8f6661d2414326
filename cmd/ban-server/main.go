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
	"os"
	"os/signal"
	"syscall"

	"github.com/logban/logban/internal/config"
	"github.com/logban/logban/internal/daemon"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `Usage: ban-server [flags]

ban-server follows log files, finds clients that keep failing (SASL brute force,
Jetty DoSFilter alerts, invalid passwords), and bans their addresses through the
actions its jails name. Manage it with ban-client.

Try it without root or a mail server:
  go run ./cmd/ban-server -config examples/demo.toml

Check a configuration without starting anything:
  ban-server -check -config /etc/logban/logban.toml

Signals:
  SIGHUP            reread the configuration (as 'ban-client reload'); a bad one
                    is refused and the running configuration stays
  SIGTERM, SIGINT   stop: readers first, then each action's stop

Flags:
`

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "ban-server:", err)
		}
		os.Exit(exitCode(err))
	}
}

func exitCode(err error) int {
	if errors.Is(err, flag.ErrHelp) || errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("ban-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	configPath := fs.String("config", "/etc/logban/logban.toml", "configuration `file`; drop-ins in jail.d/*.toml beside it are read too")
	dryRun := fs.Bool("dry-run", false, "replace every action with the log action: find and count, touch nothing")
	check := fs.Bool("check", false, "check the configuration, print a summary, and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *showVersion {
		fmt.Fprintln(stderr, "ban-server", version)
		return nil
	}
	if *check {
		cfg, err := config.Load(*configPath)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "%s: OK, %d jails, %d actions, %d files read\n", *configPath, len(cfg.Jails), len(cfg.Actions), len(cfg.Files))
		return nil
	}

	level := new(slog.LevelVar)
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	d, err := daemon.New(daemon.Options{
		ConfigPath: *configPath,
		DryRun:     *dryRun,
		Logger:     logger,
		Level:      level,
		Version:    version,
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
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
