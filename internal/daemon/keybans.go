package daemon

import (
	"context"
	"fmt"
	"slices"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/config"
	"github.com/logban/logban/internal/control"
	"github.com/logban/logban/jails"
)

// keyBanner returns the function jail jc, keyed by user or device, hands the bans of
// its keys to: each is put in force for the jail's bantime, logged, and passed on to
// the jail's actions (and notify list) that hold no address, as a notice.
func (d *Daemon) keyBanner(jc config.Jail) func(jails.KeyBan) {
	return func(b jails.KeyBan) {
		b.BannedAt = d.opts.Clock.Now()
		if jc.BanTime >= 0 {
			b.Expires = b.BannedAt.Add(jc.BanTime)
		}
		if !d.keyBans.Ban(b) {
			return
		}
		d.logger.Warn(b.Kind+" banned", "jail", b.Jail, b.Kind, b.Key, "count", b.Count, "addresses", len(b.Addrs),
			"bantime", jc.BanTime, "addresses_banned", jc.BanAddresses)
		d.keyNotice(jc, b, b.Why(jc.FindTime), false)
	}
}

// keyNotice passes a key ban (lifted: its end) on to the actions of jc that take
// notices: its actions, then its notify list.
func (d *Daemon) keyNotice(jc config.Jail, b jails.KeyBan, text string, lifted bool) {
	to := slices.Clone(jc.Actions)
	for _, a := range jc.Notify {
		if !slices.Contains(to, a) {
			to = append(to, a)
		}
	}
	kind := b.Kind + "-ban"
	if lifted {
		kind = b.Kind + "-unban"
	}
	n := actions.Notice{Jail: b.Jail, Kind: kind, Text: text, Time: d.opts.Clock.Now()}
	if len(b.Addrs) > 0 {
		n.Addr = b.Addrs[len(b.Addrs)-1]
	}
	n.User = b.User
	if b.Kind == jails.KeyDevice {
		n.Device = b.Key
	} else {
		n.User = b.Key
	}
	if notify := d.notifier(to); notify != nil {
		notify(n)
	}
}

// endKeyBans logs the end of key bans and passes it on, each to its jail's actions
// as they are configured now (none if its jail is gone).
func (d *Daemon) endKeyBans(ended []jails.KeyBan, why string) {
	for _, b := range ended {
		d.logger.Info(b.Kind+" unbanned: "+why, "jail", b.Jail, b.Kind, b.Key)
		d.mu.RLock()
		jc, ok := d.cfg.Jails[b.Jail]
		d.mu.RUnlock()
		if ok {
			d.keyNotice(jc, b, "ban ended: "+why, true)
		}
	}
}

// expireKeyBans lifts the key bans due.
func (d *Daemon) expireKeyBans() {
	d.endKeyBans(d.keyBans.Expire(d.opts.Clock.Now()), "expired")
}

// saveKeyBans records the key bans made and ended since the last call; what fails is
// kept for the next.
func (d *Daemon) saveKeyBans(ctx context.Context) error {
	c := d.keyBans.Unsaved()
	if c.Empty() {
		return nil
	}
	if err := d.store.SaveKeyBans(ctx, c); err != nil {
		d.keyBans.Unsave(c)
		return fmt.Errorf("saving bans of accounts and devices: %w", err)
	}
	return nil
}

// UnbanKey lifts the ban of an account or a device in jail, a jail keyed by it.
func (d *Daemon) UnbanKey(ctx context.Context, jail, key string) (control.KeyBanInfo, error) {
	d.mu.RLock()
	jr, ok := d.jails[jail]
	d.mu.RUnlock()
	if !ok {
		return control.KeyBanInfo{}, fmt.Errorf("jail %q: %w", jail, control.ErrNotFound)
	}
	if jr.cfg.Key == jails.KeyAddress {
		return control.KeyBanInfo{}, &control.RemoteError{Code: control.CodeBadRequest,
			Message: fmt.Sprintf("jail %q is keyed by address: unban its addresses with unbanip", jail)}
	}
	b, ok := d.keyBans.Unban(jail, jr.cfg.Key, key)
	if !ok {
		return control.KeyBanInfo{}, &control.RemoteError{Code: control.CodeNotFound,
			Message: fmt.Sprintf("%s %q is not banned in jail %q", jr.cfg.Key, key, jail)}
	}
	d.endKeyBans([]jails.KeyBan{b}, "lifted by hand")
	if err := d.saveKeyBans(ctx); err != nil {
		d.logger.Error("recording an unban; retried", "err", err)
	}
	return keyBanInfo(b), nil
}

// keyBanInfo shows a key ban to an operator.
func keyBanInfo(b jails.KeyBan) control.KeyBanInfo {
	info := control.KeyBanInfo{Jail: b.Jail, Kind: b.Kind, Key: b.Key, User: b.User, Count: b.Count, BannedAt: b.BannedAt, Expires: b.Expires, Addrs: []string{}}
	for _, a := range b.Addrs {
		info.Addrs = append(info.Addrs, a.String())
	}
	return info
}
