package policy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Server answers Postfix's policy requests on a listener.
type Server struct {
	policy  *Policy
	logger  *slog.Logger
	timeout time.Duration // for one decision; past it, the default answer
	idle    time.Duration // a connection with no request for this long is closed

	requests  atomic.Int64
	malformed atomic.Int64
	mu        sync.Mutex
	answers   map[string]int64
}

// Postfix keeps an idle policy connection for smtpd_policy_service_max_idle (300 s)
// and then closes it; the server waits a little longer before closing it itself.
const idleTimeout = 330 * time.Second

// NewServer returns a server deciding with p; a decision slower than timeout gets
// p's default answer.
func NewServer(p *Policy, timeout time.Duration, logger *slog.Logger) *Server {
	return &Server{policy: p, logger: logger, timeout: timeout, idle: idleTimeout, answers: map[string]int64{}}
}

// Serve answers on ln until ctx is done; it closes ln then, and each connection.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			closeOnDone := context.AfterFunc(ctx, func() { conn.Close() })
			defer closeOnDone()
			s.serveConn(conn)
		}()
	}
}

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
	Answers   map[string]int64 // by kind: AnswerDunno, AnswerBanned, AnswerQuota, AnswerDefault
}

// Stats returns the server's figures.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Requests: s.requests.Load(), Malformed: s.malformed.Load(), Answers: map[string]int64{}}
	for k, v := range s.answers {
		st.Answers[k] = v
	}
	return st
}

// Policy returns the policy the server decides with.
func (s *Server) Policy() *Policy { return s.policy }
