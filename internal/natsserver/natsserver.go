// Package natsserver runs a NATS server with JetStream inside ban-server: a seed of a
// small farm's cluster ([farm.embedded]), and the real servers of the farm's tests. It is
// NATS itself (the nats-server module), configured, started and logged through slog.
package natsserver

import (
	"cmp"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
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
}

// Server is a running NATS server.
type Server struct {
	*server.Server
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
		opts.Cluster = server.ClusterOpts{Name: o.Cluster, Host: ch, Port: cp}
		for _, r := range o.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("route %q: %w", r, err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	if o.Configure != nil {
		o.Configure(opts)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("NATS server: %w", err)
	}
	if o.Logger != nil {
		s.SetLoggerV2(&logger{o.Logger.With("nats_server", o.Name)}, false, false, false)
	}
	s.Start()
	wait := cmp.Or(o.ReadyWait, readyWait)
	if !s.ReadyForConnections(wait) {
		s.Shutdown()
		return nil, fmt.Errorf("NATS server on %s did not accept clients within %v", o.Listen, wait)
	}
	return &Server{s}, nil
}

// Stop shuts the server down and waits for it.
func (s *Server) Stop() {
	s.Shutdown()
	s.WaitForShutdown()
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

// logger is the server's log through slog: notices at info, warnings and errors as such;
// debug and trace are left out.
type logger struct{ l *slog.Logger }

func (l *logger) Noticef(format string, v ...any) { l.l.Info(fmt.Sprintf(format, v...)) }
func (l *logger) Warnf(format string, v ...any)   { l.l.Warn(fmt.Sprintf(format, v...)) }
func (l *logger) Fatalf(format string, v ...any)  { l.l.Error(fmt.Sprintf(format, v...)) }
func (l *logger) Errorf(format string, v ...any)  { l.l.Error(fmt.Sprintf(format, v...)) }
func (l *logger) Debugf(format string, v ...any)  {}
func (l *logger) Tracef(format string, v ...any)  {}
