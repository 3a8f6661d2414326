package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/logban/logban/internal/control"
	"github.com/logban/logban/internal/farmkeys"
	"github.com/logban/logban/internal/netnstest"
)

// partitionHost is one ban-server of the partition benchmark, in a namespace of its own.
type partitionHost struct {
	dir    string
	client *control.Client
}

// startPartitionFarm runs n ban-servers, each in its own namespace of nw with an
// embedded NATS server, routed to the others over the network's bridge, banning
// through a log action (bans.log), as separate hosts of one farm.
func startPartitionFarm(b testing.TB, nw *netnstest.Network, n, maxretry int) []partitionHost {
	dir := b.TempDir()
	bin := buildServer(b, dir)
	keys := filepath.Join(dir, "keys")
	if err := farmkeys.Init(keys, "part"); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		if _, err := farmkeys.AddNode(keys, fmt.Sprintf("node%d", i+1), []string{netnstest.HostAddr(i).String()}); err != nil {
			b.Fatal(err)
		}
	}
	var hosts []partitionHost
	for i := range n {
		hdir := filepath.Join(dir, fmt.Sprintf("node%d", i+1))
		writeFile(b, filepath.Join(hdir, "zimbra.log"), "")
		servers := []string{fmt.Sprintf("tls://%s:4222", netnstest.HostAddr(i))}
		var routes []string
		for k := range n {
			if k != i {
				servers = append(servers, fmt.Sprintf("tls://%s:4222", netnstest.HostAddr(k)))
				routes = append(routes, fmt.Sprintf("nats://%s:6222", netnstest.HostAddr(k)))
			}
		}
		conf := filepath.Join(hdir, "logban.toml")
		writeFile(b, conf, fmt.Sprintf(`
[server]
socket = "logban.sock"
database = "logban.db"
loglevel = "info"

[farm]
name = "part"
node = "node%d"
servers = ["%s"]
%s
[farm.embedded]
listen = "%s:4222"
cluster_listen = "%s:6222"
routes = ["%s"]
store_dir = "nats"

[actions.log]
type = "log"
path = "bans.log"

[jails.sasl]
filter = "zimbra-submission"
logpath = ["zimbra.log"]
maxretry = %d
findtime = "1h"
bantime = "1h"
actions = ["log"]
`, i+1, strings.Join(servers, `", "`), farmkeys.Settings(keys, fmt.Sprintf("node%d", i+1)),
			netnstest.HostAddr(i), netnstest.HostAddr(i), strings.Join(routes, `", "`), maxretry))
		out, err := os.Create(filepath.Join(hdir, "ban-server.log"))
		if err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(bin, "-config", conf)
		cmd.Dir, cmd.Stdout, cmd.Stderr = hdir, out, out
		nw.Do(i, func() { err = cmd.Start() })
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			cmd.Process.Signal(unix.SIGTERM)
			cmd.Wait()
			out.Close()
			if b.Failed() {
				text, _ := os.ReadFile(out.Name())
				b.Logf("node%d said:\n%s", i+1, text)
			}
		})
		hosts = append(hosts, partitionHost{hdir, control.NewClient(filepath.Join(hdir, "logban.sock"))})
	}
	for _, h := range hosts {
		waitFor(b, "every node to join the farm", func() bool {
			s, err := h.client.Farm(context.Background())
			return err == nil && s.Synced && len(s.Nodes) == n-1
		})
	}
	return hosts
}

// appendFailures writes maxretry SASL failures of each address to host's log.
func (h partitionHost) appendFailures(b testing.TB, addrs []netip.Addr, maxretry int) {
	f, err := os.OpenFile(filepath.Join(h.dir, "zimbra.log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var s strings.Builder
	stamp := time.Now().Format(time.Stamp)
	for _, a := range addrs {
		for range maxretry {
			fmt.Fprintf(&s, "%s mta postfix/submission/smtpd[4242]: warning: unknown[%s]: SASL LOGIN authentication failed: x\n", stamp, a)
		}
	}
	if _, err := f.WriteString(s.String()); err != nil {
		b.Fatal(err)
	}
}

// held returns the addresses host holds banned in jail sasl.
func (h partitionHost) held() map[netip.Addr]bool {
	bans, err := h.client.List(context.Background(), "sasl")
	if err != nil {
		return nil
	}
	out := make(map[netip.Addr]bool, len(bans))
	for _, ban := range bans {
		out[ban.Addr] = true
	}
	return out
}

// actionLog returns, per address, the log action's bans and unbans on host, in order.
func (h partitionHost) actionLog() map[string][]string {
	text, _ := os.ReadFile(filepath.Join(h.dir, "bans.log"))
	out := map[string][]string{}
	for _, line := range strings.Split(string(text), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && (f[1] == "ban" || f[1] == "unban") {
			addr := strings.TrimPrefix(f[3], "addr=")
			out[addr] = append(out[addr], f[1])
		}
	}
	return out
}

// Settings of the partition trials: three hosts, each side bans perSide addresses.
const partitionHosts, partitionMaxRetry, perSide = 3, 3, 40

// partitionTrial is trial r of a partition run (BenchmarkFarmPartition says what it
// does). It returns how many bans a host never got, how many addresses a host acted
// on otherwise than it should, and the time from the heal until every host holds the
// same bans; each of the first two is reported as an error too.
func partitionTrial(tb testing.TB, nw *netnstest.Network, hosts []partitionHost, r int) (lost, flaps int, heal time.Duration) {
	ctx := context.Background()
	cut, other := r%len(hosts), (r+1)%len(hosts)
	addrs := func(net byte) []netip.Addr {
		var out []netip.Addr
		for k := range perSide {
			out = append(out, netip.AddrFrom4([4]byte{198, net, byte(r), byte(k + 1)}))
		}
		return out
	}
	whileCut, majority := addrs(18), addrs(19)
	lifted := netip.AddrFrom4([4]byte{198, 20, byte(r), 1})
	brief := netip.AddrFrom4([4]byte{198, 20, byte(r), 2})
	if _, err := hosts[other].client.BanIP(ctx, "sasl", netip.PrefixFrom(lifted, 32)); err != nil {
		tb.Fatal(err)
	}
	waitFor(tb, "the cut host to hold the ban to be lifted", func() bool { return hosts[cut].held()[lifted] })

	nw.Cut(cut)
	hosts[cut].appendFailures(tb, whileCut, partitionMaxRetry)
	hosts[other].appendFailures(tb, majority, partitionMaxRetry)
	waitFor(tb, "the hosts to decide their bans", func() bool {
		hc, ho := hosts[cut].held(), hosts[other].held()
		return !slices.ContainsFunc(whileCut, func(a netip.Addr) bool { return !hc[a] }) &&
			!slices.ContainsFunc(majority, func(a netip.Addr) bool { return !ho[a] })
	})
	if _, err := hosts[other].client.UnbanIP(ctx, "sasl", netip.PrefixFrom(lifted, 32)); err != nil {
		tb.Fatal(err)
	}
	// A ban the majority makes and lifts while the host is away: it never applies it.
	if _, err := hosts[other].client.BanIP(ctx, "sasl", netip.PrefixFrom(brief, 32)); err != nil {
		tb.Fatal(err)
	}
	if _, err := hosts[other].client.UnbanIP(ctx, "sasl", netip.PrefixFrom(brief, 32)); err != nil {
		tb.Fatal(err)
	}
	time.Sleep(time.Duration(rand.Int64N(int64(3 * time.Second))))
	nw.Heal(cut)
	healed := time.Now()

	want := slices.Concat(whileCut, majority)
	converged := func() bool {
		for _, h := range hosts {
			held := h.held()
			if held[lifted] || held[brief] || slices.ContainsFunc(want, func(a netip.Addr) bool { return !held[a] }) {
				return false
			}
		}
		s, err := hosts[cut].client.Farm(ctx)
		return err == nil && s.Outbox == 0
	}
	for deadline := healed.Add(2 * time.Minute); !converged() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	heal = time.Since(healed)
	for i, h := range hosts {
		held := h.held()
		for _, a := range want {
			if !held[a] {
				lost++
				tb.Errorf("trial %d (node%d cut): node%d never got the ban of %s", r, cut+1, i+1, a)
			}
		}
		if held[lifted] || held[brief] {
			tb.Errorf("trial %d (node%d cut): node%d still holds %s or %s, lifted while it was away", r, cut+1, i+1, lifted, brief)
		}
		log := h.actionLog()
		for _, a := range slices.Concat(want, []netip.Addr{lifted, brief}) {
			wantOps := []string{"ban"}
			switch {
			case a == lifted:
				wantOps = []string{"ban", "unban"}
			case a == brief && i == other:
				wantOps = []string{"ban", "unban"} // by hand, there
			case a == brief:
				// Never on the cut host. A host watching may see the ban and its unban
				// together, and apply neither.
				wantOps = nil
				if i != cut && len(log[a.String()]) > 0 {
					wantOps = []string{"ban", "unban"}
				}
			}
			if ops := log[a.String()]; !slices.Equal(ops, wantOps) {
				flaps++
				tb.Errorf("trial %d (node%d cut): node%d's actions on %s were %v; want %v", r, cut+1, i+1, a, ops, wantOps)
			}
		}
	}
	return lost, flaps, heal
}

// TestAFarmThroughAPartition runs three partition trials, one for each host cut off
// (BenchmarkFarmPartition runs as many as asked), then cuts a host off long enough for
// the farm's status to say so: the cut host is cut off from both others, its routes are
// down and the farm's bucket has no quorum where it is; the others miss it only. Once
// healed, no host says anything is wrong.
func TestAFarmThroughAPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("three ban-servers in namespaces: not in -short")
	}
	nw := netnstest.NewNetwork(t, partitionHosts)
	hosts := startPartitionFarm(t, nw, partitionHosts, partitionMaxRetry)
	t.Run("trials", func(t *testing.T) {
		for r := range partitionHosts {
			partitionTrial(t, nw, hosts, r)
		}
	})
	t.Run("status", func(t *testing.T) {
		ctx := context.Background()
		status := func(i int) control.FarmStatus {
			s, err := hosts[i].client.Farm(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		var last control.FarmStatus
		defer func() {
			if t.Failed() {
				t.Logf("last status: %+v", last)
			}
		}()
		nw.Cut(0)
		// A route is dropped after three pings of 5 s go unanswered.
		waitWithin(t, 90*time.Second, "node1 to say it is cut off", func() bool {
			s := status(0)
			down := 0
			for _, r := range s.Routes {
				if !r.Up {
					down++
				}
			}
			return slices.Equal(s.Missing, []string{"node2", "node3"}) && down == 2 && len(s.Streams) > 0 && !s.Streams[0].Quorum
		})
		waitWithin(t, 90*time.Second, "node2 to miss node1, its bucket in quorum", func() bool {
			s := status(1)
			last = s
			return slices.Equal(s.Missing, []string{"node1"}) && len(s.Streams) > 0 && s.Streams[0].Quorum
		})
		nw.Heal(0)
		waitWithin(t, 90*time.Second, "every host to see the farm whole", func() bool {
			for i := range hosts {
				s := status(i)
				last = s
				if len(s.Missing) > 0 || s.LastError != "" || len(s.Streams) == 0 || s.LastWrite.IsZero() {
					return false
				}
				for _, st := range s.Streams {
					if !st.Quorum {
						return false
					}
				}
				for _, r := range s.Routes {
					if !r.Up {
						return false
					}
				}
			}
			return true
		})
	})
}

// BenchmarkFarmPartition cuts one host of a three-host farm off the network each trial,
// as a switch port failing, while the hosts go on: the cut host bans addresses on its
// own count (its decisions wait in its outbox), a host of the majority bans others,
// lifts a ban the cut host holds, and bans and lifts another. After a wait of 0 to 3 s,
// so that the link comes back at any point of the cut host's publishing, the link is
// healed. Every ban then reaches every host, the lifted ones are gone everywhere, the
// cut host never applies the ban made and lifted while it was away, and no host applies
// a ban twice. Run it with -benchtime 20x at least; it reports the bans lost (must be
// 0), the flaps (must be 0), and the median and longest time from the heal until every
// host holds the same bans.
func BenchmarkFarmPartition(b *testing.B) {
	nw := netnstest.NewNetwork(b, partitionHosts)
	hosts := startPartitionFarm(b, nw, partitionHosts, partitionMaxRetry)
	var lost, flaps int
	var heal []time.Duration
	for r := 0; b.Loop(); r++ {
		l, f, h := partitionTrial(b, nw, hosts, r)
		lost, flaps, heal = lost+l, flaps+f, append(heal, h)
	}
	slices.Sort(heal)
	b.ReportMetric(float64(lost), "lost")
	b.ReportMetric(float64(flaps), "flaps")
	b.ReportMetric(heal[len(heal)/2].Seconds(), "heal-p50-s")
	b.ReportMetric(heal[len(heal)-1].Seconds(), "heal-max-s")
}
