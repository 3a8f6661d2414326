package main

import (
	"flag"
	"strings"
)

// commandHelp is each command's own help, with examples: ban-client help COMMAND, or
// ban-client COMMAND -h.
var commandHelp = map[string]string{
	"ping": `ban-client ping
  Check that ban-server answers on its socket: prints "pong".
  ban-client ping
  ban-client -config /etc/logban/logban.toml ping`,
	"status": `ban-client status [JAIL [--brief] | policy]
  Without JAIL, the jails; with it, the jail's failures, files, actions and bans. With
  --brief, everything but the list of bans: a check that runs every few seconds during
  an attack with 100,000 bans in force asks the server for a few hundred bytes, not
  megabytes. status policy shows the Postfix policy service: requests, answers by kind,
  quota holders near their limits, accounts flagged.
  ban-client status zimbra-submission
  ban-client status zimbra-submission --brief -json
  ban-client status policy`,
	"list": `ban-client list [--jail JAIL]
  Every ban, or a jail's: address, jail, banned at, expires in, failures; in a farm,
  the deciding node and why.
  ban-client list --jail zimbra-submission
  ban-client list -json`,
	"get": `ban-client get JAIL banned|maxretry|findtime|bantime
  A jail's banned addresses, one a line, or one of its settings (fail2ban's words).
  ban-client get zimbra-submission banned`,
	"banip": `ban-client banip [--force] JAIL ADDR...
  Ban addresses, or whole networks in CIDR notation, in a jail by hand; an address the
  jail never bans (or a network holding one) is refused, one banned already is left as
  it is. A network wider than /16 (IPv4) or /32 (IPv6) bans a provider, not an
  attacker: it is refused unless --force. In a farm jail, the ban is farm-wide.
  ban-client banip zimbra-submission 203.0.113.5 2001:db8::5
  ban-client banip zimbra-submission 198.51.100.0/24
  ban-client banip --force zimbra-submission 198.18.0.0/15`,
	"unbanip": `ban-client unbanip [--jail JAIL] [--local] ADDR...
  Lift the bans of addresses or networks, in every jail or in JAIL; in a farm on every
  host, or with --local on this one only: a farm ban lifted so stays lifted here, across
  restarts, until the farm's ban ends or is lifted (a newer farm ban of the address
  applies). Flags may come anywhere. An address held only by a network's ban is left as
  it is, and the network is named: unban that instead.
  ban-client unbanip 203.0.113.5
  ban-client unbanip 203.0.113.5 --jail zimbra-submission
  ban-client unbanip 198.51.100.0/24`,
	"unban": `ban-client unban --all [--local]
  Lift every ban; in a farm on every host, or with --local on this one only.
  ban-client unban --all
  ban-client unban --all --local`,
	"unbankey": `ban-client unbankey JAIL KEY
  Lift the ban of an account or a device in a jail keyed by user or device (status JAIL
  lists them). The addresses banned with it (ban_addresses) keep their own bans: lift
  those with unbanip.
  ban-client unbankey carbonio-mobile ApplF17XK0ZZHG7F
  ban-client unbankey zimbra-submission-accounts anna@example.com`,
	"reload": `ban-client reload
  Reread the server's configuration; a bad one is refused with its errors and the
  running one stays. Log action files are reopened (for logrotate).
  ban-client reload`,
	"farm": `ban-client farm
  The farm as this host sees it: connection, and CUT OFF from the nodes it misses;
  each route of its embedded NATS server, up or DOWN; each of the farm's bucket and
  streams, its leader and current replicas, or NO QUORUM; when the farm last took a
  write from this host; the farm's bans, the outbox waiting to be published, settings
  the hosts disagree on, values refused as forged, the last error (gone once over).
  ban-client farm -json

` + farmKeysUsage,
	"version": `ban-client version
  This client's version, and the server's if it answers.
  ban-client version
  ban-client -json version`,
	"test-filter": `ban-client test-filter [-config FILE] [-json] [-print-missed] FILTER|JAIL|REGEX LOGFILE
  Run a filter over a log file without a server, as fail2ban-regex does.
  ban-client test-filter zimbra-submission /var/log/zimbra.log
  ban-client test-filter -h (for its flags)`,
	"why": `ban-client why ADDR
  Why an address (or network) is banned: each ban in force (jail, since when, for how
  long, why, the deciding node in a farm), the last log lines that counted against it
  (at most 5), the bans of networks holding it, and its ban history.
  ban-client why 203.0.113.5
  ban-client why 198.51.100.0/24`,
	"history": `ban-client history [ADDR]
  How often an address was banned in each jail, and when last; without ADDR, the 100
  addresses banned last.
  ban-client history 203.0.113.5`,
	"import-fail2ban": `ban-client import-fail2ban [-o FILE] [--all] [DIR]
  Read fail2ban's configuration in DIR (default /etc/fail2ban) as fail2ban does and
  print a logban configuration of its enabled jails (every jail with --all); what
  cannot be converted is said per jail and per regex, with the reason.
  ban-client import-fail2ban -o /etc/logban/logban.toml
  ban-client import-fail2ban -h (for its flags)`,
	"setup": `ban-client setup zimbra [--root DIR] [-o FILE] [--postfix] [--keys DIR]
  Write this host's configuration from what a Zimbra or Carbonio farm already knows:
  localconfig.xml and the farm's LDAP directory (servers, services, trusted proxies,
  DoSFilter-safe addresses, account lockout). Says what it found and why it chose each
  jail; --postfix adds the policy service and prints how to wire Postfix to it.
  ban-client setup zimbra -o /etc/logban/logban.toml
  ban-client setup zimbra --postfix -o /etc/logban/logban.toml
  ban-client setup -h (for its flags)`,
	"completion": `ban-client completion bash|zsh|fish
  Print a completion script for the shell: commands, flags, jail names and banned
  addresses (asked of the server as you type). Packages install them already.
  source <(ban-client completion bash)
  ban-client completion zsh > "${fpath[1]}/_ban-client"
  ban-client completion fish > ~/.config/fish/completions/ban-client.fish`,
	"set":    `ban-client set JAIL banip|unbanip ADDR...   (fail2ban's; logban's own: banip, unbanip)`,
	"banned": `ban-client banned   (fail2ban's; logban's own: list)`,
}

// helpFor returns the help of cmd, or the whole usage for "" or a command without one.
func helpFor(cmd string, fs *flag.FlagSet) string {
	if h, ok := commandHelp[cmd]; ok {
		return h + "\n"
	}
	var b strings.Builder
	b.WriteString(usage)
	fs.SetOutput(&b)
	fs.PrintDefaults()
	return b.String()
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool { return arg == "-h" || arg == "-help" || arg == "--help" }

// flagsFirst moves the flags fs knows, with their values, in front of the other
// arguments wherever they stand, so "status JAIL -json" reads as "-json status JAIL".
// Flags fs does not know (a command's own: --jail, --local, --all) stay where they are,
// and so does everything after "--".
func flagsFirst(fs *flag.FlagSet, args []string) []string {
	var flags, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			rest = append(rest, a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		if f == nil {
			rest = append(rest, a)
			continue
		}
		flags = append(flags, a)
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); (ok && b.IsBoolFlag()) || hasValue {
			continue
		}
		if i+1 < len(args) {
			flags = append(flags, args[i+1])
			i++
		}
	}
	return append(flags, rest...)
}
