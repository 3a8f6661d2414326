package policy

import (
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
		action, kind := s.decide(req)
		s.count(kind)
		conn.SetWriteDeadline(time.Now().Add(s.idle))
		if err := WriteAnswer(conn, action); err != nil {
			return
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// decide asks the policy, and answers the default when it fails (panics) or takes
// longer than the server's timeout: Postfix goes on.
func (s *Server) decide(req Request) (action, kind string) {
	type answer struct{ action, kind string }
	done := make(chan answer, 1)
	go func() {
		defer func() {
			if v := recover(); v != nil {
				s.logger.Error("policy decision failed; answering the default", "panic", v)
				done <- answer{s.policy.settings.Default, AnswerDefault}
			}
		}()
		a, k := s.policy.Decide(req)
		done <- answer{a, k}
	}()
	t := time.NewTimer(s.timeout)
	defer t.Stop()
	select {
	case a := <-done:
		return a.action, a.kind
	case <-t.C:
		s.logger.Warn("policy decision too slow; answering the default", "timeout", s.timeout, "client", req.ClientAddress)
		return s.policy.settings.Default, AnswerDefault
	}
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
