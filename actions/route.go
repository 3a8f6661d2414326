package actions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

func init() {
	Register(Kind{
		Name: "route",
		Options: func() any {
			return &RouteOptions{Type: "blackhole", Table: unix.RT_TABLE_MAIN, Protocol: DefaultRouteProtocol}
		},
		New: func(name string, options any, logger *slog.Logger) (Action, error) {
			return NewRoute(*options.(*RouteOptions), logger), nil
		},
	})
}

// DefaultRouteProtocol marks the routes logban adds (ip route ... proto 178), so that it
// recognises its own and never touches others'. 178 is not used by the kernel or by
// any common routing daemon.
const DefaultRouteProtocol = 178

// RouteOptions configures the route action.
type RouteOptions struct {
	// Type is blackhole (drop silently), unreachable (ICMP host unreachable) or
	// prohibit (ICMP administratively prohibited).
	Type string `toml:"route_type"`
	// Table is the routing table, 254 (main) by default.
	Table int `toml:"table"`
	// Protocol marks logban's routes.
	Protocol int `toml:"protocol"`
	// KeepOnStop leaves the routes in place when ban-server stops.
	KeepOnStop bool `toml:"keep_on_stop"`
}

var routeTypes = map[string]int{
	"blackhole":   unix.RTN_BLACKHOLE,
	"unreachable": unix.RTN_UNREACHABLE,
	"prohibit":    unix.RTN_PROHIBIT,
}

// Validate checks the options.
func (o *RouteOptions) Validate() error {
	if _, ok := routeTypes[o.Type]; !ok {
		return fmt.Errorf("route_type %q; valid: blackhole, prohibit, unreachable", o.Type)
	}
	if o.Table < 1 || o.Table > 0xFFFFFFFE {
		return fmt.Errorf("table %d out of range", o.Table)
	}
	if o.Protocol < 5 || o.Protocol > 255 {
		return fmt.Errorf("protocol %d: must be 5..255 (0..4 belong to the kernel)", o.Protocol)
	}
	return nil
}

// Route bans an address or a network with a null route through netlink, for IPv4 and
// IPv6: the host sends nothing back to it, so no TCP connection from it completes. A
// route belongs to the address or network, not the jail: it is Shared.
type Route struct {
	opts   RouteOptions
	logger *slog.Logger
	nl     netlinkSocket
}

// NewRoute returns a route action.
func NewRoute(opts RouteOptions, logger *slog.Logger) *Route {
	return &Route{opts: opts, logger: logger, nl: netlinkSocket{proto: unix.NETLINK_ROUTE}}
}

// SharedAcrossJails marks Route as Shared.
func (*Route) SharedAcrossJails() {}

// Start checks that routes can be listed: netlink works and the table is readable.
func (r *Route) Start(context.Context) error {
	if _, err := r.list(); err != nil {
		return fmt.Errorf("listing routes: %w", err)
	}
	return nil
}

func (r *Route) route(p netip.Prefix) *netlink.Route {
	addr := p.Addr()
	return &netlink.Route{
		Dst:      &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(p.Bits(), addr.BitLen())},
		Type:     routeTypes[r.opts.Type],
		Table:    r.opts.Table,
		Protocol: netlink.RouteProtocol(r.opts.Protocol),
		Family:   family(addr),
	}
}

func family(addr netip.Addr) int {
	if addr.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// Ban adds the null route; one already there is not an error.
func (r *Route) Ban(_ context.Context, b Ban) error {
	h, err := r.nl.get()
	if err != nil {
		return err
	}
	if err := h.RouteAdd(r.route(b.Prefix())); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("adding %s route for %s: %w", r.opts.Type, b.Target(), err)
	}
	return nil
}

// BanBatch adds the null routes of bans, many per system call.
func (r *Route) BanBatch(_ context.Context, bans []Ban) []error {
	reqs := make([]*nl.NetlinkRequest, len(bans))
	for i, b := range bans {
		reqs[i] = r.request(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK, nl.NewRtMsg(), b.Prefix())
	}
	errs := r.nl.send(reqs)
	for i, err := range errs {
		if err != nil && errors.Is(err, unix.EEXIST) {
			errs[i] = nil
		} else if err != nil {
			errs[i] = fmt.Errorf("adding %s route for %s: %w", r.opts.Type, bans[i].Target(), err)
		}
	}
	return errs
}

// UnbanBatch removes the null routes of bans, many per system call.
func (r *Route) UnbanBatch(_ context.Context, bans []Ban) []error {
	reqs := make([]*nl.NetlinkRequest, len(bans))
	for i, b := range bans {
		reqs[i] = r.request(unix.RTM_DELROUTE, unix.NLM_F_ACK, nl.NewRtDelMsg(), b.Prefix())
	}
	errs := r.nl.send(reqs)
	for i, err := range errs {
		if err != nil && (errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT)) {
			errs[i] = nil
		} else if err != nil {
			errs[i] = fmt.Errorf("removing %s route for %s: %w", r.opts.Type, bans[i].Target(), err)
		}
	}
	return errs
}

// request builds the netlink request that adds or removes p's null route: what
// netlink.Handle.RouteAdd and RouteDel send for r.route(p).
func (r *Route) request(op, flags int, msg *nl.RtMsg, p netip.Prefix) *nl.NetlinkRequest {
	addr := p.Addr()
	req := nl.NewNetlinkRequest(op, flags)
	msg.Family = uint8(family(addr))
	msg.Dst_len = uint8(p.Bits())
	msg.Protocol = uint8(r.opts.Protocol)
	msg.Type = uint8(routeTypes[r.opts.Type])
	msg.Scope = unix.RT_SCOPE_UNIVERSE
	var table *nl.RtAttr
	if r.opts.Table >= 256 {
		msg.Table = unix.RT_TABLE_UNSPEC
		table = nl.NewRtAttr(unix.RTA_TABLE, nl.Uint32Attr(uint32(r.opts.Table)))
	} else {
		msg.Table = uint8(r.opts.Table)
	}
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.RTA_DST, addr.AsSlice()))
	if table != nil {
		req.AddData(table)
	}
	req.AddData(nl.NewRtAttr(unix.RTA_OIF, nl.Uint32Attr(0)))
	return req
}

// Unban removes the null route; one already gone is not an error.
func (r *Route) Unban(_ context.Context, b Ban) error {
	h, err := r.nl.get()
	if err != nil {
		return err
	}
	if err := h.RouteDel(r.route(b.Prefix())); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("removing %s route for %s: %w", r.opts.Type, b.Target(), err)
	}
	return nil
}

// Stop removes every route of logban's protocol in the table, unless keep_on_stop, and
// closes the netlink socket.
func (r *Route) Stop(context.Context) error {
	var err error
	if !r.opts.KeepOnStop {
		err = r.removeAll()
	}
	r.nl.close()
	return err
}

// Cleanup removes every route of logban's protocol in the table.
func (r *Route) Cleanup(context.Context) error { return r.removeAll() }

// Holds lists the addresses and networks the kernel holds logban's null routes for, in
// the action's table; they belong to no jail.
func (r *Route) Holds(context.Context, string) ([]netip.Prefix, error) {
	routes, err := r.list()
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, rt := range routes {
		if a, ok := netip.AddrFromSlice(rt.Dst.IP); ok {
			ones, _ := rt.Dst.Mask.Size()
			a = a.Unmap()
			if ones > a.BitLen() { // an IPv4 route read as IPv4-mapped
				ones -= 96
			}
			out = append(out, netip.PrefixFrom(a, ones).Masked())
		}
	}
	slices.SortFunc(out, netip.Prefix.Compare)
	return out, nil
}

// list returns the routes of logban's protocol in the table, both families.
func (r *Route) list() ([]netlink.Route, error) {
	h, err := r.nl.get()
	if err != nil {
		return nil, err
	}
	filter := &netlink.Route{Table: r.opts.Table, Protocol: netlink.RouteProtocol(r.opts.Protocol)}
	var out []netlink.Route
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := h.RouteListFiltered(fam, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			return nil, err
		}
		for _, rt := range routes {
			if rt.Dst != nil {
				out = append(out, rt)
			}
		}
	}
	return out, nil
}

func (r *Route) removeAll() error {
	routes, err := r.list()
	if err != nil {
		return fmt.Errorf("listing logban's routes: %w", err)
	}
	h, err := r.nl.get()
	if err != nil {
		return err
	}
	var errs []error
	for _, rt := range routes {
		if err := h.RouteDel(&rt); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("removing route for %v: %w", rt.Dst, err))
		}
	}
	return errors.Join(errs...)
}
