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
	Addr     string `json:"addr"`
	At       int64  `json:"at"`    // unix ms: when it was decided
	Until    int64  `json:"until"` // unix ms: when it ends; 0 until unbanned
	By       string `json:"by"`    // the deciding node
	Why      string `json:"why"`
	Failures int    `json:"failures,omitempty"`
}

func valueOf(b actions.Ban) banValue {
	v := banValue{V: 1, Jail: b.Jail, Addr: b.Addr.String(), At: b.BannedAt.UnixMilli(), By: b.By, Why: b.Why, Failures: b.Failures}
	if !b.Permanent() {
		v.Until = b.Expires.UnixMilli()
	}
	return v
}

// record reads a value written by another host: nothing in it is trusted but what
// parses.
func (v banValue) record() (jails.Record, error) {
	addr, err := netip.ParseAddr(v.Addr)
	if err != nil || addr.Zone() != "" {
		return jails.Record{}, fmt.Errorf("address %q", v.Addr)
	}
	b := actions.Ban{Jail: v.Jail, Addr: addr.Unmap(), Failures: max(v.Failures, 0), BannedAt: time.UnixMilli(v.At), By: v.By, Why: v.Why}
	if v.Until != 0 {
		b.Expires = time.UnixMilli(v.Until)
	}
	return jails.Record{Ban: b}, nil
}

// outboxMessage is what waits in the outbox: a decision to publish, or an unban.
type outboxMessage struct {
	Op  string   `json:"op"` // opBan or opUnban
	Ban banValue `json:"ban"`
	// Rev is, for an unban, the revision of the ban lifted, as this host knew it; 0 if it
	// knew none.
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

// banKey is the key of addr's ban in jail.
func banKey(jail string, addr netip.Addr) string {
	return jail + "." + keyEscape.Replace(addr.String())
}

// addrToken is addr as one subject token.
func addrToken(addr netip.Addr) string { return keyEscape.Replace(addr.String()) }

// parseKey reads a ban's key back.
func parseKey(key string) (jail string, addr netip.Addr, err error) {
	jail, token, ok := strings.Cut(key, ".")
	if !ok {
		return "", netip.Addr{}, fmt.Errorf("key %q: no jail", key)
	}
	addr, err = netip.ParseAddr(keyUnescape.Replace(token))
	if err != nil {
		return "", netip.Addr{}, fmt.Errorf("key %q: %w", key, err)
	}
	return jail, addr, nil
}

// parseAddr reads an address as values carry it.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("address %q", s)
	}
	return a.Unmap(), nil
}
