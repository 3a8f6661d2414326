package actions

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/google/nftables/expr"
)

func init() {
	Register(Kind{
		Name:    "throttle",
		Options: func() any { o := defaultThrottleOptions(); return &o },
		New: func(name string, options any, logger *slog.Logger) (Action, error) {
			return NewThrottle(name, *options.(*ThrottleOptions), logger)
		},
	})
}

// ThrottleOptions configures the throttle action: the nftables action's options (its
// protocol defaults to tcp, its blocktype to REJECT, so a client over the rate is told
// at once and tries again later), and the rate a throttled address keeps.
type ThrottleOptions struct {
	NFTablesOptions
	// Rate is how many new connections a throttled address may make: "10/minute"
	// (second, minute, hour or day).
	Rate string `toml:"rate"`
	// Burst is how many it may make at once before the rate holds it back.
	Burst int `toml:"burst"`
}

func defaultThrottleOptions() ThrottleOptions {
	o := ThrottleOptions{NFTablesOptions: defaultNFTablesOptions(), Rate: "10/minute", Burst: 5}
	o.Protocol, o.BlockType = "tcp", "REJECT"
	return o
}

// Validate checks the options.
func (o *ThrottleOptions) Validate() error {
	if err := o.NFTablesOptions.Validate(); err != nil {
		return err
	}
	if _, err := parseRate(o.Rate, o.Burst); err != nil {
		return err
	}
	return nil
}

// parseRate reads a rate ("10/minute") and a burst as the limit nftables keeps: over it
// matches.
func parseRate(rate string, burst int) (*expr.Limit, error) {
	n, per, ok := strings.Cut(rate, "/")
	count, err := strconv.ParseUint(strings.TrimSpace(n), 10, 32)
	if !ok || err != nil || count == 0 {
		return nil, fmt.Errorf("rate %q: want a count and a unit, like \"10/minute\"", rate)
	}
	units := map[string]expr.LimitTime{"second": expr.LimitTimeSecond, "minute": expr.LimitTimeMinute, "hour": expr.LimitTimeHour, "day": expr.LimitTimeDay}
	unit, ok := units[strings.TrimSpace(per)]
	if !ok {
		return nil, fmt.Errorf("rate %q: unit %q; valid: second, minute, hour, day", rate, per)
	}
	if burst < 1 {
		return nil, fmt.Errorf("burst %d: at least 1", burst)
	}
	return &expr.Limit{Type: expr.LimitTypePkts, Rate: count, Over: true, Unit: unit, Burst: uint32(burst)}, nil
}

// NewThrottle returns a throttle action called name: an nftables action whose rules
// do not refuse an address they hold, only its new connections over the rate. A
// connection under way goes on, and so does everything of an address held by no ban.
// Each address in the sets has its limit in a meter, a set the rule fills as
// connections come (`update @SET-meter { ip saddr limit rate over R burst B packets }`),
// so a throttled network's addresses are each limited on their own. It touches
// nothing.
func NewThrottle(name string, opts ThrottleOptions, logger *slog.Logger) (*NFTables, error) {
	limit, err := parseRate(opts.Rate, opts.Burst)
	if err != nil {
		return nil, err
	}
	a := NewNFTables(name, opts.NFTablesOptions, logger)
	a.limit = limit
	return a, nil
}
