package actions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

func init() {
	Register(Kind{
		Name:    "ipset",
		Options: func() any { o := defaultFirewallOptions(); return &o },
		New: func(name string, options any, logger *slog.Logger) (Action, error) {
			return NewIPSet(*options.(*FirewallOptions), logger), nil
		},
	})
}

// maxSetTimeout is the longest entry timeout ipset accepts, in seconds; longer bans are
// entered without one and removed by unban.
const maxSetTimeout = 2147483

// IPSet bans with an entry in a hash:net set per jail and family (logban-JAIL-4,
// logban-JAIL-6), made and filled through netlink, matched by one iptables rule per set:
// a ban is one set entry, so 100,000 bans cost what one does. An address is entered as
// a /32 or /128, a network (a subnet escalation) as itself. Entries carry the ban's
// remaining time as their timeout, so the kernel lifts a ban on time even if ban-server
// is not running.
type IPSet struct {
	opts   FirewallOptions
	logger *slog.Logger
	tables lazyTables

	nl netlinkSocket

	mu   sync.Mutex
	sets map[string]iptables.Protocol // made by this action, with their family
}

// NewIPSet returns an ipset action. It touches nothing.
func NewIPSet(opts FirewallOptions, logger *slog.Logger) *IPSet {
	return &IPSet{opts: opts, logger: logger, nl: netlinkSocket{proto: unix.NETLINK_NETFILTER}, sets: map[string]iptables.Protocol{}}
}

// Start checks that ipset is usable through netlink, and iptables too.
func (a *IPSet) Start(context.Context) error {
	h, err := a.nl.get()
	if err != nil {
		return err
	}
	if _, _, err := h.IpsetProtocol(); err != nil {
		return fmt.Errorf("ipset through netlink (is the ip_set module loaded?): %w", err)
	}
	for _, fam := range families {
		if _, err := a.tables.get(fam); err != nil {
			return err
		}
	}
	return nil
}

func setName(jail string, fam iptables.Protocol) string {
	if fam == iptables.ProtocolIPv4 {
		return kernelName(jail, "-4", 31)
	}
	return kernelName(jail, "-6", 31)
}

func (a *IPSet) hook(set string) []string {
	return append(a.opts.match(), "-m", "set", "--match-set", set, "src", "-j", a.opts.BlockType)
}

// set returns the jail's set in the family, making it and its rule if needed.
func (a *IPSet) set(fam iptables.Protocol, jail string) (string, error) {
	name := setName(jail, fam)
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.sets[name]; ok {
		return name, nil
	}
	nlFamily := uint8(unix.NFPROTO_IPV4)
	if fam == iptables.ProtocolIPv6 {
		nlFamily = unix.NFPROTO_IPV6
	}
	h, err := a.nl.get()
	if err != nil {
		return "", err
	}
	t, err := a.tables.get(fam)
	if err != nil {
		return "", err
	}
	zero := uint32(0) // timeouts allowed; entries without one stay
	create := func() error {
		return h.IpsetCreate(name, setType, netlink.IpsetCreateOptions{Family: nlFamily, Timeout: &zero, MaxElements: 1 << 20})
	}
	err = create()
	if isExisting(err) {
		// A set of that name from an older logban (hash:ip, kept by keep_on_stop) cannot
		// hold networks: it goes, with its rule, and the bans it held come back as
		// the jail's bans are restored.
		if res, lerr := h.IpsetList(name); lerr == nil && res.TypeName != setType {
			t.DeleteIfExists("filter", a.opts.Chain, a.hook(name)...) //nolint:errcheck // the destroy says if it is still in use
			if err = h.IpsetDestroy(name); err == nil {
				err = create()
			}
		}
	}
	if err != nil && !isExisting(err) {
		return "", fmt.Errorf("making set %s: %w", name, err)
	}
	if err := t.InsertUnique("filter", a.opts.Chain, 1, a.hook(name)...); err != nil {
		return "", fmt.Errorf("matching set %s in %s: %w", name, a.opts.Chain, err)
	}
	a.sets[name] = fam
	return name, nil
}

// setType is the type of logban's sets: addresses and networks in one set, each an
// entry with its prefix length.
const setType = "hash:net"

// isExisting reports the error of making a set that is there already.
func isExisting(err error) bool {
	return err != nil && (errors.Is(err, nl.IPSetError(nl.IPSET_ERR_EXIST)) || errors.Is(err, unix.EEXIST))
}

// timeout returns the entry timeout for b: its remaining time, or none if it is
// permanent or longer than ipset allows.
func timeout(b Ban, now time.Time) *uint32 {
	var secs uint32
	if !b.Permanent() {
		left := math.Ceil(b.Expires.Sub(now).Seconds())
		if left >= 1 && left <= maxSetTimeout {
			secs = uint32(left)
		}
	}
	return &secs
}

// PrepareJail makes the jail's sets and their rules, in both families.
func (a *IPSet) PrepareJail(_ context.Context, jail string) error {
	for _, fam := range families {
		if _, err := a.set(fam, jail); err != nil {
			return err
		}
	}
	return nil
}

// Ban adds the address or network to the jail's set, or renews its timeout.
func (a *IPSet) Ban(_ context.Context, b Ban) error {
	fam := familyOf(b.Addr.Is4())
	set, err := a.set(fam, b.Jail)
	if err != nil {
		return err
	}
	h, err := a.nl.get()
	if err != nil {
		return err
	}
	p := b.Prefix()
	entry := &netlink.IPSetEntry{IP: p.Addr().AsSlice(), CIDR: uint8(p.Bits()), Timeout: timeout(b, time.Now()), Replace: true}
	if err := h.IpsetAdd(set, entry); err != nil {
		return fmt.Errorf("adding %s to set %s: %w", b.Target(), set, err)
	}
	return nil
}

// BanBatch adds the addresses of bans to their jails' sets, or renews their timeouts,
// many per system call.
func (a *IPSet) BanBatch(_ context.Context, bans []Ban) []error {
	errs := make([]error, len(bans))
	var reqs []*nl.NetlinkRequest
	var at []int // the ban each request is for
	now := time.Now()
	for i, b := range bans {
		set, err := a.set(familyOf(b.Addr.Is4()), b.Jail)
		if err != nil {
			errs[i] = err
			continue
		}
		reqs = append(reqs, ipsetRequest(nl.IPSET_CMD_ADD, set, b.Prefix(), timeout(b, now)))
		at = append(at, i)
	}
	for k, err := range a.nl.send(reqs) {
		if i := at[k]; err != nil {
			errs[i] = fmt.Errorf("adding %s to set %s: %w", bans[i].Target(), setName(bans[i].Jail, familyOf(bans[i].Addr.Is4())), err)
		}
	}
	return errs
}

// UnbanBatch removes the addresses of bans from their jails' sets, many per system
// call; one not there is not an error.
func (a *IPSet) UnbanBatch(_ context.Context, bans []Ban) []error {
	reqs := make([]*nl.NetlinkRequest, len(bans))
	for i, b := range bans {
		reqs[i] = ipsetRequest(nl.IPSET_CMD_DEL, setName(b.Jail, familyOf(b.Addr.Is4())), b.Prefix(), nil)
	}
	errs := a.nl.send(reqs)
	for i, err := range errs {
		if err != nil && isAbsent(err) {
			errs[i] = nil
		} else if err != nil {
			errs[i] = fmt.Errorf("removing %s from set %s: %w", bans[i].Target(), setName(bans[i].Jail, familyOf(bans[i].Addr.Is4())), err)
		}
	}
	return errs
}

// ipsetRequest builds the netlink request that adds p to set (with timeout, an existing
// entry's renewed) or deletes it: what netlink.Handle.IpsetAdd and IpsetDel send for an
// entry with Replace set.
func ipsetRequest(cmd int, set string, p netip.Prefix, timeout *uint32) *nl.NetlinkRequest {
	addr := p.Addr()
	req := nl.NewNetlinkRequest(cmd|(unix.NFNL_SUBSYS_IPSET<<8), nl.GetIpsetFlags(cmd))
	req.AddData(&nl.Nfgenmsg{NfgenFamily: uint8(unix.AF_NETLINK), Version: nl.NFNETLINK_V0})
	req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_PROTOCOL, nl.Uint8Attr(nl.IPSET_PROTOCOL)))
	req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_SETNAME, nl.ZeroTerminated(set)))
	data := nl.NewRtAttr(nl.IPSET_ATTR_DATA|int(nl.NLA_F_NESTED), nil)
	if timeout != nil {
		data.AddChild(&nl.Uint32Attribute{Type: nl.IPSET_ATTR_TIMEOUT | nl.NLA_F_NET_BYTEORDER, Value: *timeout})
	}
	ipType := int(nl.NLA_F_NET_BYTEORDER) | nl.IPSET_ATTR_IPADDR_IPV4
	if addr.Is6() {
		ipType = int(nl.NLA_F_NET_BYTEORDER) | nl.IPSET_ATTR_IPADDR_IPV6
	}
	data.AddChild(nl.NewRtAttr(nl.IPSET_ATTR_IP|int(nl.NLA_F_NESTED), nl.NewRtAttr(ipType, addr.AsSlice()).Serialize()))
	data.AddChild(nl.NewRtAttr(nl.IPSET_ATTR_CIDR, nl.Uint8Attr(uint8(p.Bits()))))
	data.AddChild(&nl.Uint32Attribute{Type: nl.IPSET_ATTR_LINENO | nl.NLA_F_NET_BYTEORDER, Value: 0})
	req.AddData(data)
	return req
}

// Unban removes the address or network from the jail's set; one not there is not an
// error.
func (a *IPSet) Unban(_ context.Context, b Ban) error {
	h, err := a.nl.get()
	if err != nil {
		return err
	}
	set := setName(b.Jail, familyOf(b.Addr.Is4()))
	p := b.Prefix()
	err = h.IpsetDel(set, &netlink.IPSetEntry{IP: p.Addr().AsSlice(), CIDR: uint8(p.Bits())})
	if err != nil && !isAbsent(err) {
		return fmt.Errorf("removing %s from set %s: %w", b.Target(), set, err)
	}
	return nil
}

// Holds lists the addresses and networks in the jail's sets, both families. A set not
// there holds nothing.
func (a *IPSet) Holds(_ context.Context, jail string) ([]netip.Prefix, error) {
	h, err := a.nl.get()
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, fam := range families {
		res, err := h.IpsetList(setName(jail, fam))
		if isAbsent(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing set %s: %w", setName(jail, fam), err)
		}
		for _, e := range res.Entries {
			if addr, ok := netip.AddrFromSlice(e.IP); ok {
				addr = addr.Unmap()
				bits := int(e.CIDR)
				if bits == 0 || bits > addr.BitLen() {
					bits = addr.BitLen()
				}
				out = append(out, netip.PrefixFrom(addr, bits).Masked())
			}
		}
	}
	return out, nil
}

// isAbsent reports an ipset error meaning the entry (IPSET_ERR_EXIST, on delete) or the
// set (ENOENT) is not there.
func isAbsent(err error) bool {
	return errors.Is(err, nl.IPSetError(nl.IPSET_ERR_EXIST)) || errors.Is(err, unix.ENOENT)
}

// Stop removes the rules and sets this action made, unless keep_on_stop, and closes the
// netlink socket.
func (a *IPSet) Stop(context.Context) error {
	defer a.nl.close()
	if a.opts.KeepOnStop {
		return nil
	}
	h, err := a.nl.get()
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for set, fam := range a.sets {
		if t, err := a.tables.get(fam); err == nil {
			if err := t.DeleteIfExists("filter", a.opts.Chain, a.hook(set)...); err != nil {
				errs = append(errs, fmt.Errorf("removing the rule for set %s: %w", set, err))
			}
		}
		if err := h.IpsetDestroy(set); err != nil && !isAbsent(err) {
			errs = append(errs, fmt.Errorf("removing set %s: %w", set, err))
		}
	}
	clear(a.sets)
	return errors.Join(errs...)
}

// Cleanup removes every rule matching a logban set, then every logban set.
func (a *IPSet) Cleanup(context.Context) error {
	var errs []error
	for _, fam := range families {
		t, err := a.tables.get(fam)
		if err == nil {
			err = removeHooks(t)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	h, err := a.nl.get()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer a.nl.close()
	sets, err := h.IpsetListAll()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("listing sets: %w", err))...)
	}
	for _, s := range sets {
		if strings.HasPrefix(s.SetName, namePrefix) {
			if err := h.IpsetDestroy(s.SetName); err != nil {
				errs = append(errs, fmt.Errorf("removing set %s: %w", s.SetName, err))
			}
		}
	}
	return errors.Join(errs...)
}
