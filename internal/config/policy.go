package config

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/policy"
)

// Policy is the [policy] table: ban-server's Postfix policy delegation service. Nil in
// a Config without one: then nothing listens.
type Policy struct {
	// Listen is where Postfix reaches the service: "host:port", or "unix:/path" for a
	// socket (under Postfix's queue directory, to reach it from a chroot).
	Listen string
	// Settings are its answers and rules; Timeout bounds one decision.
	Settings policy.Settings
	Timeout  time.Duration
	// CompromisedActions are the log, mail, webhook or exec actions told of each
	// account flagged, with {user}.
	CompromisedActions []string
	// SocketGID is the group of a unix socket (mode 0660), -1 for none (0600).
	SocketGID int
	// AllowUIDs are the local users answered over TCP; AllowHosts, the hosts
	// elsewhere that are (an MTA on another host).
	AllowUIDs  []uint32
	AllowHosts []netip.Prefix
	// MaxConns bounds the connections served at once.
	MaxConns int
}

type policyData struct {
	Listen       *string                `toml:"listen"`
	RejectBanned *string                `toml:"reject_banned"`
	Default      *string                `toml:"default"`
	Timeout      *Duration              `toml:"timeout"`
	Quotas       map[string]quotaData   `toml:"quotas"`
	Compromised  *compromisedPolicyData `toml:"compromised"`

	SocketGroup    *string   `toml:"socket_group"`
	AllowUsers     *[]string `toml:"allow_users"`
	AllowHosts     *[]Prefix `toml:"allow_hosts"`
	MaxConnections *int      `toml:"max_connections"`
}

type quotaData struct {
	Key        *string   `toml:"key"`
	Messages   *int      `toml:"messages"`
	Recipients *int      `toml:"recipients"`
	Window     *Duration `toml:"window"`
	Action     *string   `toml:"action"`
}

type compromisedPolicyData struct {
	DistinctAddresses *int      `toml:"distinct_addresses"`
	DistinctNetworks  *int      `toml:"distinct_networks"`
	Window            *Duration `toml:"window"`
	Actions           *[]string `toml:"actions"`
}

// The policy service's defaults.
const (
	DefaultRejectBanned  = "554 5.7.1 Access denied: {jail}"
	DefaultPolicyTimeout = 100 * time.Millisecond
)

var quotaKeys = []string{"sasl_username", "sender", "client_address"}

// postfixActions are the words a policy answer may begin with (Postfix's access(5)),
// besides a 4xx or 5xx SMTP code.
var postfixActions = []string{"OK", "DUNNO", "REJECT", "DEFER", "DEFER_IF_REJECT", "DEFER_IF_PERMIT", "HOLD", "DISCARD",
	"WARN", "INFO", "PREPEND", "REDIRECT", "FILTER", "BCC"}

// checkAnswer says what is wrong with a policy answer, or "".
func checkAnswer(a string) string {
	if strings.ContainsAny(a, "\r\n") {
		return "holds a line break"
	}
	word, _, _ := strings.Cut(a, " ")
	if len(word) == 3 && (word[0] == '4' || word[0] == '5') && strings.Trim(word[1:], "0123456789") == "" {
		return ""
	}
	if !slices.Contains(postfixActions, strings.ToUpper(word)) {
		return fmt.Sprintf("begins with %q: want a Postfix access(5) action (DUNNO, REJECT, DEFER_IF_PERMIT, HOLD, ...) or a 4xx/5xx code", word)
	}
	return ""
}

// buildPolicy reads the [policy] table set in file.
func (l *loader) buildPolicy(file string, d policyData, cfg *Config) *Policy {
	p := &Policy{Settings: policy.Settings{RejectBanned: DefaultRejectBanned, Default: "DUNNO"}, Timeout: DefaultPolicyTimeout}
	bad := func(key, format string, args ...any) { l.fail(file, 0, "policy."+key, format, args...) }
	if d.Listen == nil || *d.Listen == "" {
		bad("listen", "missing: where Postfix reaches the service, like listen = \"unix:/var/spool/postfix/private/logban\" or \"127.0.0.1:10041\" (not 10031: Zimbra's CBPolicyD)")
	} else {
		p.Listen = *d.Listen
		if path, ok := strings.CutPrefix(p.Listen, "unix:"); ok {
			if !strings.HasPrefix(path, "/") {
				bad("listen", "%q: a socket's path must be absolute", p.Listen)
			}
		} else if _, _, err := net.SplitHostPort(p.Listen); err != nil {
			bad("listen", "%q: want host:port, like \"127.0.0.1:10041\", or unix:/path", p.Listen)
		}
	}
	answer := func(key string, v *string, into *string) {
		if v == nil {
			return
		}
		if why := checkAnswer(*v); why != "" {
			bad(key, "%q %s", *v, why)
		}
		*into = *v
	}
	l.policyPeers(file, d, p)
	answer("reject_banned", d.RejectBanned, &p.Settings.RejectBanned)
	answer("default", d.Default, &p.Settings.Default)
	if d.Timeout != nil {
		if p.Timeout = time.Duration(*d.Timeout); p.Timeout <= 0 || p.Timeout > 10*time.Second {
			bad("timeout", "must be between 0 and 10s (Postfix waits smtpd_policy_service_timeout, 100s, for an answer)")
		}
	}
	for name, q := range d.Quotas {
		key := "quotas." + name + "."
		if !farmName.MatchString(name) {
			bad("quotas."+name, "name a quota with 1 to 64 letters, digits, '-' or '_' (a farm counts it in a NATS stream of that name)")
		}
		quota := policy.Quota{Name: name, Key: "sasl_username", Window: time.Hour, Action: "DEFER_IF_PERMIT Sending quota exceeded, try later"}
		if q.Key != nil {
			if quota.Key = *q.Key; !slices.Contains(quotaKeys, quota.Key) {
				bad(key+"key", "unknown key %q; valid: %s", quota.Key, strings.Join(quotaKeys, ", "))
			}
		}
		if q.Messages != nil {
			quota.Messages = *q.Messages
		}
		if q.Recipients != nil {
			quota.Recipients = *q.Recipients
		}
		if quota.Messages < 0 || quota.Recipients < 0 || quota.Messages == 0 && quota.Recipients == 0 {
			bad(key+"messages", "set messages, recipients or both, each at least 1, per window")
		}
		if q.Window != nil {
			if quota.Window = time.Duration(*q.Window); quota.Window <= 0 {
				bad(key+"window", "must be longer than 0 (like \"1h\")")
			}
		}
		answer(key+"action", q.Action, &quota.Action)
		p.Settings.Quotas = append(p.Settings.Quotas, quota)
	}
	slices.SortFunc(p.Settings.Quotas, func(a, b policy.Quota) int { return cmp.Compare(a.Name, b.Name) })
	if c := d.Compromised; c != nil {
		comp := policy.Compromised{Window: time.Hour}
		if c.DistinctAddresses != nil {
			comp.Addresses = *c.DistinctAddresses
		}
		if c.DistinctNetworks != nil {
			comp.Networks = *c.DistinctNetworks
		}
		if comp.Addresses < 0 || comp.Networks < 0 || comp.Addresses == 1 || comp.Networks == 1 || comp.Addresses == 0 && comp.Networks == 0 {
			bad("compromised.distinct_addresses", "set distinct_addresses, distinct_networks or both, each at least 2")
		}
		if c.Window != nil {
			if comp.Window = time.Duration(*c.Window); comp.Window <= 0 {
				bad("compromised.window", "must be longer than 0 (like \"1h\")")
			}
		}
		if c.Actions != nil {
			for i, a := range *c.Actions {
				act, ok := cfg.Actions[a]
				if !ok {
					bad(fmt.Sprintf("compromised.actions[%d]", i), "unknown action %q; defined: %s", a, actionChoices(cfg))
					continue
				}
				if kind, _ := actions.Lookup(act.Type); !kind.Notifies {
					bad(fmt.Sprintf("compromised.actions[%d]", i), "action %q is of type %s, which takes no account; use a log, mail, webhook or exec action", a, act.Type)
					continue
				}
				p.CompromisedActions = append(p.CompromisedActions, a)
			}
		}
		p.Settings.Compromised = comp
	}
	return p
}
