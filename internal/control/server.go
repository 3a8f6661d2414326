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
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/listener"
)

// maxRequest bounds a request line.
const maxRequest = 1 << 20

// Listen opens the control socket at path, creating its folder if needed, with mode 0600,
// or 0660 and the group gid if gid is not -1 (its members may then use ban-client). A
// socket left behind by a server that died is replaced; a live server's socket, or a
// file that is not a socket, is an error.
func Listen(path string, gid int) (net.Listener, error) {
	if len(path) > listener.MaxSocketPath {
		return nil, fmt.Errorf("control socket %s: path is %d bytes, longer than a unix socket allows (%d); choose a shorter [server] socket", path, len(path), listener.MaxSocketPath)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("control socket folder: %w", err)
	}
	perm := fs.FileMode(0o600)
	if gid != -1 {
		perm = 0o660
	}
	ln, err := listener.Unix(path, perm, gid)
	switch {
	case errors.Is(err, listener.ErrNotSocket):
		return nil, fmt.Errorf("control socket %s: exists and is not a socket; remove it or choose another [server] socket", path)
	case errors.Is(err, listener.ErrInUse):
		return nil, fmt.Errorf("control socket %s: another server is listening on it", path)
	case err != nil:
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

// MaxConns is how many connections the control server serves at once; more wait to be
// accepted.
const MaxConns = 64

// requestTimeout bounds the time a client has to send its request, so that slow
// clients cannot keep the connections' slots; answerTimeout, the time to take the
// answer once made.
const (
	requestTimeout = 5 * time.Second
	answerTimeout  = 10 * time.Second
)

// Serve answers requests on ln with engine until ctx is done, then closes ln and waits
// for the requests under way. A failure to accept that passes (out of file descriptors,
// a connection aborted) is ridden out with a growing pause: a control socket that cannot
// accept for a while must not stop the server.
func Serve(ctx context.Context, ln net.Listener, engine Engine, logger *slog.Logger) error {
	s := listener.Server{Name: "control socket", MaxConns: MaxConns, Logger: logger,
		Handle: func(ctx context.Context, conn net.Conn) { serveConn(ctx, conn, engine, logger) }}
	return s.Serve(ctx, ln)
}

func serveConn(ctx context.Context, conn net.Conn, engine Engine, logger *slog.Logger) {
	conn.SetReadDeadline(time.Now().Add(requestTimeout)) //nolint:errcheck // a failed deadline only loses the timeout
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
	conn.SetWriteDeadline(time.Now().Add(answerTimeout)) //nolint:errcheck // as above
	conn.Write(append(out, '\n'))                        //nolint:errcheck // the client is gone; nothing to tell
}

func handle(ctx context.Context, engine Engine, req request) (any, error) {
	switch req.Command {
	case cmdPing:
		return nil, nil
	case cmdStatus:
		return engine.Status(), nil
	case cmdJailStatus:
		return engine.JailStatus(req.Jail, !req.Brief)
	case cmdBanIP:
		addrs, err := parseAddrs(req.Addrs)
		if err != nil {
			return nil, err
		}
		if req.Jail == "" {
			return nil, &RemoteError{Code: CodeBadRequest, Message: "banip needs a jail"}
		}
		return engine.BanIPs(ctx, req.Jail, addrs, req.Force)
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
