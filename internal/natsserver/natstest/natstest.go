// Package natstest runs real NATS JetStream clusters on loopback for tests: each server
// is the nats-server module, in this process (Start) or each in a process of its own
// that a test can kill -9 (StartProcesses), with its own store under the test's
// temporary folder. Servers can be stopped and started again with their data.
package natstest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/logban/logban/internal/natsserver"
)

// Cluster is n servers routed to each other.
type Cluster struct {
	t       testing.TB
	opts    []natsserver.Options
	servers []*natsserver.Server
	procs   []*exec.Cmd // with StartProcesses
}

// serveEnv carries a server's options to a test binary started as a NATS server.
const serveEnv = "LOGBAN_NATSTEST_SERVE"

// Serve makes a test binary a NATS server when StartProcesses started it as one: a
// package whose tests use StartProcesses calls it first thing in its TestMain. It
// returns at once otherwise.
func Serve() {
	spec := os.Getenv(serveEnv)
	if spec == "" {
		return
	}
	var o natsserver.Options
	if err := json.Unmarshal([]byte(spec), &o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s, err := natsserver.Start(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	s.Stop()
	os.Exit(0)
}

// StartProcesses is Start with each server in a process of its own (the test binary,
// made a server by Serve), so that Kill is a real crash: no leadership handed over, no
// goodbye to the routes.
func StartProcesses(t testing.TB, n int) *Cluster {
	c := plan(t, n)
	c.procs = make([]*exec.Cmd, n)
	for i := range n {
		c.Restart(i)
	}
	t.Cleanup(func() {
		for i := range n {
			c.Kill(i)
		}
	})
	return c
}

// Kill kills server i's process with SIGKILL; its data stays for Restart.
func (c *Cluster) Kill(i int) {
	if p := c.procs[i]; p != nil {
		p.Process.Kill()
		p.Wait()
		c.procs[i] = nil
	}
}

// JetStream returns a client of server 0, closed when the test ends: a test's own view
// of what the farm holds. opts sign it in, where the servers have users.
func (c *Cluster) JetStream(opts ...nats.Option) jetstream.JetStream {
	c.t.Helper()
	nc, err := nats.Connect(c.URL(0), opts...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	return js
}

// Bucket returns the KV bucket called name, through a client of server 0.
func (c *Cluster) Bucket(name string) jetstream.KeyValue {
	c.t.Helper()
	kv, err := c.JetStream().KeyValue(context.Background(), name)
	if err != nil {
		c.t.Fatalf("bucket %s: %v", name, err)
	}
	return kv
}

// Leader returns the index of the server leading stream.
func (c *Cluster) Leader(stream string) int {
	c.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for i := range c.opts {
			if name := c.leaderSeenBy(i, stream); name != "" {
				for k, o := range c.opts {
					if o.Name == name {
						return k
					}
				}
			}
		}
	}
	c.t.Fatalf("no leader of stream %s", stream)
	return -1
}

func (c *Cluster) leaderSeenBy(i int, stream string) string {
	nc, err := nats.Connect(c.URL(i), nats.Timeout(time.Second))
	if err != nil {
		return ""
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil || s.CachedInfo().Cluster == nil {
		return ""
	}
	return s.CachedInfo().Cluster.Leader
}

// Start starts a cluster of n servers (1 for a lone one) and stops it when the test
// ends. It returns once every server accepts clients; JetStream's meta group forms
// shortly after, and clients retry until it has.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	return StartConfigured(t, n, nil)
}

// StartConfigured is Start with configure changing each server's options last (its
// users and their permissions, say).
func StartConfigured(t testing.TB, n int, configure func(*server.Options)) *Cluster {
	t.Helper()
	c := plan(t, n)
	for i := range c.opts {
		c.opts[i].Configure = configure
	}
	c.servers = make([]*natsserver.Server, n)
	for i := range n {
		c.Restart(i)
	}
	t.Cleanup(func() {
		for i := range c.servers {
			c.Stop(i)
		}
	})
	return c
}

// plan chooses the servers' ports and folders.
func plan(t testing.TB, n int) *Cluster {
	c := &Cluster{t: t}
	clients, routes := freePorts(t, n), freePorts(t, n)
	for i := range n {
		o := natsserver.Options{
			// A server started again recovers its streams first: slow under -race on
			// a loaded machine.
			ReadyWait: time.Minute,
			Name:      fmt.Sprintf("n%d", i+1),
			Cluster:   "test",
			Listen:    fmt.Sprintf("127.0.0.1:%d", clients[i]),
			StoreDir:  t.TempDir(),
			// A farm's own NATS servers, configured by the test (StartConfigured).
			Unauthenticated: true,
		}
		if n > 1 {
			o.ClusterListen = fmt.Sprintf("127.0.0.1:%d", routes[i])
			for k := range n {
				if k != i {
					o.Routes = append(o.Routes, fmt.Sprintf("nats://127.0.0.1:%d", routes[k]))
				}
			}
		}
		c.opts = append(c.opts, o)
	}
	return c
}

// URL returns the client URL of server i.
func (c *Cluster) URL(i int) string { return "nats://" + c.opts[i].Listen }

// URLs returns every server's client URL.
func (c *Cluster) URLs() []string {
	out := make([]string, len(c.opts))
	for i := range c.opts {
		out[i] = c.URL(i)
	}
	return out
}

// Stop shuts server i down; its data stays for Restart. A server in a process of its
// own is killed.
func (c *Cluster) Stop(i int) {
	if c.procs != nil {
		c.Kill(i)
		return
	}
	if s := c.servers[i]; s != nil {
		s.Stop()
		c.servers[i] = nil
	}
}

// Restart starts server i again, with its data.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if c.procs != nil {
		c.restartProcess(i)
		return
	}
	if c.servers[i] != nil {
		return
	}
	s, err := natsserver.Start(c.opts[i])
	if err != nil {
		c.t.Fatalf("starting NATS server %s: %v", c.opts[i].Name, err)
	}
	c.servers[i] = s
}

func (c *Cluster) restartProcess(i int) {
	if c.procs[i] != nil {
		return
	}
	spec, _ := json.Marshal(c.opts[i])
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveEnv+"="+string(spec))
	if testing.Verbose() {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.procs[i] = cmd
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if conn, err := net.Dial("tcp", c.opts[i].Listen); err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("NATS server %s did not start", c.opts[i].Name)
		}
	}
}

// freePorts returns n loopback ports free at the time of asking.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	// Below the kernel's range of ephemeral ports: a port taken from that range and
	// let go is free for any outgoing connection of the machine (NATS clients of the
	// tests running beside this one) to take as its own before the server binds it.
	low, high := 10_000, ephemeralLow()-1
	var lns []net.Listener
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		port := low + rand.IntN(high-low)
		if high <= low || tries > 1000 {
			port = 0 // no room below: the kernel's choice, as before
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// ephemeralLow returns the first port of the kernel's range for outgoing connections
// (net.ipv4.ip_local_port_range), or 32768 where it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil || lo < 1024 {
		return 32768
	}
	return lo
}
