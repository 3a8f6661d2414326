package policy

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/logban/logban/internal/listener"
)

// serve runs a server on loopback with p, answering the default after timeout, until
// the test ends, and returns its address.
func serve(t testing.TB, p *Policy, timeout time.Duration) (string, *Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(p, timeout, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return ln.Addr().String(), s
}

func request(state, client string) string {
	return "request=smtpd_access_policy\nprotocol_state=" + state + "\nclient_address=" + client + "\nsasl_username=anna\nrecipient_count=1\n\n"
}

// ask sends text on conn and returns what came back before the server's answer ended
// (an empty line) or the connection did.
func ask(t *testing.T, conn net.Conn, r *bufio.Reader, text string) string {
	t.Helper()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, text); err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for {
		line, err := r.ReadString('\n')
		got.WriteString(line)
		if err != nil || line == "\n" {
			return got.String()
		}
	}
}

func TestServerAnswersOnOneConnection(t *testing.T) {
	addr, s := serve(t, quotaPolicy(&clock{time.Now()}), time.Second)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	for _, tt := range []struct{ req, want string }{
		{request("CONNECT", "203.0.113.5"), "action=554 5.7.1 Access denied: zimbra-submission\n\n"},
		{request("RCPT", "198.51.100.7"), "action=DUNNO\n\n"},
		{request("DATA", "198.51.100.7"), "action=DUNNO\n\n"},
	} {
		if got := ask(t, conn, r, tt.req); got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.req, got, tt.want)
		}
	}
	st := s.Stats()
	if st.Requests != 3 || st.Answers[AnswerBanned] != 1 || st.Answers[AnswerDunno] != 2 {
		t.Errorf("stats %+v", st)
	}
}

// A malformed, huge or half-sent request closes the connection without an answer; the
// server goes on answering others.
func TestServerClosesOnMalformed(t *testing.T) {
	addr, s := serve(t, quotaPolicy(&clock{time.Now()}), time.Second)
	for _, text := range []string{
		"client_address 1.2.3.4\n\n",
		"sender=" + strings.Repeat("x", 100_000) + "\n\n",
		strings.Repeat("a=b\n", MaxAttributes+1) + "\n",
		"\x00\xff\n\n",
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := ask(t, conn, bufio.NewReader(conn), text); got != "" {
			t.Errorf("%.40q: answered %q", text, got)
		}
		conn.Close()
	}
	// Half a request, then the client goes.
	conn, _ := net.Dial("tcp", addr)
	io.WriteString(conn, "request=smtpd_access_policy\nclient_addr")
	conn.Close()
	conn, _ = net.Dial("tcp", addr)
	defer conn.Close()
	if got := ask(t, conn, bufio.NewReader(conn), request("RCPT", "198.51.100.7")); got != "action=DUNNO\n\n" {
		t.Errorf("after the malformed ones: %q", got)
	}
	for deadline := time.Now().Add(5 * time.Second); s.Stats().Malformed < 5 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
	}
	if st := s.Stats(); st.Malformed != 5 {
		t.Errorf("%d malformed counted, want 5", st.Malformed)
	}
}

// When the daemon's side fails (a panic) or hangs, Postfix gets the default answer,
// DUNNO, and goes on.
func TestServerFailsOpen(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	for _, banned := range []func(netip.Addr) (string, bool){
		func(netip.Addr) (string, bool) { panic("the manager is gone") },
		func(netip.Addr) (string, bool) { <-hang; return "", false },
	} {
		p := New(Settings{RejectBanned: "REJECT", Default: "DUNNO"}, Deps{Banned: banned})
		addr, s := serve(t, p, 50*time.Millisecond)
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := ask(t, conn, bufio.NewReader(conn), request("CONNECT", "203.0.113.5")); got != "action=DUNNO\n\n" {
			t.Errorf("got %q, want the default", got)
		}
		conn.Close()
		if st := s.Stats(); st.Answers[AnswerDefault] != 1 {
			t.Errorf("stats %+v", st)
		}
	}
}

// emfileListener fails its first accepts as a process out of descriptors does.
type emfileListener struct {
	net.Listener
	fails atomic.Int64
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// Running out of descriptors does not stop the service for good: it says it is
// degraded while accepts fail, and answers again once they pass.
func TestServerRidesOutRunningOutOfDescriptors(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &emfileListener{Listener: inner}
	ln.fails.Store(1 << 40)
	s := NewServer(quotaPolicy(&clock{time.Now()}), time.Second, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	for deadline := time.Now().Add(10 * time.Second); s.Stats().Accept.State != listener.StateDegraded; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("state %+v, want degraded", s.Stats().Accept)
		}
	}
	if err := s.Stats().Accept.Err; !strings.Contains(err, "too many open files") {
		t.Errorf("degraded with %q, want the system's error", err)
	}
	ln.fails.Store(0)
	conn, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := ask(t, conn, bufio.NewReader(conn), request("RCPT", "198.51.100.7")); got != "action=DUNNO\n\n" {
		t.Errorf("after the descriptors came back: %q", got)
	}
	if st := s.Stats().Accept.State; st != listener.StateAccepting {
		t.Errorf("state %s, want accepting", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}
