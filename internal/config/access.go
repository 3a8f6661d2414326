package config

import (
	"fmt"
	"os/user"
	"strconv"
)

// Who may reach ban-server's sockets: the groups of the control socket and the
// policy service's, and the users the policy service answers over TCP. Names are
// resolved when the configuration is read, on the host that runs it.

// DefaultPolicyGroup is the group a policy socket is given, if it exists on the host:
// Postfix's, whose smtpd processes then connect. Without it, only root may.
const DefaultPolicyGroup = "postfix"

// DefaultPolicyUsers are the users whose processes the policy service answers over
// TCP: Postfix's smtpd runs as postfix (mail_owner), and root is root.
var DefaultPolicyUsers = []string{"root", "postfix"}

// lookupGroup returns the id of group name, a name or a number.
func lookupGroup(name string) (int, error) {
	if g, err := user.LookupGroup(name); err == nil {
		return strconv.Atoi(g.Gid)
	}
	if g, err := user.LookupGroupId(name); err == nil {
		return strconv.Atoi(g.Gid)
	}
	return -1, fmt.Errorf("no group %q on this host", name)
}

// lookupUser returns the id of user name, a name or a number.
func lookupUser(name string) (uint32, error) {
	u, err := user.Lookup(name)
	if err != nil {
		if u, err = user.LookupId(name); err != nil {
			return 0, fmt.Errorf("no user %q on this host", name)
		}
	}
	id, err := strconv.ParseUint(u.Uid, 10, 32)
	return uint32(id), err
}

// socketGroup resolves a socket_group setting at key in file: -1 for none set.
func (l *loader) socketGroup(file, key string, name *string) int {
	if name == nil || *name == "" {
		return -1
	}
	gid, err := lookupGroup(*name)
	if err != nil {
		l.fail(file, 0, key, "%v; name a group whose members may connect, or leave it out", err)
	}
	return gid
}

// policyPeers resolves the policy service's socket group and allowed users and hosts.
func (l *loader) policyPeers(file string, d policyData, p *Policy) {
	if d.SocketGroup != nil {
		p.SocketGID = l.socketGroup(file, "policy.socket_group", d.SocketGroup)
	} else if gid, err := lookupGroup(DefaultPolicyGroup); err == nil {
		p.SocketGID = gid
	} else {
		p.SocketGID = -1
	}
	if d.AllowUsers != nil {
		for i, name := range *d.AllowUsers {
			uid, err := lookupUser(name)
			if err != nil {
				l.fail(file, 0, fmt.Sprintf("policy.allow_users[%d]", i), "%v", err)
				continue
			}
			p.AllowUIDs = append(p.AllowUIDs, uid)
		}
	} else {
		for _, name := range DefaultPolicyUsers {
			if uid, err := lookupUser(name); err == nil { // a host without Postfix has no postfix user
				p.AllowUIDs = append(p.AllowUIDs, uid)
			}
		}
	}
	if d.AllowHosts != nil {
		p.AllowHosts = prefixes(*d.AllowHosts)
	}
	p.MaxConns = DefaultPolicyMaxConns
	if d.MaxConnections != nil {
		if p.MaxConns = *d.MaxConnections; p.MaxConns < 1 || p.MaxConns > 100_000 {
			l.fail(file, 0, "policy.max_connections", "must be between 1 and 100000 (Postfix keeps one per smtpd process), got %d", p.MaxConns)
		}
	}
}

// DefaultPolicyMaxConns bounds the policy service's connections unless set: well above
// Postfix's default_process_limit (100) times its services.
const DefaultPolicyMaxConns = 1000
