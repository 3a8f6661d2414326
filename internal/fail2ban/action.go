package fail2ban

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// errLetsThrough marks a firewall action whose "ban" lets the address through
// (blocktype RETURN or ACCEPT: fail2ban's pass2allow, which drops everyone else and
// lets in who logged in). logban bans; converting it would turn the jail upside down.
var errLetsThrough = errors.New("lets the address through")

// action turns one entry of a jail's action (NAME[key=value, ...]) into a logban
// action, and returns its name; a note says what was lost. letsThrough says the action
// does not ban its address at all (errLetsThrough).
func (im *importer) action(jail, spec string) (name, note string, letsThrough bool) {
	name, note = im.convertAction(jail, spec)
	return name, note, strings.Contains(note, errLetsThrough.Error())
}

func (im *importer) convertAction(jail, spec string) (name, note string) {
	actName, args, err := extractOptions(spec)
	if err != nil {
		return "", fmt.Sprintf("action %v", err)
	}
	if strings.HasSuffix(actName, ".py") {
		return "", fmt.Sprintf("action %s is Python, which logban does not run; see action.d/%s", actName, actName)
	}
	c, err := readConf(im.dir, filepath.Join("action.d", actName))
	if err != nil {
		return "", fmt.Sprintf("action %s: %v", actName, err)
	}
	im.res.Files = appendNew(im.res.Files, c.files...)
	// An option: the jail's, else the action's [Init]; a tag left in it (<known/chain>)
	// means the action's own default.
	opt := func(key string) string {
		if v, ok := args[key]; ok && !strings.Contains(v, "<") {
			return v
		}
		v, _ := c.get("Init", key, args)
		if strings.Contains(v, "<") {
			sub, err := substituteTags(map[string]string{key: v}, nil, func(tag string) (string, bool) {
				v, err := c.getEx("Init", tag, nil)
				return v, err == nil
			})
			if err == nil {
				v = sub[key]
			}
		}
		return strings.TrimSpace(v)
	}
	a := &actionOut{}
	var lost []string
	if bt := strings.ToUpper(strings.Fields(opt("blocktype") + " x")[0]); (bt == "RETURN" || bt == "ACCEPT") &&
		(strings.HasPrefix(actName, "iptables") || strings.HasPrefix(actName, "nftables")) {
		return "", fmt.Sprintf("action %s with blocktype %s %v, and drops everyone else (returntype %s): logban bans the addresses a jail counts, so the jail would be turned upside down",
			actName, bt, errLetsThrough, cmp.Or(opt("returntype"), "DROP"))
	}
	switch {
	case actName == "iptables" || strings.HasPrefix(actName, "iptables-"):
		a.kind = "iptables"
		switch {
		case strings.HasPrefix(actName, "iptables-ipset"):
			a.kind = "ipset"
		case actName == "iptables-multiport-log":
			lost = append(lost, "the LOG rule before the drop: logban logs each ban itself")
		case actName == "iptables-xt_recent-echo":
			lost = append(lost, "the xt_recent list: a rule per ban in logban's chain instead")
		}
		protocol := strings.ToLower(opt("protocol"))
		if protocol == "" {
			protocol = "tcp"
		}
		var ports []string
		if !strings.HasSuffix(actName, "allports") {
			var portsLost []string
			ports, portsLost = portList(opt("port"))
			lost = append(lost, portsLost...)
		}
		if len(ports) > 0 && protocol != "tcp" && protocol != "udp" {
			lost = append(lost, fmt.Sprintf("ports with protocol %s: blocks every port", protocol))
			ports = nil
		}
		if chain := opt("chain"); chain != "" && chain != "INPUT" {
			a.options = append(a.options, "chain = "+tomlString(chain))
		}
		if len(ports) > 0 {
			a.options = append(a.options, "protocol = "+tomlString(protocol), "ports = "+tomlList(ports))
		}
		lost = a.blockType(opt("blocktype"), "DROP", lost)
	case actName == "route":
		a.kind = "route"
		switch bt := opt("blocktype"); bt {
		case "unreachable", "prohibit", "blackhole":
			a.options = append(a.options, "route_type = "+tomlString(bt))
		case "":
		default:
			lost = append(lost, fmt.Sprintf("blocktype %s: blackhole instead", bt))
		}
	case actName == "ufw":
		a.kind = "ufw"
		if bt := strings.ToLower(opt("blocktype")); bt == "deny" || bt == "reject" {
			a.options = append(a.options, "blocktype = "+tomlString(bt))
		}
		if app := opt("application"); app != "" {
			a.options = append(a.options, "application = "+tomlString(app))
		}
	case strings.HasPrefix(actName, "sendmail"), strings.HasPrefix(actName, "mail"):
		a.kind = "mail"
		dest := opt("dest")
		if dest == "" {
			dest = "root"
		}
		a.options = append(a.options, "to = "+tomlList(strings.Fields(strings.ReplaceAll(dest, ",", " "))))
		if s := opt("sender"); s != "" && !strings.Contains(s, "<") && !strings.Contains(s, "%") {
			a.options = append(a.options, "from = "+tomlString(s))
		}
		if strings.Contains(actName, "whois") {
			lost = append(lost, "the whois lookup: the mail lists the bans only")
		}
	case strings.HasPrefix(actName, "nftables"):
		// nftables, nftables-multiport, nftables-allports: fail2ban's set per jail in
		// its own table; logban's sets are in table inet logban.
		a.kind = "nftables"
		protocol := strings.ToLower(opt("protocol"))
		if protocol == "" {
			protocol = "tcp"
		}
		if actName != "nftables-allports" {
			ports, portsLost := portList(opt("port"))
			lost = append(lost, portsLost...)
			if len(ports) > 0 && (protocol == "tcp" || protocol == "udp") {
				a.options = append(a.options, "protocol = "+tomlString(protocol), "ports = "+tomlList(ports))
			} else if len(ports) > 0 {
				lost = append(lost, fmt.Sprintf("ports with protocol %s: blocks every port", protocol))
			}
		}
		if hook := opt("chain_hook"); hook == "forward" {
			a.options = append(a.options, "hooks = "+tomlList([]string{"forward"}))
		} else if hook != "" && hook != "input" {
			lost = append(lost, fmt.Sprintf("chain_hook %s: input instead", hook))
		}
		lost = a.blockType(opt("blocktype"), "reject", lost) // fail2ban's nftables rejects by default
	default:
		ban, _ := c.get("Definition", "actionban", nil)
		a.notes = append(a.notes, "no logban kind does what "+actName+" does; an exec action could, with its commands written as argv lists (no shell). fail2ban's actionban:")
		for l := range strings.SplitSeq(strings.TrimSpace(ban), "\n") {
			a.notes = append(a.notes, "  "+l)
		}
		note = fmt.Sprintf("action %s has no logban kind; left as a comment to write as an exec action", actName)
	}
	// An action with ports is the jail's; the same action with the same options in
	// another jail is shared under the first jail's name.
	a.name = actName
	if slices.ContainsFunc(a.options, func(o string) bool { return strings.HasPrefix(o, "ports = ") }) {
		a.name += "-" + jail
	}
	for _, l := range lost {
		a.notes = append(a.notes, "not converted: "+l)
		note = strings.TrimPrefix(note+"; ", "; ") + fmt.Sprintf("action %s: %s", actName, l)
	}
	name = im.addAction(a)
	if a.kind == "" {
		return "", note
	}
	return name, note
}

// addAction adds a, or finds the same action added already, and returns its name.
func (im *importer) addAction(a *actionOut) string {
	base := a.name
	for i := 2; ; i++ {
		have, ok := im.actions[a.name]
		if !ok {
			im.actions[a.name] = a
			im.actionOrder = append(im.actionOrder, a.name)
			return a.name
		}
		if have.kind == a.kind && slices.Equal(have.options, a.options) {
			return a.name
		}
		a.name = fmt.Sprintf("%s-%d", base, i)
	}
}

// wellKnownPorts are the services fail2ban's jails name, for a machine without
// /etc/services.
var wellKnownPorts = map[string]string{
	"ftp": "21", "ftp-data": "20", "ssh": "22", "telnet": "23", "smtp": "25", "domain": "53",
	"http": "80", "pop3": "110", "imap": "143", "imap2": "143", "ldap": "389", "https": "443",
	"smtps": "465", "submissions": "465", "submission": "587", "ldaps": "636", "ftps": "990",
	"imaps": "993", "pop3s": "995", "mysql": "3306", "sieve": "4190", "postgresql": "5432",
	"sip": "5060", "sip-tls": "5061", "xmpp-client": "5222", "xmpp-server": "5269",
}

// portList turns fail2ban's port option ("ssh", "http,https", "25,465,submission",
// "0:65535") into port numbers and ranges; every port gives none.
func portList(v string) (ports, lost []string) {
	for p := range strings.FieldsFuncSeq(v, func(r rune) bool { return r == ',' || r == ' ' }) {
		if p == "0:65535" || p == "1:65535" {
			return nil, nil
		}
		lo, hi, isRange := strings.Cut(p, ":")
		num := func(s string) (string, bool) {
			if _, err := strconv.Atoi(s); err == nil {
				return s, true
			}
			if n, ok := wellKnownPorts[s]; ok {
				return n, true
			}
			if n, err := net.LookupPort("tcp", s); err == nil {
				return strconv.Itoa(n), true
			}
			return "", false
		}
		a, ok1 := num(lo)
		b, ok2 := num(hi)
		switch {
		case isRange && ok1 && ok2:
			ports = append(ports, a+":"+b)
		case !isRange && ok1:
			ports = append(ports, a)
		default:
			lost = append(lost, fmt.Sprintf("port %q is not a number or a service this machine knows", p))
		}
	}
	if len(ports) > 15 {
		lost = append(lost, fmt.Sprintf("%d ports, more than iptables' multiport takes: blocks every port", len(ports)))
		return nil, lost
	}
	return ports, lost
}

// blockType sets a firewall action's blocktype from fail2ban's (its first word; def if
// none: iptables' DROP, nftables' reject), and returns lost with what it could not
// take.
func (a *actionOut) blockType(fail2ban, def string, lost []string) []string {
	switch bt := strings.ToUpper(strings.Fields(fail2ban + " " + def)[0]); bt {
	case "REJECT":
		a.options = append(a.options, "blocktype = "+tomlString("REJECT"))
	case "DROP":
	default:
		lost = append(lost, fmt.Sprintf("blocktype %s: drops instead", bt))
	}
	return lost
}
