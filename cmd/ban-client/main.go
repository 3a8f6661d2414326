// Command ban-client talks to a running ban-server: it shows jails and bans, and bans or
// unbans addresses by hand.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/config"
	"github.com/logban/logban/internal/control"
	logbanversion "github.com/logban/logban/internal/version"
	"github.com/logban/logban/journal"
)

const usage = `Usage: ban-client [flags] COMMAND [ARGS]   (flags may come anywhere)

Commands:
  ping                        check that ban-server answers
  status                      list the jails
  status JAIL [--brief]       a jail's failures, files and bans (--brief: without the
                              list of bans, cheap to ask often during an attack)
  status policy               the Postfix policy service: requests, answers, quotas, flags
  list [--jail J]             every ban: address, jail, banned at, expires in, failures
  get JAIL banned             the jail's banned addresses, one a line
  banip JAIL ADDR...          ban addresses (or networks, 198.51.100.0/24) in a jail by hand
  unbanip [--jail J] [--local] ADDR...
                              lift the bans of addresses, in every jail or in J; in a
                              farm, on every host (--local: on this host only)
  unban --all [--local]       lift every ban; in a farm on every host, or with --local
                              on this one only
  unbankey JAIL KEY           lift the ban of an account or device in a jail keyed by it
  reload                      reread the server's configuration; a bad one is refused
                              and its errors shown
  farm                        the farm: connection, servers, nodes seen, the farm's
                              ban count, the outbox waiting to be published, last error
  version                     this client's and the server's versions
  why ADDR                    why an address is banned: its bans, the log lines that
                              counted, networks banned holding it, its bans before
  history [ADDR]              the ban history of an address, or of the last banned
  help [COMMAND]              this help, or a command's own with examples (or COMMAND -h)
  test-filter FILTER LOGFILE  run a filter over a log file, without a server
                              (ban-client test-filter -h for its flags)
  import-fail2ban [DIR]       turn fail2ban's configuration (/etc/fail2ban) into a
                              logban TOML (ban-client import-fail2ban -h for its flags)
  setup zimbra                write this host's configuration from a Zimbra or Carbonio
                              farm's own directory (ban-client setup -h for its flags)
  completion bash|zsh|fish    print a shell completion script

fail2ban-client's verbs work too: set JAIL banip|unbanip IP..., get JAIL
banned|maxretry|findtime|bantime, banned, reload [JAIL]; start and stop JAIL say what
to do instead.

Examples:
  ban-client status zimbra-submission
  ban-client unbanip 203.0.113.5
  ban-client -json list --jail zimbra-submission
  ban-client -config examples/demo.toml status

Exit status: 0 done (an address banned already included), 1 refused or not found,
2 usage, 3 server unreachable or its socket not open to this user.

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
	if err != nil && !errors.Is(err, flag.ErrHelp) && !errors.Is(err, errReported) {
		fmt.Fprintln(escapeWriter{os.Stderr}, "ban-client: "+strings.ReplaceAll(err.Error(), "\n", "\nban-client: "))
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
	jsonOut := fs.Bool("json", false, "print every command's answer as JSON, errors included ({\"error\": ..., \"exit\": ...}), for scripts")
	// test-filter and import-fail2ban have flags of their own, some of the same names:
	// everything after them is their own. Elsewhere flags may come anywhere.
	for _, own := range []struct {
		name string
		run  func(args []string) (int, error)
	}{
		{"test-filter", func(args []string) (int, error) { return testFilter(args, *jsonOut, stdout, stderr) }},
		{"import-fail2ban", func(args []string) (int, error) { return importFail2ban(args, stdout, stderr) }},
	} {
		if i := slices.Index(args, own.name); i >= 0 {
			if err := fs.Parse(args[:i]); err == nil && fs.NArg() == 0 {
				return own.run(args[i+1:])
			}
		}
	}
	if len(args) >= 1 && args[0] == "setup" && !(len(args) == 2 && args[1] == "help") {
		return setup(ctx, args[1:], stdout, stderr) // offline: no server is asked
	}
	if len(args) >= 2 && args[0] == "farm" && (args[1] == "init" || args[1] == "add-node") && !slices.ContainsFunc(args, isHelp) {
		return farmKeys(args[1:], stdout) // offline: no server is asked
	}
	args = flagsFirst(fs, args)
	// -h or --help anywhere, or help [COMMAND]: the help asked for, on stdout.
	helpAsked := slices.ContainsFunc(args, isHelp)
	args = slices.DeleteFunc(args, isHelp)
	if err := fs.Parse(args); err != nil {
		return exitUsage, fmt.Errorf("%w\nrun 'ban-client help' for the commands and flags", err)
	}
	if helpAsked || fs.Arg(0) == "help" {
		topic := fs.Arg(0)
		if topic == "help" {
			topic = fs.Arg(1)
		}
		fmt.Fprint(stdout, helpFor(topic, fs))
		return 0, nil
	}
	if fs.Arg(0) == "completion" {
		if fs.NArg() != 2 {
			return exitUsage, usageError{"completion takes one shell: bash, zsh or fish"}
		}
		if err := completionScript(stdout, fs.Arg(1)); err != nil {
			return exitUsage, err
		}
		return 0, nil
	}
	path, err := socketPath(*socket, *configPath)
	if err != nil {
		// A configuration being edited still names the running server's socket: say
		// what is wrong with it, and reach the server anyway.
		fmt.Fprintf(stderr, "ban-client: %s\nban-client: reaching the server at %s anyway\n", strings.ReplaceAll(err.Error(), "\n", "\nban-client: "), path)
	}
	if fs.Arg(0) == "__complete" { // the completion scripts' questions; never an error
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		completeWords(ctx, control.NewClient(path), stdout, fs.Arg(1), *configPath)
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	out := stdout
	if !*jsonOut {
		out = escapeWriter{stdout}
	}
	err = cli{c: control.NewClient(path), w: out, json: *jsonOut}.command(ctx, fs.Args())
	code, err := exitCode(err, fs)
	if err != nil && *jsonOut {
		// A script asked for JSON: the error is JSON too, on stdout.
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(map[string]any{"error": err.Error(), "exit": code}) //nolint:errcheck // stdout gone: nothing to tell
		return code, errReported
	}
	return code, err
}

// errReported is an error already told, as JSON: main prints nothing more.
var errReported = errors.New("reported")

// exitCode returns the exit code for a command's error, and the error to tell.
func exitCode(err error, fs *flag.FlagSet) (int, error) {
	var ue usageError
	var re *control.RemoteError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ue):
		hint := "run 'ban-client help' for the commands"
		if cmd := fs.Arg(0); commandHelp[cmd] != "" {
			hint = "run 'ban-client help " + cmd + "' for its usage"
		}
		return exitUsage, fmt.Errorf("%w\n%s", err, hint)
	case errors.Is(err, control.ErrUnreachable):
		return exitUnreachable, fmt.Errorf("%w; start it with: ban-server -config FILE", err)
	case errors.Is(err, control.ErrPermission):
		return exitUnreachable, fmt.Errorf("%w: run ban-client as root, or as a member of the socket's group", err)
	case errors.As(err, &re) && re.Code == control.CodeBadRequest:
		return exitUsage, err
	}
	return exitRefused, err
}

// socketPath returns the control socket to reach: the flag's, else the configuration
// file's, else $LOGBAN_SOCKET's, else the default. A configuration with errors returns
// them, with the socket it names all the same (or the default).
func socketPath(flagValue, configPath string) (string, error) {
	switch {
	case flagValue != "":
		return flagValue, nil
	case configPath != "":
		cfg, err := config.Load(configPath)
		if err != nil {
			return config.SocketOf(configPath), err
		}
		return cfg.Server.Socket, nil
	case os.Getenv("LOGBAN_SOCKET") != "":
		return os.Getenv("LOGBAN_SOCKET"), nil
	}
	return config.DefaultSocket, nil
}

// version is set at build time with -ldflags "-X main.version=..."; without it, the
// module version and VCS revision are reported (internal/version).
var version = ""

// cli runs one command and prints its outcome.
type cli struct {
	c    *control.Client
	w    io.Writer
	json bool
}

// print writes v as JSON if asked for, else calls text.
func (x cli) print(v any, text func()) error {
	if x.json {
		enc := json.NewEncoder(x.w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text()
	return nil
}

func (x cli) command(ctx context.Context, args []string) error {
	c, w := x.c, x.w
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
		return x.print(map[string]bool{"pong": true}, func() { fmt.Fprintln(w, "pong") })
	case "status":
		args, brief := takeFlag(args, "brief")
		switch len(args) {
		case 0:
			s, err := c.Status(ctx)
			if err != nil {
				return err
			}
			return x.print(s, func() { printStatus(w, s) })
		case 1:
			if args[0] == "policy" { // the policy service's, if the server runs one
				p, err := c.PolicyStatus(ctx)
				var re *control.RemoteError
				if err == nil {
					return x.print(p, func() { printPolicyStatus(w, p) })
				} else if !errors.As(err, &re) || re.Code != control.CodeNotFound {
					return err
				}
			}
			status := c.JailStatus
			if brief {
				status = c.JailStatusBrief
			}
			s, err := status(ctx, args[0])
			var re *control.RemoteError
			if args[0] == "policy" && errors.As(err, &re) && re.Code == control.CodeNotFound {
				return fmt.Errorf("no policy service: this ban-server's configuration has no [policy] table (nor a jail named policy)")
			}
			if err != nil {
				return err
			}
			return x.print(s, func() { printJailStatus(w, s, brief) })
		}
		return usageError{"status takes at most one jail"}
	case "banip":
		args, force := takeFlag(args, "force")
		if len(args) < 2 {
			return usageError{"banip needs a jail and at least one address"}
		}
		addrs, err := parseAddrs(args[1:])
		if err != nil {
			return err
		}
		ban := c.BanIP
		if force {
			ban = c.BanIPForce
		}
		rs, err := ban(ctx, args[0], addrs...)
		if err != nil {
			return err
		}
		return x.results("banned", rs)
	case "unbanip":
		jail, local := "", false
		var rest []string
		for i := 0; i < len(args); i++ { // its flags may come anywhere
			switch a := args[i]; {
			case (a == "--jail" || a == "-jail") && i+1 < len(args):
				jail = args[i+1]
				i++
			case a == "--local" || a == "-local":
				local = true
			default:
				rest = append(rest, a)
			}
		}
		args = rest
		if len(args) == 0 {
			return usageError{"unbanip needs at least one address"}
		}
		addrs, err := parseAddrs(args)
		if err != nil {
			return err
		}
		unban := c.UnbanIP
		if local {
			unban = c.UnbanIPHere
		}
		rs, err := unban(ctx, jail, addrs...)
		if err != nil {
			return err
		}
		if local {
			return x.results("unbanned on this host only", rs)
		}
		return x.results("unbanned", rs)
	case "unbankey":
		if len(args) != 2 {
			return usageError{"unbankey takes a jail and an account or device"}
		}
		b, err := c.UnbanKey(ctx, args[0], args[1])
		if err != nil {
			return err
		}
		return x.print(b, func() { fmt.Fprintf(w, "%s %s unbanned (%s)\n", b.Kind, b.Key, b.Jail) })
	case "why":
		if len(args) != 1 {
			return usageError{"why takes one address"}
		}
		addrs, err := parseAddrs(args)
		if err != nil {
			return err
		}
		why, err := c.Why(ctx, addrs[0])
		if err != nil {
			return err
		}
		return x.print(why, func() { printWhy(w, why, time.Now()) })
	case "history":
		if len(args) > 1 {
			return usageError{"history takes at most one address"}
		}
		var addr netip.Prefix
		if len(args) == 1 {
			addrs, err := parseAddrs(args)
			if err != nil {
				return err
			}
			addr = addrs[0]
		}
		h, err := c.History(ctx, addr)
		if err != nil {
			return err
		}
		return x.print(orEmpty(h), func() { printHistory(w, h) })
	case "farm":
		if len(args) != 0 {
			return usageError{"farm takes no arguments"}
		}
		s, err := c.Farm(ctx)
		if err != nil {
			return err
		}
		return x.print(s, func() { printFarm(w, s, time.Now()) })
	case "list":
		jail := ""
		switch {
		case len(args) == 2 && (args[0] == "--jail" || args[0] == "-jail"):
			jail = args[1]
		case len(args) != 0:
			return usageError{"list takes only --jail JAIL"}
		}
		bans, err := c.List(ctx, jail)
		if err != nil {
			return err
		}
		return x.print(orEmpty(bans), func() {
			if st, err := c.Status(ctx); err == nil && st.DryRun {
				fmt.Fprintln(w, dryRunBanner)
			}
			printList(w, bans, time.Now())
		})
	case "set": // fail2ban's: set JAIL banip|unbanip IP...
		if len(args) >= 2 && slices.Contains([]string{"bantime", "findtime", "maxretry", "logpath", "addlogpath", "dellogpath", "ignoreip", "addignoreip", "delignoreip", "addfailregex", "delfailregex", "usedns", "idle"}, args[1]) {
			return usageError{fmt.Sprintf("logban does not change a jail's settings at run time: edit %s under [jails.%s] in the configuration, then run 'ban-client reload' (a jail whose settings change starts counting afresh; the others keep their state)", strings.TrimPrefix(strings.TrimPrefix(strings.TrimPrefix(args[1], "add"), "del"), "use"), args[0])}
		}
		if len(args) < 3 || (args[1] != "banip" && args[1] != "unbanip") {
			return usageError{"set takes JAIL banip IP... or JAIL unbanip IP... (as fail2ban-client; logban's own: banip JAIL IP..., unbanip --jail JAIL IP...)"}
		}
		if args[1] == "banip" {
			return x.command(ctx, append([]string{"banip", args[0]}, args[2:]...))
		}
		return x.command(ctx, append([]string{"unbanip", "--jail", args[0]}, args[2:]...))
	case "banned": // fail2ban's: every banned address
		return x.command(ctx, append([]string{"list"}, args...))
	case "start", "stop", "restart":
		return usageError{fmt.Sprintf("logban does not %s one jail: set enabled = false (or true) in its [jails.NAME] and run ban-client reload; the bans of the jails that stay are kept", cmd)}
	case "get":
		if len(args) == 2 && slices.Contains([]string{"maxretry", "findtime", "bantime"}, args[1]) {
			s, err := c.JailStatusBrief(ctx, args[0])
			if err != nil {
				return err
			}
			v := map[string]any{"maxretry": s.MaxRetry, "findtime": s.FindTime.String(), "bantime": s.BanTime.String()}[args[1]]
			if args[1] == "bantime" && s.BanTime < 0 {
				v = "-1"
			}
			return x.print(map[string]any{args[1]: v}, func() { fmt.Fprintln(w, v) })
		}
		if len(args) != 2 || args[1] != "banned" {
			return usageError{"get takes JAIL banned, maxretry, findtime or bantime"}
		}
		bans, err := c.List(ctx, args[0])
		if err != nil {
			return err
		}
		addrs := []string{}
		for _, b := range bans {
			addrs = append(addrs, b.String())
		}
		return x.print(addrs, func() {
			for _, a := range addrs {
				fmt.Fprintln(w, a)
			}
		})
	case "unban":
		bad := usageError{"unban takes --all, and --local for this host only in a farm (to lift one address: unbanip ADDR)"}
		all, local := false, false
		for _, a := range args {
			switch a {
			case "--all", "-all":
				all = true
			case "--local", "-local":
				local = true
			default:
				return bad
			}
		}
		if !all {
			return bad
		}
		unbanAll := c.UnbanAll
		if local {
			unbanAll = c.UnbanAllHere
		}
		n, err := unbanAll(ctx)
		if err != nil {
			return err
		}
		return x.print(map[string]int{"lifted": n}, func() {
			if n == 1 {
				fmt.Fprintln(w, "1 ban lifted")
			} else {
				fmt.Fprintf(w, "%d bans lifted\n", n)
			}
		})
	case "version":
		v := struct {
			Client string `json:"client"`
			Server string `json:"server,omitempty"`
			Note   string `json:"server_unreachable,omitempty"`
		}{Client: logbanversion.Of(version)}
		if s, err := c.Status(ctx); err != nil { // the client's version is still an answer
			v.Note = err.Error()
		} else {
			v.Server = s.Version
		}
		return x.print(v, func() {
			fmt.Fprintf(w, "ban-client %s\n", v.Client)
			if v.Note != "" {
				fmt.Fprintf(w, "ban-server: %s\n", v.Note)
			} else {
				fmt.Fprintf(w, "ban-server %s\n", v.Server)
			}
		})
	case "reload":
		if len(args) > 1 {
			return usageError{"reload takes no arguments (reload JAIL, as fail2ban's, reloads everything: jails that do not change keep their state)"}
		}
		if err := c.Reload(ctx); err != nil {
			return err
		}
		return x.print(map[string]bool{"reloaded": true}, func() { fmt.Fprintln(w, "reloaded") })
	}
	if near := closestCommand(cmd); near != "" {
		return usageError{fmt.Sprintf("unknown command %q; did you mean %q?", cmd, near)}
	}
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

// closestCommand returns the command nearest to cmd, a mistyped one: within two edits
// (letters added, dropped, changed or swapped), or "" if none is.
func closestCommand(cmd string) string {
	best, bestD := "", 3
	for _, c := range commandSummaries {
		if d := editDistance(cmd, c.name); d < bestD {
			best, bestD = c.name, d
		}
	}
	return best
}

// editDistance is the Damerau-Levenshtein distance (optimal string alignment) of a and b.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// parseAddrs reads addresses and networks in CIDR notation (actions.ParseTarget).
func parseAddrs(ss []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		p, err := actions.ParseTarget(s)
		if err != nil {
			if strings.Contains(s, "/") {
				return nil, usageError{fmt.Sprintf("%q: %v", s, err)}
			}
			return nil, usageError{fmt.Sprintf("%q is not an IP address or network", s)}
		}
		out[i] = p
	}
	return out, nil
}

// errNotAll reports a request that changed nothing for some addresses.
var errNotAll = errors.New("some addresses were left as they were")

// results prints what a ban or unban request did to each address, as JSON if asked
// for, and fails as printResults does.
func (x cli) results(verb string, rs []control.AddrResult) error {
	if !x.json {
		return printResults(x.w, verb, rs)
	}
	if err := x.print(orEmpty(rs), nil); err != nil {
		return err
	}
	return printResults(io.Discard, verb, rs)
}

// printResults prints what a ban or unban request did to each address. An address
// banned already counts as done: banning is idempotent. One left as it was for another
// reason (never banned, not banned) makes the command fail.
func printResults(w io.Writer, verb string, rs []control.AddrResult) error {
	var err error
	for _, r := range rs {
		if r.Done {
			fmt.Fprintf(w, "%s %s (%s)\n", r.Target, verb, strings.Join(r.Jails, ", "))
			continue
		}
		fmt.Fprintf(w, "%s not %s: %s\n", r.Target, verb, r.Note)
		if r.Note != "already banned" {
			err = errNotAll
		}
	}
	return err
}

func printList(w io.Writer, bans []control.BanInfo, now time.Time) {
	farm := false // a farm's bans show who decided them
	for _, b := range bans {
		farm = farm || b.By != ""
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := "ADDRESS\tJAIL\tBANNED AT\tEXPIRES IN\tFAILURES"
	if farm {
		head += "\tDECIDED BY\tWHY"
	}
	fmt.Fprintln(tw, head)
	for _, b := range bans {
		expires := "never"
		if !b.Expires.IsZero() {
			expires = max(b.Expires.Sub(now), 0).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d", b.Target, b.Jail, b.BannedAt.Local().Format(time.DateTime), expires, b.Failures)
		if farm {
			fmt.Fprintf(tw, "\t%s\t%s", clean(cmp.Or(b.By, "-")), clean(b.Why))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

func printWhy(w io.Writer, why control.Why, now time.Time) {
	if len(why.Bans) == 0 && len(why.HeldBy) == 0 {
		fmt.Fprintf(w, "%s is not banned\n", why.Target)
	}
	for _, b := range why.HeldBy {
		fmt.Fprintf(w, "%s has no ban of its own, but is held by the ban of %s in %s: %s\n", why.Target, b.Target, b.Jail, clean(cmp.Or(b.Why, "?")))
	}
	for _, b := range why.Bans {
		expires := "until unbanned"
		if !b.Expires.IsZero() {
			expires = "for " + max(b.Expires.Sub(now), 0).Round(time.Second).String() + " more"
		}
		fmt.Fprintf(w, "%s is banned in %s since %s, %s: %s (ban %d of this address in this jail)\n",
			why.Target, b.Jail, b.BannedAt.Local().Format(time.DateTime), expires, clean(cmp.Or(b.Why, "?")), b.Count)
		if b.By != "" {
			fmt.Fprintf(w, "  decided by farm node %s\n", clean(b.By))
		}
		if len(b.Lines) > 0 {
			fmt.Fprintln(w, "  the last lines that counted:")
			for _, l := range b.Lines {
				fmt.Fprintf(w, "    %s\n", clean(l))
			}
		}
	}
	if len(why.History) > 0 {
		fmt.Fprintln(w, "history:")
		printHistory(w, why.History)
	}
}

func printHistory(w io.Writer, h []control.HistoryEntry) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tJAIL\tBANS\tLAST BANNED")
	for _, e := range h {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", e.Target, e.Jail, e.Count, e.LastBanned.Local().Format(time.DateTime))
	}
	tw.Flush()
}

func printFarm(w io.Writer, s control.FarmStatus, now time.Time) {
	fmt.Fprintf(w, "Farm %s, node %s", s.Farm, s.Node)
	if !s.Enforce {
		fmt.Fprint(w, " (detects only: enforce = false)")
	}
	fmt.Fprintln(w)
	conn := s.State
	if s.Server != "" {
		conn += " to " + s.Server
	}
	if s.State == "connected" && !s.Synced {
		conn += ", catching up with the farm's bans"
	}
	if n := len(s.Missing); n > 0 {
		others := map[string]bool{}
		for _, node := range s.Nodes {
			others[node.Name] = true
		}
		for _, name := range s.Missing {
			others[name] = true
		}
		conn += fmt.Sprintf("; CUT OFF from %d of %d nodes: %s", n, len(others)+1, strings.Join(s.Missing, " "))
	}
	fmt.Fprintf(w, "|- Connection:\t%s\n", conn)
	fmt.Fprintf(w, "|- Servers:\t%s\n", strings.Join(s.Servers, " "))
	if len(s.Routes) > 0 {
		routes := make([]string, len(s.Routes))
		for i, r := range s.Routes {
			name := cmp.Or(r.Server, r.URL)
			switch {
			case r.Up:
				routes[i] = fmt.Sprintf("%s up %s (rtt %s)", name, now.Sub(r.Since).Round(time.Second), cmp.Or(r.RTT, "?"))
			case r.Server != "":
				routes[i] = fmt.Sprintf("%s DOWN (%s)", r.Server, r.URL)
			default:
				routes[i] = fmt.Sprintf("%s DOWN", r.URL)
			}
		}
		fmt.Fprintf(w, "|- Routes:\t%s\n", strings.Join(routes, "; "))
	}
	if len(s.Streams) > 0 {
		var parts []string
		for _, st := range s.Streams {
			name := strings.TrimPrefix(strings.TrimPrefix(st.Name, "KV_"), s.Farm+"_")
			switch {
			case st.Quorum:
				parts = append(parts, fmt.Sprintf("%s led by %s, %d of %d current", name, st.Leader, st.Current, st.Replicas))
			case st.Err != "":
				parts = append(parts, fmt.Sprintf("%s NO QUORUM (%s)", name, st.Err))
			default:
				parts = append(parts, fmt.Sprintf("%s NO QUORUM (leader %q, %d of %d current)", name, st.Leader, st.Current, st.Replicas))
			}
		}
		fmt.Fprintf(w, "|- Quorum:\t%s\n", strings.Join(parts, "; "))
	}
	if s.LastWrite.IsZero() {
		fmt.Fprintf(w, "|- Last write:\tnone taken by the farm since the start\n")
	} else {
		fmt.Fprintf(w, "|- Last write:\t%s ago (a ban, an unban, or this node's entry, refreshed every 30s)\n", now.Sub(s.LastWrite).Round(time.Second))
	}
	fmt.Fprintf(w, "|- Farm bans:\t%d\n", s.Bans)
	fmt.Fprintf(w, "|- Outbox:\t%d waiting to be published\n", s.Outbox)
	if s.LiftedHere > 0 {
		fmt.Fprintf(w, "|- Lifted here only:\t%d farm bans (unbanip --local), until the farm's ends\n", s.LiftedHere)
	}
	fmt.Fprintf(w, "|- Decided here:\t%d (and %d another host decided first: its decision stood); applied from others: %d; refused (a node's address): %d; ignored (in this host's ignoreip): %d\n",
		s.Decided, s.Lost, s.Applied, s.Refused, s.Ignored)
	fmt.Fprintf(w, "|- Failures:\t%d shared for counting, %d counted here alone\n", s.FailuresShared, s.FailuresDropped)
	if s.Forged > 0 {
		fmt.Fprintf(w, "|- FORGED:\t%d values refused: their signature did not hold (a host writing as another; see the log)\n", s.Forged)
	}
	for _, d := range s.Drift {
		fmt.Fprintf(w, "|- SETTINGS DIFFER:\t%s\n", d)
	}
	if s.LastError != "" {
		fmt.Fprintf(w, "|- Last error:\t%s (%s ago)\n", s.LastError, now.Sub(s.LastErrorAt).Round(time.Second))
	}
	fmt.Fprintf(w, "`- Nodes seen:\t%d\n", len(s.Nodes))
	for i, n := range s.Nodes {
		branch := "|-"
		if i == len(s.Nodes)-1 {
			branch = "`-"
		}
		addrs := make([]string, len(n.Addrs))
		for k, a := range n.Addrs {
			addrs[k] = a.String()
		}
		fmt.Fprintf(w, "   %s %s, %s ago: %s\n", branch, n.Name, now.Sub(n.Seen).Round(time.Second), strings.Join(addrs, " "))
	}
}

// dryRunBanner heads every screen of a server in a dry run.
const dryRunBanner = "DRY RUN: ban-server runs with -dry-run; its actions only log, nothing is banned in the kernel"

func printStatus(w io.Writer, s control.Status) {
	if s.DryRun {
		fmt.Fprintln(w, dryRunBanner)
	}
	fmt.Fprintln(w, "Status")
	fmt.Fprintf(w, "|- Number of jail:\t%d\n", len(s.Jails))
	if s.Degraded != "" {
		fmt.Fprintf(w, "|- DEGRADED:\t%s\n", s.Degraded)
	}
	fmt.Fprintf(w, "`- Jail list:\t%s\n", strings.Join(s.Jails, ", "))
}

// takeFlag returns args without the command's flag --name (or -name), wherever it
// stands, and whether it was there.
func takeFlag(args []string, name string) (rest []string, given bool) {
	rest = slices.DeleteFunc(slices.Clone(args), func(a string) bool {
		return a == "--"+name || a == "-"+name
	})
	return rest, len(rest) < len(args)
}

// printJailStatus prints s as fail2ban-client does; brief: s was asked without its list
// of bans, which is not printed.
func printJailStatus(w io.Writer, s control.JailStatus, brief bool) {
	addrs := make([]string, len(s.Bans))
	for i, b := range s.Bans {
		addrs[i] = b.String()
	}
	var files, journals []string
	var behind int64
	for _, f := range s.Files {
		if journal.IsKey(f.Path) {
			journals = append(journals, f.Path)
		} else if f.Missing {
			files = append(files, f.Path+" (not there yet: followed when it appears)")
		} else {
			files = append(files, f.Path)
		}
		behind += f.Behind
	}
	if s.DryRun {
		fmt.Fprintln(w, dryRunBanner)
	}
	fmt.Fprintf(w, "Status for the jail: %s\n", s.Name)
	fmt.Fprintln(w, "|- Filter")
	fmt.Fprintf(w, "|  |- Currently failed:\t%d\n", s.CurrentlyFailed)
	if s.Mode == "rate" {
		fmt.Fprintf(w, "|  |- Mode:\trate: every matching line counts, %d within %s are too many\n", s.MaxRetry, s.FindTime)
	}
	fmt.Fprintf(w, "|  |- Total failed:\t%d\n", s.TotalFailed)
	fmt.Fprintf(w, "|  |- Bytes behind:\t%d\n", behind)
	if s.Evicted > 0 {
		fmt.Fprintf(w, "|  |- Let go at the bound:\t%d (more than max_tracked = %d failing at once; those with the fewest failures went first)\n", s.Evicted, s.MaxTracked)
	}
	if s.ClockAdvice != "" {
		fmt.Fprintf(w, "|  |- Clock offset:\t%.0f s: %s\n", s.ClockOffset, s.ClockAdvice)
	}
	if s.Logins > 0 || s.KnownGood > 0 {
		fmt.Fprintf(w, "|  |- Logins that worked:\t%d\n", s.Logins)
		fmt.Fprintf(w, "|  |- Known-good failures (not counted):\t%d\n", s.KnownGood)
	}
	if len(journals) > 0 {
		fmt.Fprintf(w, "|  `- Journal:\t%s\n", strings.Join(journals, " "))
	} else {
		fmt.Fprintf(w, "|  `- File list:\t%s\n", strings.Join(files, " "))
	}
	if sn := s.Subnet; sn != nil {
		var lens []string
		if sn.IPv4 > 0 {
			lens = append(lens, fmt.Sprintf("/%d", sn.IPv4))
		}
		if sn.IPv6 > 0 {
			lens = append(lens, fmt.Sprintf("/%d (IPv6)", sn.IPv6))
		}
		fmt.Fprintf(w, "|- Subnets:\t%d addresses of one %s within %s\n", sn.Addresses, strings.Join(lens, " or "), sn.FindTime)
		fmt.Fprintf(w, "|  |- Currently failing:\t%d\n", sn.Failing)
		fmt.Fprintf(w, "|  |- Currently banned:\t%d\n", sn.Banned)
		fmt.Fprintf(w, "|  `- Refused (holding an address never banned):\t%d\n", sn.Refused)
	}
	if s.Key == "user" || s.Key == "device" {
		fmt.Fprintf(w, "|- Keyed by %s\n", s.Key)
		fmt.Fprintf(w, "|  |- Currently banned:\t%d\n", len(s.KeyBans))
		var keys []string
		for _, b := range s.KeyBans {
			keys = append(keys, fmt.Sprintf("%q", b.Key)) // the client's text: quoted
		}
		fmt.Fprintf(w, "|  `- Banned %s list:\t%s\n", s.Key, strings.Join(keys, " "))
	}
	fmt.Fprintln(w, "`- Actions")
	fmt.Fprintf(w, "   |- Currently banned:\t%d\n", s.CurrentlyBanned)
	fmt.Fprintf(w, "   |- Total banned:\t%d\n", s.TotalBanned)
	if s.ActionErrors > 0 || s.ActionsPending > 0 {
		fmt.Fprintf(w, "   |- Action errors:\t%d\n", s.ActionErrors)
		fmt.Fprintf(w, "   |- Retries pending:\t%d\n", s.ActionsPending)
	}
	for _, q := range s.ActionQueues {
		if q.Queued > 0 || q.Overflowed > 0 {
			fmt.Fprintf(w, "   |- Calls queued:\t%s %d", q.Action, q.Queued)
			if q.Overflowed > 0 {
				fmt.Fprintf(w, " (%d found its queue full since the start: the action is slower than the bans come; the last call per address is kept)", q.Overflowed)
			}
			fmt.Fprintln(w)
		}
	}
	if s.Unrecorded > 0 {
		fmt.Fprintf(w, "   |- Not yet recorded:\t%d (the database refuses writes; see ban-client status)\n", s.Unrecorded)
	}
	if brief {
		fmt.Fprintln(w, "   `- Banned IP list:\t(left out: --brief)")
		return
	}
	fmt.Fprintf(w, "   `- Banned IP list:\t%s\n", strings.Join(addrs, " "))
}

func printPolicyStatus(w io.Writer, p control.PolicyStatus) {
	fmt.Fprintln(w, "Status of the policy service")
	fmt.Fprintf(w, "|- Listening on:\t%s\n", p.Listen)
	switch p.State {
	case "accepting":
		fmt.Fprintf(w, "|- State:\taccepting, %d of at most %d connections", p.Conns, p.MaxConns)
		if p.Full > 0 {
			fmt.Fprintf(w, " (every one taken %d times since the start: raise [policy] max_connections)", p.Full)
		}
		fmt.Fprintln(w)
	case "degraded":
		fmt.Fprintf(w, "|- State:\tDEGRADED since %s: cannot accept connections (%s); retrying, Postfix answers its default action meanwhile\n", p.Since.Local().Format(time.DateTime), p.StateErr)
	default:
		fmt.Fprintf(w, "|- State:\tSTOPPED since %s: %s; Postfix answers its default action until a reload or restart\n", p.Since.Local().Format(time.DateTime), p.StateErr)
	}
	fmt.Fprintf(w, "|- Requests:\t%d (%d malformed, their connections closed)\n", p.Requests, p.Malformed)
	fmt.Fprintf(w, "|- Answers:\tdunno %d, banned %d, quota %d, default %d\n",
		p.Answers["dunno"], p.Answers["banned"], p.Answers["quota"], p.Answers["default"])
	if p.Refused > 0 {
		fmt.Fprintf(w, "|- Refused:\t%d connections of peers that are not Postfix (see [policy] allow_users, allow_hosts)\n", p.Refused)
	}
	fmt.Fprintf(w, "|- Tables:\t%d quota holders, %d accounts with logins", p.Holders, p.Accounts)
	if p.Dropped > 0 {
		fmt.Fprintf(w, " (%d let go at the tables' bounds before their windows ended)", p.Dropped)
	}
	fmt.Fprintln(w)
	if p.FarmCounted {
		fmt.Fprintf(w, "|- Quotas' messages:\tcounted across the farm (%d the farm could not count, counted here)\n", p.FarmErrors)
	}
	for _, q := range p.Quotas {
		fmt.Fprintf(w, "|- Quota %s:\tper %s, %d messages, %d recipients within %s (0: no limit)\n", q.Name, q.Key, q.Messages, q.Recipients, q.Window)
	}
	fmt.Fprintf(w, "|- Near their limits (80%%+):\t%d\n", len(p.Near))
	for _, h := range p.Near {
		fmt.Fprintf(w, "|  |- %q\t%s: %d messages, %d recipients\n", h.Holder, h.Quota, h.Messages, h.Recipients)
	}
	fmt.Fprintf(w, "`- Accounts flagged:\t%d\n", len(p.Flagged))
	for _, f := range p.Flagged {
		fmt.Fprintf(w, "   |- %q\t%s: %d addresses, %d networks: %s\n", f.Account, f.At.Local().Format(time.DateTime), len(f.Addrs), f.Networks, strings.Join(f.Addrs, " "))
	}
}

// orEmpty returns s, or an empty slice for nil: JSON gets [], not null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
