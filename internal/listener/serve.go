package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// States of a Server.
const (
	StateAccepting = "accepting"
	StateDegraded  = "degraded" // accepting fails for now (no descriptors, no buffers); retrying
	StateStopped   = "stopped"  // accepting failed for good, or the server ended
)

// Server accepts connections on a listener and hands each to Handle on a goroutine of
// its own, at most MaxConns at once: past it, new connections wait in the kernel's
// backlog until one ends. A failure to accept that passes is retried with a pause that
// grows to a second, as net/http does; the server says so in its Health and logs the
// change once, not each retry.
type Server struct {
	// Name names the server in the log ("policy service").
	Name string
	// MaxConns bounds the connections served at once; 0 means 64.
	MaxConns int
	// Handle serves one connection; the server closes it when Handle returns, and
	// when the server's context ends.
	Handle func(ctx context.Context, conn net.Conn)
	Logger *slog.Logger

	conns atomic.Int64
	full  atomic.Int64 // times a connection waited for a slot
	mu    sync.Mutex
	h     Health
}

// Health is what a server is doing.
type Health struct {
	State string    // StateAccepting, StateDegraded or StateStopped
	Since time.Time // when it entered State
	Err   string    // the error that degraded or stopped it
	// Conns is the connections being served; Full, how often every slot was taken
	// when a connection came.
	Conns int64
	Full  int64
}

// Health returns what the server is doing now.
func (s *Server) Health() Health {
	s.mu.Lock()
	h := s.h
	s.mu.Unlock()
	if h.State == "" {
		// Not in Serve yet: its listener is open, and a connection waits in its backlog.
		h.State = StateAccepting
	}
	h.Conns, h.Full = s.conns.Load(), s.full.Load()
	return h
}

func (s *Server) set(state string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h.State == state {
		return
	}
	s.h = Health{State: state, Since: time.Now()}
	if err != nil {
		s.h.Err = err.Error()
	}
}

// Serve accepts on ln until ctx is done, then closes ln and waits for the connections
// under way. It returns nil then, or the error that stopped accepting for good.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	maxConns := s.MaxConns
	if maxConns <= 0 {
		maxConns = 64
	}
	slots := make(chan struct{}, maxConns)
	s.set(StateAccepting, nil)
	var pause time.Duration
	for {
		select {
		case slots <- struct{}{}:
		default:
			s.full.Add(1)
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				s.set(StateStopped, nil)
				return nil
			}
		}
		conn, err := ln.Accept()
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				s.set(StateStopped, nil)
				return nil
			}
			if !passing(err) {
				s.set(StateStopped, err)
				return fmt.Errorf("%s: %w", s.Name, err)
			}
			if pause == 0 {
				s.Logger.Error(s.Name+" cannot accept connections; retrying until it can", "err", err)
			}
			s.set(StateDegraded, err)
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				s.set(StateStopped, nil)
				return nil
			}
			continue
		}
		if pause != 0 {
			s.Logger.Info(s.Name + " accepts connections again")
			pause = 0
		}
		s.set(StateAccepting, nil)
		s.conns.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			defer s.conns.Add(-1)
			defer conn.Close()
			closeOnDone := context.AfterFunc(ctx, func() { conn.Close() })
			defer closeOnDone()
			s.Handle(ctx, conn)
		}()
	}
}

// passing reports whether an accept error may pass: the process or the system is out of
// descriptors or buffers for now, or a client went away before it was accepted.
func passing(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR, syscall.EPROTO} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
