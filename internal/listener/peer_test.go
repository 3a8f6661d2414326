package listener

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logban/logban/internal/testenv"
)

// whoServer answers each connection with the owner of its other end.
func whoServer(t *testing.T, ln net.Listener) {
	s := &Server{Name: "test", Logger: testLogger(t), Handle: func(_ context.Context, c net.Conn) {
		uid, err := PeerUID(c)
		if err != nil {
			fmt.Fprintf(c, "error %v", err)
			return
		}
		fmt.Fprintf(c, "uid %d", uid)
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestPeerUIDComesFromTheKernel(t *testing.T) {
	testenv.RequireRoot(t)
	for _, network := range []string{"tcp4", "tcp6"} {
		addr := map[string]string{"tcp4": "127.0.0.1:0", "tcp6": "[::1]:0"}[network]
		ln, err := net.Listen(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		whoServer(t, ln)
		got, err := testenv.DialAs(t, testenv.Nobody, testenv.Nobody, "tcp", ln.Addr().String(), "")
		if err != nil || got != fmt.Sprintf("uid %d", testenv.Nobody) {
			t.Errorf("%s as nobody: %q, %v; want uid %d", network, got, err, testenv.Nobody)
		}
		got, err = testenv.DialAs(t, 0, 0, "tcp", ln.Addr().String(), "")
		if err != nil || got != "uid 0" {
			t.Errorf("%s as root: %q, %v; want uid 0", network, got, err)
		}
	}

	dir, err := os.MkdirTemp("", "peer-") // t.TempDir's parent is root's alone
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	ln, err := Unix(filepath.Join(dir, "s"), 0o666, -1)
	if err != nil {
		t.Fatal(err)
	}
	whoServer(t, ln)
	got, err := testenv.DialAs(t, testenv.Nobody, testenv.Nobody, "unix", ln.Addr().String(), "")
	if err != nil || got != fmt.Sprintf("uid %d", testenv.Nobody) {
		t.Errorf("unix as nobody: %q, %v", got, err)
	}
}

func TestPeerUIDOfAPeerElsewhere(t *testing.T) {
	// A connection whose far end the kernel does not hold here: the pair is made in
	// this process, then the peer's socket closed, so the lookup finds nothing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c.(*net.TCPConn).SetLinger(0)
	c.Close() // reset: the peer's socket is gone
	if _, err := PeerUID(s); err == nil || !strings.Contains(err.Error(), "not on this host") && !strings.Contains(err.Error(), "owns") {
		t.Errorf("PeerUID of a gone peer: %v, want an error", err)
	}
}
