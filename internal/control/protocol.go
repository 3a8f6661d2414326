// Package control is the protocol between ban-client and ban-server over a unix socket:
// one JSON request line, one JSON response line, per connection. Client is the typed Go
// API over it; Serve answers requests with an Engine.
//
// It carries requests and answers; it decides nothing about bans.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"time"

	"github.com/logban/logban/actions"
)

// Version is the protocol version; every response carries it, so a client can tell a
// logban socket from someone else's.
const Version = 1

// Commands.
const (
	cmdPing       = "ping"
	cmdStatus     = "status"
	cmdJailStatus = "jail-status"
	cmdBanIP      = "banip"
	cmdUnbanIP    = "unbanip"
	cmdReload     = "reload"
	cmdList       = "list"
	cmdUnbanAll   = "unban-all"
	cmdFarm       = "farm"
	cmdWhy        = "why"
	cmdHistory    = "history"
	cmdUnbanKey   = "unban-key"
	cmdPolicy     = "policy"
)

type request struct {
	Command string   `json:"cmd"`
	Jail    string   `json:"jail,omitempty"`
	Addrs   []string `json:"addrs,omitempty"`
	// Local asks an unban (of addresses, or of all) on this host only, not on the farm's.
	Local bool `json:"local,omitempty"`
	// Key is the account or device of an unban-key.
	Key string `json:"key,omitempty"`
	// Force asks a banip of a network wider than /16 (IPv4) or /32 (IPv6).
	Force bool `json:"force,omitempty"`
	// Brief asks a jail's status without its list of bans: its counts and files, cheap
	// to ask often while thousands of bans are in force.
	Brief bool `json:"brief,omitempty"`
}

type response struct {
	Logban int             `json:"logban"` // Version
	Error  *RemoteError    `json:"error,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// Engine is what the control server needs from the daemon.
type Engine interface {
	Status() Status
	// JailStatus returns a jail's state; with bans false, without its list of bans.
	JailStatus(name string, bans bool) (JailStatus, error)
	// BanIPs bans addrs (addresses as /32 or /128, or networks) in jail by hand,
	// recording them together. A network wider than /16 (IPv4) or /32 (IPv6) is
	// refused unless force.
	BanIPs(ctx context.Context, jail string, addrs []netip.Prefix, force bool) ([]AddrResult, error)
	// UnbanIP lifts addr's bans (an address as a /32 or /128, or a network) in jail, or
	// in every jail if jail is "": on every host of the farm, or on this one only if
	// local.
	UnbanIP(ctx context.Context, jail string, addr netip.Prefix, local bool) (AddrResult, error)
	// Reload rereads the configuration and applies it, or leaves everything as it was.
	Reload(ctx context.Context) error
	// List returns the bans of jail, or of every jail if jail is "".
	List(jail string) ([]BanInfo, error)
	// UnbanAll lifts every ban and returns how many: on every host of the farm, or on
	// this one only if local.
	UnbanAll(ctx context.Context, local bool) (int, error)
	// Farm returns the farm as this host sees it, or ErrNoFarm.
	Farm() (FarmStatus, error)
	// Why says why addr (an address as a /32 or /128, or a network) is banned: its
	// bans in force, with the lines that counted, the bans of networks holding it, and
	// its ban history.
	Why(ctx context.Context, addr netip.Prefix) (Why, error)
	// History returns the ban history of addr, or, for the zero Prefix, the addresses
	// and networks banned last.
	History(ctx context.Context, addr netip.Prefix) ([]HistoryEntry, error)
	// UnbanKey lifts the ban of an account or a device (key) in jail, a jail keyed by
	// user or device. The addresses banned with it keep their bans.
	UnbanKey(ctx context.Context, jail, key string) (KeyBanInfo, error)
	// PolicyStatus returns the Postfix policy service's figures, or ErrNotFound
	// without one.
	PolicyStatus() (PolicyStatus, error)
}

// Target is an address, or a network (Bits not 0), as the protocol carries it: JSON
// "addr" and "prefix_len".
type Target struct {
	Addr netip.Addr `json:"addr"`
	Bits int        `json:"prefix_len,omitempty"`
}

// TargetOf returns p as a Target.
func TargetOf(p netip.Prefix) Target {
	t := Target{Addr: p.Addr()}
	if !p.IsSingleIP() {
		t.Bits = p.Bits()
	}
	return t
}

// Prefix returns the target as a prefix: the address alone as a /32 or /128.
func (t Target) Prefix() netip.Prefix {
	return actions.Ban{Addr: t.Addr, Bits: t.Bits}.Prefix()
}

// String writes the target as an address, or a network in CIDR notation.
func (t Target) String() string { return actions.Target(t.Prefix()) }

// Why is what ban-client why shows of an address or a network.
type Why struct {
	Target
	Bans []BanInfo `json:"bans"`
	// HeldBy are the bans of networks that hold the address, though it has no ban of
	// its own.
	HeldBy  []BanInfo      `json:"held_by,omitempty"`
	History []HistoryEntry `json:"history"`
}

// HistoryEntry is the ban history of an address or network in one jail.
type HistoryEntry struct {
	Jail string `json:"jail"`
	Target
	Count      int       `json:"ban_count"`
	LastBanned time.Time `json:"last_banned"`
}

// FarmStatus is the farm as one host sees it.
type FarmStatus struct {
	Farm    string `json:"farm"`
	Node    string `json:"node"`
	Enforce bool   `json:"enforce"`
	// State is the connection's: "connected", "reconnecting", "connecting" or "closed".
	State   string   `json:"state"`
	Server  string   `json:"server,omitempty"` // connected to
	Servers []string `json:"servers"`          // known
	// Synced says every ban the farm holds has been applied here since the connection.
	Synced bool       `json:"synced"`
	Nodes  []FarmNode `json:"nodes"`
	// Missing are the farm's nodes this host does not see (their entries ended).
	Missing []string `json:"missing,omitempty"`
	Bans    int      `json:"farm_bans"`
	Outbox  int      `json:"outbox"`
	// FailuresShared were published for the farm's count; FailuresDropped were counted
	// here alone (the farm away, or too many at once).
	FailuresShared  int64 `json:"failures_shared"`
	FailuresDropped int64 `json:"failures_not_shared"`
	// Decided are bans this host published first; Applied, bans of others applied here;
	// Refused, bans refused because the address is a farm node's.
	Decided int64 `json:"decided"`
	Applied int64 `json:"applied"`
	Refused int64 `json:"refused"`
	// Ignored are bans of others not applied here: this host's ignore list holds them.
	Ignored int64 `json:"ignored"`
	// Forged are values refused because their signature did not hold.
	Forged int64 `json:"forged"`
	// Lost are bans this host decided too, but another host first.
	Lost int64 `json:"lost"`
	// LiftedHere are farm bans lifted on this host alone, until the farm's end.
	LiftedHere int `json:"lifted_here"`
	// Routes are the embedded NATS server's routes to the other seeds.
	Routes []FarmRoute `json:"routes,omitempty"`
	// Streams are the farm's bucket and streams: their leader and quorum.
	Streams []FarmStream `json:"streams,omitempty"`
	// LastWrite is when the farm last took a write from this host.
	LastWrite   time.Time `json:"last_write,omitzero"`
	Drift       []string  `json:"settings_drift,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// FarmRoute is a route of the embedded NATS server to another seed.
type FarmRoute struct {
	URL    string    `json:"url,omitempty"` // as configured; "" if dialled in
	Server string    `json:"server,omitempty"`
	Up     bool      `json:"up"`
	Since  time.Time `json:"since,omitzero"`
	RTT    string    `json:"rtt,omitempty"`
}

// FarmStream is one of the farm's bucket and streams, as last asked of.
type FarmStream struct {
	Name     string    `json:"name"`
	Leader   string    `json:"leader,omitempty"`
	Replicas int       `json:"replicas"`
	Current  int       `json:"current"` // replicas current with the leader, the leader among them
	Quorum   bool      `json:"quorum"`
	Err      string    `json:"error,omitempty"`
	At       time.Time `json:"at"`
}

// FarmNode is another node of the farm, as last announced.
type FarmNode struct {
	Name  string         `json:"name"`
	Addrs []netip.Prefix `json:"addrs"`
	Seen  time.Time      `json:"seen"`
}

// ErrNoFarm is returned by an Engine without a farm.
var ErrNoFarm = errors.New("this server is in no farm (no [farm] table in its configuration)")

// Status is the daemon's overview.
type Status struct {
	Version string   `json:"version"`
	Jails   []string `json:"jails"`
	// Degraded says what the daemon cannot do as it should, and what follows from it:
	// bans in force whose records failed (a full disk, a lost database). "" when all is well.
	Degraded string `json:"degraded,omitempty"`
	// DryRun says the server runs with -dry-run: its actions only log.
	DryRun bool `json:"dry_run,omitempty"`
}

// JailStatus is one jail's state, in the shape fail2ban-client users know.
type JailStatus struct {
	Name   string `json:"name"`
	Filter string `json:"filter"`
	// DryRun says the server runs with -dry-run: its actions only log.
	DryRun bool `json:"dry_run,omitempty"`
	// MaxRetry, FindTime and BanTime are the jail's counting rules (BanTime < 0: until
	// unbanned).
	MaxRetry        int           `json:"maxretry"`
	FindTime        time.Duration `json:"findtime_ns"`
	BanTime         time.Duration `json:"bantime_ns"`
	Files           []FileStatus  `json:"files"`
	CurrentlyFailed int           `json:"currently_failed"`
	TotalFailed     int64         `json:"total_failed"`
	CurrentlyBanned int           `json:"currently_banned"`
	TotalBanned     int64         `json:"total_banned"`
	Bans            []BanInfo     `json:"bans"`
	ActionErrors    int64         `json:"action_errors"`
	ActionsPending  int           `json:"actions_pending"` // failed calls waiting to be retried
	// ActionQueues are the calls waiting in each of the jail's actions' queues (an
	// action shared by jails has one queue for all).
	ActionQueues []ActionQueue `json:"action_queues,omitempty"`
	// Unrecorded are bans in force whose record failed and is being retried.
	Unrecorded int `json:"unrecorded,omitempty"`
	// Subnet is the jail's escalation to networks, if it has one.
	Subnet *SubnetStatus `json:"subnet,omitempty"`
	// Mode is what the jail counts: "failures" or "rate" (requests).
	Mode string `json:"mode,omitempty"`
	// Key is what the jail counts failures by: "address", "user" or "device".
	Key string `json:"key,omitempty"`
	// KeyBans are the bans of accounts or devices in force, in a jail keyed by them.
	KeyBans []KeyBanInfo `json:"key_bans,omitempty"`
	// KnownGood are failures not counted because the address logged in to the account
	// recently; Logins, the logins that worked the jail has seen.
	KnownGood int64 `json:"known_good_failures,omitempty"`
	Logins    int64 `json:"logins,omitempty"`
	// Evicted are addresses, networks and keys let go at the bound of their table
	// (MaxTracked) before findtime ended: a flood of new ones pushed them out.
	Evicted    int64 `json:"evicted,omitempty"`
	MaxTracked int   `json:"max_tracked,omitempty"`
	// ClockOffset is how far the jail's line times lie steadily behind the host's
	// clock, in seconds (negative: ahead), once found; ClockAdvice says what fixes it.
	ClockOffset float64 `json:"clock_offset_seconds,omitempty"`
	ClockAdvice string  `json:"clock_advice,omitempty"`
}

// SubnetStatus is a jail's escalation to networks: its settings and counts.
type SubnetStatus struct {
	IPv4      int           `json:"ipv4"` // prefix lengths; 0: never
	IPv6      int           `json:"ipv6"`
	Addresses int           `json:"addresses"`
	FindTime  time.Duration `json:"findtime_ns"`
	BanTime   time.Duration `json:"bantime_ns"` // < 0: until unbanned
	// Failing are networks with failing addresses within findtime; Refused, networks
	// not banned because they hold an address never banned.
	Failing int   `json:"failing"`
	Refused int64 `json:"refused"`
	// Banned are the networks banned in force.
	Banned int `json:"banned"`
}

// ActionQueue is how far behind one action is.
type ActionQueue struct {
	Action string `json:"action"`
	// Queued are calls waiting or being made.
	Queued int64 `json:"queued"`
	// Overflowed are calls that found the queue full since the start; they waited in
	// its overflow, where only the last call per address is kept.
	Overflowed int64 `json:"overflowed"`
}

// FileStatus is how reading one log file goes.
type FileStatus struct {
	Path      string `json:"path"`
	Behind    int64  `json:"bytes_behind"` // bytes written and not yet read
	Lines     int64  `json:"lines_read"`
	LongLines int64  `json:"long_lines_cut"`
	Rotations int64  `json:"rotations"`
	// Missing says the file is not there (yet): it is followed when it appears.
	Missing bool `json:"missing,omitempty"`
}

// BanInfo is one ban as shown to an operator.
type BanInfo struct {
	Jail string `json:"jail"`
	Target
	Failures int       `json:"failures"` // for a network: its addresses that failed
	BannedAt time.Time `json:"banned_at"`
	Expires  time.Time `json:"expires,omitzero"`     // zero: until unbanned
	By       string    `json:"decided_by,omitempty"` // the farm node that decided it
	Why      string    `json:"why,omitempty"`
	User     string    `json:"user,omitempty"` // the account, in a jail keyed by user
	// Lines are the last log lines that counted against the address, oldest first.
	Lines []string `json:"lines,omitempty"`
	// Count is how many times the address was banned in the jail, this ban included.
	Count int `json:"ban_count,omitempty"`
}

// KeyBanInfo is the ban of an account or a device, as shown to an operator.
type KeyBanInfo struct {
	Jail     string    `json:"jail"`
	Kind     string    `json:"kind"` // "user" or "device"
	Key      string    `json:"key"`
	User     string    `json:"user,omitempty"` // for a device, the account its lines last named
	Count    int       `json:"count"`          // failures, or requests, within findtime
	Addrs    []string  `json:"addrs"`          // the addresses seen with it within findtime
	BannedAt time.Time `json:"banned_at"`
	Expires  time.Time `json:"expires,omitzero"` // zero: until unbanned
}

// PolicyStatus is the Postfix policy service's state.
type PolicyStatus struct {
	Listen string `json:"listen"`
	// State is accepting, degraded (cannot accept for now: out of descriptors) or
	// stopped, since Since; StateErr is the error that degraded or stopped it.
	State    string    `json:"state"`
	Since    time.Time `json:"since,omitzero"`
	StateErr string    `json:"state_error,omitempty"`
	// Conns are the connections served now, of at most MaxConns; Full, how often a
	// connection waited for a slot. Refused are connections of peers that may not ask.
	Conns    int64 `json:"connections"`
	MaxConns int   `json:"max_connections"`
	Full     int64 `json:"full"`
	Refused  int64 `json:"refused"`
	// Holders and Accounts are the quota holders and the accounts with logins kept;
	// Dropped, those let go at the tables' bounds before their windows ended.
	Holders   int              `json:"holders"`
	Accounts  int              `json:"accounts"`
	Dropped   int64            `json:"dropped"`
	Requests  int64            `json:"requests"`
	Malformed int64            `json:"malformed"` // requests not read: their connections closed
	Answers   map[string]int64 `json:"answers"`   // by kind: dunno, banned, quota, default
	Quotas    []PolicyQuota    `json:"quotas"`
	// FarmCounted says the quotas' messages are counted across the farm; FarmErrors,
	// how many the farm could not count, judged by this host's own count.
	FarmCounted bool  `json:"farm_counted,omitempty"`
	FarmErrors  int64 `json:"farm_errors,omitempty"`
	// Near are the holders at 80% or more of a quota's limit, most used first.
	Near []PolicyHolder `json:"near_limits"`
	// Flagged are the last accounts flagged as logging in from too many places.
	Flagged []PolicyFlag `json:"flagged"`
}

// PolicyQuota is one quota's settings.
type PolicyQuota struct {
	Name       string        `json:"name"`
	Key        string        `json:"key"`
	Messages   int           `json:"messages"`
	Recipients int           `json:"recipients"`
	Window     time.Duration `json:"window_ns"`
}

// PolicyHolder is one holder's use of a quota within its window.
type PolicyHolder struct {
	Quota      string `json:"quota"`
	Holder     string `json:"holder"`
	Messages   int    `json:"messages"`
	Recipients int    `json:"recipients"`
}

// PolicyFlag is an account flagged, with the addresses it logged in from.
type PolicyFlag struct {
	Account  string    `json:"account"`
	Addrs    []string  `json:"addrs"`
	Networks int       `json:"networks"`
	At       time.Time `json:"at"`
}

// AddrResult says what a ban or unban request did to one address or network.
type AddrResult struct {
	Target
	// Done is true if the request changed something.
	Done bool `json:"done"`
	// Jails are the jails the address was banned or unbanned in.
	Jails []string `json:"jails,omitempty"`
	// Note explains a request that changed nothing ("already banned", "not banned",
	// why an address is never banned).
	Note string `json:"note,omitempty"`
}

// Error codes a server returns.
const (
	CodeBadRequest = "bad-request"
	CodeNotFound   = "not-found"
	CodeInternal   = "internal"
)

// RemoteError is an error the server returned.
type RemoteError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error returns the server's message.
func (e *RemoteError) Error() string { return e.Message }

// ErrNotFound is returned by an Engine for a jail that does not exist.
var ErrNotFound = errors.New("not found")
