package policy

import (
	"cmp"
	"net/netip"
	"slices"
	"time"
)

// State is what a Policy has counted: each quota's holders' messages within its window,
// and each account's logins and flag. A restart (saved in the database) or a reload
// carries it to the next Policy, so that no count starts afresh.
type State struct {
	Quotas []QuotaState `json:"quotas,omitempty"`
	// LoginWindow is the compromised-account window the logins were counted in.
	LoginWindow time.Duration  `json:"login_window,omitempty"`
	Logins      []AccountState `json:"logins,omitempty"`
}

// QuotaState is one quota's holders; a quota is carried only to one of the same name,
// key and window.
type QuotaState struct {
	Name    string           `json:"name"`
	Key     string           `json:"key"`
	Window  time.Duration    `json:"window"`
	Holders map[string]Usage `json:"holders"`
}

// Usage is a holder's messages: when each was sent (unix ns, oldest first) and to how
// many recipients.
type Usage struct {
	Times      []int64 `json:"t"`
	Recipients []int   `json:"r"`
}

// AccountState is an account's logins within the window, and until when it stays
// flagged (unix ns; 0: not flagged).
type AccountState struct {
	Account      string    `json:"account"`
	Logins       []LoginAt `json:"logins"`
	FlaggedUntil int64     `json:"flagged_until,omitempty"`
}

// LoginAt is a login: from where, and when (unix ns).
type LoginAt struct {
	Addr netip.Addr `json:"addr"`
	At   int64      `json:"at"`
}

// State returns what p has counted that is still within its windows.
func (p *Policy) State() State {
	now := p.deps.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	var s State
	for i, q := range p.settings.Quotas {
		qs := QuotaState{Name: q.Name, Key: q.Key, Window: q.Window, Holders: map[string]Usage{}}
		limit := now.Add(-q.Window).UnixNano()
		for holder, u := range p.usage[i].m {
			p.usage[i].entries -= u.prune(limit)
			if len(u.times) > 0 {
				qs.Holders[holder] = Usage{Times: slices.Clone(u.times), Recipients: slices.Clone(u.recipients)}
			}
		}
		s.Quotas = append(s.Quotas, qs)
	}
	if c := p.settings.Compromised; c.On() {
		s.LoginWindow = c.Window
		limit := now.Add(-c.Window).UnixNano()
		for account, l := range p.logins.m {
			p.logins.entries -= l.expire(limit)
			if len(l.order) == 0 && l.flaggedUntil < now.UnixNano() {
				continue
			}
			as := AccountState{Account: account, FlaggedUntil: l.flaggedUntil}
			for _, e := range l.order {
				as.Logins = append(as.Logins, LoginAt{Addr: e.addr, At: e.at})
			}
			s.Logins = append(s.Logins, as)
		}
		slices.SortFunc(s.Logins, func(a, b AccountState) int { return cmp.Compare(a.Account, b.Account) })
	}
	return s
}

// Restore takes s into p, which counts nothing yet: the holders of each quota of the
// same name, key and window, and the logins and flags if p detects compromised accounts
// within the same window. What has left its window is dropped, and the tables' bounds
// hold: past them, the holders with the fewest messages go first, as always.
func (p *Policy) Restore(s State) {
	now := p.deps.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, q := range p.settings.Quotas {
		k := slices.IndexFunc(s.Quotas, func(qs QuotaState) bool { return qs.Name == q.Name && qs.Key == q.Key && qs.Window == q.Window })
		if k < 0 {
			continue
		}
		t := &p.usage[i]
		limit := now.Add(-q.Window).UnixNano()
		for holder, su := range s.Quotas[k].Holders {
			if len(su.Times) != len(su.Recipients) || len(holder) > MaxName || !slices.IsSorted(su.Times) {
				continue // not what State writes
			}
			u := &usage{times: slices.Clone(su.Times), recipients: slices.Clone(su.Recipients)}
			if u.prune(limit); len(u.times) == 0 {
				continue
			}
			t.m[holder] = u
			t.entries += len(u.times)
		}
		if t.full(p.settings.Limits) {
			t.shed(p.settings.Limits, func(u *usage) int { u.prune(limit); return len(u.times) })
		}
	}
	c := p.settings.Compromised
	if !c.On() || s.LoginWindow != c.Window {
		return
	}
	limit := now.Add(-c.Window).UnixNano()
	t := &p.logins
	for _, as := range s.Logins {
		if len(as.Account) > MaxName {
			continue
		}
		l := &logins{seen: map[netip.Addr]int64{}, nets: map[netip.Prefix]int{}, flaggedUntil: as.FlaggedUntil}
		for _, e := range as.Logins {
			if e.At < limit || !e.Addr.IsValid() || len(l.order) > 0 && e.At < l.order[len(l.order)-1].at {
				continue
			}
			if _, again := l.seen[e.Addr]; !again {
				l.nets[widenet(e.Addr)]++
			}
			l.seen[e.Addr] = e.At
			l.order = append(l.order, seenAt{e.Addr, e.At})
		}
		l.expire(limit) // and past maxLogins
		if len(l.order) == 0 && l.flaggedUntil < now.UnixNano() {
			continue
		}
		t.m[as.Account] = l
		t.entries += len(l.order)
	}
	if t.full(p.settings.Limits) {
		t.shed(p.settings.Limits, func(l *logins) int { l.expire(limit); return len(l.order) })
	}
}
