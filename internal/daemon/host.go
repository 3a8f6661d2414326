package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/logban/logban/jails"
)

// The host's own addresses, its networks' broadcasts and its gateways are never banned.
// They change while the daemon runs (DHCP, a new address for a new service, a failover
// route), so the daemon watches the kernel's address and route changes and reads them
// again, rather than only at start and reload.

// hostSettle is how long the host watch waits after a change for the others that come
// with it (an interface brought up adds addresses and routes at once).
const hostSettle = 200 * time.Millisecond

// readHost reads the host's addresses into d.host, and returns how to read them again.
// It runs on Run's thread, in the daemon's network namespace: the netlink handle it
// opens there stays there.
func (d *Daemon) readHost(ctx context.Context) (read func() ([]netip.Prefix, error), err error) {
	read = d.opts.HostPrefixes
	if read == nil {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("reading the host's own addresses: %w", err)
		}
		context.AfterFunc(ctx, h.Close)
		// The kernel then filters the route dump by type, so a read does not decode every
		// ban's null route (a kernel before 4.20 refuses this, and the routes are
		// filtered as read).
		h.SetStrictCheck(true) //nolint:errcheck // a kernel without it filters nothing
		read = func() ([]netip.Prefix, error) { return jails.HostPrefixesOf(h) }
	}
	own, err := read()
	if err != nil {
		return nil, fmt.Errorf("reading the host's own addresses: %w", err)
	}
	d.host.Set(own)
	return read, nil
}

// watchHost keeps d.host, and what the farm knows of this host, current until ctx
// ends, reading them with read at each change of the host's addresses or routes. It
// subscribes on Run's thread, in the daemon's network namespace, after the farm is
// joined.
func (d *Daemon) watchHost(ctx context.Context, read func() ([]netip.Prefix, error)) {
	changes, err := hostChanges(ctx, func(err error) {
		d.logger.Warn("watching the host's addresses and routes; they are read again at reload only", "err", err)
	})
	if err != nil {
		d.logger.Warn("the host's addresses and gateways are read at start and reload only", "err", err)
		return
	}
	f := d.farm
	go func() {
		settle := time.NewTimer(0) // once now: what changed before the subscription
		for {
			select {
			case <-ctx.Done():
				return
			case <-changes:
				settle.Reset(hostSettle)
			case <-settle.C:
				if ctx.Err() != nil {
					return // the handle read closes with ctx
				}
				own, err := read()
				if err != nil {
					d.logger.Warn("reading the host's own addresses again", "err", err)
					continue
				}
				if was := d.host.Prefixes(); !slices.Equal(was, own) {
					d.host.Set(own)
					d.logger.Info("the host's own addresses changed; they are never banned", "addresses", len(own))
					if f != nil {
						f.SetOwn(d.farmOwn(own))
					}
				}
			}
		}
	}()
}

// farmOwn returns what this host announces to the farm as its own, never to be banned
// by another host: its addresses, and with share_ignoreip, its ignore list.
func (d *Daemon) farmOwn(own []netip.Prefix) []netip.Prefix {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if fc := d.cfg.Farm; fc != nil && fc.ShareIgnoreIP {
		return slices.Concat(own, d.cfg.Server.IgnoreIP, d.cfg.Server.TrustedProxies)
	}
	return own
}
