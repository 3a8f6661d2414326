package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/logban/logban/actions"
)

type fakeEngine struct {
	banned map[netip.Prefix]bool
	reload error
}

func (e *fakeEngine) Status() Status { return Status{Version: "test", Jails: []string{"sasl"}} }
func (e *fakeEngine) JailStatus(name string, _ bool) (JailStatus, error) {
	if name != "sasl" {
		return JailStatus{}, fmt.Errorf("jail %q: %w", name, ErrNotFound)
	}
	return JailStatus{Name: "sasl", CurrentlyBanned: len(e.banned)}, nil
}
func (e *fakeEngine) BanIPs(_ context.Context, jail string, addrs []netip.Prefix, _ bool) ([]AddrResult, error) {
	var out []AddrResult
	for _, p := range addrs {
		if p.Addr().IsLoopback() {
			out = append(out, AddrResult{Target: TargetOf(p), Note: "on the ignore list"})
			continue
		}
		e.banned[p] = true
		out = append(out, AddrResult{Target: TargetOf(p), Done: true, Jails: []string{jail}})
	}
	return out, nil
}
func (e *fakeEngine) UnbanIP(_ context.Context, _ string, p netip.Prefix, _ bool) (AddrResult, error) {
	if !e.banned[p] {
		return AddrResult{Target: TargetOf(p), Note: "not banned"}, nil
	}
	delete(e.banned, p)
	return AddrResult{Target: TargetOf(p), Done: true, Jails: []string{"sasl"}}, nil
}
func (e *fakeEngine) Reload(context.Context) error { return e.reload }
func (e *fakeEngine) List(jail string) ([]BanInfo, error) {
	var out []BanInfo
	for a := range e.banned {
		out = append(out, BanInfo{Jail: "sasl", Target: TargetOf(a)})
	}
	return out, nil
}
func (e *fakeEngine) Farm() (FarmStatus, error) { return FarmStatus{}, ErrNoFarm }

func (e *fakeEngine) Why(_ context.Context, p netip.Prefix) (Why, error) {
	return Why{Target: TargetOf(p)}, nil
}

func (e *fakeEngine) History(context.Context, netip.Prefix) ([]HistoryEntry, error) { return nil, nil }
func (e *fakeEngine) PolicyStatus() (PolicyStatus, error)                           { return PolicyStatus{}, ErrNotFound }
func (e *fakeEngine) UnbanKey(context.Context, string, string) (KeyBanInfo, error) {
	return KeyBanInfo{}, ErrNotFound
}

func (e *fakeEngine) UnbanAll(context.Context, bool) (int, error) {
	n := len(e.banned)
	clear(e.banned)
	return n, nil
}

func serve(t *testing.T, engine Engine) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "logban.sock")
	ln, err := Listen(path, -1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- Serve(ctx, ln, engine, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return path
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	engine := &fakeEngine{banned: map[netip.Prefix]bool{}}
	path := serve(t, engine)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	c := NewClient(path)
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if s, err := c.Status(ctx); err != nil || s.Jails[0] != "sasl" {
		t.Errorf("Status = %+v, %v", s, err)
	}
	a := netip.MustParseAddr("203.0.113.5")
	r, err := c.BanIP(ctx, "sasl", actions.Host(a), actions.Host(netip.MustParseAddr("127.0.0.1")))
	if err != nil || len(r) != 2 || !r[0].Done || r[1].Done || r[1].Note != "on the ignore list" {
		t.Errorf("BanIP = %+v, %v", r, err)
	}
	if s, err := c.JailStatus(ctx, "sasl"); err != nil || s.CurrentlyBanned != 1 {
		t.Errorf("JailStatus = %+v, %v", s, err)
	}
	_, err = c.JailStatus(ctx, "nope")
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != CodeNotFound || re.Message != `jail "nope": not found` {
		t.Errorf("JailStatus(nope) = %v", err)
	}
	if r, err := c.UnbanIP(ctx, "", actions.Host(a)); err != nil || !r[0].Done {
		t.Errorf("UnbanIP = %+v, %v", r, err)
	}
	engine.reload = errors.New("config.toml: jails.x.maxretry: must be at least 1, got 0")
	if err := c.Reload(ctx); err == nil || err.Error() != engine.reload.Error() {
		t.Errorf("Reload = %v", err)
	}
}

func TestBadRequests(t *testing.T) {
	path := serve(t, &fakeEngine{banned: map[netip.Prefix]bool{}})
	c := NewClient(path)
	for _, req := range []request{
		{Command: "explode"},
		{Command: cmdBanIP, Jail: "sasl", Addrs: []string{"mail.example.com"}},
		{Command: cmdBanIP, Addrs: []string{"192.0.2.1"}},
		{Command: cmdUnbanIP},
	} {
		err := c.call(context.Background(), req, nil)
		var re *RemoteError
		if !errors.As(err, &re) || re.Code != CodeBadRequest {
			t.Errorf("%+v: %v, want a bad-request error", req, err)
		}
	}
}

func TestUnreachable(t *testing.T) {
	err := NewClient(filepath.Join(t.TempDir(), "none.sock")).Ping(context.Background())
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("got %v, want ErrUnreachable", err)
	}
}

func TestNotLogbanSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "220 smtp.example.com ESMTP\n")
			c.Close()
		}
	}()
	if err := NewClient(path).Ping(context.Background()); !errors.Is(err, ErrNotLogban) {
		t.Errorf("got %v, want ErrNotLogban", err)
	}
	if _, err := Listen(path, -1); err == nil {
		t.Error("Listen took over a live socket")
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stale.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // the socket file stays, as after a crash
	ln, err = Listen(path, -1)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln.Close()
}

func TestListenRefusesNonSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "file")
	os.WriteFile(path, []byte("precious"), 0o644)
	if _, err := Listen(path, -1); err == nil {
		t.Fatal("Listen replaced a regular file")
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Error("file changed")
	}
}

// flakyListener fails to accept with err fails times, then hands out conns.
type flakyListener struct {
	net.Listener
	err   error
	fails int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", l.err)}
	}
	return l.Listener.Accept()
}

// Running out of descriptors does not stop the control server: it waits and accepts
// again. An error that does not pass still ends Serve.
func TestServeRidesOutAcceptErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logban.sock")
	ln, err := Listen(path, -1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, &flakyListener{Listener: ln, err: syscall.EMFILE, fails: 5}, &fakeEngine{banned: map[netip.Prefix]bool{}}, slog.New(slog.DiscardHandler))
	}()
	if err := NewClient(path).Ping(context.Background()); err != nil {
		t.Fatalf("ping after accept errors: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}

	ln2, _ := net.Listen("unix", filepath.Join(t.TempDir(), "x.sock"))
	err = Serve(context.Background(), &flakyListener{Listener: ln2, err: syscall.EINVAL, fails: 1}, &fakeEngine{}, slog.New(slog.DiscardHandler))
	if !errors.Is(err, syscall.EINVAL) {
		t.Errorf("Serve with a lasting accept error: %v", err)
	}
}

// countingListener counts the connections it accepted.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// stuckEngine's Status waits until released, telling entered of each call.
type stuckEngine struct {
	fakeEngine
	entered, release chan struct{}
}

func (e *stuckEngine) Status() Status {
	e.entered <- struct{}{}
	<-e.release
	return e.fakeEngine.Status()
}

// No more than MaxConns connections are served at once: with every one busy, the server
// accepts no more, and the clients beyond them are served as slots free.
func TestServeLimitsConnections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logban.sock")
	ln, err := Listen(path, -1)
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	engine := &stuckEngine{entered: make(chan struct{}), release: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Serve(ctx, cl, engine, slog.New(slog.DiscardHandler))

	const clients = MaxConns + 10
	errs := make(chan error, clients)
	for range clients {
		go func() { _, err := NewClient(path).Status(context.Background()); errs <- err }()
	}
	for range MaxConns {
		<-engine.entered
	}
	// Every slot is held by a request in Status: the server cannot have taken another.
	if n := cl.accepted.Load(); n != MaxConns {
		t.Errorf("accepted %d connections with all %d slots busy", n, MaxConns)
	}
	go func() {
		for range clients - MaxConns {
			<-engine.entered
		}
	}()
	close(engine.release)
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// FuzzServeConn: whatever a client sends, the server answers with one JSON line saying
// it is logban, or closes; it never panics or hangs.
// go test -fuzz FuzzServeConn ./internal/control
func FuzzServeConn(f *testing.F) {
	for _, s := range []string{
		`{"cmd":"ping"}` + "\n",
		`{"cmd":"banip","jail":"sasl","addrs":["203.0.113.5","2001:db8::1"]}` + "\n",
		`{"cmd":"unbanip","addrs":["fe80::1%eth0"]}` + "\n",
		`{"cmd":"jail-status","jail":"sasl"}`,
		`{"cmd":"list"}`, `{"cmd":"reload"}`, `{"cmd":"unban-all"}`, `{"cmd":"status"}`,
		"", "\n", "{", `{"cmd":1}`, `{"cmd":"banip","addrs":[1,2]}`, "\x00\xff\n",
	} {
		f.Add([]byte(s))
	}
	engine := &fakeEngine{banned: map[netip.Prefix]bool{}}
	f.Fuzz(func(t *testing.T, req []byte) {
		server, client := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer server.Close()
			serveConn(context.Background(), server, engine, slog.New(slog.DiscardHandler))
		}()
		go func() {
			client.Write(req)
			if !bytes.HasSuffix(req, []byte("\n")) {
				client.Write([]byte("\n"))
			}
		}()
		reply, err := io.ReadAll(client)
		<-done
		if err != nil || len(reply) == 0 {
			return // closed without an answer: allowed
		}
		var resp response
		if err := json.Unmarshal(reply, &resp); err != nil || resp.Logban != Version || !bytes.HasSuffix(reply, []byte("\n")) {
			t.Fatalf("request %q: reply %q (%v)", req, reply, err)
		}
	})
}

// Clients that connect and say nothing hold a slot each only until their request's
// time runs out: with every slot taken by one, a real client is still answered.
func TestSlowClientsCannotHoldTheSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logban.sock")
	ln, err := Listen(path, -1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Serve(ctx, ln, &fakeEngine{banned: map[netip.Prefix]bool{}}, slog.New(slog.DiscardHandler))
	for range MaxConns {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	pctx, pcancel := context.WithTimeout(context.Background(), 6*requestTimeout)
	defer pcancel()
	if err := NewClient(path).Ping(pctx); err != nil {
		t.Fatalf("with %d silent clients connected, ping: %v", MaxConns, err)
	}
}
