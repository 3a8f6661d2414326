package zimbra

import (
	"cmp"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/logban/logban/internal/config"
)

// Host is what Setup writes a configuration for: an install, the host's name in the
// directory, and the directory's answer.
type Host struct {
	Install   Install
	Name      string // zimbra_server_hostname
	Directory *Directory
	Addresses Addresses
	// KeysDir is where the farm's keys are kept on each host (ban-client farm init).
	KeysDir string
	// Postfix, on an MTA, adds the policy service, listening in Postfix's queue
	// directory (see PostfixWiring).
	Postfix bool
}

// Plan is a configuration for one host, with the reasons for what it holds.
type Plan struct {
	Config string
	// Found says what the directory told, and Why why each part of Config is there,
	// one line each, for the administrator to read.
	Found, Why []string
	// FarmInit is the command that makes the farm's keys, where the farm has more than
	// one server.
	FarmInit string
}

// jailSpec is a jail Setup may write, and the service whose hosts read its log.
type jailSpec struct {
	suffix, service, filter, log, why string
	maxretry                          int
	findtime, bantime                 string
	actions                           []string
	extra                             string // more keys, after actions
	// local jails count and ban on their own host only: in a farm, other hosts get no
	// copy, and the jail says farm = "local".
	local bool
}

// MailboxAuthRetry and MailboxAuthFindTime are the mailbox-auth jail's thresholds
// where account lockout does not bound them (Zimbra's fail2ban guidance: 5 in 5 minutes).
const (
	MailboxAuthRetry    = 5
	MailboxAuthFindTime = 5 * time.Minute
)

// Setup returns the configuration for h: the jails of the services this host runs (and,
// in a farm, the other hosts' jails, without their logs, so this host enforces their
// bans), the farm, and the [zimbra] table that keeps the never-banned addresses in step
// with the directory.
func Setup(h Host) (Plan, error) {
	var p Plan
	d := h.Directory
	self, ok := d.Server(h.Name)
	if !ok {
		return p, fmt.Errorf("this host, %q (localconfig's zimbra_server_hostname), is not among the directory's %d servers", h.Name, len(d.Servers))
	}
	for _, s := range d.Servers {
		p.Found = append(p.Found, fmt.Sprintf("server %s runs %s", s.Name, strings.Join(s.Services, ", ")))
	}
	a := h.Addresses
	p.Found = append(p.Found, fmt.Sprintf("%d server addresses, %d trusted proxies (zimbraMailTrustedIP and the proxy servers), %d DoSFilter-safe addresses (zimbraHttpThrottleSafeIPs)",
		len(a.Servers), len(a.Trusted), len(a.Safe)))
	for _, u := range a.Unresolved {
		p.Found = append(p.Found, "NOT RESOLVED, so not spared until it resolves: "+u)
	}
	for _, v := range a.Ignored {
		p.Found = append(p.Found, "not an address or a network, left out: "+v)
	}
	lock := d.Lockout
	if lock.Enabled {
		p.Found = append(p.Found, fmt.Sprintf("account lockout is on: %d failures within %s lock an account (default class of service)", lock.MaxFailures, cmp.Or(lock.FailureLifetime, "1h")))
	} else {
		p.Found = append(p.Found, "account lockout is off (default class of service)")
	}

	in := h.Install
	pre := in.JailPrefix()
	retry, find := MailboxAuthRetry, MailboxAuthFindTime
	authWhy := fmt.Sprintf("%d failed logins within %s ban the address", retry, config.FormatDuration(find))
	if lock.Enabled {
		// Ban before Zimbra locks: fewer failures than the lockout's, counted over at
		// least its lifetime, so a guesser pacing under our window still meets the ban
		// before the account is locked.
		retry = max(1, min(retry, lock.MaxFailures-1))
		// Zimbra writes durations as logban's configuration reads them: 1h, 30m, 1d, seconds.
		if life, err := config.ParseDuration(lock.FailureLifetime); err == nil && time.Duration(life) > find {
			find = time.Duration(life)
		}
		authWhy = fmt.Sprintf("%d failed logins within %s ban the address, before Zimbra's lockout (%d within %s) locks the account, so guessing cannot lock a real user out",
			retry, config.FormatDuration(find), lock.MaxFailures, cmp.Or(lock.FailureLifetime, "1h"))
		if lock.MaxFailures <= 1 {
			authWhy += "; lockout at 1 failure leaves nothing to ban before it"
		}
	}
	specs := []jailSpec{
		{suffix: "submission", service: "mta", filter: "zimbra-submission", log: in.Syslog, maxretry: 3, findtime: "1h", bantime: "10h",
			actions: []string{"blackhole"}, why: "SASL password guessing on the submission port (587), in the MTA's syslog",
			extra: "\n[jails.%s.subnet]\nipv4      = 24\nipv6      = 64\naddresses = 5\nbantime   = \"1d\"\n"},
		{suffix: "smtp-auth", service: "mta", filter: "zimbra-smtp-auth", log: in.Syslog, maxretry: 3, findtime: "1h", bantime: "10h",
			actions: []string{"blackhole"}, why: "SASL password guessing on ports 25 and 465"},
		{suffix: "mailbox-auth", service: "mailbox", filter: "zimbra-mailbox-auth", log: in.Log("audit.log"), maxretry: retry, findtime: config.FormatDuration(find), bantime: "25m",
			actions: []string{"blackhole"}, why: authWhy + " (web client, SOAP, IMAP, POP, in audit.log)"},
		{suffix: "dosfilter", service: "mailbox", filter: "zimbra-dosfilter", log: in.Log("zmmailboxd.out"), maxretry: 10, findtime: "1m", bantime: "1h",
			actions: []string{"web-firewall"}, why: "an address Jetty's DoSFilter throttles again and again is refused at the web ports",
			extra: "\n[jails.%s.bantime_increment]\nenabled     = true\nmultipliers = [1, 6, 24, 168]\n"},
		{suffix: "proxy-auth", service: "proxy", filter: "zimbra-proxy-auth", log: in.Log("nginx.log"), maxretry: 5, findtime: "10m", bantime: "1h",
			actions: []string{"blackhole"}, why: "IMAP and POP logins the mail proxy refuses (unknown accounts among them, which reach no other log)"},
		{suffix: "mobile", service: "proxy", filter: "zimbra-activesync", log: in.Log("nginx.access.log"), maxretry: 150, findtime: "30s", bantime: "10m",
			actions: []string{"devices-log"}, why: "a mobile device sending 150 ActiveSync requests within 30 seconds is banned, not its address (behind a NAT sits an office)",
			extra: "mode     = \"rate\"\nkey      = \"device\"\nban_addresses = false\n", local: true},
	}
	farm := len(d.Servers) > 1
	var b strings.Builder
	fmt.Fprintf(&b, "# logban for %s, a %s server running %s.\n", self.Name, in.Product, strings.Join(self.Services, ", "))
	fmt.Fprintf(&b, "# Written by ban-client setup zimbra from %s and the farm's directory.\n", in.LocalConfig())
	b.WriteString("# Check it with: ban-server -check -config FILE\n\n")
	b.WriteString("[server]\nsocket   = \"/run/logban/logban.sock\"\ndatabase = \"/var/lib/logban/logban.db\"\n\n")
	b.WriteString("# The farm's servers, the proxies it trusts and the addresses its DoSFilter spares are\n")
	b.WriteString("# read from the directory (with the credentials in localconfig.xml, never copied here)\n")
	b.WriteString("# at start, every `every` and at each reload: never banned, and a server added to the\n")
	b.WriteString("# farm is spared from the next read on.\n")
	fmt.Fprintf(&b, "[zimbra]\nroot  = %q\nevery = \"5m\"\n\n", in.Root)
	p.Why = append(p.Why, "[zimbra]: the never-banned servers, trusted proxies and safe addresses follow the directory")

	if farm {
		writeFarm(&b, &p, h, self)
	}
	if h.Postfix && self.Runs("mta") {
		fmt.Fprintf(&b, "# Postfix asks whether a client is banned, through a socket in its queue directory\n")
		fmt.Fprintf(&b, "# (ban-client setup zimbra --postfix prints the wiring).\n[policy]\nlisten       = %q\nsocket_group = \"postfix\"\n\n", "unix:"+in.PolicySocket())
		p.Why = append(p.Why, "[policy]: Postfix asks the policy service, at "+in.PolicySocket())
	}
	b.WriteString("[actions.blackhole]\ntype = \"route\"   # a null route: no reply reaches a banned address\n\n")
	needs := map[string]bool{}
	for _, s := range specs {
		if self.Runs(s.service) || farm && !s.local && farmRuns(d, s.service) {
			for _, a := range s.actions {
				needs[a] = true
			}
		}
	}
	if needs["web-firewall"] {
		b.WriteString("[actions.web-firewall]\ntype      = \"nftables\"\nprotocol  = \"tcp\"\nports     = [\"80\", \"443\", \"7071\", \"8443\", \"9071\"]\nblocktype = \"REJECT\"\n\n")
	}
	if needs["devices-log"] {
		b.WriteString("[actions.devices-log]\ntype = \"log\"\npath = \"/var/log/logban/devices.log\"\n\n")
	}
	for _, s := range specs {
		name := pre + "-" + s.suffix
		here := self.Runs(s.service)
		if !here && !(farm && !s.local && farmRuns(d, s.service)) {
			continue
		}
		if here {
			p.Why = append(p.Why, fmt.Sprintf("jail %s (this host runs %s): %s", name, s.service, s.why))
			fmt.Fprintf(&b, "# %s.\n[jails.%s]\nfilter   = %q\nlogpath  = [%q]\n", capitalize(s.why), name, s.filter, s.log)
		} else {
			p.Why = append(p.Why, fmt.Sprintf("jail %s without a log (other hosts run %s): this host enforces their bans", name, s.service))
			fmt.Fprintf(&b, "# Another host's jail (%s): no log here, only its bans to enforce.\n[jails.%s]\nfilter   = %q\n", s.service, name, s.filter)
		}
		fmt.Fprintf(&b, "maxretry = %d\nfindtime = %q\nbantime  = %q\nactions  = [%s]\n", s.maxretry, s.findtime, s.bantime, quoteAll(s.actions))
		if s.local && farm {
			b.WriteString("farm     = \"local\"   # a device's ban is this proxy's: no other host holds it\n")
		}
		if s.extra != "" {
			if strings.Contains(s.extra, "%s") {
				fmt.Fprintf(&b, s.extra, name)
			} else {
				b.WriteString(s.extra)
			}
		}
		b.WriteString("\n")
	}
	p.Config = strings.TrimRight(b.String(), "\n") + "\n"
	return p, nil
}

// writeFarm writes the [farm] of a farm of more than one server: the first three
// servers (by name) run the embedded NATS servers the others dial; a host that runs
// neither an MTA nor a proxy only detects (its clients reach it through the proxies).
func writeFarm(b *strings.Builder, p *Plan, h Host, self Server) {
	d := h.Directory
	nodes := nodeNames(d.Servers)
	node := nodes[self.Name]
	seeds := d.Servers[:min(3, len(d.Servers))]
	var servers, routes, initArgs []string
	servers = append(servers, "tls://127.0.0.1:4222")
	isSeed := false
	for _, s := range seeds {
		if s.Name == self.Name {
			isSeed = true
			continue
		}
		servers = append(servers, fmt.Sprintf("tls://%s:4222", s.Name))
		routes = append(routes, fmt.Sprintf("nats://%s:6222", s.Name))
	}
	if !isSeed {
		servers = servers[1:]
	}
	for _, s := range d.Servers {
		initArgs = append(initArgs, fmt.Sprintf("%s=%s", nodes[s.Name], s.Name))
	}
	keys := h.KeysDir
	p.FarmInit = fmt.Sprintf("ban-client farm init %s --farm zimbra %s", keys, strings.Join(initArgs, " "))
	enforce := self.Runs("mta") || self.Runs("proxy")
	fmt.Fprintf(b, "# The farm: failures counted across the %d servers, and bans shared. Its keys are made\n", len(d.Servers))
	fmt.Fprintf(b, "# once, on one host, with:\n#   %s\n", p.FarmInit)
	fmt.Fprintf(b, "# then ca.pem, nodes.toml and this node's %s.pem, %s.key and %s.nk are copied to %s here.\n", node, node, node, keys)
	fmt.Fprintf(b, "[farm]\nname    = \"zimbra\"\nnode    = %q\nservers = [%s]\n", node, quoteAll(servers))
	fmt.Fprintf(b, "nkey_seed  = %q\ntls_ca     = %q\ntls_cert   = %q\ntls_key    = %q\nnodes_file = %q\n",
		filepath.Join(keys, node+".nk"), filepath.Join(keys, "ca.pem"), filepath.Join(keys, node+".pem"), filepath.Join(keys, node+".key"), filepath.Join(keys, "nodes.toml"))
	if !enforce {
		b.WriteString("enforce = false   # runs neither an MTA nor a proxy: clients reach it through them\n")
		p.Why = append(p.Why, "[farm] enforce = false: this host runs neither an MTA nor a proxy, so it detects and the proxies and MTAs ban")
	}
	if isSeed {
		fmt.Fprintf(b, "\n[farm.embedded]\nlisten         = \"0.0.0.0:4222\"\ncluster_listen = \"0.0.0.0:6222\"\nroutes         = [%s]\nstore_dir      = \"/var/lib/logban/nats\"\n", quoteAll(routes))
		p.Why = append(p.Why, "[farm.embedded]: this host is one of the farm's first three servers, which run its NATS servers")
	}
	b.WriteString("\n")
	p.Why = append(p.Why, fmt.Sprintf("[farm]: %d servers count failures together and share their bans, as node %q", len(d.Servers), node))
}

// nodeNames names each server's farm node: its host name's first label, or the whole
// name (dots made dashes) where two servers share a first label.
func nodeNames(servers []Server) map[string]string {
	first := map[string]int{}
	for _, s := range servers {
		l, _, _ := strings.Cut(s.Name, ".")
		first[l]++
	}
	out := map[string]string{}
	for _, s := range servers {
		l, _, _ := strings.Cut(s.Name, ".")
		if first[l] > 1 {
			l = strings.ReplaceAll(s.Name, ".", "-")
		}
		out[s.Name] = l
	}
	return out
}

func farmRuns(d *Directory, service string) bool {
	return slices.ContainsFunc(d.Servers, func(s Server) bool { return s.Runs(service) })
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
