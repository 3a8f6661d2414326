package actions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

func init() {
	Register(Kind{
		Name:    "nftables",
		Options: func() any { o := defaultNFTablesOptions(); return &o },
		New: func(name string, options any, logger *slog.Logger) (Action, error) {
			return NewNFTables(name, *options.(*NFTablesOptions), logger), nil
		},
	})
}

// NFTablesTable is the table every nftables action keeps its chains and sets in:
// `table inet logban`, logban's alone.
const NFTablesTable = "logban"

// NFTablesOptions configures the nftables action.
type NFTablesOptions struct {
	// Hooks are the hooks a base chain of the action's hangs on: input (the default),
	// and forward for a router in front of the mail servers.
	Hooks []string `toml:"hooks"`
	// Priority is the base chains' priority: -10 by default, before the filter
	// chains of firewalld (filter + 10) and of iptables-nft, as ufw makes them (0). A
	// drop in any base chain is final, whatever the order; an earlier one costs less.
	Priority int `toml:"priority"`
	// Protocol, Ports and BlockType are as the iptables kind's: all, tcp or udp; the
	// destination ports ("587", "993:995"), with tcp or udp, as many as wanted; DROP or
	// REJECT.
	Protocol  string   `toml:"protocol"`
	Ports     []string `toml:"ports"`
	BlockType string   `toml:"blocktype"`
	// KeepOnStop leaves the chains and sets, with their bans, when ban-server stops:
	// each ban then ends on its kernel timeout.
	KeepOnStop bool `toml:"keep_on_stop"`
	// CheckInterval is how often the action checks that its table, chains, rules and
	// sets are still there (after `nft flush ruleset`, or a firewall reload), a Go
	// duration; what is missing is put back at once, and the bans with it.
	CheckInterval string `toml:"check_interval"`
}

func defaultNFTablesOptions() NFTablesOptions {
	return NFTablesOptions{Hooks: []string{"input"}, Priority: -10, Protocol: "all", BlockType: "DROP", CheckInterval: "2s"}
}

// Validate checks the options.
func (o *NFTablesOptions) Validate() error {
	if len(o.Hooks) == 0 {
		return errors.New("hooks: name at least one of input, forward")
	}
	for i, h := range o.Hooks {
		if h != "input" && h != "forward" {
			return fmt.Errorf("hooks[%d] %q; valid: input, forward", i, h)
		}
		if slices.Contains(o.Hooks[:i], h) {
			return fmt.Errorf("hooks[%d] %q listed twice", i, h)
		}
	}
	if !slices.Contains([]string{"all", "tcp", "udp"}, o.Protocol) {
		return fmt.Errorf("protocol %q; valid: all, tcp, udp", o.Protocol)
	}
	if !slices.Contains([]string{"DROP", "REJECT"}, o.BlockType) {
		return fmt.Errorf("blocktype %q; valid: DROP, REJECT", o.BlockType)
	}
	if len(o.Ports) > 0 && o.Protocol == "all" {
		return errors.New("ports need protocol tcp or udp")
	}
	if _, err := portRanges(o.Ports); err != nil {
		return err
	}
	if d, err := time.ParseDuration(o.CheckInterval); err != nil || d <= 0 {
		return fmt.Errorf("check_interval %q: want a length of time like \"2s\"", o.CheckInterval)
	}
	return nil
}

// portRanges reads ports ("587", "993:995") as ranges, first and last.
func portRanges(ports []string) ([][2]uint16, error) {
	var out [][2]uint16
	for _, p := range ports {
		lo, hi, isRange := strings.Cut(p, ":")
		if !isRange {
			hi = lo
		}
		if !validPort(lo) || !validPort(hi) {
			return nil, fmt.Errorf("port %q: want a number 1..65535 or a range like 993:995", p)
		}
		a, _ := strconv.Atoi(lo)
		b, _ := strconv.Atoi(hi)
		if a > b {
			return nil, fmt.Errorf("port %q: the range ends before it begins", p)
		}
		out = append(out, [2]uint16{uint16(a), uint16(b)})
	}
	return out, nil
}

// NFTables bans through nftables, over netlink, no nft process per ban. Every action of
// this kind keeps its chains and sets in `table inet logban`: a base chain per hook,
// named ACTION-HOOK, and per jail four sets named ACTION-JAIL-SUFFIX: addresses (-4,
// -6) and networks (-net4, -net6, with flags interval: a network is an interval, never
// its first address alone). Addresses and networks have sets of their own because the
// kernel refuses an interval overlapping another, and an address banned before its
// network's ban keeps its own. Each ban is an element whose kernel timeout is the ban's
// remaining time, so the kernel lifts it on time even if ban-server is not running.
//
// Every CheckInterval it checks that what it made is still there; what a flush or a
// reload removed is made again, logged, and said on Lost, so that the bans in force
// are applied again.
type NFTables struct {
	name   string
	opts   NFTablesOptions
	logger *slog.Logger
	ports  [][2]uint16
	every  time.Duration
	// limit, for a throttle, is the rate an address in the sets keeps: its new
	// connections over it are refused, the others go on (see Throttle).
	limit *expr.Limit

	mu       sync.Mutex
	conn     *nftables.Conn
	jails    map[string]bool // prepared, whose sets and rules this action keeps
	lost     chan struct{}
	lostOnce sync.Once
	stop     context.CancelFunc
	done     chan struct{}
	// Restored counts the times what the action made was found missing and put back.
	restored int64
}

// NewNFTables returns an nftables action called name. It touches nothing.
func NewNFTables(name string, opts NFTablesOptions, logger *slog.Logger) *NFTables {
	ports, _ := portRanges(opts.Ports)
	every, err := time.ParseDuration(opts.CheckInterval)
	if err != nil || every <= 0 {
		every = 2 * time.Second
	}
	return &NFTables{name: name, opts: opts, logger: logger, ports: ports, every: every, jails: map[string]bool{}, lost: make(chan struct{}, 1)}
}

var nftTable = &nftables.Table{Family: nftables.TableFamilyINet, Name: NFTablesTable}

// connLocked returns the action's lasting netlink connection, made in the network
// namespace of the first call. The caller holds a.mu: a Conn gathers the messages of
// one transaction until Flush, so two callers must not build at once.
func (a *NFTables) connLocked() (*nftables.Conn, error) {
	if a.conn != nil {
		return a.conn, nil
	}
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("nftables over netlink: %w", err)
	}
	a.conn = c
	return c, nil
}

// Start makes the table and the action's base chains, and starts checking that they
// stay. Chains of the action's name left by a stop with keep_on_stop are made anew,
// empty: each jail's rules come back as it takes the action, and its sets keep their
// elements.
func (a *NFTables) Start(context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, err := a.connLocked()
	if err != nil {
		return err
	}
	for _, h := range a.opts.Hooks {
		if _, err := c.ListChain(nftTable, a.chainName(h)); err == nil {
			c.FlushChain(a.chain(h))
		}
	}
	a.addChainsLocked(c)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("making table inet %s and its chains (is nf_tables available?): %w", NFTablesTable, err)
	}
	if a.stop == nil {
		ctx, cancel := context.WithCancel(context.Background())
		a.stop, a.done = cancel, make(chan struct{})
		go a.watch(ctx)
	}
	return nil
}

// chainName and setName name what the action makes in the table.
func (a *NFTables) chainName(hook string) string { return a.name + "-" + hook }

func (a *NFTables) setName(jail string, v6, net bool) string {
	s := a.name + "-" + jail + "-"
	if net {
		s += "net"
	}
	if v6 {
		return s + "6"
	}
	return s + "4"
}

func (a *NFTables) chain(hook string) *nftables.Chain {
	h := nftables.ChainHookInput
	if hook == "forward" {
		h = nftables.ChainHookForward
	}
	return &nftables.Chain{Name: a.chainName(hook), Table: nftTable, Type: nftables.ChainTypeFilter,
		Hooknum: h, Priority: nftables.ChainPriorityRef(nftables.ChainPriority(a.opts.Priority))}
}

// set returns the description of one of a jail's sets.
func (a *NFTables) set(jail string, v6, net bool) *nftables.Set {
	key := nftables.TypeIPAddr
	if v6 {
		key = nftables.TypeIP6Addr
	}
	return &nftables.Set{Table: nftTable, Name: a.setName(jail, v6, net), KeyType: key, HasTimeout: true, Interval: net}
}

// meterName names the meter of a throttle's set: the limit of each address it holds
// that made a new connection lately.
func (a *NFTables) meterName(set string) string { return set + "-meter" }

// meterTimeout is how long a meter keeps an address that made no new connection: its
// limit starts afresh after.
const meterTimeout = time.Hour

// meterSize is the most addresses a meter holds at once; past it, a new address is
// not limited until one times out.
const meterSize = 1 << 16

// meter returns the description of the meter of the set s.
func (a *NFTables) meter(s *nftables.Set) *nftables.Set {
	return &nftables.Set{Table: nftTable, Name: a.meterName(s.Name), KeyType: s.KeyType, Dynamic: true, HasTimeout: true,
		Timeout: meterTimeout, Size: meterSize}
}

// addChainsLocked adds the table and the base chains to the transaction c builds.
func (a *NFTables) addChainsLocked(c *nftables.Conn) {
	c.AddTable(nftTable)
	for _, h := range a.opts.Hooks {
		c.AddChain(a.chain(h))
	}
}

// setIDs serialises the making of sets across actions: google/nftables numbers the sets
// of a transaction from one counter that all its connections share, unguarded.
var setIDs sync.Mutex

// addJailLocked adds a jail's four sets, and the rules matching them in every chain,
// to the transaction c builds.
func (a *NFTables) addJailLocked(c *nftables.Conn, jail string) error {
	setIDs.Lock()
	defer setIDs.Unlock()
	for _, net := range []bool{false, true} {
		for _, v6 := range []bool{false, true} {
			s := a.set(jail, v6, net)
			if err := c.AddSet(s, nil); err != nil {
				return fmt.Errorf("set %s: %w", s.Name, err)
			}
			if a.limit != nil {
				if err := c.AddSet(a.meter(s), nil); err != nil {
					return fmt.Errorf("set %s: %w", a.meterName(s.Name), err)
				}
			}
			for _, h := range a.opts.Hooks {
				exprs, err := a.ruleExprs(c, s, v6)
				if err != nil {
					return err
				}
				c.AddRule(&nftables.Rule{Table: nftTable, Chain: a.chain(h), Exprs: exprs})
			}
		}
	}
	return nil
}

// ruleExprs returns the rule that blocks what the options block from the addresses in
// s: `ip saddr @s [meta l4proto tcp] [th dport { ports }] drop` (or reject).
func (a *NFTables) ruleExprs(c *nftables.Conn, s *nftables.Set, v6 bool) ([]expr.Any, error) {
	proto, offset, length := byte(unix.NFPROTO_IPV4), uint32(12), uint32(4)
	if v6 {
		proto, offset, length = unix.NFPROTO_IPV6, 8, 16
	}
	exprs := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: length},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name},
	}
	if a.opts.Protocol != "all" {
		l4 := byte(unix.IPPROTO_TCP)
		if a.opts.Protocol == "udp" {
			l4 = unix.IPPROTO_UDP
		}
		exprs = append(exprs, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{l4}})
	}
	if len(a.ports) > 0 {
		ports := &nftables.Set{Table: nftTable, Anonymous: true, Constant: true, Interval: true, KeyType: nftables.TypeInetService}
		var elems []nftables.SetElement
		for _, r := range a.ports {
			elems = append(elems, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(r[0])})
			if r[1] < 65535 {
				elems = append(elems, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(r[1] + 1), IntervalEnd: true})
			}
		}
		if err := c.AddSet(ports, elems); err != nil {
			return nil, fmt.Errorf("the set of ports: %w", err)
		}
		exprs = append(exprs, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, SetName: ports.Name, SetID: ports.ID})
	}
	if a.limit != nil {
		// ... ct state new update @meter { ip saddr limit rate over R burst B packets }:
		// the meter keeps a limit per address, and a new connection over it matches.
		exprs = slices.Insert[[]expr.Any, expr.Any](exprs, 4, &expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)})
		exprs = append(exprs,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: length},
			&expr.Dynset{SrcRegKey: 1, SetName: a.meterName(s.Name), Operation: unix.NFT_DYNSET_OP_UPDATE, Exprs: []expr.Any{a.limit}})
	}
	if a.opts.BlockType == "REJECT" {
		exprs = append(exprs, &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH})
	} else {
		exprs = append(exprs, &expr.Verdict{Kind: expr.VerdictDrop})
	}
	return exprs, nil
}

// PrepareJail makes the jail's sets and their rules.
func (a *NFTables) PrepareJail(_ context.Context, jail string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.prepareLocked(jail)
}

func (a *NFTables) prepareLocked(jail string) error {
	if a.jails[jail] {
		return nil
	}
	c, err := a.connLocked()
	if err != nil {
		return err
	}
	a.addChainsLocked(c)
	if err := a.addJailLocked(c, jail); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("making the sets of jail %s in table inet %s: %w", jail, NFTablesTable, err)
	}
	a.jails[jail] = true
	return nil
}

// elements returns the set b goes in and its elements: an address as itself, a network
// as the interval from its first address to the one after its last (none after the last
// address there is), each with the ban's remaining time as its timeout.
func (a *NFTables) elements(b Ban, now time.Time) (*nftables.Set, []nftables.SetElement) {
	p := b.Prefix()
	s := a.set(b.Jail, p.Addr().Is6(), b.IsNet())
	var timeout time.Duration
	if !b.Permanent() {
		timeout = max(b.Expires.Sub(now).Round(time.Millisecond), time.Millisecond)
	}
	first := nftables.SetElement{Key: p.Addr().AsSlice(), Timeout: timeout}
	if !b.IsNet() {
		return s, []nftables.SetElement{first}
	}
	end, ok := afterLast(p)
	if !ok {
		return s, []nftables.SetElement{first}
	}
	return s, []nftables.SetElement{first, {Key: end.AsSlice(), IntervalEnd: true}}
}

// afterLast returns the address after p's last, if there is one.
func afterLast(p netip.Prefix) (netip.Addr, bool) {
	last := p.Masked().Addr().AsSlice()
	host := p.Addr().BitLen() - p.Bits()
	for i := len(last) - 1; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		last[i] |= byte(1<<n - 1)
		host -= n
	}
	a, _ := netip.AddrFromSlice(last)
	next := a.Next()
	return next, next.IsValid()
}

// nftBatch is how many bans go in one netlink transaction: the messages of a bigger
// one (an unban's element is both added and deleted, a network's is two) outgrow the
// socket's send buffer. nftMessageElems is how many elements go in one message: a
// netlink attribute, the list of elements, is at most 64 KiB long.
const (
	nftBatch        = 1024
	nftMessageElems = 256
)

// Ban adds the address or network to the jail's set; one there already keeps its
// element.
func (a *NFTables) Ban(ctx context.Context, b Ban) error {
	return a.BanBatch(ctx, []Ban{b})[0]
}

// BanBatch adds the bans' elements, up to nftBatch in one transaction. A transaction
// that fails is tried again one ban at a time, so each ban gets its own answer.
func (a *NFTables) BanBatch(_ context.Context, bans []Ban) []error {
	return a.batch(bans, false)
}

// Unban removes the address or network from the jail's set; one not there (its
// timeout came first) is not an error.
func (a *NFTables) Unban(ctx context.Context, b Ban) error {
	return a.UnbanBatch(ctx, []Ban{b})[0]
}

// UnbanBatch removes the bans' elements, up to nftBatch in one transaction. Each
// element is added and then deleted in the transaction: deleting one that its timeout
// removed already would fail the whole transaction, adding it first makes the delete
// sure.
func (a *NFTables) UnbanBatch(_ context.Context, bans []Ban) []error {
	return a.batch(bans, true)
}

func (a *NFTables) batch(bans []Ban, unban bool) []error {
	errs := make([]error, len(bans))
	a.mu.Lock()
	defer a.mu.Unlock()
	c, err := a.connLocked()
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	for start := 0; start < len(bans); start += nftBatch {
		part := bans[start:min(start+nftBatch, len(bans))]
		if err := a.sendLocked(c, part, unban, errs[start:]); err == nil || len(part) == 1 {
			if err != nil {
				errs[start] = a.describe(part[0], unban, err)
			}
			continue
		}
		for k, b := range part { // find which ban the kernel refused
			if err := a.sendLocked(c, []Ban{b}, unban, errs[start+k:]); err != nil {
				errs[start+k] = a.describe(b, unban, err)
			}
		}
	}
	return errs
}

func (a *NFTables) describe(b Ban, unban bool, err error) error {
	set := a.setName(b.Jail, b.Addr.Is6(), b.IsNet())
	if unban {
		return fmt.Errorf("removing %s from set %s: %w", b.Target(), set, err)
	}
	if errors.Is(err, unix.EEXIST) && b.IsNet() {
		return fmt.Errorf("adding %s to set %s: it overlaps a network banned already: %w", b.Target(), set, err)
	}
	return fmt.Errorf("adding %s to set %s: %w", b.Target(), set, err)
}

// sendLocked sends one transaction for bans, one message per set (the kernel takes a
// message of many elements much faster than many of one); errs gets the errors of bans
// whose jail could not be prepared.
func (a *NFTables) sendLocked(c *nftables.Conn, bans []Ban, unban bool, errs []error) error {
	now := time.Now()
	type setElems struct {
		set   *nftables.Set
		elems []nftables.SetElement
	}
	var order []string
	bySet := map[string]*setElems{}
	for i, b := range bans {
		if err := a.prepareLocked(b.Jail); err != nil {
			errs[i] = err
			continue
		}
		s, elems := a.elements(b, now)
		se, ok := bySet[s.Name]
		if !ok {
			se = &setElems{set: s}
			bySet[s.Name] = se
			order = append(order, s.Name)
		}
		se.elems = append(se.elems, elems...)
	}
	if len(order) == 0 {
		return nil
	}
	for _, name := range order {
		se := bySet[name]
		for start := 0; start < len(se.elems); {
			end := min(start+nftMessageElems, len(se.elems))
			for end < len(se.elems) && se.elems[end].IntervalEnd {
				end++ // an interval's two elements stay in one message
			}
			part := se.elems[start:end]
			start = end
			if err := c.SetAddElements(se.set, part); err != nil {
				return err
			}
			if unban {
				if err := c.SetDeleteElements(se.set, part); err != nil {
					return err
				}
			}
		}
	}
	return c.Flush()
}

// Holds lists the addresses and networks in the jail's sets. A set not there holds
// nothing.
func (a *NFTables) Holds(_ context.Context, jail string) ([]netip.Prefix, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, err := a.connLocked()
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, net := range []bool{false, true} {
		for _, v6 := range []bool{false, true} {
			s := a.set(jail, v6, net)
			elems, err := c.GetSetElements(s)
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("listing set %s: %w", s.Name, err)
			}
			out = append(out, prefixesOf(elems, net)...)
		}
	}
	return out, nil
}

// prefixesOf reads a set's elements back: each an address, or, in an interval set,
// the networks its intervals are.
func prefixesOf(elems []nftables.SetElement, interval bool) []netip.Prefix {
	var out []netip.Prefix
	if !interval {
		for _, e := range elems {
			if addr, ok := netip.AddrFromSlice(e.Key); ok {
				out = append(out, Host(addr))
			}
		}
		return out
	}
	type bound struct {
		addr netip.Addr
		end  bool
	}
	var bounds []bound
	for _, e := range elems {
		if addr, ok := netip.AddrFromSlice(e.Key); ok {
			bounds = append(bounds, bound{addr.Unmap(), e.IntervalEnd})
		}
	}
	slices.SortFunc(bounds, func(x, y bound) int { return x.addr.Compare(y.addr) })
	for i, b := range bounds {
		if b.end {
			continue
		}
		var end netip.Addr // the address after the interval's last; invalid: the last there is
		if i+1 < len(bounds) && bounds[i+1].end {
			end = bounds[i+1].addr
		}
		if p, ok := intervalPrefix(b.addr, end); ok {
			out = append(out, p)
		}
	}
	return out
}

// intervalPrefix returns the network whose addresses run from first to the one before
// end (to the last address there is if end is invalid), if that is one network.
func intervalPrefix(first, end netip.Addr) (netip.Prefix, bool) {
	for bits := 0; bits <= first.BitLen(); bits++ {
		p := netip.PrefixFrom(first, bits)
		if p.Masked().Addr() != first {
			continue
		}
		after, ok := afterLast(p)
		if ok == end.IsValid() && (!ok || after == end) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// Lost says, after the action has found what it made removed and put it back, that the
// bans in force must be applied again. It is closed at Stop.
func (a *NFTables) Lost() <-chan struct{} { return a.lost }

// Restored returns how many times what the action made was found missing and put back.
func (a *NFTables) Restored() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.restored
}

// watch checks every CheckInterval that what the action made is there, until ctx ends.
func (a *NFTables) watch(ctx context.Context) {
	defer close(a.done)
	t := time.NewTicker(a.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		repaired, err := a.Check()
		switch {
		case err != nil:
			a.logger.Error("checking table inet "+NFTablesTable, "err", err)
		case repaired:
			select {
			case a.lost <- struct{}{}:
			default:
			}
		}
	}
}

// Check looks whether the table, the action's chains, their rules and the prepared
// jails' sets are all there, and puts back what is not: the chains are made anew, and
// a missing set comes back empty. It reports whether it put anything back.
func (a *NFTables) Check() (repaired bool, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, err := a.connLocked()
	if err != nil {
		return false, err
	}
	missing, err := a.missingLocked(c)
	if err != nil || missing == "" {
		return false, err
	}
	// Made anew, whole: the rules of a chain name the sets.
	for _, h := range a.opts.Hooks {
		if _, err := c.ListChain(nftTable, a.chainName(h)); err == nil {
			c.DelChain(a.chain(h))
		}
	}
	a.addChainsLocked(c)
	for jail := range a.jails {
		if err := a.addJailLocked(c, jail); err != nil {
			return false, err
		}
	}
	if err := c.Flush(); err != nil {
		return false, fmt.Errorf("putting back table inet %s: %w", NFTablesTable, err)
	}
	a.restored++
	a.logger.Warn("nftables: what logban made was removed (nft flush ruleset, a firewall reload?); put back, and the bans in force are applied again",
		"action", a.name, "missing", missing)
	return true, nil
}

// missingLocked names the first thing of the action's not in the kernel, or "".
func (a *NFTables) missingLocked(c *nftables.Conn) (string, error) {
	if _, err := c.ListTableOfFamily(NFTablesTable, nftables.TableFamilyINet); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return "table inet " + NFTablesTable, nil
		}
		return "", fmt.Errorf("looking for table inet %s: %w", NFTablesTable, err)
	}
	sets, err := c.GetSets(nftTable)
	if err != nil {
		return "", fmt.Errorf("listing the sets of table inet %s: %w", NFTablesTable, err)
	}
	have := map[string]bool{}
	for _, s := range sets {
		have[s.Name] = true
	}
	want := 0
	for jail := range a.jails {
		for _, net := range []bool{false, true} {
			for _, v6 := range []bool{false, true} {
				if name := a.setName(jail, v6, net); !have[name] {
					return "set " + name, nil
				} else if a.limit != nil && !have[a.meterName(name)] {
					return "set " + a.meterName(name), nil
				}
				want++
			}
		}
	}
	for _, h := range a.opts.Hooks {
		rules, err := c.GetRules(nftTable, a.chain(h))
		if errors.Is(err, unix.ENOENT) {
			return "chain " + a.chainName(h), nil
		}
		if err != nil {
			return "", fmt.Errorf("listing the rules of chain %s: %w", a.chainName(h), err)
		}
		if len(rules) != want {
			return fmt.Sprintf("rules of chain %s (%d of %d)", a.chainName(h), len(rules), want), nil
		}
	}
	return "", nil
}

// Stop stops checking and removes the action's chains and sets, unless keep_on_stop,
// and the table if nothing else is in it.
func (a *NFTables) Stop(context.Context) error {
	a.mu.Lock()
	stop, done := a.stop, a.done
	a.stop = nil
	a.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	a.lostOnce.Do(func() { close(a.lost) })
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn == nil {
		return nil
	}
	defer func() {
		a.conn.CloseLasting()
		a.conn = nil
	}()
	if a.opts.KeepOnStop {
		return nil
	}
	c := a.conn
	if _, err := c.ListTableOfFamily(NFTablesTable, nftables.TableFamilyINet); errors.Is(err, unix.ENOENT) {
		return nil
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("listing chains: %w", err)
	}
	others := false
	for _, ch := range chains {
		if ch.Table.Name != NFTablesTable {
			continue
		}
		if strings.HasPrefix(ch.Name, a.name+"-") {
			c.DelChain(ch)
		} else {
			others = true
		}
	}
	sets, err := c.GetSets(nftTable)
	if err != nil {
		return fmt.Errorf("listing sets: %w", err)
	}
	for _, s := range sets {
		if strings.HasPrefix(s.Name, a.name+"-") {
			c.DelSet(s)
		} else if !s.Anonymous {
			others = true
		}
	}
	if !others {
		c.DelTable(nftTable)
	}
	clear(a.jails)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("removing what action %s made in table inet %s: %w", a.name, NFTablesTable, err)
	}
	return nil
}

// Cleanup removes table inet logban, with every chain and set in it.
func (a *NFTables) Cleanup(context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, err := a.connLocked()
	if err != nil {
		return err
	}
	defer func() {
		c.CloseLasting()
		a.conn = nil
	}()
	if _, err := c.ListTableOfFamily(NFTablesTable, nftables.TableFamilyINet); errors.Is(err, unix.ENOENT) {
		return nil
	}
	c.DelTable(nftTable)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("removing table inet %s: %w", NFTablesTable, err)
	}
	return nil
}
