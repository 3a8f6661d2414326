package daemon

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logban/logban/internal/control"
	"github.com/logban/logban/internal/farmkeys"
)

// freeLoopbackPorts returns n loopback ports free now.
func freeLoopbackPorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

// Three daemons start a farm of their own embedded servers, with the farm's keys, as
// docs/farm.md's walkthrough does: they join, and none logs a warning or an error on the
// way (the seeds not up yet, JetStream electing its leaders, are how a start goes).
func TestAHealthyFarmStartLogsNoWarning(t *testing.T) {
	keys := t.TempDir()
	if err := farmkeys.Init(keys, "test"); err != nil {
		t.Fatal(err)
	}
	nodes := []string{"n1", "n2", "n3"}
	for _, n := range nodes {
		if _, err := farmkeys.AddNode(keys, n, nil); err != nil {
			t.Fatal(err)
		}
	}
	clients, routes := freeLoopbackPorts(t, 3), freeLoopbackPorts(t, 3)
	hs := make([]*harness, 3)
	var wg sync.WaitGroup
	for i, n := range nodes {
		var servers, others []string
		servers = append(servers, fmt.Sprintf("tls://127.0.0.1:%d", clients[i]))
		for k := range nodes {
			if k != i {
				servers = append(servers, fmt.Sprintf("tls://127.0.0.1:%d", clients[k]))
				others = append(others, fmt.Sprintf("nats://127.0.0.1:%d", routes[k]))
			}
		}
		config := strings.Replace(farmConfig(n, servers, true), "[actions.log]", farmkeys.Settings(keys, n)+fmt.Sprintf(`
[farm.embedded]
listen = "127.0.0.1:%d"
cluster_listen = "127.0.0.1:%d"
routes = ["%s"]
store_dir = "run/nats"

[actions.log]`, clients[i], routes[i], strings.Join(others, `", "`)), 1)
		wg.Go(func() { hs[i] = start(t, config, Options{}) }) // the seeds start together
	}
	wg.Wait()
	for _, h := range hs {
		waitFarm(t, h, func(s control.FarmStatus) bool { return s.State == "connected" && s.Synced && len(s.Nodes) == 2 })
	}
	time.Sleep(time.Second) // what a start logs right after joining, too
	for i, h := range hs {
		for _, line := range strings.Split(h.logged.String(), "\n") {
			if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
				t.Errorf("%s logged: %s", nodes[i], line)
			}
		}
		st, _ := h.client.Farm(context.Background())
		if st.LastError != "" {
			t.Errorf("%s's farm status says: %s", nodes[i], st.LastError)
		}
	}
}
