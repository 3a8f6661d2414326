package actions

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/coreos/go-iptables/iptables"
)

// FirewallOptions are what the iptables and ipset actions share: where the block hooks in
// and what it blocks.
type FirewallOptions struct {
	// Chain is the built-in chain the block hooks into: INPUT (the default), or FORWARD
	// for a router in front of the mail servers.
	Chain string `toml:"chain"`
	// Protocol is what is blocked: all (the default), tcp or udp.
	Protocol string `toml:"protocol"`
	// Ports limits the block to these destination ports ("587", "993:995"); none means
	// every port. They need protocol tcp or udp.
	Ports []string `toml:"ports"`
	// BlockType is DROP (the default; the client waits for a timeout) or REJECT (it is
	// told at once).
	BlockType string `toml:"blocktype"`
	// KeepOnStop leaves the rules in place when ban-server stops.
	KeepOnStop bool `toml:"keep_on_stop"`
}

func defaultFirewallOptions() FirewallOptions {
	return FirewallOptions{Chain: "INPUT", Protocol: "all", BlockType: "DROP"}
}

// Validate checks the options.
func (o *FirewallOptions) Validate() error {
	if !slices.Contains([]string{"INPUT", "FORWARD"}, o.Chain) {
		return fmt.Errorf("chain %q; valid: INPUT, FORWARD", o.Chain)
	}
	if !slices.Contains([]string{"all", "tcp", "udp"}, o.Protocol) {
		return fmt.Errorf("protocol %q; valid: all, tcp, udp", o.Protocol)
	}
	if !slices.Contains([]string{"DROP", "REJECT"}, o.BlockType) {
		return fmt.Errorf("blocktype %q; valid: DROP, REJECT", o.BlockType)
	}
	if len(o.Ports) > 0 && o.Protocol == "all" {
		return fmt.Errorf("ports need protocol tcp or udp")
	}
	if len(o.Ports) > 15 {
		return fmt.Errorf("%d ports: iptables' multiport takes at most 15", len(o.Ports))
	}
	for _, p := range o.Ports {
		lo, hi, isRange := strings.Cut(p, ":")
		if !validPort(lo) || (isRange && !validPort(hi)) {
			return fmt.Errorf("port %q: want a number 1..65535 or a range like 993:995", p)
		}
	}
	return nil
}

func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535
}

// match returns the rule arguments that select what the options block.
func (o *FirewallOptions) match() []string {
	var args []string
	if o.Protocol != "all" {
		args = append(args, "-p", o.Protocol)
		if len(o.Ports) > 0 {
			args = append(args, "-m", "multiport", "--dports", strings.Join(o.Ports, ","))
		}
	}
	return args
}

// namePrefix starts every chain and set logban makes, so cleanup finds them all.
const namePrefix = "logban-"

// kernelName returns "logban-" + jail + suffix, shortened with a hash of the jail to fit
// max bytes (iptables chains: 28; ipset sets: 31).
func kernelName(jail, suffix string, max int) string {
	name := namePrefix + jail + suffix
	if len(name) <= max {
		return name
	}
	h := fnv.New32a()
	h.Write([]byte(jail))
	tag := fmt.Sprintf("-%08x", h.Sum32())
	keep := max - len(namePrefix) - len(tag) - len(suffix)
	return namePrefix + jail[:keep] + tag + suffix
}

// Both iptables families, as go-iptables names them.
var families = []iptables.Protocol{iptables.ProtocolIPv4, iptables.ProtocolIPv6}

// lazyTables makes go-iptables handles when first needed (go-iptables runs the binary
// to learn its version), and again after a failure, so an iptables installed later is
// found by the retry.
type lazyTables struct {
	mu     sync.Mutex
	tables map[iptables.Protocol]*iptables.IPTables
}

func (l *lazyTables) get(fam iptables.Protocol) (*iptables.IPTables, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.tables[fam]; ok {
		return t, nil
	}
	t, err := iptables.New(iptables.IPFamily(fam), iptables.Timeout(5))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", famName(fam), err)
	}
	if l.tables == nil {
		l.tables = map[iptables.Protocol]*iptables.IPTables{}
	}
	l.tables[fam] = t
	return t, nil
}

func familyOf(isV4 bool) iptables.Protocol {
	if isV4 {
		return iptables.ProtocolIPv4
	}
	return iptables.ProtocolIPv6
}

// removeHooks deletes every rule in INPUT and FORWARD that jumps to a chain, or matches
// a set, named with logban's prefix.
func removeHooks(t *iptables.IPTables) error {
	for _, chain := range []string{"INPUT", "FORWARD"} {
		rules, err := t.List("filter", chain)
		if err != nil {
			return err
		}
		for _, r := range rules {
			if !strings.Contains(r, " -j "+namePrefix) && !strings.Contains(r, " --match-set "+namePrefix) {
				continue
			}
			spec, ok := strings.CutPrefix(r, "-A "+chain+" ")
			if !ok {
				continue
			}
			if err := t.DeleteIfExists("filter", chain, strings.Fields(spec)...); err != nil {
				return err
			}
		}
	}
	return nil
}
