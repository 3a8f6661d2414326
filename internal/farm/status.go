package farm

import (
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/logban/logban/internal/natsserver"
)

// Status is the farm as this host sees it.
type Status struct {
	Farm, Node string
	Enforce    bool
	// State is the connection's: "connected", "reconnecting", "connecting" or "closed".
	State string
	// Server is the URL connected to; Servers, every server this host knows of.
	Server  string
	Servers []string
	// Synced says every ban the farm holds has been applied here since the connection.
	Synced bool
	Nodes  []Node
	// Missing are the farm's nodes this host does not see, so they, or this host, are
	// cut off: nodes of its list of keys whose entry ended, or that no entry came from
	// for nodeTTL, or (with an embedded server) whose route is down.
	Missing []string
	// Routes are the embedded NATS server's routes to the other seeds; nil without one.
	Routes []natsserver.Route
	// Streams are the farm's bucket and streams, as last asked: their leader and quorum.
	Streams []StreamHealth
	// LastWrite is when the farm last took a write from this host (a ban, an unban, its
	// node entry, refreshed every 30 s); zero if none yet.
	LastWrite time.Time
	// Bans is how many bans the farm holds, as last watched.
	Bans int
	// Outbox is how many decisions and unbans wait to be published.
	Outbox int
	// FailuresShared were published for counting; FailuresDropped were not (the farm
	// unreachable, or too many at once): this host counted them alone.
	FailuresShared, FailuresDropped int64
	// Decided are bans this host published first; Applied, bans of others applied here;
	// Ignored, bans of others not applied because this host's ignore list holds them.
	Decided, Applied, Ignored int64
	// Lost are bans this host decided too, but another host first: the farm's
	// decision, the other host's, stands. Decided and Lost add up to the bans this host
	// decided and published.
	Lost int64
	// Forged are values refused because their signature did not hold: a host writing
	// as another, or a value of no node of the farm.
	Forged int64
	// Drift warns of jails whose settings differ from the farm's.
	Drift     []string
	LastError string
	LastAt    time.Time
}

// Node is another node of the farm.
type Node struct {
	Name  string
	Addrs []netip.Prefix
	Seen  time.Time
}

// Status returns the farm as this host sees it.
func (f *Farm) Status() Status {
	s := Status{Farm: f.cfg.Name, Node: f.cfg.Node, Enforce: f.cfg.Enforce, State: "connecting",
		FailuresShared: f.shared.Load(), FailuresDropped: f.dropped.Load(), Decided: f.decided.Load(), Applied: f.applied.Load(), Ignored: f.ignored.Load(), Forged: f.forged.Load(), Lost: f.lost.Load()}
	if nc := f.conn.Load(); nc != nil {
		s.State = stateName(nc.Status())
		if nc.IsConnected() {
			s.Server = nc.ConnectedUrlRedacted()
		}
		s.Servers = nc.Servers()
	}
	if f.routes != nil {
		s.Routes = f.routes()
	}
	if w := f.lastWrite.Load(); w != 0 {
		s.LastWrite = time.Unix(0, w)
	}
	now := f.clock.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	s.Synced, s.Bans, s.Outbox = f.synced, len(f.revs), len(f.pending)
	s.Streams = slices.Clone(f.health)
	missing := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(f.others)) {
		n := f.others[name]
		s.Nodes = append(s.Nodes, Node{Name: name, Addrs: n.prefixes, Seen: n.seen})
		if now.Sub(n.heard) > nodeTTL {
			missing[name] = true // its entry stopped coming: it, or this host, is cut off
		}
	}
	for name := range f.keys {
		if _, seen := f.others[name]; !seen && name != f.cfg.Node {
			missing[name] = true
		}
	}
	for _, r := range s.Routes {
		if !r.Up && r.Server != "" {
			missing[r.Server] = true
		}
	}
	s.Missing = slices.Sorted(maps.Keys(missing))
	for _, name := range slices.Sorted(maps.Keys(f.drift)) {
		s.Drift = append(s.Drift, f.drift[name])
	}
	s.LastError, s.LastAt = f.lastErr, f.lastAt
	return s
}

func stateName(s nats.Status) string {
	switch s {
	case nats.CONNECTED:
		return "connected"
	case nats.RECONNECTING:
		return "reconnecting"
	case nats.CONNECTING:
		return "connecting"
	case nats.CLOSED:
		return "closed"
	}
	return s.String()
}
