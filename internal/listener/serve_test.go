package listener

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// flakyListener fails its first accepts as a process out of descriptors does, then
// hands out the connections of a real listener.
type flakyListener struct {
	net.Listener
	mu    sync.Mutex
	fails int
	seen  chan Health
	s     *Server
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fails > 0 {
		l.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

func TestServeRidesOutAFailedAccept(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &flakyListener{Listener: inner, fails: 3}
	s := &Server{Name: "test", Logger: testLogger(t), Handle: func(_ context.Context, c net.Conn) { c.Write([]byte("hi")) }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Serve(ctx, ln) }()
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(c)
	if string(b) != "hi" {
		t.Fatalf("after three failed accepts the server answered %q, want hi", b)
	}
	if h := s.Health(); h.State != StateAccepting {
		t.Errorf("health %+v, want accepting again", h)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if h := s.Health(); h.State != StateStopped {
		t.Errorf("health after the end %+v, want stopped", h)
	}
}

func TestServeSaysWhenItIsDegradedOrStopped(t *testing.T) {
	inner, _ := net.Listen("tcp", "127.0.0.1:0")
	ln := &flakyListener{Listener: inner, fails: 1 << 30}
	s := &Server{Name: "test", Logger: testLogger(t), Handle: func(context.Context, net.Conn) {}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Serve(ctx, ln) }()
	for deadline := time.Now().Add(10 * time.Second); s.Health().State != StateDegraded; {
		if time.Now().After(deadline) {
			t.Fatalf("health %+v, want degraded", s.Health())
		}
		time.Sleep(time.Millisecond)
	}
	if h := s.Health(); h.Err == "" {
		t.Errorf("degraded without its error: %+v", h)
	}
	cancel()
	<-done

	// An error that does not pass stops the server, and it says so.
	inner.Close()
	s2 := &Server{Name: "test", Logger: testLogger(t), Handle: func(context.Context, net.Conn) {}}
	if err := s2.Serve(context.Background(), inner); err == nil || !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve on a closed listener: %v", err)
	}
	if h := s2.Health(); h.State != StateStopped || h.Err == "" {
		t.Errorf("health %+v, want stopped with its error", h)
	}
}

func TestServeCapsItsConnections(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	release := make(chan struct{})
	s := &Server{Name: "test", MaxConns: 2, Logger: testLogger(t), Handle: func(ctx context.Context, c net.Conn) {
		c.Write([]byte("in"))
		<-release
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Serve(ctx, ln) }()
	var conns []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	buf := make([]byte, 2)
	for i, c := range conns[:2] {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("connection %d not served: %v", i, err)
		}
	}
	conns[2].SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := io.ReadFull(conns[2], buf); err == nil {
		t.Fatal("a third connection was served past MaxConns = 2")
	}
	if h := s.Health(); h.Conns != 2 || h.Full == 0 {
		t.Errorf("health %+v, want 2 connections and the cap reached", h)
	}
	close(release)
	conns[2].SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(conns[2], buf); err != nil {
		t.Fatalf("the third connection not served once a slot freed: %v", err)
	}
	cancel()
	<-done
}
