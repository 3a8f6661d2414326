package main

import (
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/logban/logban/internal/config"
)

// dump prints the effective configuration of every enabled jail, as fail2ban-client -d
// does: each key's value after drop-ins and [defaults], and where it comes from; then
// the [policy] table, with its defaults filled in.
func dump(w io.Writer, cfg *config.Config) {
	defer dumpPolicy(w, cfg.Policy)
	fmt.Fprintf(w, "# configuration files, in the order read: %s\n", strings.Join(cfg.Files, ", "))
	for _, name := range slices.Sorted(maps.Keys(cfg.Jails)) {
		j := cfg.Jails[name]
		fmt.Fprintf(w, "\n[jails.%s]\n", name)
		bantime := duration(j.BanTime)
		if j.BanTime < 0 {
			bantime = "-1"
		}
		source := []struct{ key, value string }{{"logpath", quoted(j.LogPath)}}
		if j.Backend == config.BackendJournal {
			source = []struct{ key, value string }{{"backend", strconv.Quote(j.Backend)},
				{"journal_match", quoted(j.JournalMatch)}, {"journal_directory", strconv.Quote(j.JournalDirectory)}}
		}
		for _, kv := range slices.Concat([]struct{ key, value string }{
			{"filter", strconv.Quote(j.Filter)}}, source, []struct{ key, value string }{
			{"maxretry", strconv.Itoa(j.MaxRetry)},
			{"findtime", duration(j.FindTime)},
			{"bantime", bantime},
			{"ignoreip", quoted(prefixStrings(j.IgnoreIP))},
			{"trusted_proxies", quoted(prefixStrings(j.TrustedProxies))},
			{"timezone", strconv.Quote(j.TimeZone)},
			{"actions", quoted(j.Actions)},
			{"start", strconv.Quote(j.Start)},
			{"farm", strconv.Quote(j.Farm)},
			{"mode", strconv.Quote(j.Mode)},
			{"key", strconv.Quote(j.Key)},
			{"ban_addresses", strconv.FormatBool(j.BanAddresses)},
			{"trust_time", duration(j.TrustTime)},
			{"notify", quoted(j.Notify)},
		}) {
			fmt.Fprintf(w, "%-16s = %-40s # %s\n", kv.key, kv.value, cfg.Origins["jails."+name+"."+kv.key])
		}
		if sn := j.Subnet; sn.On() {
			subnetBantime := duration(j.SubnetBanTime)
			if j.SubnetBanTime < 0 {
				subnetBantime = "-1"
			}
			fmt.Fprintf(w, "subnet = { ipv4 = %d, ipv6 = %d, addresses = %d, findtime = %s, bantime = %s } # %s\n",
				sn.IPv4, sn.IPv6, sn.Addresses, duration(sn.FindTime), subnetBantime, cfg.Origins["jails."+name+".subnet"])
		}
		if inc := j.Increment; inc.Enabled {
			fmt.Fprintf(w, "bantime_increment = { enabled = true, factor = %v, multipliers = %v, maxtime = %s, rndtime = %s, overalljails = %v } # %s\n",
				inc.Factor, inc.Multipliers, duration(inc.MaxTime), duration(inc.RndTime), inc.OverallJails, cfg.Origins["jails."+name+".bantime_increment"])
		}
	}
}

// dumpPolicy prints the effective [policy] table, if there is one.
func dumpPolicy(w io.Writer, p *config.Policy) {
	if p == nil {
		return
	}
	fmt.Fprintf(w, "\n[policy]\nlisten        = %q\nreject_banned = %q\ndefault       = %q\ntimeout       = %s\n",
		p.Listen, p.Settings.RejectBanned, p.Settings.Default, duration(p.Timeout))
	for _, q := range p.Settings.Quotas {
		fmt.Fprintf(w, "quotas.%s = { key = %q, messages = %d, recipients = %d, window = %s, action = %q }\n",
			q.Name, q.Key, q.Messages, q.Recipients, duration(q.Window), q.Action)
	}
	if c := p.Settings.Compromised; c.On() {
		fmt.Fprintf(w, "compromised = { distinct_addresses = %d, distinct_networks = %d, window = %s, actions = %s }\n",
			c.Addresses, c.Networks, duration(c.Window), quoted(p.CompromisedActions))
	}
}

func duration(d time.Duration) string { return strconv.Quote(config.FormatDuration(d)) }

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		if p.Bits() == p.Addr().BitLen() {
			out[i] = p.Addr().String()
		} else {
			out[i] = p.String()
		}
	}
	return out
}

func quoted(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
