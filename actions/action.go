// Package actions holds what a ban does outside the engine: the Action interface, a
// registry of kinds, and the kinds themselves, one file each.
//
// An action only touches the kernel or the outside world. It does not decide who is
// banned or for how long (the ban manager in package jails does), never sees unparsed log
// text (an address reaches it as a netip.Addr), and never runs a shell.
package actions

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Ban is one address, or one network, banned by one jail.
type Ban struct {
	Jail string
	// Addr is the address banned, or the first address of the network banned.
	Addr netip.Addr
	// Bits, when not 0, makes the ban one of the whole network Addr/Bits (a subnet
	// escalation); 0 bans Addr alone.
	Bits int
	// User is the account the failures were against, where the jail counts by account;
	// "" otherwise.
	User     string
	Failures int       // failures that led to the ban; 0 for a manual ban
	BannedAt time.Time // when the ban began
	Expires  time.Time // when it ends; the zero time means never
	// By is the farm node that decided the ban; "" outside a farm.
	By string
	// Why says what led to the ban, in words ("5 failures", "by hand").
	Why string
	// Lines are the last log lines that counted against the address, oldest first.
	Lines []string
}

// Permanent reports whether the ban lasts until it is lifted by hand.
func (b Ban) Permanent() bool { return b.Expires.IsZero() }

// Prefix returns what b bans: Addr alone (a /32 or /128), or the network Addr/Bits.
func (b Ban) Prefix() netip.Prefix {
	if b.Bits == 0 {
		return Host(b.Addr)
	}
	return netip.PrefixFrom(b.Addr, b.Bits).Masked()
}

// IsNet reports whether b bans a network rather than one address.
func (b Ban) IsNet() bool { return b.Bits != 0 && b.Bits < b.Addr.BitLen() }

// Target returns what b bans as logban writes it: the address, or the network in CIDR
// notation (198.51.100.0/24).
func (b Ban) Target() string { return Target(b.Prefix()) }

// Host returns the prefix holding addr alone; an IPv4-mapped address is taken as IPv4.
func Host(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	return netip.PrefixFrom(addr, addr.BitLen())
}

// Target writes p as logban writes what a ban holds: an address alone as the address,
// a network in CIDR notation.
func Target(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// ParseTarget reads what Target writes: an address, or a network in CIDR notation whose
// address is the network's first (198.51.100.0/24, not 198.51.100.7/24). An
// IPv4-mapped address is read as IPv4; a zone is refused.
func ParseTarget(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("address %q has a zone", s)
		}
		return Host(a.Unmap()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Addr().Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("network %q: an IPv4-mapped network shorter than /96", s)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("network %q: did you mean %s? (the address of a network is its first)", s, p.Masked())
	}
	return p, nil
}

// BanOf returns a ban of p in jail: Addr and Bits set from it.
func BanOf(jail string, p netip.Prefix) Ban {
	b := Ban{Jail: jail, Addr: p.Addr()}
	if !p.IsSingleIP() {
		b.Bits = p.Bits()
	}
	return b
}

// Action applies and lifts bans. Every method is idempotent: banning a banned address or
// unbanning an absent one is not an error, and Stop may be called twice. One Action value
// serves every jail that names it, so implementations must be safe for concurrent use.
// The ban manager compares Action values, so implementations are pointers (or other
// comparable types).
type Action interface {
	// Start creates what the action needs (a chain, a set) before the first ban.
	Start(ctx context.Context) error
	// Ban applies b.
	Ban(ctx context.Context, b Ban) error
	// Unban lifts b.
	Unban(ctx context.Context, b Ban) error
	// Stop removes what Start created, unless configured to keep it.
	Stop(ctx context.Context) error
}

// Notice is something an operator should hear of that no address action can hold: a
// failure not counted because its address logged in to the account recently (Kind
// "known-good"), most likely a device of the account's own user with a stale password;
// a device or an account banned by a jail keyed by it, and its ban's end (Kinds
// "device-ban", "device-unban", "user-ban", "user-unban").
type Notice struct {
	Jail   string
	Kind   string
	Addr   netip.Addr // the address, or, for a device or account ban, the last seen with it
	User   string     // the account, as the client sent it
	Device string     // the device (an ActiveSync DeviceId), for a device ban
	Text   string     // what happened, in words
	Time   time.Time
}

// Notifier is implemented by the actions that can pass a Notice on (log, mail, webhook,
// exec): those a jail's notify list may name. Notify must be idempotent enough to be
// called once per event; it is not retried.
type Notifier interface {
	Notify(ctx context.Context, n Notice) error
}

// Reopener is implemented by actions that write to files of their own: Reopen opens
// them again by name, after a log rotation moved them away. ban-server calls it on every
// reload (SIGHUP, ban-client reload).
type Reopener interface {
	Reopen() error
}

// Shared is implemented by actions whose effect belongs to the address alone, whatever the
// jail (a null route is one route however many jails ban the address). The ban manager
// then calls Ban for the first jail's ban of an address and Unban only when the last one
// ends, so two jails banning one address keep it blocked until both bans end.
type Shared interface {
	Action
	// SharedAcrossJails is a marker; it does nothing.
	SharedAcrossJails()
}

// Batcher is implemented by actions that make many calls at once for less than one at a
// time (a kernel action sends many requests in one system call). The ban manager hands
// it runs of consecutive bans, or of unbans, in the order they came. Each returns one
// error per ban, nil where the call worked.
type Batcher interface {
	BanBatch(ctx context.Context, bans []Ban) []error
	UnbanBatch(ctx context.Context, bans []Ban) []error
}

// Reconciler is implemented by kernel actions that can list the addresses and networks
// they hold, so that the kernel can be compared with the bans in force and repaired both
// ways: a route someone deleted by hand comes back, and one no ban stands behind goes.
// Holds returns what is held for jail, an address as a /32 or /128; a Shared action's
// hold belongs to no jail, and it ignores jail.
type Reconciler interface {
	Holds(ctx context.Context, jail string) ([]netip.Prefix, error)
}

// Overseer is implemented by kernel actions that notice when what they made is removed
// behind their back (`nft flush ruleset`, a firewall reload) and put it back, empty:
// Lost then says that the bans in force must be applied again. It is closed when the
// action stops.
type Overseer interface {
	Lost() <-chan struct{}
}

// JailPreparer is implemented by actions that keep something per jail (a chain, a set).
// The ban manager calls PrepareJail when a jail starts using the action, so what the
// jail needs is in place before its first ban, and Stop removes it.
type JailPreparer interface {
	PrepareJail(ctx context.Context, jail string) error
}

// Cleaner is implemented by kinds that change the kernel. Cleanup removes everything of
// that kind that logban ever made (chains and sets named logban-*, routes of logban's
// protocol), whatever configuration made it, and nothing else: ban-server -cleanup.
type Cleaner interface {
	Cleanup(ctx context.Context) error
}

// Kind describes one type of action, as named by `type = "..."` in [actions.NAME].
type Kind struct {
	// Name is the value of `type`.
	Name string
	// Options returns a pointer to a fresh options struct, with defaults set, for the
	// configuration to decode the table into. Its fields carry `toml` tags. If it has a
	// method Validate() error, the configuration calls it after decoding.
	Options func() any
	// New builds an action from decoded options. It must not touch the system: that is
	// Start's job, so a configuration can be checked without side effects.
	New func(name string, options any, logger *slog.Logger) (Action, error)
	// Notifies says the kind's actions are Notifiers.
	Notifies bool
}

var (
	registryMu sync.RWMutex
	registry   = map[string]Kind{}
)

// Register makes a kind available by name. It panics if the name is taken, as
// database/sql.Register does: two kinds with one name are a programming error.
func Register(k Kind) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[k.Name]; dup {
		panic("actions: Register called twice for kind " + k.Name)
	}
	registry[k.Name] = k
}

// Lookup returns the kind called name.
func Lookup(name string) (Kind, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	k, ok := registry[name]
	return k, ok
}

// Kinds lists the registered kinds' names, sorted.
func Kinds() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// UnknownKindError reports a `type` that names no registered kind.
type UnknownKindError struct{ Name string }

// Error names the kind and the kinds there are.
func (e *UnknownKindError) Error() string {
	return fmt.Sprintf("unknown action type %q; valid: %s", e.Name, strings.Join(Kinds(), ", "))
}

// New builds an action of kind from options produced by that kind's Options.
func New(kind, name string, options any, logger *slog.Logger) (Action, error) {
	k, ok := Lookup(kind)
	if !ok {
		return nil, &UnknownKindError{Name: kind}
	}
	a, err := k.New(name, options, logger.With("action", name))
	if err != nil {
		return nil, fmt.Errorf("action %q: %w", name, err)
	}
	return a, nil
}
