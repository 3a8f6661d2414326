package natsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/logban/logban/internal/farmkeys"
)

// freePort returns a loopback port free now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// farmServer starts an embedded server of node n1 of a farm whose keys are in dir,
// admitting nodes n1 and n2, with a cluster port and routes to routes.
func farmServer(t *testing.T, dir, node string, cluster int, routes ...int) (*Server, string) {
	t.Helper()
	nodes, err := farmkeys.ReadNodes(filepath.Join(dir, farmkeys.NodesFile))
	if err != nil {
		t.Fatal(err)
	}
	var users []User
	for _, pub := range nodes {
		users = append(users, User{Nkey: pub, Publish: []string{">"}, Subscribe: []string{">"}})
	}
	nf := farmkeys.Files(dir, node)
	o := Options{Name: node, Cluster: "farm", Listen: fmt.Sprintf("127.0.0.1:%d", freePort(t)), StoreDir: t.TempDir(),
		Users: users, CertFile: nf.Cert, KeyFile: nf.Key, CAFile: filepath.Join(dir, farmkeys.CACert), ReadyWait: 30 * time.Second}
	if cluster != 0 {
		o.ClusterListen = fmt.Sprintf("127.0.0.1:%d", cluster)
		for _, r := range routes {
			o.Routes = append(o.Routes, fmt.Sprintf("nats://127.0.0.1:%d", r))
		}
	}
	s, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s, o.Listen
}

func farmKeys(t *testing.T, nodes ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := farmkeys.Init(dir, "farm"); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if _, err := farmkeys.AddNode(dir, n, nil); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// An embedded server is never started open: without users and TLS it refuses to.
func TestAnEmbeddedServerIsNeverOpen(t *testing.T) {
	_, err := Start(Options{Name: "n1", Listen: "127.0.0.1:0", StoreDir: t.TempDir()})
	if !errors.Is(err, errOpen) {
		t.Fatalf("Start without users or TLS: %v, want it refused", err)
	}
}

// Anyone who reaches the client port, on loopback too, is refused unless a node signs
// in with its key over TLS: without credentials, with a key of no node, or in plaintext.
func TestOnlyTheFarmsNodesAreAdmitted(t *testing.T) {
	dir := farmKeys(t, "n1", "n2")
	other := farmKeys(t, "n1") // another farm's n1: a key the server does not know
	_, listen := farmServer(t, dir, "n1", 0)
	ca := nats.RootCAs(filepath.Join(dir, farmkeys.CACert))
	seed := func(d, node string) nats.Option {
		o, err := nats.NkeyOptionFromSeed(farmkeys.Files(d, node).Seed)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	for _, tt := range []struct {
		name string
		url  string
		opts []nats.Option
		ok   bool
	}{
		{"no credentials, TLS", "tls://" + listen, []nats.Option{ca}, false},
		{"no credentials, plaintext", "nats://" + listen, nil, false},
		{"another farm's key", "tls://" + listen, []nats.Option{ca, seed(other, "n1")}, false},
		{"a node's key, plaintext", "nats://" + listen, []nats.Option{seed(dir, "n2")}, false},
		{"a node's key over TLS", "tls://" + listen, []nats.Option{ca, seed(dir, "n2")}, true},
	} {
		nc, err := nats.Connect(tt.url, append(tt.opts, nats.Timeout(5*time.Second), nats.MaxReconnects(0))...)
		if nc != nil {
			nc.Close()
		}
		if (err == nil) != tt.ok {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

// A server whose certificate the farm's authority did not sign cannot route to the
// farm's servers, nor they to it; two of the farm's own do.
func TestRoutesNeedTheFarmsCertificates(t *testing.T) {
	dir := farmKeys(t, "n1", "n2")
	p1, p2, p3 := freePort(t), freePort(t), freePort(t)
	s1, _ := farmServer(t, dir, "n1", p1, p2, p3)
	s2, _ := farmServer(t, dir, "n2", p2, p1, p3)
	intruder := farmKeys(t, "n1", "n2") // the same names, another authority
	s3, _ := farmServer(t, intruder, "n2", p3, p1, p2)
	deadline := time.Now().Add(20 * time.Second)
	for s1.NumRoutes() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if s1.NumRoutes() == 0 || s2.NumRoutes() == 0 {
		t.Fatalf("the farm's two servers did not route: %d, %d", s1.NumRoutes(), s2.NumRoutes())
	}
	time.Sleep(2 * time.Second) // the intruder's attempts, both ways
	if n := s3.NumRoutes(); n != 0 {
		t.Errorf("a server of another authority holds %d routes to the farm", n)
	}
}

// countingHandler counts the records at or above warning level.
type countingHandler struct {
	slog.Handler
	mu    sync.Mutex
	warns []string
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.mu.Lock()
		h.warns = append(h.warns, r.Message)
		h.mu.Unlock()
	}
	return nil
}

// While a cluster forms, the server's warnings and errors are debug; after it, one kind
// of error repeated twice a second (a host of another farm knocking) is logged once a
// minute, and another kind still gets its line.
func TestTheServersLogIsQuietWhileFormingAndRateLimitedAfter(t *testing.T) {
	h := &countingHandler{}
	l := newLogger(slog.New(h))
	l.Errorf("Error trying to connect to route (attempt %d): %v", 1, "connection refused")
	l.Warnf("Waiting for routing to be established...")
	if len(h.warns) != 0 {
		t.Fatalf("while forming: %q", h.warns)
	}
	l.start = time.Now().Add(-time.Hour)
	for i := range 20 {
		l.Errorf("%s - Publish Violation - Subject %q", fmt.Sprintf("127.0.0.1:%d", 40000+i), "$KV.other_bans.x")
	}
	l.Errorf("Error trying to connect to route (attempt %d): %v", 9, "connection refused")
	if len(h.warns) != 2 {
		t.Errorf("after forming: %d lines, want one of each kind: %q", len(h.warns), h.warns)
	}
}

// A cluster port in use, or an address not on the host, fails the start with the
// address and the system's error (the server alone would time out waiting to accept
// clients, naming the client port).
func TestAPortInUseIsSaidAtOnce(t *testing.T) {
	dir := farmKeys(t, "n1")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	nodes, _ := farmkeys.ReadNodes(filepath.Join(dir, farmkeys.NodesFile))
	nf := farmkeys.Files(dir, "n1")
	for _, tt := range []struct{ cluster, want string }{
		{busy.Addr().String(), "address already in use"},
		{"192.0.2.99:6222", "cannot assign requested address"},
	} {
		_, err := Start(Options{Name: "n1", Cluster: "farm", Listen: fmt.Sprintf("127.0.0.1:%d", freePort(t)), ClusterListen: tt.cluster,
			StoreDir: t.TempDir(), Users: []User{{Nkey: nodes["n1"]}}, CertFile: nf.Cert, KeyFile: nf.Key, CAFile: filepath.Join(dir, farmkeys.CACert)})
		if err == nil || !strings.Contains(err.Error(), "cluster_listen "+tt.cluster) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("cluster_listen %s: %v", tt.cluster, err)
		}
	}
}

// TestRoutesSayWhichSeedIsDown shows each route up, then says a route is down once a
// seed stops. The seeds share an address here, so which one may not be told apart; it
// is on hosts of their own (bench's TestAFarmThroughAPartition).
func TestRoutesSayWhichSeedIsDown(t *testing.T) {
	dir := farmKeys(t, "n1", "n2", "n3")
	p1, p2, p3 := freePort(t), freePort(t), freePort(t)
	s1, _ := farmServer(t, dir, "n1", p1, p2, p3)
	farmServer(t, dir, "n2", p2, p1, p3)
	s3, _ := farmServer(t, dir, "n3", p3, p1, p2)
	count := func() (up, down int, text string) {
		for _, r := range s1.Routes() {
			if r.Up {
				up++
			} else {
				down++
			}
			text += fmt.Sprintf("[%s %s up=%v] ", r.URL, r.Server, r.Up)
		}
		return up, down, text
	}
	waitRoutes := func(wantUp, wantDown int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			up, down, text := count()
			if up == wantUp && down == wantDown {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("routes: %s; want %d up and %d down", text, wantUp, wantDown)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitRoutes(2, 0)
	s3.Stop()
	waitRoutes(1, 1)
	if _, _, text := count(); !strings.Contains(text, "n2 up=true") {
		t.Errorf("routes: %s; want n2 up", text)
	}
}
