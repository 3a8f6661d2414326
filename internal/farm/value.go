package farm

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/jails"
)

// banValue is a ban as the bucket holds it.
type banValue struct {
	V        int    `json:"v"`
	Jail     string `json:"jail"`
	Addr     string `json:"addr"`  // an address, or a network in CIDR notation
	At       int64  `json:"at"`    // unix ms: when it was decided
	Until    int64  `json:"until"` // unix ms: when it ends; 0 until unbanned
	By       string `json:"by"`    // the deciding node
	Why      string `json:"why"`
	Failures int    `json:"failures,omitempty"`
	User     string `json:"user,omitempty"` // the account, in a jail keyed by user
}

func valueOf(b actions.Ban) banValue {
	v := banValue{V: 1, Jail: b.Jail, Addr: b.Target(), At: b.BannedAt.UnixMilli(), By: b.By, Why: b.Why, Failures: b.Failures, User: b.User}
	if !b.Permanent() {
		v.Until = b.Expires.UnixMilli()
	}
	return v
}

// record reads a value written by another host: nothing in it is trusted but what
// parses.
func (v banValue) record() (jails.Record, error) {
	p, err := actions.ParseTarget(v.Addr)
	if err != nil {
		return jails.Record{}, fmt.Errorf("address %q", v.Addr)
	}
	b := actions.BanOf(v.Jail, p)
	b.Failures, b.BannedAt, b.By, b.Why, b.User = max(v.Failures, 0), time.UnixMilli(v.At), v.By, v.Why, v.User
	if v.Until != 0 {
		b.Expires = time.UnixMilli(v.Until)
	}
	return jails.Record{Ban: b}, nil
}

// outboxMessage is what waits in the outbox: a decision to publish, or an unban.
type outboxMessage struct {
	Op  string   `json:"op"` // opBan or opUnban
	Ban banValue `json:"ban"`
	// Rev is, for an unban, the revision of the ban lifted, as this host knew it (0 if it
	// knew none); for a ban, the bans bucket's newest revision this host had seen when it
	// decided.
	Rev uint64 `json:"rev,omitempty"`
	// At is when it was queued, unix ms.
	At int64 `json:"at"`
}

const (
	opBan   = "ban"
	opUnban = "unban"
)

func (m outboxMessage) marshal() []byte {
	b, _ := json.Marshal(m) // plain fields: it cannot fail
	return b
}

var keyEscape = strings.NewReplacer(".", "-", ":", "_")
var keyUnescape = strings.NewReplacer("-", ".", "_", ":")

// banKey is the key of the ban of what (an address as a /32 or /128, or a network) in
// jail: jail.203-0-113-5, jail.198-51-100-0/24, jail.2001_db8__5.
func banKey(jail string, what netip.Prefix) string {
	return jail + "." + keyEscape.Replace(actions.Target(what))
}

// addrToken is addr as one subject token.
func addrToken(addr netip.Addr) string { return keyEscape.Replace(addr.String()) }

// parseKey reads a ban's key back.
func parseKey(key string) (jail string, what netip.Prefix, err error) {
	jail, token, ok := strings.Cut(key, ".")
	if !ok {
		return "", netip.Prefix{}, fmt.Errorf("key %q: no jail", key)
	}
	what, err = actions.ParseTarget(keyUnescape.Replace(token))
	if err != nil {
		return "", netip.Prefix{}, fmt.Errorf("key %q: %w", key, err)
	}
	return jail, what, nil
}

// parseAddr reads an address as values carry it.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("address %q", s)
	}
	return a.Unmap(), nil
}
