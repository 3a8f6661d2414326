package actions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"

	"github.com/coreos/go-iptables/iptables"
)

func init() {
	Register(Kind{
		Name:    "iptables",
		Options: func() any { o := defaultFirewallOptions(); return &o },
		New: func(name string, options any, logger *slog.Logger) (Action, error) {
			return NewIPTables(*options.(*FirewallOptions), logger)
		},
	})
}

// IPTables bans with a rule per address or network (-s CIDR) in a chain per jail (logban-JAIL), hooked into
// the configured chain, for IPv4 (iptables) and IPv6 (ip6tables), through
// github.com/coreos/go-iptables. A jail's chain is made at its first ban.
type IPTables struct {
	opts   FirewallOptions
	logger *slog.Logger
	tables lazyTables

	mu     sync.Mutex
	chains map[iptables.Protocol]map[string]bool // made by this action
}

// NewIPTables returns an iptables action. It touches nothing: the binaries are looked
// for when first needed, so a missing one is an action error, retried, not a daemon
// that will not start.
func NewIPTables(opts FirewallOptions, logger *slog.Logger) (*IPTables, error) {
	return &IPTables{opts: opts, logger: logger, chains: map[iptables.Protocol]map[string]bool{}}, nil
}

// Start checks that the filter table can be read in both families.
func (a *IPTables) Start(context.Context) error {
	for _, fam := range families {
		t, err := a.tables.get(fam)
		if err == nil {
			_, err = t.ListChains("filter")
		}
		if err != nil {
			return fmt.Errorf("%s: %w", famName(fam), err)
		}
	}
	return nil
}

func famName(fam iptables.Protocol) string {
	if fam == iptables.ProtocolIPv4 {
		return "iptables"
	}
	return "ip6tables"
}

// chain returns the jail's chain in the family, making it and its hook if needed.
func (a *IPTables) chain(fam iptables.Protocol, jail string) (string, error) {
	name := kernelName(jail, "", 28)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.chains[fam][name] {
		return name, nil
	}
	t, err := a.tables.get(fam)
	if err != nil {
		return "", err
	}
	exists, err := t.ChainExists("filter", name)
	if err != nil {
		return "", err
	}
	if !exists {
		if err := t.NewChain("filter", name); err != nil {
			return "", fmt.Errorf("making chain %s: %w", name, err)
		}
	}
	hook := append(a.opts.match(), "-j", name)
	if err := t.InsertUnique("filter", a.opts.Chain, 1, hook...); err != nil {
		return "", fmt.Errorf("hooking %s into %s: %w", name, a.opts.Chain, err)
	}
	if a.chains[fam] == nil {
		a.chains[fam] = map[string]bool{}
	}
	a.chains[fam][name] = true
	return name, nil
}

func (a *IPTables) rule(p netip.Prefix) []string {
	return []string{"-s", p.String(), "-j", a.opts.BlockType}
}

// PrepareJail makes the jail's chain and its hook, in both families.
func (a *IPTables) PrepareJail(_ context.Context, jail string) error {
	for _, fam := range families {
		if _, err := a.chain(fam, jail); err != nil {
			return err
		}
	}
	return nil
}

// Ban adds a rule for the address or network to the jail's chain.
func (a *IPTables) Ban(_ context.Context, b Ban) error {
	fam := familyOf(b.Addr.Is4())
	chain, err := a.chain(fam, b.Jail)
	if err != nil {
		return err
	}
	t, err := a.tables.get(fam)
	if err != nil {
		return err
	}
	if err := t.InsertUnique("filter", chain, 1, a.rule(b.Prefix())...); err != nil {
		return fmt.Errorf("adding %s rule for %s: %w", famName(fam), b.Target(), err)
	}
	return nil
}

// Unban removes the address's or network's rule from the jail's chain.
func (a *IPTables) Unban(_ context.Context, b Ban) error {
	fam := familyOf(b.Addr.Is4())
	chain := kernelName(b.Jail, "", 28)
	t, err := a.tables.get(fam)
	if err != nil {
		return err
	}
	err = t.DeleteIfExists("filter", chain, a.rule(b.Prefix())...)
	var ie *iptables.Error
	if err != nil && !(errors.As(err, &ie) && ie.IsNotExist()) && !strings.Contains(err.Error(), "No chain") {
		return fmt.Errorf("removing %s rule for %s: %w", famName(fam), b.Target(), err)
	}
	return nil
}

// Holds lists the addresses and networks with a rule in the jail's chains, both
// families. A chain not there holds nothing.
func (a *IPTables) Holds(_ context.Context, jail string) ([]netip.Prefix, error) {
	chain := kernelName(jail, "", 28)
	var out []netip.Prefix
	for _, fam := range families {
		t, err := a.tables.get(fam)
		if err != nil {
			return nil, err
		}
		if ok, err := t.ChainExists("filter", chain); err != nil || !ok {
			if err != nil {
				return nil, err
			}
			continue
		}
		rules, err := t.List("filter", chain)
		if err != nil {
			return nil, fmt.Errorf("listing %s chain %s: %w", famName(fam), chain, err)
		}
		for _, rule := range rules { // -A logban-sasl -s 192.0.2.2/32 -j DROP
			f := strings.Fields(rule)
			for i := 0; i+1 < len(f); i++ {
				if p, err := netip.ParsePrefix(f[i+1]); f[i] == "-s" && err == nil {
					out = append(out, p.Masked())
				}
			}
		}
	}
	return out, nil
}

// Stop removes the chains this action made and their hooks, unless keep_on_stop.
func (a *IPTables) Stop(context.Context) error {
	if a.opts.KeepOnStop {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for fam, chains := range a.chains {
		t, err := a.tables.get(fam)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for name := range chains {
			hook := append(a.opts.match(), "-j", name)
			if err := t.DeleteIfExists("filter", a.opts.Chain, hook...); err != nil {
				errs = append(errs, fmt.Errorf("unhooking %s: %w", name, err))
			}
			if err := t.ClearAndDeleteChain("filter", name); err != nil {
				errs = append(errs, fmt.Errorf("removing chain %s: %w", name, err))
			}
		}
	}
	clear(a.chains)
	return errors.Join(errs...)
}

// Cleanup removes every logban chain and every rule that jumps to one, in both families,
// whatever configuration made them.
func (a *IPTables) Cleanup(context.Context) error {
	var errs []error
	for _, fam := range families {
		t, err := a.tables.get(fam)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := removeHooks(t); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", famName(fam), err))
			continue
		}
		chains, err := t.ListChains("filter")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, c := range chains {
			if strings.HasPrefix(c, namePrefix) {
				if err := t.ClearAndDeleteChain("filter", c); err != nil {
					errs = append(errs, fmt.Errorf("%s: removing chain %s: %w", famName(fam), c, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}
