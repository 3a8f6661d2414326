package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"syscall"

	"github.com/logban/logban/actions"
)

// ErrUnreachable reports that no server answers on the socket.
var ErrUnreachable = errors.New("ban-server is not running")

// ErrPermission reports a socket this user may not connect to.
var ErrPermission = errors.New("permission denied on the control socket")

// ErrNotLogban reports a socket that answers, but not as ban-server does.
var ErrNotLogban = errors.New("not a ban-server socket")

// Client talks to a ban-server over its control socket.
type Client struct {
	path string
}

// NewClient returns a client for the socket at path. It connects per request.
func NewClient(path string) *Client { return &Client{path: path} }

// Ping checks that a ban-server answers.
func (c *Client) Ping(ctx context.Context) error {
	return c.call(ctx, request{Command: cmdPing}, nil)
}

// Status returns the daemon's overview.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.call(ctx, request{Command: cmdStatus}, &s)
	return s, err
}

// JailStatus returns one jail's state.
func (c *Client) JailStatus(ctx context.Context, jail string) (JailStatus, error) {
	var s JailStatus
	err := c.call(ctx, request{Command: cmdJailStatus, Jail: jail}, &s)
	return s, err
}

// JailStatusBrief returns one jail's state without its list of bans (Bans is nil): its
// counts and files, for a caller that asks often during an attack.
func (c *Client) JailStatusBrief(ctx context.Context, jail string) (JailStatus, error) {
	var s JailStatus
	err := c.call(ctx, request{Command: cmdJailStatus, Jail: jail, Brief: true}, &s)
	return s, err
}

// BanIP bans addrs (addresses as /32 or /128, or networks) in jail; a network wider
// than /16 (IPv4) or /32 (IPv6) is refused.
func (c *Client) BanIP(ctx context.Context, jail string, addrs ...netip.Prefix) ([]AddrResult, error) {
	return c.banIP(ctx, jail, addrs, false)
}

// BanIPForce is BanIP with networks of any width.
func (c *Client) BanIPForce(ctx context.Context, jail string, addrs ...netip.Prefix) ([]AddrResult, error) {
	return c.banIP(ctx, jail, addrs, true)
}

func (c *Client) banIP(ctx context.Context, jail string, addrs []netip.Prefix, force bool) ([]AddrResult, error) {
	var r []AddrResult
	err := c.call(ctx, request{Command: cmdBanIP, Jail: jail, Addrs: addrStrings(addrs), Force: force}, &r)
	return r, err
}

// UnbanIP lifts the bans of addrs (addresses as /32 or /128, or networks) in jail, or in
// every jail if jail is "".
func (c *Client) UnbanIP(ctx context.Context, jail string, addrs ...netip.Prefix) ([]AddrResult, error) {
	var r []AddrResult
	err := c.call(ctx, request{Command: cmdUnbanIP, Jail: jail, Addrs: addrStrings(addrs)}, &r)
	return r, err
}

// UnbanIPHere lifts the bans of addrs on the server's host only, not on its farm's.
func (c *Client) UnbanIPHere(ctx context.Context, jail string, addrs ...netip.Prefix) ([]AddrResult, error) {
	var r []AddrResult
	err := c.call(ctx, request{Command: cmdUnbanIP, Jail: jail, Addrs: addrStrings(addrs), Local: true}, &r)
	return r, err
}

// Farm returns the server's farm as its host sees it.
func (c *Client) Farm(ctx context.Context) (FarmStatus, error) {
	var r FarmStatus
	err := c.call(ctx, request{Command: cmdFarm}, &r)
	return r, err
}

// Why says why addr (an address as a /32 or /128, or a network) is banned: its bans
// with the lines that counted, and its history.
func (c *Client) Why(ctx context.Context, addr netip.Prefix) (Why, error) {
	var r Why
	err := c.call(ctx, request{Command: cmdWhy, Addrs: addrStrings([]netip.Prefix{addr})}, &r)
	return r, err
}

// History returns the ban history of addr (an address as a /32 or /128, or a network),
// or, for the zero Prefix, the addresses and networks banned last.
func (c *Client) History(ctx context.Context, addr netip.Prefix) ([]HistoryEntry, error) {
	req := request{Command: cmdHistory}
	if addr.IsValid() {
		req.Addrs = addrStrings([]netip.Prefix{addr})
	}
	var r []HistoryEntry
	err := c.call(ctx, req, &r)
	return r, err
}

// Reload asks the server to reread its configuration, and waits for the outcome.
func (c *Client) Reload(ctx context.Context) error {
	return c.call(ctx, request{Command: cmdReload}, nil)
}

// List returns the bans of jail, or of every jail if jail is "".
func (c *Client) List(ctx context.Context, jail string) ([]BanInfo, error) {
	var r []BanInfo
	err := c.call(ctx, request{Command: cmdList, Jail: jail}, &r)
	return r, err
}

// UnbanAllHere lifts every ban on the server's host only, not on its farm's, and returns
// how many there were.
func (c *Client) UnbanAllHere(ctx context.Context) (int, error) {
	var n int
	err := c.call(ctx, request{Command: cmdUnbanAll, Local: true}, &n)
	return n, err
}

// UnbanAll lifts every ban and returns how many there were.
func (c *Client) UnbanAll(ctx context.Context) (int, error) {
	var n int
	err := c.call(ctx, request{Command: cmdUnbanAll}, &n)
	return n, err
}

// UnbanKey lifts the ban of an account or a device in jail.
func (c *Client) UnbanKey(ctx context.Context, jail, key string) (KeyBanInfo, error) {
	var out KeyBanInfo
	err := c.call(ctx, request{Command: cmdUnbanKey, Jail: jail, Key: key}, &out)
	return out, err
}

// PolicyStatus returns the Postfix policy service's state.
func (c *Client) PolicyStatus(ctx context.Context) (PolicyStatus, error) {
	var out PolicyStatus
	err := c.call(ctx, request{Command: cmdPolicy}, &out)
	return out, err
}

func addrStrings(addrs []netip.Prefix) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = actions.Target(a)
	}
	return out
}

func (c *Client) call(ctx context.Context, req request, out any) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w (no server on %s)", ErrUnreachable, c.path)
		}
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("%w %s", ErrPermission, c.path)
		}
		return fmt.Errorf("connecting to %s: %w", c.path, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	line, _ := json.Marshal(req)
	if _, err := conn.Write(append(line, '\n')); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// ban-server reads every request; a peer that hangs up first is something else.
		return fmt.Errorf("%s: %w: it closed the connection (%v)", c.path, ErrNotLogban, err)
	}
	reply, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil && len(reply) == 0 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s: %w: it closed the connection without a reply", c.path, ErrNotLogban)
	}
	var resp response
	if err := json.Unmarshal(reply, &resp); err != nil || resp.Logban == 0 {
		return fmt.Errorf("%s: %w", c.path, ErrNotLogban)
	}
	if resp.Error != nil {
		return resp.Error
	}
	if out != nil && resp.Data != nil {
		if err := json.Unmarshal(resp.Data, out); err != nil {
			return fmt.Errorf("reply from %s: %w", c.path, err)
		}
	}
	return nil
}
