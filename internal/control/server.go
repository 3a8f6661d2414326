package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/logban/logban/actions"
)

// maxSocketPath is the size of sun_path on Linux, its terminating NUL included.
const maxSocketPath = 108

// maxRequest bounds a request line.
const maxRequest = 1 << 20

// Listen opens the control socket at path with mode 0600, creating its folder if needed.
// A socket left behind by a server that died is replaced; a live server's socket, or a
// file that is not a socket, is an error.
func Listen(path string) (net.Listener, error) {
	if len(path) >= maxSocketPath {
		return nil, fmt.Errorf("control socket %s: path is %d bytes, longer than a unix socket allows (%d); choose a shorter [server] socket", path, len(path), maxSocketPath-1)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("control socket folder: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("control socket %s: exists and is not a socket; remove it or choose another [server] socket", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s: another server is listening on it", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("control socket %s: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale control socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

// MaxConns is how many connections the control server serves at once; more wait to be
// accepted.
const MaxConns = 64

// Serve answers requests on ln with engine until ctx is done, then closes ln and waits
// for the requests under way. A failure to accept that passes (out of file descriptors,
// a connection aborted) is ridden out with a growing pause, as net/http does: a control
// socket that cannot accept for a while must not stop the server.
func Serve(ctx context.Context, ln net.Listener, engine Engine, logger *slog.Logger) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	slots := make(chan struct{}, MaxConns)
	var pause time.Duration
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		conn, err := ln.Accept()
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				return nil
			}
			if !passing(err) {
				return fmt.Errorf("control socket: %w", err)
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			logger.Warn("control socket cannot accept; retrying", "err", err, "retry_in", pause)
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		pause = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			defer conn.Close()
			serveConn(ctx, conn, engine, logger)
		}()
	}
}

// passing reports whether an accept error may pass: the process or the system is out of
// descriptors or buffers for now, or a client went away before it was accepted.
func passing(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func serveConn(ctx context.Context, conn net.Conn, engine Engine, logger *slog.Logger) {
	conn.SetDeadline(time.Now().Add(time.Minute)) //nolint:errcheck // a failed deadline only loses the timeout
	r := bufio.NewReader(&limitedReader{conn, maxRequest})
	line, err := r.ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return
	}
	var req request
	var resp response
	if err := json.Unmarshal(line, &req); err != nil {
		resp.Error = &RemoteError{Code: CodeBadRequest, Message: "request is not JSON: " + err.Error()}
	} else {
		data, err := handle(ctx, engine, req)
		if err != nil {
			resp.Error = remoteError(err)
			logger.Debug("control request refused", "cmd", req.Command, "err", err)
		} else if data != nil {
			resp.Data, _ = json.Marshal(data)
		}
	}
	resp.Logban = Version
	out, _ := json.Marshal(resp)
	conn.Write(append(out, '\n')) //nolint:errcheck // the client is gone; nothing to tell
}

func handle(ctx context.Context, engine Engine, req request) (any, error) {
	switch req.Command {
	case cmdPing:
		return nil, nil
	case cmdStatus:
		return engine.Status(), nil
	case cmdJailStatus:
		return engine.JailStatus(req.Jail)
	case cmdBanIP:
		addrs, err := parseAddrs(req.Addrs)
		if err != nil {
			return nil, err
		}
		if req.Jail == "" {
			return nil, &RemoteError{Code: CodeBadRequest, Message: "banip needs a jail"}
		}
		return engine.BanIPs(ctx, req.Jail, addrs)
	case cmdUnbanIP:
		addrs, err := parseAddrs(req.Addrs)
		if err != nil {
			return nil, err
		}
		var results []AddrResult
		for _, a := range addrs {
			r, err := engine.UnbanIP(ctx, req.Jail, a, req.Local)
			if err != nil {
				return nil, err
			}
			results = append(results, r)
		}
		return results, nil
	case cmdReload:
		return nil, engine.Reload(ctx)
	case cmdList:
		return engine.List(req.Jail)
	case cmdUnbanAll:
		return engine.UnbanAll(ctx, req.Local)
	case cmdFarm:
		return engine.Farm()
	case cmdWhy:
		addrs, err := parseAddrs(req.Addrs)
		if err != nil {
			return nil, err
		}
		return engine.Why(ctx, addrs[0])
	case cmdHistory:
		var addr netip.Prefix
		if len(req.Addrs) > 0 {
			addrs, err := parseAddrs(req.Addrs)
			if err != nil {
				return nil, err
			}
			addr = addrs[0]
		}
		return engine.History(ctx, addr)
	case cmdPolicy:
		return engine.PolicyStatus()
	case cmdUnbanKey:
		if req.Jail == "" || req.Key == "" {
			return nil, &RemoteError{Code: CodeBadRequest, Message: "unban-key needs a jail and a key"}
		}
		return engine.UnbanKey(ctx, req.Jail, req.Key)
	}
	return nil, &RemoteError{Code: CodeBadRequest, Message: fmt.Sprintf("unknown command %q", req.Command)}
}

// parseAddrs reads the addresses and networks of a request (actions.ParseTarget).
func parseAddrs(ss []string) ([]netip.Prefix, error) {
	if len(ss) == 0 {
		return nil, &RemoteError{Code: CodeBadRequest, Message: "no addresses given"}
	}
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		p, err := actions.ParseTarget(s)
		if err != nil {
			msg := fmt.Sprintf("%q is not an IP address or network", s)
			if strings.Contains(s, "/") {
				msg = fmt.Sprintf("%q: %v", s, err)
			}
			return nil, &RemoteError{Code: CodeBadRequest, Message: msg}
		}
		out[i] = p
	}
	return out, nil
}

func remoteError(err error) *RemoteError {
	var re *RemoteError
	switch {
	case errors.As(err, &re):
		return re
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrNoFarm):
		return &RemoteError{Code: CodeNotFound, Message: err.Error()}
	}
	return &RemoteError{Code: CodeInternal, Message: err.Error()}
}

// limitedReader fails a request line longer than n bytes instead of reading it forever.
type limitedReader struct {
	c net.Conn
	n int
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("request too long")
	}
	if len(p) > l.n {
		p = p[:l.n]
	}
	n, err := l.c.Read(p)
	l.n -= n
	return n, err
}
