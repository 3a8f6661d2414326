package policy

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logban/logban/internal/listener"
)

// Server answers Postfix's policy requests on a listener.
type Server struct {
	policy  *Policy
	logger  *slog.Logger
	timeout time.Duration // for one decision; past it, the default answer
	idle    time.Duration // a connection with no request for this long is closed

	// Peers says who may ask over TCP; nil lets anyone. Set it before Serve. A unix
	// socket's own mode and group say who may connect to it.
	Peers *Peers
	// MaxConns bounds the connections served at once (Postfix keeps one per smtpd
	// process); 0 means DefaultMaxConns. Set it before Serve.
	MaxConns int

	accept         *listener.Server
	requests       atomic.Int64
	malformed      atomic.Int64
	refused        atomic.Int64
	lastRefusalLog atomic.Int64 // unix nanoseconds
	mu             sync.Mutex
	answers        map[string]int64
}

// Peers are the peers a TCP policy service answers: local processes of the users
// UIDs (the kernel names the owner of a socket on this host), and the hosts in
// Remote, whose users nobody here can know (an MTA elsewhere).
type Peers struct {
	UIDs   []uint32
	Remote []netip.Prefix
	// Kernel asks the kernel of the service's network namespace; nil asks that of
	// whichever thread serves the connection.
	Kernel *listener.Peers
}

// allows says whether conn's peer may ask, and why not.
func (p *Peers) allows(conn net.Conn) (bool, string) {
	if _, ok := conn.(*net.TCPConn); !ok {
		return true, "" // a unix socket: its mode and group decided
	}
	uid, err := p.Kernel.UID(conn)
	if err == nil {
		if slices.Contains(p.UIDs, uid) {
			return true, ""
		}
		return false, fmt.Sprintf("a process of user %d, not one of the allowed users", uid)
	}
	if errors.Is(err, listener.ErrNotLocal) {
		if ap, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
			a := ap.AddrPort().Addr().Unmap()
			for _, pr := range p.Remote {
				if pr.Contains(a) {
					return true, ""
				}
			}
		}
		return false, "a host that is not allowed (policy.allow_hosts)"
	}
	return false, err.Error()
}

// DefaultMaxConns is how many connections a server serves at once unless told.
const DefaultMaxConns = 1000

// Postfix keeps an idle policy connection for smtpd_policy_service_max_idle (300 s)
// and then closes it; the server waits a little longer before closing it itself.
const idleTimeout = 330 * time.Second

// NewServer returns a server deciding with p; a decision slower than timeout gets
// p's default answer.
func NewServer(p *Policy, timeout time.Duration, logger *slog.Logger) *Server {
	s := &Server{policy: p, logger: logger, timeout: timeout, idle: idleTimeout, answers: map[string]int64{}}
	s.accept = &listener.Server{Name: "policy service", Logger: logger, Handle: s.handle}
	return s
}

// Serve answers on ln until ctx is done; it closes ln then, and each connection. A
// failure to accept that passes (no descriptors) is retried; Serve returns the one
// that does not.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.accept.MaxConns = cmp.Or(s.MaxConns, DefaultMaxConns)
	return s.accept.Serve(ctx, ln)
}

// handle serves conn if its peer may ask; a refused peer is closed without a word,
// counted, and logged at most once every refusalLogEvery.
func (s *Server) handle(_ context.Context, conn net.Conn) {
	if s.Peers != nil {
		if ok, why := s.Peers.allows(conn); !ok {
			n := s.refused.Add(1)
			now := time.Now().UnixNano()
			if last := s.lastRefusalLog.Load(); now-last >= int64(refusalLogEvery) && s.lastRefusalLog.CompareAndSwap(last, now) {
				s.logger.Warn("policy connection refused: only Postfix may ask", "remote", conn.RemoteAddr(), "peer", why, "refused_so_far", n)
			}
			return
		}
	}
	s.serveConn(conn)
}

// refusalLogEvery spaces the log lines of refused peers.
const refusalLogEvery = 10 * time.Second

// serveConn answers one connection's requests, in order, until Postfix closes it, it
// stays idle too long, or a request is malformed (closed without an answer).
func (s *Server) serveConn(conn net.Conn) {
	defer conn.Close()
	r := NewReader(conn)
	w := bufio.NewWriterSize(conn, 512)
	d := s.newDecider()
	defer d.close()
	for {
		conn.SetReadDeadline(time.Now().Add(s.idle))
		req, err := ReadRequest(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isTimeout(err) {
				s.malformed.Add(1)
				s.logger.Warn("policy request not read; connection closed", "remote", conn.RemoteAddr(), "err", err)
			}
			return
		}
		s.requests.Add(1)
		action, kind := d.decide(req)
		s.count(kind)
		conn.SetWriteDeadline(time.Now().Add(s.idle))
		if WriteAnswer(w, action) != nil || w.Flush() != nil {
			return
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// decider makes one connection's decisions on a goroutine of its own, so that one that
// panics or hangs gets the default answer after the server's timeout: Postfix goes on.
// A decider that hung is left to its decision, and a new one takes the next requests.
// Its goroutine, channels and timer serve every request of the connection.
type decider struct {
	s       *Server
	reqs    chan Request
	answers chan answer
	timer   *time.Timer
}

type answer struct{ action, kind string }

func (s *Server) newDecider() *decider {
	d := &decider{s: s, reqs: make(chan Request), answers: make(chan answer, 1), timer: time.NewTimer(time.Hour)}
	d.timer.Stop()
	go d.run(d.reqs, d.answers)
	return d
}

func (d *decider) run(reqs <-chan Request, answers chan<- answer) {
	for req := range reqs {
		answers <- d.one(req)
	}
}

// one decides req, a panic answered by the default.
func (d *decider) one(req Request) (a answer) {
	defer func() {
		if v := recover(); v != nil {
			d.s.logger.Error("policy decision failed; answering the default", "panic", v)
			a = answer{d.s.policy.settings.Default, AnswerDefault}
		}
	}()
	action, kind := d.s.policy.Decide(req)
	return answer{action, kind}
}

func (d *decider) decide(req Request) (action, kind string) {
	d.reqs <- req
	d.timer.Reset(d.s.timeout)
	select {
	case a := <-d.answers:
		d.timer.Stop()
		return a.action, a.kind
	case <-d.timer.C:
		d.s.logger.Warn("policy decision too slow; answering the default", "timeout", d.s.timeout, "client", req.ClientAddress)
		close(d.reqs) // the hung goroutine ends after its decision, if ever
		d.reqs, d.answers = make(chan Request), make(chan answer, 1)
		go d.run(d.reqs, d.answers)
		return d.s.policy.settings.Default, AnswerDefault
	}
}

func (d *decider) close() {
	close(d.reqs)
	d.timer.Stop()
}

func (s *Server) count(kind string) {
	s.mu.Lock()
	s.answers[kind]++
	s.mu.Unlock()
}

// Stats are a server's figures since it started.
type Stats struct {
	Requests  int64
	Malformed int64            // requests not read: their connections closed
	Refused   int64            // connections of peers that may not ask, closed unread
	Accept    listener.Health  // whether the service accepts connections
	Answers   map[string]int64 // by kind: AnswerDunno, AnswerBanned, AnswerQuota, AnswerDefault
}

// Stats returns the server's figures.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Requests: s.requests.Load(), Malformed: s.malformed.Load(), Refused: s.refused.Load(), Accept: s.accept.Health(), Answers: map[string]int64{}}
	for k, v := range s.answers {
		st.Answers[k] = v
	}
	return st
}

// Policy returns the policy the server decides with.
func (s *Server) Policy() *Policy { return s.policy }
