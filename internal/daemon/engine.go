package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/logban/logban/internal/control"
	"github.com/logban/logban/jails"
)

// The daemon is the control server's engine.
var _ control.Engine = (*Daemon)(nil)

// Status returns the daemon's overview.
func (d *Daemon) Status() control.Status {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return control.Status{Version: d.opts.Version, Jails: slices.Sorted(maps.Keys(d.jails))}
}

// JailStatus returns one jail's state.
func (d *Daemon) JailStatus(name string) (control.JailStatus, error) {
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
		Files:           d.fileStatus(jr.cfg.LogPath),
		CurrentlyFailed: fails.CurrentlyFailed,
		TotalFailed:     fails.TotalFailed,
		CurrentlyBanned: bans.CurrentlyBanned,
		TotalBanned:     bans.TotalBanned,
	}
	s.ActionsPending = d.manager.Pending(name)
	errs := d.manager.ActionErrors()
	for _, a := range jr.cfg.Actions {
		s.ActionErrors += errs[a]
	}
	s.Bans, _ = d.List(name)
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
		out = append(out, control.BanInfo{Jail: b.Jail, Addr: b.Addr, Failures: b.Failures, BannedAt: b.BannedAt, Expires: b.Expires})
	}
	return out, nil
}

// UnbanAll lifts every ban in every jail.
func (d *Daemon) UnbanAll(ctx context.Context) (int, error) {
	n := 0
	for _, b := range d.manager.Bans("") {
		if _, err := d.manager.Unban(ctx, b.Jail, b.Addr); err == nil {
			n++
		}
	}
	d.logger.Info("all bans lifted by hand", "count", n)
	return n, nil
}

// BanIP bans addr in jail by hand; an address on the jail's ignore list is refused.
func (d *Daemon) BanIP(ctx context.Context, jail string, addr netip.Addr) (control.AddrResult, error) {
	d.mu.RLock()
	jr, ok := d.jails[jail]
	d.mu.RUnlock()
	if !ok {
		return control.AddrResult{}, fmt.Errorf("jail %q: %w", jail, control.ErrNotFound)
	}
	r := control.AddrResult{Addr: addr}
	t, err := jr.jail.Manual(addr, d.opts.Clock.Now())
	if errors.Is(err, jails.ErrIgnored) {
		r.Note = "on the ignore list (loopback, the host's own, or ignoreip): never banned"
		return r, nil
	}
	if err != nil {
		return r, err
	}
	_, isNew, err := d.manager.Ban(ctx, t)
	if err != nil {
		return r, fmt.Errorf("jail %q: %w", jail, err)
	}
	r.Jails = []string{jail}
	if !isNew {
		r.Note = "already banned"
		return r, nil
	}
	r.Done = true
	d.logger.Info("banned by hand", "jail", jail, "addr", addr)
	return r, nil
}

// UnbanIP lifts addr's bans in jail, or in every jail if jail is "".
func (d *Daemon) UnbanIP(ctx context.Context, jail string, addr netip.Addr) (control.AddrResult, error) {
	r := control.AddrResult{Addr: addr}
	lifted, err := d.manager.Unban(ctx, jail, addr)
	switch {
	case errors.Is(err, jails.ErrUnknownJail):
		return r, fmt.Errorf("jail %q: %w", jail, control.ErrNotFound)
	case errors.Is(err, jails.ErrNotBanned):
		r.Note = "not banned"
		return r, nil
	case err != nil:
		return r, err
	}
	r.Done = true
	for _, b := range lifted {
		r.Jails = append(r.Jails, b.Jail)
		d.mu.RLock()
		if jr, ok := d.jails[b.Jail]; ok {
			jr.jail.Forget(addr)
		}
		d.mu.RUnlock()
	}
	d.logger.Info("unbanned by hand", "addr", addr, "jails", r.Jails)
	return r, nil
}

// fileStatus reports how reading each of paths goes.
func (d *Daemon) fileStatus(paths []string) []control.FileStatus {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]control.FileStatus, len(paths))
	for i, p := range paths {
		out[i].Path = p
		if r, ok := d.readers[p]; ok {
			st := r.follower.Stats()
			out[i].Behind, out[i].Lines, out[i].LongLines, out[i].Rotations = st.Behind, st.Lines, st.LongLines, st.Rotations
		}
	}
	return out
}
