package policy

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Quota limits what one holder (a SASL user, a sender, a client address) sends within
// a window: messages, and recipients across them; 0 is no limit.
type Quota struct {
	Name       string
	Key        string // sasl_username, sender or client_address
	Messages   int
	Recipients int
	Window     time.Duration
	Action     string // the answer over the quota: DEFER_IF_PERMIT ..., HOLD, REJECT ...
}

// Compromised flags an account that logged in from more distinct addresses, or networks
// (/16 for IPv4, /32 for IPv6), than allowed within a window; 0 is no limit.
type Compromised struct {
	Addresses int
	Networks  int
	Window    time.Duration
}

// On reports whether compromised-account detection is configured.
func (c Compromised) On() bool { return c.Window > 0 && (c.Addresses > 0 || c.Networks > 0) }

// Settings are what the service answers, and by which rules.
type Settings struct {
	// RejectBanned answers a client banned in a jail; {jail} is the jail's name.
	RejectBanned string
	// Default is the answer when the service cannot decide: an internal error, or a
	// decision slower than its time.
	Default     string
	Quotas      []Quota
	Compromised Compromised
	// Limits bound the tables the service keeps; zero fields take DefaultLimits'.
	Limits Limits
}

// Limits bound what the service remembers, for Postfix's requests carry names that
// clients choose (a sender, an account guessed right). Each quota keeps at most Holders
// holders and Entries messages across them; compromised-account detection keeps at
// most Holders accounts and Entries logins across them. At a bound, the holders with
// the fewest messages (or logins) in their window go first, the least recently active
// among equals, an eighth of the table at once, and are counted as dropped: a holder
// dropped starts its count afresh. A name longer than
// MaxName bytes counts by its first MaxName bytes.
type Limits struct {
	Holders int
	Entries int
}

// DefaultLimits hold a farm's busiest hour (100,000 senders or accounts, a million
// messages or logins) in about 100 MB per table at most.
var DefaultLimits = Limits{Holders: 100_000, Entries: 1_000_000}

// MaxName is the longest holder or account name kept whole.
const MaxName = 256

// Flag is an account found logging in from too many places.
type Flag struct {
	Account   string
	Addresses []netip.Addr // the distinct addresses within the window, oldest first
	Networks  int
	At        time.Time
}

// Deps are what the service needs from the daemon.
type Deps struct {
	// Banned says which jail, if any, bans addr (on this host, or, for a farm jail,
	// anywhere in the farm, whose bans every host holds).
	Banned func(addr netip.Addr) (jail string, ok bool)
	// Flagged hears of each account flagged, once per window. It must not wait.
	Flagged func(Flag)
	// FarmCount, in a farm, counts a message to rcpts recipients against a quota across
	// the farm and says whether it is over; where it fails, the host counts alone.
	FarmCount func(q Quota, holder string, rcpts int) (over bool, err error)
	Now       func() time.Time
}

// Policy decides the answer to each request. It is safe for concurrent use.
type Policy struct {
	settings Settings
	deps     Deps

	mu     sync.Mutex
	usage  []table[*usage] // by quota
	logins table[*logins]  // by account
	// farmErrors counts the farm's failures to count a message; the host's own count
	// stood alone for it.
	farmErrors atomic.Int64
}

// table is the holders of one quota, or the accounts of compromised-account
// detection, with the entries (messages or logins) they keep.
type table[T interface{ last() int64 }] struct {
	m       map[string]T
	entries int
	dropped int64 // holders let go at the bound before their time
}

// shed lets the holders with nothing left go, and if the table is still near its
// bounds, those with the fewest entries (the oldest first among equals), down to seven
// eighths of each bound: a flood of names used once each goes before a holder near
// its limit, whose count is what a quota is for. prune lets a
// holder's expired entries go and returns how many it keeps.
func (t *table[T]) shed(l Limits, prune func(T) int) {
	type held struct {
		name string
		n    int
		last int64
	}
	var all []held
	t.entries = 0
	for h, v := range t.m {
		if n := prune(v); n == 0 {
			delete(t.m, h)
		} else {
			t.entries += n
			all = append(all, held{h, n, v.last()})
		}
	}
	under := func() bool { return len(t.m) <= l.Holders*7/8 && t.entries <= l.Entries*7/8 }
	if under() {
		return
	}
	slices.SortFunc(all, func(a, b held) int { return cmp.Or(cmp.Compare(a.n, b.n), cmp.Compare(a.last, b.last)) })
	for _, h := range all {
		if under() {
			break
		}
		t.entries -= h.n
		delete(t.m, h.name)
		t.dropped++
	}
}

// full reports whether adding a holder or an entry would pass a bound.
func (t *table[T]) full(l Limits) bool { return len(t.m) >= l.Holders || t.entries >= l.Entries }

// clip returns name, cut to MaxName bytes.
func clip(name string) string {
	if len(name) > MaxName {
		return name[:MaxName]
	}
	return name
}

// usage is a holder's sending within a quota's window: each message's time and
// recipients, oldest first.
type usage struct {
	times      []int64
	recipients []int
}

func (u *usage) last() int64 {
	if len(u.times) == 0 {
		return 0
	}
	return u.times[len(u.times)-1]
}

// logins are an account's logins within the window: each distinct address and when it
// was last seen, the logins in the order they came (to let the oldest go without a scan),
// how many of the addresses each network holds, and until when the account stays
// flagged (not flagged again).
type logins struct {
	seen         map[netip.Addr]int64
	order        []seenAt
	nets         map[netip.Prefix]int
	flaggedUntil int64
}

func (l *logins) last() int64 {
	if len(l.order) == 0 {
		return 0
	}
	return l.order[len(l.order)-1].at
}

type seenAt struct {
	addr netip.Addr
	at   int64
}

// maxLogins bounds the logins an account keeps within a window; past it, the oldest
// goes. An account at it is flagged long before.
const maxLogins = 4096

// expire lets the logins before limit go and returns how many went.
func (l *logins) expire(limit int64) int {
	i := 0
	for ; i < len(l.order) && (l.order[i].at < limit || len(l.order)-i > maxLogins); i++ {
		e := l.order[i]
		if l.seen[e.addr] == e.at { // not seen again since
			delete(l.seen, e.addr)
			n := widenet(e.addr)
			if l.nets[n]--; l.nets[n] == 0 {
				delete(l.nets, n)
			}
		}
	}
	l.order = l.order[i:]
	return i
}

// New returns a policy deciding by s.
func New(s Settings, d Deps) *Policy {
	if d.Now == nil {
		d.Now = time.Now
	}
	s.Limits.Holders = cmp.Or(s.Limits.Holders, DefaultLimits.Holders)
	s.Limits.Entries = cmp.Or(s.Limits.Entries, DefaultLimits.Entries)
	p := &Policy{settings: s, deps: d, logins: table[*logins]{m: map[string]*logins{}}}
	for range s.Quotas {
		p.usage = append(p.usage, table[*usage]{m: map[string]*usage{}})
	}
	return p
}

// Kinds of answer, as counted.
const (
	AnswerDunno   = "dunno"
	AnswerBanned  = "banned"
	AnswerQuota   = "quota"
	AnswerDefault = "default" // the service could not decide
)

// Decide returns the action for req, and the kind of answer it is.
func (p *Policy) Decide(req Request) (action, kind string) {
	addr, addrErr := netip.ParseAddr(req.ClientAddress)
	if addrErr == nil {
		addr = addr.Unmap()
		if p.deps.Banned != nil {
			if jail, banned := p.deps.Banned(addr); banned {
				return strings.ReplaceAll(p.settings.RejectBanned, "{jail}", jail), AnswerBanned
			}
		}
	}
	now := p.deps.Now()
	if req.SASLUsername != "" && addrErr == nil && p.settings.Compromised.On() {
		p.login(req.SASLUsername, addr, now)
	}
	// A message is counted once, where Postfix asks before its content (DATA) or after
	// it (END-OF-MESSAGE); wire one of the two.
	if req.ProtocolState == "DATA" || req.ProtocolState == "END-OF-MESSAGE" {
		if action, over := p.count(req, now); over {
			return action, AnswerQuota
		}
	}
	return "DUNNO", AnswerDunno
}

// count counts req's message against each quota and returns the first quota's action
// that it goes over. A message over a quota is not counted: it is not sent. In a farm,
// messages and recipients are counted across the farm; where the farm cannot answer,
// the host counts alone.
func (p *Policy) count(req Request, now time.Time) (string, bool) {
	if action, over := p.countLocally(req, now); over {
		return action, true
	}
	if p.deps.FarmCount == nil {
		return "", false
	}
	for _, q := range p.settings.Quotas {
		holder := req.Get(q.Key)
		if holder == "" {
			continue
		}
		over, err := p.deps.FarmCount(q, holder, max(req.RecipientCount, 1))
		if err != nil {
			p.farmErrors.Add(1)
		}
		if err == nil && over {
			p.uncount(req, now)
			return q.Action, true
		}
	}
	return "", false
}

// countLocally counts req's message on this host, in one step with judging it (two
// requests of one holder at once cannot both take its last slot), and returns the first
// quota's action that it goes over, counting nothing then. In a farm, this host's
// messages are a part of the farm's count, so its own count never says over before the
// farm's would; it stands alone where the farm cannot answer.
func (p *Policy) countLocally(req Request, now time.Time) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rcpts := max(req.RecipientCount, 1)
	var held []*usage
	var heldIn []int
	for i, q := range p.settings.Quotas {
		holder := clip(req.Get(q.Key))
		if holder == "" {
			continue
		}
		t := &p.usage[i]
		limit := now.Add(-q.Window).UnixNano()
		u, ok := t.m[holder]
		if !ok {
			if t.full(p.settings.Limits) {
				t.shed(p.settings.Limits, func(u *usage) int { u.prune(limit); return len(u.times) })
			}
			u = &usage{}
			t.m[holder] = u
		}
		t.entries -= u.prune(limit)
		if q.Messages > 0 && len(u.times)+1 > q.Messages || q.Recipients > 0 && u.sum()+rcpts > q.Recipients {
			return q.Action, true
		}
		held, heldIn = append(held, u), append(heldIn, i)
	}
	for k, u := range held {
		u.times = append(u.times, now.UnixNano())
		u.recipients = append(u.recipients, rcpts)
		t := &p.usage[heldIn[k]]
		if t.entries++; t.entries > p.settings.Limits.Entries {
			q := p.settings.Quotas[heldIn[k]]
			limit := now.Add(-q.Window).UnixNano()
			t.shed(p.settings.Limits, func(u *usage) int { u.prune(limit); return len(u.times) })
		}
	}
	return "", false
}

// uncount takes back the message countLocally counted for req at now: the farm found
// it over a quota, so it is not sent.
func (p *Policy) uncount(req Request, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ts := now.UnixNano()
	for i, q := range p.settings.Quotas {
		u, ok := p.usage[i].m[clip(req.Get(q.Key))]
		if !ok {
			continue
		}
		for k := len(u.times) - 1; k >= 0; k-- {
			if u.times[k] == ts {
				u.times = slices.Delete(u.times, k, k+1)
				u.recipients = slices.Delete(u.recipients, k, k+1)
				p.usage[i].entries--
				break
			}
		}
	}
}

// prune lets the messages before limit go and returns how many went.
func (u *usage) prune(limit int64) int {
	i, _ := slices.BinarySearch(u.times, limit)
	u.times, u.recipients = u.times[i:], u.recipients[i:]
	return i
}

func (u *usage) sum() int {
	n := 0
	for _, r := range u.recipients {
		n += r
	}
	return n
}

// login records a login of account from addr, and flags the account when it reaches
// the limits, once a window.
func (p *Policy) login(account string, addr netip.Addr, now time.Time) {
	c := p.settings.Compromised
	account = clip(account)
	limit := now.Add(-c.Window).UnixNano()
	expire := func(l *logins) int { l.expire(limit); return len(l.order) }
	p.mu.Lock()
	t := &p.logins
	l, ok := t.m[account]
	if !ok {
		if t.full(p.settings.Limits) {
			t.shed(p.settings.Limits, expire)
		}
		l = &logins{seen: map[netip.Addr]int64{}, nets: map[netip.Prefix]int{}}
		t.m[account] = l
	}
	t.entries -= l.expire(limit)
	ts := now.UnixNano()
	if _, again := l.seen[addr]; !again {
		l.nets[widenet(addr)]++
	}
	l.seen[addr] = ts
	l.order = append(l.order, seenAt{addr, ts})
	if t.entries++; t.entries > p.settings.Limits.Entries {
		t.shed(p.settings.Limits, expire)
	}
	over := c.Addresses > 0 && len(l.seen) >= c.Addresses || c.Networks > 0 && len(l.nets) >= c.Networks
	var f *Flag
	if over && ts > l.flaggedUntil {
		l.flaggedUntil = now.Add(c.Window).UnixNano()
		f = &Flag{Account: account, Networks: len(l.nets), At: now}
		for a := range l.seen {
			f.Addresses = append(f.Addresses, a)
		}
		slices.SortFunc(f.Addresses, func(x, y netip.Addr) int { return cmp.Compare(l.seen[x], l.seen[y]) })
	}
	p.mu.Unlock()
	if f != nil && p.deps.Flagged != nil {
		p.deps.Flagged(*f)
	}
}

// widenet is the network an address counts in for compromised-account detection: its
// /16 (IPv4) or /32 (IPv6), where one ISP's customers are.
func widenet(a netip.Addr) netip.Prefix {
	bits := 16
	if a.Is6() {
		bits = 32
	}
	p, _ := a.Prefix(bits)
	return p
}

// Holder is one holder's use of a quota, as status shows it.
type Holder struct {
	Quota      string
	Holder     string
	Messages   int
	Recipients int
}

// Near returns the holders at or above fraction of a quota's limit (messages or
// recipients), most used first, at most n of them.
func (p *Policy) Near(fraction float64, n int) []Holder {
	now := p.deps.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Holder
	for i, q := range p.settings.Quotas {
		t := &p.usage[i]
		for holder, u := range t.m {
			t.entries -= u.prune(now.Add(-q.Window).UnixNano())
			if len(u.times) == 0 {
				delete(t.m, holder)
				continue
			}
			h := Holder{Quota: q.Name, Holder: holder, Messages: len(u.times), Recipients: u.sum()}
			if q.Messages > 0 && float64(h.Messages) >= fraction*float64(q.Messages) ||
				q.Recipients > 0 && float64(h.Recipients) >= fraction*float64(q.Recipients) {
				out = append(out, h)
			}
		}
	}
	slices.SortFunc(out, func(a, b Holder) int {
		return cmp.Or(cmp.Compare(b.Messages, a.Messages), cmp.Compare(a.Quota, b.Quota), cmp.Compare(a.Holder, b.Holder))
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// Prune forgets the holders and accounts with nothing left within their windows.
func (p *Policy) Prune() {
	now := p.deps.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, q := range p.settings.Quotas {
		t := &p.usage[i]
		for holder, u := range t.m {
			if t.entries -= u.prune(now.Add(-q.Window).UnixNano()); len(u.times) == 0 {
				delete(t.m, holder)
			}
		}
	}
	limit := now.Add(-p.settings.Compromised.Window).UnixNano()
	for account, l := range p.logins.m {
		if p.logins.entries -= l.expire(limit); len(l.seen) == 0 && l.flaggedUntil < now.UnixNano() {
			delete(p.logins.m, account)
		}
	}
}

// Tables are the sizes of the service's tables and what their bounds let go.
type Tables struct {
	Holders, Accounts int   // quota holders (all quotas), accounts with logins
	Dropped           int64 // holders and accounts let go at a bound before their time
}

// Tables returns the sizes of the service's tables.
func (p *Policy) Tables() Tables {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := Tables{Accounts: len(p.logins.m), Dropped: p.logins.dropped}
	for i := range p.usage {
		t.Holders += len(p.usage[i].m)
		t.Dropped += p.usage[i].dropped
	}
	return t
}

// FarmErrors returns how many messages the farm could not count, which this host's own
// count alone judged.
func (p *Policy) FarmErrors() int64 { return p.farmErrors.Load() }
