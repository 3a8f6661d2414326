package farm

import (
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
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
	// Missing are the farm's nodes (its list of keys) this host does not see: their
	// entries ended, so they, or this host, are cut off; nil without a list.
	Missing []string
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
	f.mu.Lock()
	defer f.mu.Unlock()
	s.Synced, s.Bans, s.Outbox = f.synced, len(f.revs), len(f.pending)
	for _, name := range slices.Sorted(maps.Keys(f.others)) {
		n := f.others[name]
		s.Nodes = append(s.Nodes, Node{Name: name, Addrs: n.prefixes, Seen: n.seen})
	}
	for _, name := range slices.Sorted(maps.Keys(f.keys)) {
		if _, seen := f.others[name]; !seen && name != f.cfg.Node {
			s.Missing = append(s.Missing, name)
		}
	}
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
