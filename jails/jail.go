package jails

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/filters"
)

// Settings are a jail's counting rules.
type Settings struct {
	MaxRetry int
	FindTime time.Duration
	Ignore   *IgnoreList
	// Subnet, if on, bans a network when enough of its addresses fail.
	Subnet Subnet
	// Key is what failures are counted by: KeyAddress ("" too), KeyUser or
	// KeyDevice. A jail keyed by user or device counts each failure by its address
	// too, toward the address's own maxretry (one address failing against 40 accounts
	// is banned as any address is), unless Rate; accounts are compared without regard
	// to case. One keyed by device does not count a line naming no device.
	Key string
	// Rate says the jail counts requests, not failures (mode = "rate"): a jail keyed
	// by device or user then counts its key alone, for many phones or users may share
	// one office's address.
	Rate bool
	// BanAddresses, in a jail keyed by user or device, bans the addresses seen with a
	// key that reached maxretry within findtime, and each new one while it stays hot.
	BanAddresses bool
	// KeyBan, if set, is handed the ban of each key (account, device) that reaches
	// maxretry within findtime, for the actions that can hold no address. It is
	// called on the reading path: it must not wait.
	KeyBan func(KeyBan)
	// Trust, if set, holds the logins that worked: a failure against an account from
	// an address that logged in to it within TrustTime does not count (it is reported
	// instead), and no network holding such an address is banned.
	Trust     *Trust
	TrustTime time.Duration
	// Notify, if set, is handed each failure not counted because its address is
	// trusted (one a pair and findtime, as the log line). It must not wait.
	Notify func(actions.Notice)
	// MaxTracked bounds each of the jail's tables: the addresses, the networks and the
	// keys with failures within findtime; 0 means DefaultMaxTracked (bound.go).
	MaxTracked int
	// Tally, if set, hears of every failure counted, so a farm can count it too.
	Tally Tally
	// Logger, if set, gets a debug line for each failure counted, and a warning for
	// each network not banned because it holds an address never banned, and for each
	// failure not counted because its address logged in to the account (one a pair and
	// findtime).
	Logger *slog.Logger
}

// Tally hears of the failures a jail counts, to count them across a farm. Failure is
// called on the reading path: it must not wait.
type Tally interface {
	Failure(jail string, addr netip.Addr, t time.Time, from Origin)
}

// Origin is where a failure was read: the file (its Head hash, which tells files apart
// across rotations) and the offset just past the line. The same line read twice has the
// same origin, so a farm counts it once. The zero Origin is a failure from no file.
type Origin struct {
	File   uint64
	Offset int64
}

// Ticket asks the Manager to ban an address, or a network.
type Ticket struct {
	Jail string
	Addr netip.Addr
	// Bits, when not 0, asks a ban of the whole network Addr/Bits (a subnet escalation).
	Bits int
	// User is the account the failures were against, in a jail keyed by user.
	User     string
	Failures int       // failures within findtime (for a network: its addresses that failed); 0 for a manual ban
	Time     time.Time // time of the last failure
	// Why says what led to the ban; "" for the usual words (failures within findtime,
	// or by hand).
	Why string
	// Lines are the address's last matched lines (at most MaxMatches), oldest first.
	Lines []string
}

// Prefix returns what the ticket asks to ban: Addr alone (a /32 or /128), or the
// network Addr/Bits.
func (t Ticket) Prefix() netip.Prefix { return actions.Ban{Addr: t.Addr, Bits: t.Bits}.Prefix() }

// ErrIgnored reports an address that the jail must never ban. The error returned is an
// *IgnoredError, which says why.
var ErrIgnored = errors.New("never banned")

// IgnoredError reports an address, or a network (Bits not 0), that must never be banned,
// and why.
type IgnoredError struct {
	Addr netip.Addr
	Bits int
	Why  string
}

// Error says why the address or network is never banned.
func (e *IgnoredError) Error() string {
	return actions.Ban{Addr: e.Addr, Bits: e.Bits}.Target() + " is " + e.Why + ": never banned"
}

// Is makes errors.Is(err, ErrIgnored) hold.
func (e *IgnoredError) Is(target error) bool { return target == ErrIgnored }

// Jail finds failures in lines with its filter and turns maxretry of them within findtime
// into a Ticket for the address, and, with a Subnet, enough failing addresses of one
// network into a Ticket for the network. It is safe for concurrent use: several files
// may feed one jail.
type Jail struct {
	name     string
	filter   *filters.Filter
	settings Settings

	mu       sync.Mutex
	window   *Window
	nets     *netWindow          // nil without a Subnet
	keys     *keyWindow          // nil unless keyed by user or device
	matches  matches             // the last lines of recently failing addresses
	reported map[reportKey]int64 // known-good pairs last reported, Unix nanoseconds

	totalFailed atomic.Int64
	ignored     atomic.Int64
	dropped     atomic.Int64 // failures the filter itself dropped (ignoreregex)
	netsRefused atomic.Int64 // networks not banned: they hold an address never banned
	knownGood   atomic.Int64 // failures not counted: the address logged in to the account
	logins      atomic.Int64 // logins that worked, seen
	skew        SkewMeter
}

// New returns a jail.
func New(name string, filter *filters.Filter, s Settings) *Jail {
	if s.Ignore == nil {
		s.Ignore = NewIgnoreList()
	}
	if s.MaxTracked <= 0 {
		s.MaxTracked = DefaultMaxTracked
	}
	j := &Jail{name: name, filter: filter, settings: s, window: NewWindow(s.MaxRetry, s.FindTime), reported: map[reportKey]int64{}}
	j.window.SetBound(s.MaxTracked)
	if s.Key == KeyUser || s.Key == KeyDevice {
		j.keys = newKeyWindow(s.MaxRetry, s.FindTime, s.MaxTracked)
	}
	if s.Subnet.On() {
		if s.Subnet.FindTime <= 0 {
			j.settings.Subnet.FindTime = s.FindTime
		}
		j.nets = newNetWindow(j.settings.Subnet, s.MaxTracked)
	}
	return j
}

// Line runs the filter over line, read at now, counts a failure if there is one, and
// returns the tickets it led to (an address's, a network's). A line no failregex wants
// returns at once without allocating.
func (j *Jail) Line(line []byte, now time.Time) []Ticket {
	return j.LineFrom(line, now, Origin{}, nil)
}

// LineFrom is Line for a line read at from, the tickets appended to tickets.
func (j *Jail) LineFrom(line []byte, now time.Time, from Origin, tickets []Ticket) []Ticket {
	m, r := j.filter.Match(line, now)
	switch r {
	case filters.Matched:
	case filters.Ignored:
		j.dropped.Add(1)
		return tickets
	case filters.Succeeded:
		j.login(line, m, now)
		return tickets
	default:
		return tickets
	}
	if m.Timed {
		j.skew.observe(m.Time, now)
	}
	return j.failure(m.Addr, string(m.Account), string(m.Device), m.Time, now, from, line, tickets)
}

// login records a login that worked. A pair that logged in within the last hour before
// now costs no reading of the line's time: a login of it can be no newer than now.
func (j *Jail) login(line []byte, m filters.Match, now time.Time) {
	tr := j.settings.Trust
	if tr == nil {
		return
	}
	j.logins.Add(1)
	if tr.Recent(m.Account, m.Addr, now) {
		return
	}
	t, _ := j.filter.LineTime(line, now)
	if !t.After(now.Add(FutureTolerance)) {
		tr.Login(m.Account, m.Addr, t)
	}
}

// Skew returns the steady offset between the jail's line times and the clock, measured
// on the failures found since the last call (SkewMeter.Steady).
func (j *Jail) Skew() (Skew, bool) { return j.skew.Steady() }

// Next returns the index in data of the first place a line the jail's filter could match
// may lie, or -1 if there is none (filters.Filter.Next).
func (j *Jail) Next(data []byte) int { return j.filter.Next(data) }

// Needles returns the texts one of which every line the jail's filter judges holds
// (filters.Filter.Needles).
func (j *Jail) Needles() [][]byte { return j.filter.Needles() }

// FutureTolerance is how far ahead of the host's clock a line's time may lie and still
// count as written: a writer's clock a little ahead, or a log written in another time
// zone, must not make failures look as if they had not happened yet.
const FutureTolerance = time.Minute

// Failure counts a failure of addr at t (the log's time), seen at now. A t further ahead
// of now than FutureTolerance counts at now: a line stamped in the future (a writer's
// clock set wrong, a forged year) would otherwise stay an address's newest failure and
// keep every later one from counting.
//
// It returns the tickets the failure led to: the address's, when it reached maxretry,
// and its network's, when enough of the network's addresses failed.
func (j *Jail) Failure(addr netip.Addr, t, now time.Time) []Ticket {
	return j.failure(addr, "", "", t, now, Origin{}, nil, nil)
}

// FailureOf is Failure for a failure against account.
func (j *Jail) FailureOf(addr netip.Addr, account string, t, now time.Time) []Ticket {
	return j.failure(addr, account, "", t, now, Origin{}, nil, nil)
}

// RequestOf is Failure for a request of device (a line a rate jail counts).
func (j *Jail) RequestOf(addr netip.Addr, device string, t, now time.Time) []Ticket {
	return j.failure(addr, "", device, t, now, Origin{}, nil, nil)
}

// failure counts a failure of addr against account, from device ("" for none named),
// and appends the tickets it leads to; line, if any, is the log line it was found in.
func (j *Jail) failure(addr netip.Addr, account, device string, t, now time.Time, from Origin, line []byte, tickets []Ticket) []Ticket {
	if j.settings.Key == KeyDevice && device == "" {
		return tickets // a device jail counts devices: an address may be a whole office
	}
	addr = addr.Unmap()
	if t.After(now.Add(FutureTolerance)) {
		t = now
	}
	if j.settings.Ignore.Contains(addr) {
		j.ignored.Add(1)
		return tickets
	}
	if j.settings.Trust.Good(account, addr, now, j.settings.TrustTime) {
		j.knownGood.Add(1)
		j.reportKnownGood(account, addr, now)
		return tickets
	}
	j.totalFailed.Add(1)
	if l := j.settings.Logger; l != nil && l.Enabled(context.Background(), slog.LevelDebug) {
		l.Debug("failure", "jail", j.name, "addr", addr, "time", t)
	}
	if j.settings.Tally != nil {
		j.settings.Tally.Failure(j.name, addr, t, from)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if line != nil {
		j.matches.add(addr, line)
	}
	key, mark := j.keyOf(account, device), len(tickets)
	if key != "" {
		// account, for a device, is the one this line names
		tickets = j.keyFailure(key, account, addr, t, now, tickets)
	}
	if key == "" || !j.settings.Rate { // the address's own count, unless the key's ban named it
		if n, reached := j.window.Add(addr, t, now); reached && !slices.ContainsFunc(tickets[mark:], func(t Ticket) bool { return t.Addr == addr && t.Bits == 0 }) {
			tickets = append(tickets, Ticket{Jail: j.name, Addr: addr, User: account, Failures: n, Time: t, Lines: j.matches.take(addr)})
		}
	}
	if j.nets != nil {
		if p, n, reached := j.nets.add(addr, t, now); reached {
			// A login spares its own address for its own account (Trust.Good, above),
			// never the network around it: one account the attacker owns would shield
			// its /24.
			if why := j.settings.Ignore.WhyNet(p); why != "" {
				j.netsRefused.Add(1)
				if l := j.settings.Logger; l != nil {
					l.Warn("network not banned: it is "+why, "jail", j.name, "network", p, "addresses", n)
				}
			} else {
				tickets = append(tickets, Ticket{Jail: j.name, Addr: p.Addr(), Bits: p.Bits(), Failures: n, Time: t,
					Why: netWhy(p, n, j.settings.Subnet.FindTime)})
			}
		}
	}
	return tickets
}

// keyOf returns the key a jail keyed by user or device counts a line by: its account,
// in lower case and cut to MaxKeyName bytes, or its device; "" for a jail keyed by
// address.
func (j *Jail) keyOf(account, device string) string {
	switch {
	case j.keys == nil:
		return ""
	case j.settings.Key == KeyDevice:
		return device
	}
	if len(account) > MaxKeyName {
		account = account[:MaxKeyName]
	}
	return strings.ToLower(account)
}

// MaxKeyName is the longest account name a jail keyed by user keeps whole: names are
// the client's to choose, and a longer one counts by its start.
const MaxKeyName = 256

// keyFailure counts a failure (or request) of key, an account or a device, from addr,
// and appends the tickets it leads to. Its caller holds j.mu.
func (j *Jail) keyFailure(key, account string, addr netip.Addr, t, now time.Time, tickets []Ticket) []Ticket {
	n, addrs, reached := j.keys.add(key, addr, t, now)
	why := accountWhy(key, n, j.settings.FindTime)
	if j.settings.Key == KeyDevice {
		why = deviceWhy(key, n, j.settings.FindTime)
	}
	if reached && j.settings.KeyBan != nil {
		j.settings.KeyBan(KeyBan{Jail: j.name, Kind: j.settings.Key, Key: key, User: account, Addrs: slices.Clone(addrs), Count: n})
	}
	if !j.settings.BanAddresses {
		return tickets
	}
	for _, a := range addrs {
		if account != "" && j.settings.Trust.Good(account, a, now, j.settings.TrustTime) {
			continue // one of the account's own: it is reported at its own failures
		}
		tickets = append(tickets, Ticket{Jail: j.name, Addr: a, User: account, Failures: n, Time: t, Why: why, Lines: j.matches.take(a)})
	}
	return tickets
}

// Manual returns a ticket for an operator's ban of what (an address as a /32 or /128,
// or a network), refused if it is, or holds, an address never banned.
func (j *Jail) Manual(what netip.Prefix, now time.Time) (Ticket, error) {
	t := Ticket{Jail: j.name, Time: now}
	b := actions.BanOf(j.name, what)
	t.Addr, t.Bits = b.Addr, b.Bits
	if why := j.settings.Ignore.WhyNet(what); why != "" {
		return Ticket{}, &IgnoredError{Addr: t.Addr, Bits: t.Bits, Why: why}
	}
	if t.Bits == 0 {
		j.Forget(t.Addr)
	}
	return t, nil
}

// Forget drops addr's failure history.
func (j *Jail) Forget(addr netip.Addr) {
	j.mu.Lock()
	j.window.Forget(addr)
	j.matches.take(addr)
	j.mu.Unlock()
}

// Decided forgets addr's failures, as a ban of it does here, and returns its last
// matched lines: for a ban decided elsewhere (the farm's count), which records the lines
// this host read.
func (j *Jail) Decided(addr netip.Addr) []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.window.Forget(addr)
	return j.matches.take(addr)
}

// Prune drops failure histories that have aged out of findtime.
func (j *Jail) Prune(now time.Time) {
	j.mu.Lock()
	j.window.Prune(now)
	if j.nets != nil {
		j.nets.prune(now)
	}
	if j.keys != nil {
		j.keys.prune(now)
	}
	limit := now.Add(-j.settings.FindTime).UnixNano()
	for k, at := range j.reported {
		if at < limit {
			delete(j.reported, k)
		}
	}
	j.mu.Unlock()
}

// reportKey names an account and an address whose failures were reported as known good.
type reportKey struct {
	account string
	addr    [16]byte
}

// reportKnownGood logs a failure of addr against account, which it logged in to
// recently: the user's own device with a stale password, most likely. One line per pair
// and findtime.
func (j *Jail) reportKnownGood(account string, addr netip.Addr, now time.Time) {
	k := reportKey{account, addr.Unmap().As16()}
	j.mu.Lock()
	last, seen := j.reported[k]
	fresh := !seen || now.UnixNano()-last > int64(j.settings.FindTime)
	if fresh {
		if !seen && len(j.reported) >= j.settings.MaxTracked {
			clear(j.reported) // at worst, a pair is reported once more
		}
		j.reported[k] = now.UnixNano()
	}
	j.mu.Unlock()
	if !fresh {
		return
	}
	if l := j.settings.Logger; l != nil {
		l.Warn("failure not counted: the address logged in to this account recently (a device with a stale password?)",
			"jail", j.name, "addr", addr, "user", account)
	}
	if j.settings.Notify != nil {
		j.settings.Notify(actions.Notice{Jail: j.name, Kind: "known-good", Addr: addr, User: account, Time: now,
			Text: "failures against the account from an address that logged in to it recently: not counted (a device with a stale password?)"})
	}
}

// Counts are a jail's failure figures.
type Counts struct {
	CurrentlyFailed int   // addresses (in a jail keyed by user or device, keys too) with failures within findtime
	TotalFailed     int64 // failures counted since the jail started
	Ignored         int64 // failures of addresses on the ignore list
	// Dropped are failures the filter itself set aside: its ignoreregex, or a format
	// that says the fault was the server's.
	Dropped int64
	// CurrentlyFailedNets are networks with failing addresses within the subnet
	// findtime; NetsRefused, networks that reached the subnet's addresses but hold an
	// address never banned, so were not banned.
	CurrentlyFailedNets int
	NetsRefused         int64
	// KnownGood are failures not counted because the address logged in to the
	// account recently; Logins, the logins that worked seen.
	KnownGood int64
	Logins    int64
	// Evicted are addresses, networks and keys let go at the bound of their table
	// (Settings.MaxTracked) before findtime ended: a flood of new ones pushed them out.
	Evicted int64
}

// Counts returns the jail's failure figures as of now.
func (j *Jail) Counts(now time.Time) Counts {
	j.mu.Lock()
	j.window.Prune(now)
	n, nets := j.window.Len(), 0
	if j.nets != nil {
		j.nets.prune(now)
		nets = len(j.nets.nets)
	}
	if j.keys != nil {
		j.keys.prune(now)
		n += len(j.keys.accounts)
	}
	evicted := j.window.Evicted()
	if j.nets != nil {
		evicted += j.nets.evicted
	}
	if j.keys != nil {
		evicted += j.keys.evicted
	}
	j.mu.Unlock()
	return Counts{CurrentlyFailed: n, TotalFailed: j.totalFailed.Load(), Ignored: j.ignored.Load(), Dropped: j.dropped.Load(),
		CurrentlyFailedNets: nets, NetsRefused: j.netsRefused.Load(), KnownGood: j.knownGood.Load(), Logins: j.logins.Load(), Evicted: evicted}
}
