// Package natstest runs real NATS JetStream clusters on loopback for tests: each server
// is the nats-server module in this process, with its own store under the test's
// temporary folder. Servers can be stopped and started again with their data.
package natstest

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/logban/logban/internal/natsserver"
)

// Cluster is n servers routed to each other.
type Cluster struct {
	t       testing.TB
	opts    []natsserver.Options
	servers []*natsserver.Server
}

// Start starts a cluster of n servers (1 for a lone one) and stops it when the test
// ends. It returns once every server accepts clients; JetStream's meta group forms
// shortly after, and clients retry until it has.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	clients, routes := freePorts(t, n), freePorts(t, n)
	for i := range n {
		o := natsserver.Options{
			Name:     fmt.Sprintf("n%d", i+1),
			Cluster:  "test",
			Listen:   fmt.Sprintf("127.0.0.1:%d", clients[i]),
			StoreDir: t.TempDir(),
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

// Stop shuts server i down; its data stays for Restart.
func (c *Cluster) Stop(i int) {
	if s := c.servers[i]; s != nil {
		s.Stop()
		c.servers[i] = nil
	}
}

// Restart starts server i again, with its data.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if c.servers[i] != nil {
		return
	}
	s, err := natsserver.Start(c.opts[i])
	if err != nil {
		c.t.Fatalf("starting NATS server %s: %v", c.opts[i].Name, err)
	}
	c.servers[i] = s
}

// String lists the servers.
func (c *Cluster) String() string { return strings.Join(c.URLs(), ",") }

// freePorts returns n loopback ports free at the time of asking.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var lns []net.Listener
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}
