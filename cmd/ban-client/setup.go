package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/logban/logban/internal/config"
	"github.com/logban/logban/internal/zimbra"
)

const setupUsage = `Usage: ban-client setup zimbra [--root DIR] [-o FILE] [--postfix] [--keys DIR]

Writes a configuration for this host of a Zimbra or Carbonio farm from what the farm
already knows. It finds the install (/opt/zimbra, /opt/zextras, or --root), reads
conf/localconfig.xml for the directory's LDAP URL and credentials and this host's name,
and asks the farm's LDAP directly (no zmprov) for its servers, what each runs
(zimbraServiceEnabled), the proxies it trusts (zimbraMailTrustedIP), the addresses its
DoSFilter spares (zimbraHttpThrottleSafeIPs) and the default class of service's account
lockout. Then:
  - jails by the services this host runs: an MTA the Postfix SASL jails on the MTA's
    syslog file; a mailbox host the mailbox-auth and DoSFilter jails; a proxy the
    mail-proxy and ActiveSync jails, each on this product's log paths;
  - the mailbox-auth jail bans before Zimbra's lockout locks the account, so guessing
    cannot lock a real user out;
  - a [zimbra] table that keeps the farm's servers, trusted proxies and safe addresses
    never banned, read again every 5 minutes and at each reload;
  - with more than one server, a [farm] of the farm's servers, detect-only on hosts that
    run neither an MTA nor a proxy, and the command that makes its keys.
What it found and why it chose each part goes to standard error. The LDAP password is
never written, in the file or on the screen.

--postfix adds the policy service (on an MTA) and prints how to wire Postfix to it:
the zmprov commands for main.cf's restrictions, the master.cf.in lines for the
submission ports, and, for a plain Postfix, the postconf commands.

Examples:
  ban-client setup zimbra -o /etc/logban/logban.toml
  ban-client setup zimbra --postfix -o /etc/logban/logban.toml
  ban-client setup zimbra --root /opt/zextras > carbonio.toml

Flags:
`

// resolve resolves the servers' names; tests replace it.
var resolve zimbra.Resolver = zimbra.SystemResolver

// setup runs "setup zimbra": no server is asked.
func setup(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("setup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	usage := func(w io.Writer) { fmt.Fprint(w, setupUsage); fs.SetOutput(w); fs.PrintDefaults() }
	fs.Usage = func() {}
	root := fs.String("root", "", "the install's `folder` (default: /opt/zimbra, else /opt/zextras)")
	out := fs.String("o", "", "write the configuration to this `file` instead of standard output")
	postfix := fs.Bool("postfix", false, "add the policy service and print how to wire Postfix to it")
	keys := fs.String("keys", "/etc/logban/farm", "the `folder` each host keeps the farm's keys in")
	if err := fs.Parse(flagsFirst(fs, args)); err != nil {
		return ownHelp(err, "setup", usage, stdout)
	}
	if fs.NArg() != 1 || fs.Arg(0) != "zimbra" {
		usage(stderr)
		return exitUsage, usageError{"setup takes one product: zimbra (Zimbra or Carbonio)"}
	}
	in, err := zimbra.Find(*root)
	if err != nil {
		return exitRefused, fmt.Errorf("setup zimbra: %w", err)
	}
	lc, err := zimbra.ReadLocalConfig(in.LocalConfig())
	if err != nil {
		return exitRefused, fmt.Errorf("setup zimbra: %w", err)
	}
	access, err := lc.LDAP()
	if err != nil {
		return exitRefused, fmt.Errorf("setup zimbra: %s: %w", in.LocalConfig(), err)
	}
	access.CAFile = in.CAFile()
	host := lc["zimbra_server_hostname"]
	fmt.Fprintf(stderr, "%s at %s; this host is %q; asking the directory at %v as %s\n", in.Product, in.Root, host, access.URLs, access.BindDN)
	dir, err := zimbra.Read(access)
	if err != nil {
		return exitRefused, fmt.Errorf("setup zimbra: asking the directory: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	h := zimbra.Host{Install: in, Name: host, Directory: dir, Addresses: dir.Addresses(rctx, host, resolve), KeysDir: *keys, Postfix: *postfix}
	plan, err := zimbra.Setup(h)
	if err != nil {
		return exitRefused, fmt.Errorf("setup zimbra: %w", err)
	}
	for _, f := range plan.Found {
		fmt.Fprintln(stderr, "found: "+f)
	}
	for _, w := range plan.Why {
		fmt.Fprintln(stderr, "chose: "+w)
	}
	if plan.FarmInit != "" {
		fmt.Fprintf(stderr, "the farm's keys, once, on one host: %s\n", plan.FarmInit)
	}
	if problems := checkWritten(plan.Config); problems != "" {
		fmt.Fprintf(stderr, "check: %s\n", problems)
	}
	if *out == "" {
		if _, err := io.WriteString(stdout, plan.Config); err != nil {
			return exitRefused, err
		}
	} else {
		if err := os.WriteFile(*out, []byte(plan.Config), 0o640); err != nil {
			return exitRefused, err
		}
		fmt.Fprintf(stderr, "wrote %s; check it with: ban-server -check -config %s\n", *out, *out)
	}
	if *postfix {
		self, _ := dir.Server(host)
		w := stderr
		if *out != "" {
			w = stdout
		}
		if self.Runs("mta") {
			fmt.Fprint(w, "\n"+zimbra.PostfixWiring(in, self))
		} else {
			fmt.Fprintf(w, "\n# %s runs no MTA: no Postfix to wire here.\n", host)
		}
		fmt.Fprint(w, "\n"+zimbra.PlainPostfixWiring())
	}
	return 0, nil
}

// checkWritten loads a written configuration as ban-server -check does, and returns
// its problems, or "" if it loads.
func checkWritten(text string) string {
	dir, err := os.MkdirTemp("", "logban-setup-")
	if err != nil {
		return err.Error()
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "logban.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return err.Error()
	}
	if _, err := config.Load(path); err != nil {
		return err.Error()
	}
	return ""
}
