package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/control"
	"github.com/logban/logban/internal/listener"
	"github.com/logban/logban/internal/metrics"
	"github.com/logban/logban/jails"
	"github.com/logban/logban/journal"
)

// The daemon is the control server's engine.
var _ control.Engine = (*Daemon)(nil)

// Status returns the daemon's overview.
func (d *Daemon) Status() control.Status {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return control.Status{Version: d.opts.Version, Jails: slices.Sorted(maps.Keys(d.jails)), Degraded: d.degraded(), DryRun: d.opts.DryRun}
}

// degraded describes what the daemon cannot do as it should, or "".
func (d *Daemon) degraded() string {
	g := d.manager.Degraded()
	if g.Unrecorded == 0 && g.Undeleted == 0 {
		return ""
	}
	return fmt.Sprintf("since %s the database refuses writes (%v): %d bans in force are not recorded and %d ended bans not deleted; "+
		"all are kept in memory and retried, and file positions are not saved meanwhile, so a crash loses nothing",
		g.Since.Local().Format(time.DateTime), g.Err, g.Unrecorded, g.Undeleted)
}

// JailStatus returns one jail's state; with withBans false, without its list of bans.
func (d *Daemon) JailStatus(name string, withBans bool) (control.JailStatus, error) {
	d.mu.RLock()
	jr, ok := d.jails[name]
	d.mu.RUnlock()
	if !ok {
		return control.JailStatus{}, fmt.Errorf("jail %q: %w", name, control.ErrNotFound)
	}
	fails := jr.jail.Counts(d.opts.Clock.Now())
	bans, err := d.manager.Counts(name)
	if err != nil {
		return control.JailStatus{}, fmt.Errorf("jail %q: %w", name, control.ErrNotFound)
	}
	s := control.JailStatus{
		Name:            name,
		Filter:          jr.cfg.Filter,
		DryRun:          d.opts.DryRun,
		MaxRetry:        jr.cfg.MaxRetry,
		FindTime:        jr.cfg.FindTime,
		BanTime:         jr.cfg.BanTime,
		Files:           d.fileStatus(*jr.paths.Load()),
		CurrentlyFailed: fails.CurrentlyFailed,
		TotalFailed:     fails.TotalFailed,
		CurrentlyBanned: bans.CurrentlyBanned,
		TotalBanned:     bans.TotalBanned,
	}
	if sn := jr.cfg.Subnet; sn.On() {
		s.Subnet = &control.SubnetStatus{IPv4: sn.IPv4, IPv6: sn.IPv6, Addresses: sn.Addresses, FindTime: sn.FindTime,
			BanTime: jr.cfg.SubnetBanTime, Failing: fails.CurrentlyFailedNets, Refused: fails.NetsRefused}
		for _, b := range d.manager.Bans(name) {
			if b.IsNet() {
				s.Subnet.Banned++
			}
		}
	}
	s.Mode, s.Key, s.KnownGood, s.Logins = jr.cfg.Mode, jr.cfg.Key, fails.KnownGood, fails.Logins
	s.Evicted, s.MaxTracked = fails.Evicted, jr.cfg.MaxTracked
	for _, b := range d.keyBans.List(name) {
		s.KeyBans = append(s.KeyBans, keyBanInfo(b))
	}
	s.ActionsPending = d.manager.Pending(name)
	s.Unrecorded = d.manager.UnrecordedIn(name)
	if sk := jr.skew.Load(); sk != nil {
		s.ClockOffset, s.ClockAdvice = sk.Offset.Seconds(), sk.Advice
	}
	queues := d.manager.Queues()
	for _, a := range jr.cfg.Actions {
		q := queues[a]
		s.ActionErrors += q.Failures
		s.ActionQueues = append(s.ActionQueues, control.ActionQueue{Action: a, Queued: q.Queued, Overflowed: q.Overflowed})
	}
	if withBans {
		s.Bans, _ = d.List(name)
	}
	return s, nil
}

// List returns the bans of jail, or of every jail if jail is "".
func (d *Daemon) List(jail string) ([]control.BanInfo, error) {
	if jail != "" {
		d.mu.RLock()
		_, ok := d.jails[jail]
		d.mu.RUnlock()
		if !ok {
			return nil, fmt.Errorf("jail %q: %w", jail, control.ErrNotFound)
		}
	}
	var out []control.BanInfo
	for _, b := range d.manager.Bans(jail) {
		info := banInfo(b)
		info.Lines = nil // list is the overview; why shows the lines
		out = append(out, info)
	}
	return out, nil
}

// UnbanAll lifts every ban in every jail: on every host of the farm, or here only if
// local.
func (d *Daemon) UnbanAll(ctx context.Context, local bool) (int, error) {
	unban := d.manager.Unban
	if local {
		unban = d.manager.UnbanHere
	}
	n := 0
	for _, b := range d.manager.Bans("") {
		if _, err := unban(ctx, b.Jail, b.Prefix()); err == nil {
			n++
		}
	}
	d.logger.Info("all bans lifted by hand", "count", n, "here_only", local)
	return n, nil
}

// BanIPs bans addrs (addresses as /32 or /128, or networks) in jail by hand, all
// recorded in one transaction. One that must never be banned is refused with the reason.
func (d *Daemon) BanIPs(ctx context.Context, jail string, addrs []netip.Prefix, force bool) ([]control.AddrResult, error) {
	d.mu.RLock()
	jr, ok := d.jails[jail]
	d.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("jail %q: %w", jail, control.ErrNotFound)
	}
	now := d.opts.Clock.Now()
	results := make([]control.AddrResult, len(addrs))
	var tickets []jails.Ticket
	for i, addr := range addrs {
		results[i].Target = control.TargetOf(addr)
		if jails.TooWide(addr) && !force {
			results[i].Note = fmt.Sprintf("wider than /%d (IPv4) or /%d (IPv6): it would ban a provider, not an attacker; not banned (ban it with --force if you mean it)", jails.WidestIPv4, jails.WidestIPv6)
			continue
		}
		t, err := jr.jail.Manual(addr, now)
		var ignored *jails.IgnoredError
		if errors.As(err, &ignored) {
			results[i].Note = ignored.Why + ": never banned"
			continue
		}
		if err != nil {
			return nil, err
		}
		tickets = append(tickets, t)
	}
	fresh := map[netip.Prefix]bool{}
	for _, b := range d.manager.BanAll(ctx, tickets) {
		fresh[b.Prefix()] = true
	}
	d.manager.WaitRecorded(ctx) // a ban made by hand survives a crash once it is reported
	for i := range results {
		p := results[i].Prefix()
		switch {
		case fresh[p]:
			results[i].Done, results[i].Jails = true, []string{jail}
		case results[i].Note != "":
		case d.farm != nil && d.farm.Protected(p) != "":
			results[i].Note = d.farm.Protected(p) + ": never banned"
		default:
			if r, ok := d.manager.Covering(jail, p.Addr()); ok && p.IsSingleIP() {
				results[i].Note, results[i].Jails = "held by the ban of "+r.Target(), []string{jail}
				continue
			}
			results[i].Note, results[i].Jails = "already banned", []string{jail}
		}
	}
	return results, nil
}

// UnbanIP lifts the bans of addr (an address as a /32 or /128, or a network) in jail,
// or in every jail if jail is "": on every host of the farm, or here only if local. An
// address held by a network's ban alone is not let through: the note names the ban.
func (d *Daemon) UnbanIP(ctx context.Context, jail string, addr netip.Prefix, local bool) (control.AddrResult, error) {
	r := control.AddrResult{Target: control.TargetOf(addr)}
	unban := d.manager.Unban
	if local {
		unban = d.manager.UnbanHere
	}
	lifted, err := unban(ctx, jail, addr)
	switch {
	case errors.Is(err, jails.ErrUnknownJail):
		return r, fmt.Errorf("jail %q: %w", jail, control.ErrNotFound)
	case errors.Is(err, jails.ErrNotBanned):
		r.Note = "not banned"
		var covered *jails.CoveredError
		if errors.As(err, &covered) {
			r.Note = covered.Error()
		}
		return r, nil
	case err != nil:
		return r, err
	}
	r.Done = true
	for _, b := range lifted {
		r.Jails = append(r.Jails, b.Jail)
		d.mu.RLock()
		if jr, ok := d.jails[b.Jail]; ok && addr.IsSingleIP() {
			jr.jail.Forget(addr.Addr())
		}
		d.mu.RUnlock()
	}
	return r, nil
}

// historyShown is how many addresses "ban-client history" lists, newest first.
const historyShown = 100

// Why says why addr (an address as a /32 or /128, or a network) is banned: its bans in
// force with the lines that counted, the bans of networks that hold it, and its ban
// history.
func (d *Daemon) Why(ctx context.Context, addr netip.Prefix) (control.Why, error) {
	out := control.Why{Target: control.TargetOf(addr), Bans: []control.BanInfo{}}
	for _, b := range d.manager.Bans("") {
		switch {
		case b.Prefix() == addr:
			info := banInfo(b)
			info.Lines = d.manager.Lines(ctx, b.Jail, addr) // kept in the database, not in memory
			if r, ok := d.manager.Record(b.Jail, addr); ok {
				info.Count = r.Count
			}
			out.Bans = append(out.Bans, info)
		case b.IsNet() && addr.IsSingleIP() && b.Prefix().Contains(addr.Addr()):
			out.HeldBy = append(out.HeldBy, banInfo(b))
		}
	}
	h, err := d.History(ctx, addr)
	out.History = h
	return out, err
}

// History returns the ban history of addr (an address as a /32 or /128, or a network),
// or, for the zero Prefix, the addresses and networks banned last.
func (d *Daemon) History(ctx context.Context, addr netip.Prefix) ([]control.HistoryEntry, error) {
	entries, err := d.manager.History(ctx, addr, historyShown)
	out := []control.HistoryEntry{}
	for _, e := range entries {
		out = append(out, control.HistoryEntry{Jail: e.Jail, Target: control.TargetOf(e.What), Count: e.Count, LastBanned: e.LastBanned})
	}
	return out, err
}

// banInfo is b as an operator sees it.
func banInfo(b actions.Ban) control.BanInfo {
	return control.BanInfo{Jail: b.Jail, Target: control.TargetOf(b.Prefix()), Failures: b.Failures, BannedAt: b.BannedAt, Expires: b.Expires, By: b.By, Why: b.Why, User: b.User, Lines: b.Lines}
}

// Farm returns the farm as this host sees it.
func (d *Daemon) Farm() (control.FarmStatus, error) {
	if d.farm == nil {
		return control.FarmStatus{}, control.ErrNoFarm
	}
	fs := d.farm.Status()
	out := control.FarmStatus{Farm: fs.Farm, Node: fs.Node, Enforce: fs.Enforce, State: fs.State, Server: fs.Server,
		Servers: fs.Servers, Synced: fs.Synced, Bans: fs.Bans, Outbox: fs.Outbox, FailuresShared: fs.FailuresShared,
		FailuresDropped: fs.FailuresDropped, Decided: fs.Decided, Applied: fs.Applied, Ignored: fs.Ignored, Refused: d.manager.Refused(), Forged: fs.Forged, Lost: fs.Lost, LiftedHere: d.manager.LocallyLifted(),
		Drift: fs.Drift, LastError: fs.LastError, LastErrorAt: fs.LastAt, Missing: fs.Missing, LastWrite: fs.LastWrite}
	for _, r := range fs.Routes {
		out.Routes = append(out.Routes, control.FarmRoute{URL: r.URL, Server: r.Server, Up: r.Up, Since: r.Since, RTT: r.RTT})
	}
	for _, s := range fs.Streams {
		out.Streams = append(out.Streams, control.FarmStream{Name: s.Name, Leader: s.Leader, Replicas: s.Replicas, Current: s.Current, Quorum: s.Quorum(), Err: s.Err, At: s.At})
	}
	for _, n := range fs.Nodes {
		out.Nodes = append(out.Nodes, control.FarmNode{Name: n.Name, Addrs: n.Addrs, Seen: n.Seen})
	}
	return out, nil
}

// fileStatus reports how reading each of paths goes.
func (d *Daemon) fileStatus(paths []string) []control.FileStatus {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]control.FileStatus, len(paths))
	for i, p := range paths {
		out[i].Path = p
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) && !journal.IsKey(p) {
			out[i].Missing = true
		}
		if r, ok := d.readers[p]; ok {
			st := r.Stats()
			out[i].Behind, out[i].Lines, out[i].LongLines, out[i].Rotations = st.Behind, st.Lines, st.LongLines, st.Rotations
		}
	}
	return out
}

// snapshot reads the daemon's state for the metrics.
func (d *Daemon) snapshot() metrics.Snapshot {
	s := metrics.Snapshot{Version: d.opts.Version}
	if rt := d.runningPolicy(); rt != nil {
		st := rt.server.Stats()
		rt.mu.Lock()
		s.Policy = &metrics.Policy{Requests: st.Requests, Malformed: st.Malformed, Answers: st.Answers, Flagged: rt.flags,
			Refused: st.Refused, Accepting: st.Accept.State == listener.StateAccepting, Conns: st.Accept.Conns,
			Dropped: rt.server.Policy().Tables().Dropped}
		rt.mu.Unlock()
	}
	now := d.opts.Clock.Now()
	d.mu.RLock()
	for _, path := range slices.Sorted(maps.Keys(d.readers)) {
		st := d.readers[path].Stats()
		s.Files = append(s.Files, metrics.File{Path: path, Lines: st.Lines, Behind: st.Behind, LongLines: st.LongLines})
	}
	for _, name := range slices.Sorted(maps.Keys(d.jails)) {
		jr := d.jails[name]
		counts := jr.jail.Counts(now)
		j := metrics.Jail{Name: name, Failures: counts.TotalFailed, Ignored: counts.Ignored, Filter: jr.cfg.Filter, FilterDropped: counts.Dropped,
			NetsFailing: counts.CurrentlyFailedNets, NetsRefused: counts.NetsRefused, KnownGood: counts.KnownGood, Logins: counts.Logins, Evicted: counts.Evicted,
			KeyBans: len(d.keyBans.List(name))}
		if sk := jr.skew.Load(); sk != nil {
			j.ClockOffset = sk.Offset
		}
		if c, err := d.manager.Counts(name); err == nil {
			j.Banned, j.Unbanned, j.Active = c.TotalBanned, c.TotalUnbanned, c.CurrentlyBanned
		}
		s.Jails = append(s.Jails, j)
	}
	d.mu.RUnlock()
	queues := d.manager.Queues()
	for _, name := range slices.Sorted(maps.Keys(queues)) {
		q := queues[name]
		s.Actions = append(s.Actions, metrics.Action{Name: name, Errors: q.Failures, Queued: q.Queued, Overflowed: q.Overflowed,
			Restored: q.Restored, Removed: q.Removed})
	}
	g := d.manager.Degraded()
	s.Unrecorded, s.Undeleted = g.Unrecorded, g.Undeleted
	if d.farm != nil {
		fs := d.farm.Status()
		s.Farm = &metrics.Farm{Connected: fs.State == "connected", Outbox: fs.Outbox, Bans: fs.Bans,
			FailuresShared: fs.FailuresShared, FailuresDropped: fs.FailuresDropped, Refused: d.manager.Refused(), Forged: fs.Forged}
	}
	return s
}
