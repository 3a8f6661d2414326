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
	return routeRequest(op, flags, msg, p, routeTypes[r.opts.Type], r.opts.Table, r.opts.Protocol)
}

// routeRequest builds the netlink request that adds or removes the route of type typ to
// p in table, made by protocol.
func routeRequest(op, flags int, msg *nl.RtMsg, p netip.Prefix, typ, table, protocol int) *nl.NetlinkRequest {
	addr := p.Addr()
	req := nl.NewNetlinkRequest(op, flags)
	msg.Family = uint8(family(addr))
	msg.Dst_len = uint8(p.Bits())
	msg.Protocol = uint8(protocol)
	msg.Type = uint8(typ)
	msg.Scope = unix.RT_SCOPE_UNIVERSE
	var tableAttr *nl.RtAttr
	if table >= 256 {
		msg.Table = unix.RT_TABLE_UNSPEC
		tableAttr = nl.NewRtAttr(unix.RTA_TABLE, nl.Uint32Attr(uint32(table)))
	} else {
		msg.Table = uint8(table)
	}
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.RTA_DST, addr.AsSlice()))
	if tableAttr != nil {
		req.AddData(tableAttr)
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
	out := make([]netip.Prefix, len(routes))
	for i, rt := range routes {
		out[i] = rt.dst
	}
	slices.SortFunc(out, netip.Prefix.Compare)
	return out, nil
}

// listedRoute is what logban needs of one of its routes listed from the kernel.
type listedRoute struct {
	dst                  netip.Prefix
	typ, table, protocol int
}

// list returns the routes of logban's protocol in the table, both families. Each route
// is decoded and let go as the kernel's dump is read: a dump of 100,000 routes kept
// whole holds tens of megabytes at once.
func (r *Route) list() ([]listedRoute, error) {
	h, err := r.nl.get()
	if err != nil {
		return nil, err
	}
	filter := &netlink.Route{Table: r.opts.Table, Protocol: netlink.RouteProtocol(r.opts.Protocol)}
	var out []listedRoute
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		err := h.RouteListFilteredIter(fam, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL, func(rt netlink.Route) bool {
			if rt.Dst != nil {
				if p, ok := routePrefix(rt); ok {
					out = append(out, listedRoute{p, rt.Type, rt.Table, int(rt.Protocol)})
				}
			}
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// removeAll removes every route of logban's protocol in the table, whatever its type (a
// route made before the configuration changed it). It sends the removals as BanBatch
// sends additions, a batch to a system call: a stop with 100,000 bans in force takes
// them all out of the kernel in about 0.3 s here (BenchmarkRestore's s/stop).
func (r *Route) removeAll() error {
	routes, err := r.list()
	if err != nil {
		return fmt.Errorf("listing logban's routes: %w", err)
	}
	var errs []error
	for chunk := range slices.Chunk(routes, batchMax) {
		reqs := make([]*nl.NetlinkRequest, len(chunk))
		for i, rt := range chunk {
			reqs[i] = routeRequest(unix.RTM_DELROUTE, unix.NLM_F_ACK, nl.NewRtDelMsg(), rt.dst, rt.typ, rt.table, rt.protocol)
		}
		for i, err := range r.nl.send(reqs) {
			if err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("removing route for %s: %w", Target(chunk[i].dst), err))
			}
		}
	}
	return errors.Join(errs...)
}

// routePrefix returns the address or network a route is for.
func routePrefix(rt netlink.Route) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(rt.Dst.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := rt.Dst.Mask.Size()
	a = a.Unmap()
	if ones > a.BitLen() { // an IPv4 route read as IPv4-mapped
		ones -= 96
	}
	return netip.PrefixFrom(a, ones).Masked(), true
}
