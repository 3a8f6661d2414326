package bench

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/control"
	"github.com/logban/logban/internal/farmkeys"
	"github.com/logban/logban/internal/netnstest"
)

// farmNode is one ban-server of a benchmark farm: its log and its routing table.
type farmNode struct {
	log    string
	table  int
	client *control.Client
	pid    int
}

// startFarm runs n ban-servers in the lab's server namespace, each a real process
// embedding a NATS server of a three-server cluster on loopback (or, with farm false,
// a lone ban-server), each banning through null routes in a table of its own, so each
// node's bans show apart in the one kernel.
func startFarm(b *testing.B, lab *netnstest.Lab, n, maxretry int, farm bool) []farmNode {
	dir := b.TempDir()
	bin := buildServer(b, dir)
	keys := filepath.Join(dir, "keys")
	if farm {
		if err := farmkeys.Init(keys, "bench"); err != nil {
			b.Fatal(err)
		}
		for i := range n {
			if _, err := farmkeys.AddNode(keys, fmt.Sprintf("node%d", i+1), nil); err != nil {
				b.Fatal(err)
			}
		}
	}
	var nodes []farmNode
	for i := range n {
		ndir := filepath.Join(dir, fmt.Sprintf("node%d", i+1))
		node := farmNode{log: filepath.Join(ndir, "zimbra.log"), table: 101 + i,
			client: control.NewClient(filepath.Join(ndir, "logban.sock"))}
		writeFile(b, node.log, "")
		farmTable := ""
		if farm {
			var routes, servers []string
			servers = append(servers, fmt.Sprintf("tls://127.0.0.1:%d", 14221+i))
			for k := range n {
				if k != i {
					routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", 16221+k))
					servers = append(servers, fmt.Sprintf("tls://127.0.0.1:%d", 14221+k))
				}
			}
			farmTable = fmt.Sprintf(`
[farm]
name = "bench"
node = "node%d"
servers = ["%s"]
%s[farm.embedded]
listen = "127.0.0.1:%d"
cluster_listen = "127.0.0.1:%d"
routes = ["%s"]
store_dir = %q
`, i+1, strings.Join(servers, `", "`), farmkeys.Settings(keys, fmt.Sprintf("node%d", i+1)),
				14221+i, 16221+i, strings.Join(routes, `", "`), filepath.Join(ndir, "nats"))
		}
		conf := filepath.Join(ndir, "logban.toml")
		writeFile(b, conf, fmt.Sprintf(`
[server]
socket = "logban.sock"
database = "logban.db"
loglevel = "warn"
%s
[actions.ban]
type = "route"
table = %d
[jails.sasl]
filter = "zimbra-submission"
logpath = ["zimbra.log"]
maxretry = %d
findtime = "1h"
bantime = "1h"
actions = ["ban"]
`, farmTable, node.table, maxretry))
		// Each node runs its own copy of the binary, as each host of a farm has its own:
		// pages of one file that several processes map count in each one's resident
		// size, and the kernel leaves them resident for all while any of them runs.
		nodeBin := filepath.Join(ndir, "ban-server")
		copyFile(b, bin, nodeBin)
		node.pid = startProcess(b, lab, filepath.Join(ndir, "ban-server.log"), nodeBin, "-config", conf)
		nodes = append(nodes, node)
	}
	for _, node := range nodes {
		if farm {
			waitFor(b, "every node to join the farm", func() bool {
				s, err := node.client.Farm(context.Background())
				return err == nil && s.Synced && len(s.Nodes) == n-1
			})
		} else {
			waitFor(b, "ban-server to answer", func() bool { return node.client.Ping(context.Background()) == nil })
		}
	}
	return nodes
}

// routeUpdates subscribes to the route announcements of the lab's server namespace, on
// a socket whose 64 MB buffer holds a burst's; lost reports whether it overflowed all the
// same.
func routeUpdates(b *testing.B, lab *netnstest.Lab) (updates <-chan netlink.RouteUpdate, lost func() bool) {
	ch := make(chan netlink.RouteUpdate, 1<<16)
	done := make(chan struct{})
	b.Cleanup(func() { close(done) })
	var overflowed atomic.Bool
	if err := netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{
		Namespace: &lab.Server, ReceiveBufferSize: 64 << 20, ReceiveBufferForceSize: true,
		ErrorCallback: func(error) { overflowed.Store(true) },
	}); err != nil {
		b.Fatal(err)
	}
	return ch, overflowed.Load
}

// routesIn reports the null routes the kernel adds to table in the lab's server
// namespace, as the kernel announces them.
func routesIn(b *testing.B, lab *netnstest.Lab, table int) <-chan netip.Addr {
	updates, _ := routeUpdates(b, lab)
	out := make(chan netip.Addr, 1<<16)
	go func() {
		for u := range updates {
			if u.Type != unix.RTM_NEWROUTE || u.Dst == nil || u.Table != table {
				continue
			}
			if a, ok := netip.AddrFromSlice(u.Dst.IP); ok {
				out <- a.Unmap()
			}
		}
	}()
	return out
}

// BenchmarkFarmLatency measures, per trial, the time from maxretry failures of a new
// address written to node 1's log to the null route for it in node 3's table, as the
// kernel announces it: node 1 reads and decides, the farm carries the ban, node 3
// applies it. Run it with -benchtime 1000x; p50 and p99 are reported.
func BenchmarkFarmLatency(b *testing.B) {
	const maxretry = 3
	lab := netnstest.New(b)
	nodes := startFarm(b, lab, 3, maxretry, true)
	latencyTrials(b, nodes[0].log, routesIn(b, lab, nodes[2].table), maxretry)
}

// BenchmarkFarmBurst writes failures of 10,000 new addresses and measures until every
// node holds every ban in its table. "spread": each address fails once on each of three
// nodes (maxretry 3), so every ban is decided by the farm's count and applied by all
// three. "one-node": every address's maxretry failures on node 1 of the farm. "farm-off":
// the same on a lone ban-server without [farm], the cost farm mode adds beside it.
func BenchmarkFarmBurst(b *testing.B) {
	const n, maxretry = 10_000, 3
	for _, mode := range []string{"spread", "one-node", "farm-off"} {
		b.Run(mode, func(b *testing.B) {
			lab := netnstest.New(b)
			size := 3
			if mode == "farm-off" {
				size = 1
			}
			nodes := startFarm(b, lab, size, maxretry, mode != "farm-off")
			var counts []func() int
			for _, node := range nodes {
				counts = append(counts, tableCounter(b, lab, node.table))
			}
			var took time.Duration
			first := 0
			for b.Loop() {
				logs := make([][]byte, len(nodes))
				for i := first; i < first+n; i++ {
					if mode == "spread" {
						for k := range logs {
							logs[k] = append(logs[k], failure(trialAddr(i))...)
						}
					} else {
						logs[0] = append(logs[0], burst(trialAddr(i), maxretry)...)
					}
				}
				first += n
				start := time.Now()
				for k, node := range nodes {
					if err := appendFast(node.log, logs[k]); err != nil {
						b.Fatal(err)
					}
				}
				for k, count := range counts {
					for got := 0; got < first; got = count() {
						if time.Since(start) > 2*time.Minute {
							for i, node := range nodes {
								s, _ := node.client.Farm(context.Background())
								b.Logf("node %d: farm bans %d, outbox %d, failures shared %d, not shared %d, decided %d, applied %d, last error %q",
									i+1, s.Bans, s.Outbox, s.FailuresShared, s.FailuresDropped, s.Decided, s.Applied, s.LastError)
							}
							b.Fatalf("after two minutes node %d holds %d of %d bans", k+1, got, first)
						}
					}
				}
				took += time.Since(start)
			}
			// Each node's resident size holding every ban, its embedded NATS server's
			// included, once the burst has settled: ban-server gives free heap back every
			// 10 s for a minute after a burst (cmd/ban-server/gc.go).
			time.Sleep(60 * time.Second)
			var most resident
			for i, node := range nodes {
				r := residentKiB(b, node.pid)
				b.Logf("node %d: %d MiB resident (%d MiB its own, the rest its binary's pages), %d MiB at its peak, holding %d bans",
					i+1, r.now>>10, r.anon>>10, r.peak>>10, first)
				most.now, most.anon = max(most.now, r.now), max(most.anon, r.anon)
			}
			b.ReportMetric(float64(most.now)/1024, "rss-MiB")
			b.ReportMetric(float64(most.anon)/1024, "anon-MiB")
			b.ReportMetric(took.Seconds()/float64(b.N), "s/burst")
			b.ReportMetric(float64(first)/took.Seconds(), "bans/s")
		})
	}
}

// tableCounter returns a function that counts logban's null routes in table.
func tableCounter(b *testing.B, lab *netnstest.Lab, table int) func() int {
	h, err := netlink.NewHandleAt(lab.Server, unix.NETLINK_ROUTE)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(h.Close)
	filter := &netlink.Route{Table: table, Protocol: actions.DefaultRouteProtocol}
	return func() int {
		time.Sleep(20 * time.Millisecond) // listing 10,000s of routes is work too
		routes, err := h.RouteListFiltered(netlink.FAMILY_V4, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			b.Fatal(err)
		}
		return len(routes)
	}
}
