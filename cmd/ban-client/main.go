// Command ban-client talks to a running ban-server: it shows jails and bans, and bans or
// unbans addresses by hand.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/logban/logban/internal/config"
	"github.com/logban/logban/internal/control"
)

const usage = `Usage: ban-client [flags] COMMAND [ARGS]

Commands:
  ping                        check that ban-server answers
  status                      list the jails
  status JAIL                 a jail's failures, files and bans
  banip JAIL ADDR...          ban addresses in a jail by hand
  unbanip [--jail J] ADDR...  lift the bans of addresses, in every jail or in J
  reload                      reread the server's configuration; a bad one is refused
                              and its errors shown

Examples:
  ban-client status zimbra-submission
  ban-client unbanip 203.0.113.5
  ban-client -config examples/demo.toml status

Exit status: 0 done, 1 refused or not found, 2 usage, 3 server unreachable.

Flags:
`

// Exit codes.
const (
	exitRefused     = 1
	exitUsage       = 2
	exitUnreachable = 3
)

func main() {
	code, err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "ban-client:", err)
	}
	os.Exit(code)
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("ban-client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	socket := fs.String("socket", "", "control socket `path` (default: $LOGBAN_SOCKET, else the -config file's, else "+config.DefaultSocket+")")
	configPath := fs.String("config", "", "read the socket path from this configuration `file`")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the server")
	if err := fs.Parse(args); err != nil {
		return exitUsage, err
	}
	path, err := socketPath(*socket, *configPath)
	if err != nil {
		return exitRefused, err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	err = command(ctx, control.NewClient(path), fs.Args(), stdout)
	var ue usageError
	var re *control.RemoteError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ue):
		fs.Usage()
		return exitUsage, err
	case errors.Is(err, control.ErrUnreachable):
		return exitUnreachable, fmt.Errorf("%w; start it with: ban-server -config FILE", err)
	case errors.As(err, &re) && re.Code == control.CodeBadRequest:
		return exitUsage, err
	}
	return exitRefused, err
}

func socketPath(flagValue, configPath string) (string, error) {
	switch {
	case flagValue != "":
		return flagValue, nil
	case configPath != "":
		cfg, err := config.Load(configPath)
		if err != nil {
			return "", err
		}
		return cfg.Server.Socket, nil
	case os.Getenv("LOGBAN_SOCKET") != "":
		return os.Getenv("LOGBAN_SOCKET"), nil
	}
	return config.DefaultSocket, nil
}

func command(ctx context.Context, c *control.Client, args []string, w io.Writer) error {
	if len(args) == 0 {
		return usageError{"no command given"}
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "ping":
		if len(args) != 0 {
			return usageError{"ping takes no arguments"}
		}
		if err := c.Ping(ctx); err != nil {
			return err
		}
		fmt.Fprintln(w, "pong")
		return nil
	case "status":
		switch len(args) {
		case 0:
			s, err := c.Status(ctx)
			if err != nil {
				return err
			}
			printStatus(w, s)
			return nil
		case 1:
			s, err := c.JailStatus(ctx, args[0])
			if err != nil {
				return err
			}
			printJailStatus(w, s)
			return nil
		}
		return usageError{"status takes at most one jail"}
	case "banip":
		if len(args) < 2 {
			return usageError{"banip needs a jail and at least one address"}
		}
		addrs, err := parseAddrs(args[1:])
		if err != nil {
			return err
		}
		rs, err := c.BanIP(ctx, args[0], addrs...)
		if err != nil {
			return err
		}
		return printResults(w, "banned", rs)
	case "unbanip":
		jail := ""
		if len(args) >= 2 && (args[0] == "--jail" || args[0] == "-jail") {
			jail, args = args[1], args[2:]
		}
		if len(args) == 0 {
			return usageError{"unbanip needs at least one address"}
		}
		addrs, err := parseAddrs(args)
		if err != nil {
			return err
		}
		rs, err := c.UnbanIP(ctx, jail, addrs...)
		if err != nil {
			return err
		}
		return printResults(w, "unbanned", rs)
	case "reload":
		if len(args) != 0 {
			return usageError{"reload takes no arguments"}
		}
		if err := c.Reload(ctx); err != nil {
			return err
		}
		fmt.Fprintln(w, "reloaded")
		return nil
	}
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

func parseAddrs(ss []string) ([]netip.Addr, error) {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, usageError{fmt.Sprintf("%q is not an IP address", s)}
		}
		out[i] = a
	}
	return out, nil
}

// errNotAll reports a request that changed nothing for some addresses.
var errNotAll = errors.New("some addresses were left as they were")

func printResults(w io.Writer, verb string, rs []control.AddrResult) error {
	var err error
	for _, r := range rs {
		if r.Done {
			fmt.Fprintf(w, "%s %s (%s)\n", r.Addr, verb, strings.Join(r.Jails, ", "))
			continue
		}
		fmt.Fprintf(w, "%s not %s: %s\n", r.Addr, verb, r.Note)
		err = errNotAll
	}
	return err
}

func printStatus(w io.Writer, s control.Status) {
	fmt.Fprintln(w, "Status")
	fmt.Fprintf(w, "|- Number of jail:\t%d\n", len(s.Jails))
	fmt.Fprintf(w, "`- Jail list:\t%s\n", strings.Join(s.Jails, ", "))
}

func printJailStatus(w io.Writer, s control.JailStatus) {
	addrs := make([]string, len(s.Bans))
	for i, b := range s.Bans {
		addrs[i] = b.Addr.String()
	}
	var files []string
	var behind int64
	for _, f := range s.Files {
		files = append(files, f.Path)
		behind += f.Behind
	}
	fmt.Fprintf(w, "Status for the jail: %s\n", s.Name)
	fmt.Fprintln(w, "|- Filter")
	fmt.Fprintf(w, "|  |- Currently failed:\t%d\n", s.CurrentlyFailed)
	fmt.Fprintf(w, "|  |- Total failed:\t%d\n", s.TotalFailed)
	fmt.Fprintf(w, "|  |- Bytes behind:\t%d\n", behind)
	fmt.Fprintf(w, "|  `- File list:\t%s\n", strings.Join(files, " "))
	fmt.Fprintln(w, "`- Actions")
	fmt.Fprintf(w, "   |- Currently banned:\t%d\n", s.CurrentlyBanned)
	fmt.Fprintf(w, "   |- Total banned:\t%d\n", s.TotalBanned)
	if s.ActionErrors > 0 || s.ActionsPending > 0 {
		fmt.Fprintf(w, "   |- Action errors:\t%d\n", s.ActionErrors)
		fmt.Fprintf(w, "   |- Retries pending:\t%d\n", s.ActionsPending)
	}
	fmt.Fprintf(w, "   `- Banned IP list:\t%s\n", strings.Join(addrs, " "))
}
