package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// heldListener counts the connections the server holds open.
type heldListener struct {
	net.Listener
	open, most atomic.Int64
}

func (l *heldListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	n := l.open.Add(1)
	for m := l.most.Load(); n > m && !l.most.CompareAndSwap(m, n); m = l.most.Load() {
	}
	return &heldConn{Conn: c, l: l}, nil
}

type heldConn struct {
	net.Conn
	l    *heldListener
	once sync.Once
}

func (c *heldConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// A local user opens hundreds of connections to the metrics port and says nothing: the
// server holds at most MaxConns of them, closes idle ones, and still answers a scrape
// once they are gone.
func TestMetricsServerIsBounded(t *testing.T) {
	IdleTimeout, ReadTimeout = 200*time.Millisecond, 200*time.Millisecond
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &heldListener{Listener: inner}
	c := New(func() Snapshot { return Snapshot{Version: "test"} })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Serve(ctx, ln)

	var conns []net.Conn
	for range 300 {
		conn, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
	}
	// Each silent connection is closed by the server once its time runs out.
	for i, conn := range conns {
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.ReadAll(conn); err != nil {
			t.Fatalf("connection %d not closed by the server: %v", i, err)
		}
		conn.Close()
	}
	if most := ln.most.Load(); most > int64(MaxConns) {
		t.Errorf("the server held %d connections at once, past MaxConns = %d", most, MaxConns)
	}
	resp, err := http.Get("http://" + inner.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("scrape: %s", resp.Status)
	}
}
