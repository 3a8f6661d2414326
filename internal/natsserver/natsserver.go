// Package natsserver runs a NATS server with JetStream inside ban-server: a seed of a
// small farm's cluster ([farm.embedded]), and the real servers of the farm's tests. It is
// NATS itself (the nats-server module), configured, started and logged through slog.
package natsserver

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure one server.
type Options struct {
	// Name is the server's name in its cluster: the node's.
	Name string
	// Cluster names the cluster; every seed of one farm gives the same.
	Cluster string
	// Listen is the host:port clients dial; port 0 picks a free one.
	Listen string
	// ClusterListen is the host:port the other seeds' routes dial; "" for a lone server.
	ClusterListen string
	// Routes are nats://host:port of the other seeds' ClusterListen.
	Routes []string
	// StoreDir is where JetStream keeps its files.
	StoreDir string
	// Logger receives the server's log; nil discards it.
	Logger *slog.Logger `json:"-"`
	// Configure, if set, changes the server's options last: users and their permissions,
	// in tests.
	Configure func(*server.Options) `json:"-"`
	// ReadyWait is how long Start waits for the server to accept clients; 0 means 10 s.
	ReadyWait time.Duration

	// Users are the clients admitted, each by its public nkey, with what it may publish
	// and subscribe to. No one else is.
	Users []User
	// CertFile and KeyFile are the server's certificate, CAFile the farm's authority:
	// clients connect over TLS, and routes only between servers whose certificates the
	// authority signed, each verifying the other's.
	CertFile, KeyFile, CAFile string
	// Unauthenticated admits any client and route, without TLS: for natstest's
	// clusters, which stand in for a farm's own NATS servers, and nothing else.
	Unauthenticated bool
}

// User is a client a server admits: its public nkey, and the subjects it may publish and
// subscribe to.
type User struct {
	Nkey               string
	Publish, Subscribe []string
}

// Bounds of what JetStream may hold in one embedded server, whatever its streams say.
const (
	maxJetStreamMemory = 512 << 20
	maxJetStreamStore  = 8 << 30
)

// errOpen reports a server asked to admit anyone.
var errOpen = errors.New("an embedded NATS server admits only the farm's nodes, by their keys, over TLS: it needs users, a certificate, its key and the farm's authority")

// Server is a running NATS server.
type Server struct {
	*server.Server
	routes []string // as configured

	mu    sync.Mutex
	names map[string]string // the server each configured route last reached, by route
}

// readyWait is how long a server may take to accept clients.
const readyWait = 10 * time.Second

// Start starts a server and returns once it accepts clients; its cluster forms in the
// background, as its routes answer.
func Start(o Options) (*Server, error) {
	host, port, err := hostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen %q: %w", o.Listen, err)
	}
	opts := &server.Options{
		ServerName: o.Name,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
	}
	if o.ClusterListen != "" {
		ch, cp, err := hostPort(o.ClusterListen)
		if err != nil {
			return nil, fmt.Errorf("cluster_listen %q: %w", o.ClusterListen, err)
		}
		// A route pings every routePing and is dropped after routePingsOut unanswered:
		// a seed cut off is seen as such within seconds, not the minutes of the default.
		opts.Cluster = server.ClusterOpts{Name: o.Cluster, Host: ch, Port: cp, PingInterval: routePing, MaxPingsOut: routePingsOut}
		for _, r := range o.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("route %q: %w", r, err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	if !o.Unauthenticated {
		if err := secure(opts, o); err != nil {
			return nil, err
		}
	}
	if o.Configure != nil {
		o.Configure(opts)
	}
	// A port in use, or an address not on this host, is said at once with the system's
	// words: the server itself would only time out waiting to accept clients.
	for _, l := range []struct{ what, addr string }{{"listen", o.Listen}, {"cluster_listen", o.ClusterListen}} {
		if l.addr == "" || strings.HasSuffix(l.addr, ":0") {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", l.what, l.addr, err)
		}
		ln.Close()
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("NATS server: %w", err)
	}
	if o.Logger != nil {
		s.SetLoggerV2(newLogger(o.Logger.With("nats_server", o.Name)), false, false, false)
	}
	s.Start()
	wait := cmp.Or(o.ReadyWait, readyWait)
	if !s.ReadyForConnections(wait) {
		s.Shutdown()
		return nil, fmt.Errorf("NATS server on %s did not accept clients within %v", o.Listen, wait)
	}
	return &Server{Server: s, routes: o.Routes, names: map[string]string{}}, nil
}

// How often a route pings, and how many pings may go unanswered before it is dropped.
const (
	routePing     = 5 * time.Second
	routePingsOut = 3
)

// Route is the state of a route between this server and another seed.
type Route struct {
	// URL is the route as configured; "" for a seed up that no configured route is
	// told apart for (seeds sharing an address, or one not configured here). A route
	// down that is not told apart is given as "2 of URL, URL".
	URL string
	// Server is the other seed's name (its node's): "" for a route never up.
	Server string
	Up     bool
	// Since is when it came up; RTT, its last round trip.
	Since time.Time
	RTT   string
}

// Routes returns the state of each configured route, then of the routes other seeds
// dialled in. A route is known by the address it dialled; one the other seed dialled
// has a port of the moment, so it is known by the server it reached before, or by its
// address alone, if no other server of the address is left.
func (s *Server) Routes() []Route {
	rz, err := s.Routez(nil)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	up := map[string]*server.RouteInfo{} // by remote server: one of its connections
	for _, ri := range rz.Routes {
		if ri.RemoteName != "" && up[ri.RemoteName] == nil {
			up[ri.RemoteName] = ri
		}
	}
	out := make([]Route, 0, len(s.routes))
	matched := map[string]bool{}
	for _, r := range s.routes {
		out = append(out, Route{URL: r})
		u, err := url.Parse(r)
		if err != nil {
			continue
		}
		for _, ri := range rz.Routes {
			if ri.RemoteName != "" && net.JoinHostPort(ri.IP, strconv.Itoa(ri.Port)) == u.Host {
				s.names[r] = ri.RemoteName
			}
		}
		if name := s.names[r]; name != "" {
			out[len(out)-1].Server = name
			matched[name] = true
		}
	}
	for i := range out {
		if out[i].Server != "" {
			continue
		}
		u, err := url.Parse(out[i].URL)
		if err != nil {
			continue
		}
		var candidates []string
		for name, ri := range up {
			if !matched[name] && ri.IP == u.Hostname() {
				candidates = append(candidates, name)
			}
		}
		if len(candidates) == 1 {
			out[i].Server, s.names[out[i].URL] = candidates[0], candidates[0]
			matched[candidates[0]] = true
		}
	}
	var unknown []string // configured routes not told apart: seeds on one address
	known := out[:0]
	for _, r := range out {
		if ri := up[r.Server]; ri != nil {
			r.Up, r.Since, r.RTT = true, ri.Start, ri.RTT
		}
		if r.Server == "" {
			unknown = append(unknown, r.URL)
			continue
		}
		known = append(known, r)
	}
	out = known
	var others []Route // up, reached by no configured route told apart
	for _, name := range slices.Sorted(maps.Keys(up)) {
		if !matched[name] {
			ri := up[name]
			others = append(others, Route{Server: name, Up: true, Since: ri.Start, RTT: ri.RTT})
		}
	}
	if down := len(unknown) - len(others); down > 0 {
		// Fewer seeds up than routes not told apart: some are down, which is not known.
		what := strings.Join(unknown, ", ")
		if len(others) > 0 {
			what = fmt.Sprintf("%d of %s", down, what)
		}
		out = append(out, Route{URL: what})
	}
	return append(out, others...)
}

// Stop shuts the server down and waits for it.
func (s *Server) Stop() {
	s.Shutdown()
	s.WaitForShutdown()
}

// secure admits only o's users, by nkey, over TLS, and routes only to servers whose
// certificates the farm's authority signed, and bounds JetStream.
func secure(opts *server.Options, o Options) error {
	if len(o.Users) == 0 || o.CertFile == "" || o.KeyFile == "" || o.CAFile == "" {
		return errOpen
	}
	for _, u := range o.Users {
		opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: u.Nkey, Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: u.Publish},
			Subscribe: &server.SubjectPermission{Allow: u.Subscribe},
		}})
	}
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: o.CertFile, KeyFile: o.KeyFile, CaFile: o.CAFile})
	if err != nil {
		return fmt.Errorf("TLS: %w", err)
	}
	opts.TLSConfig, opts.TLSTimeout = tc, 5
	if opts.Cluster.Port != 0 || opts.Cluster.Host != "" {
		rc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: o.CertFile, KeyFile: o.KeyFile, CaFile: o.CAFile, Verify: true})
		if err != nil {
			return fmt.Errorf("routes' TLS: %w", err)
		}
		// Each end of a route is client and server: both verify the other.
		rc.ClientAuth, rc.RootCAs = tls.RequireAndVerifyClientCert, rc.ClientCAs
		opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = rc, 5
	}
	opts.JetStreamMaxMemory, opts.JetStreamMaxStore = maxJetStreamMemory, maxJetStreamStore
	return nil
}

func hostPort(hp string) (string, int, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q", p)
	}
	return h, port, nil
}

// logger is the server's log through slog. Its notices (the banner, the start's
// chatter) are debug: ban-server says itself when the farm is joined. While a cluster
// forms (startGrace after the start), its warnings and errors are debug too: a route to
// a seed not started yet, JetStream waiting for its leader, are how every healthy start
// goes, and they come back as warnings if they last. After it, each kind of warning or
// error (its format) is logged at most once every repeatEvery, with how many were left
// out: a host of another farm knocking twice a second fills no log.
type logger struct {
	l     *slog.Logger
	start time.Time

	mu   sync.Mutex
	last map[string]time.Time // by format: a call site of the server's, a bounded set
	left map[string]int       // left out since
}

// startGrace is how long a server's warnings and errors are taken for its cluster
// forming; repeatEvery spaces the lines of one kind of them.
const (
	startGrace  = 30 * time.Second
	repeatEvery = time.Minute
)

func newLogger(l *slog.Logger) *logger {
	return &logger{l: l, start: time.Now(), last: map[string]time.Time{}, left: map[string]int{}}
}

func (l *logger) Noticef(format string, v ...any) { l.l.Debug(fmt.Sprintf(format, v...)) }
func (l *logger) Warnf(format string, v ...any)   { l.emit(slog.LevelWarn, format, v...) }
func (l *logger) Fatalf(format string, v ...any)  { l.emit(slog.LevelError, format, v...) }
func (l *logger) Errorf(format string, v ...any)  { l.emit(slog.LevelError, format, v...) }
func (l *logger) Debugf(format string, v ...any)  {}
func (l *logger) Tracef(format string, v ...any)  {}

func (l *logger) emit(level slog.Level, format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	now := time.Now()
	if now.Sub(l.start) < startGrace {
		l.l.Debug(msg)
		return
	}
	l.mu.Lock()
	last, seen := l.last[format]
	if seen && now.Sub(last) < repeatEvery {
		l.left[format]++
		l.mu.Unlock()
		l.l.Debug(msg)
		return
	}
	left := l.left[format]
	l.last[format], l.left[format] = now, 0
	l.mu.Unlock()
	if left > 0 {
		l.l.Log(context.Background(), level, msg, "more_like_it_left_out", left)
		return
	}
	l.l.Log(context.Background(), level, msg)
}
