package actions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"
)

func init() {
	Register(Kind{
		Name:     "exec",
		Notifies: true,
		Options:  func() any { return &ExecOptions{Timeout: "30s"} },
		New: func(name string, options any, logger *slog.Logger) (Action, error) {
			return NewExec(*options.(*ExecOptions), logger)
		},
	})
}

// ExecOptions configures the exec action. Each command is an argv list: the program,
// then its arguments, each of which may hold {ip} (an address, or a network in CIDR
// notation), {jail}, {failures}, {bantime} (the ban's length in seconds, -1 for until
// unbanned), {user} (the account, in a jail keyed by user; else empty) and {device} (in
// notify, the device of a device's ban; else empty). A value fills
// its argument and never becomes more arguments; no shell is involved.
type ExecOptions struct {
	Start   []string `toml:"start"`
	Stop    []string `toml:"stop"`
	Ban     []string `toml:"ban"`
	Unban   []string `toml:"unban"`
	Check   []string `toml:"check"`   // before each ban; if it fails, start is run again
	Notify  []string `toml:"notify"`  // for a notice (see Notice): {ip}, {jail}, {user}, {device}, {kind}, {text}
	Timeout string   `toml:"timeout"` // for each command, a Go duration
}

var placeholder = regexp.MustCompile(`\{[a-z]+\}`)

var placeholders = map[string]bool{"{ip}": true, "{jail}": true, "{failures}": true, "{bantime}": true, "{user}": true, "{device}": true, "{kind}": true, "{text}": true}

// Validate checks the options.
func (o *ExecOptions) Validate() error {
	if len(o.Ban) == 0 || len(o.Unban) == 0 {
		return errors.New("ban and unban are required, as argv lists like [\"/usr/local/bin/block\", \"{ip}\"]")
	}
	if _, err := time.ParseDuration(o.Timeout); err != nil {
		return fmt.Errorf("timeout %q: %w", o.Timeout, err)
	}
	for field, argv := range map[string][]string{"start": o.Start, "stop": o.Stop, "ban": o.Ban, "unban": o.Unban, "check": o.Check, "notify": o.Notify} {
		if len(argv) > 0 && argv[0] == "" {
			return fmt.Errorf("%s: empty program name", field)
		}
		for _, arg := range argv {
			for _, p := range placeholder.FindAllString(arg, -1) {
				if !placeholders[p] {
					return fmt.Errorf("%s: unknown placeholder %s; valid: {ip}, {jail}, {failures}, {bantime}, {user}, {device}, {kind}, {text}", field, p)
				}
			}
		}
	}
	return nil
}

// Exec runs commands of the operator's for each event.
type Exec struct {
	opts   ExecOptions
	logger *slog.Logger
	run    runner
}

// NewExec returns an exec action.
func NewExec(opts ExecOptions, logger *slog.Logger) (*Exec, error) {
	timeout, err := time.ParseDuration(opts.Timeout)
	if err != nil {
		return nil, err
	}
	return &Exec{opts: opts, logger: logger, run: execRunner{timeout: timeout}}, nil
}

// expand fills argv's placeholders from b, each argument staying one argument.
func expand(argv []string, b Ban) []string {
	bantime := "-1"
	if !b.Permanent() {
		bantime = strconv.FormatInt(int64(b.Expires.Sub(b.BannedAt).Round(time.Second)/time.Second), 10)
	}
	r := strings.NewReplacer("{ip}", b.Target(), "{jail}", b.Jail, "{failures}", strconv.Itoa(b.Failures), "{bantime}", bantime, "{user}", b.User, "{device}", "")
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = r.Replace(a)
	}
	return out
}

func (e *Exec) runIf(ctx context.Context, argv []string) error {
	if len(argv) == 0 {
		return nil
	}
	return e.run.Run(ctx, argv)
}

// Start runs the start command.
func (e *Exec) Start(ctx context.Context) error { return e.runIf(ctx, e.opts.Start) }

// Stop runs the stop command.
func (e *Exec) Stop(ctx context.Context) error { return e.runIf(ctx, e.opts.Stop) }

// Ban runs check (and start again if check fails), then ban.
func (e *Exec) Ban(ctx context.Context, b Ban) error {
	if len(e.opts.Check) > 0 {
		if err := e.run.Run(ctx, expand(e.opts.Check, b)); err != nil {
			e.logger.Warn("check failed; running start again", "err", err)
			if err := e.Start(ctx); err != nil {
				return fmt.Errorf("start after a failed check: %w", err)
			}
		}
	}
	return e.run.Run(ctx, expand(e.opts.Ban, b))
}

// Notify runs notify, if set, for the notice.
func (e *Exec) Notify(ctx context.Context, n Notice) error {
	if len(e.opts.Notify) == 0 {
		return nil
	}
	r := strings.NewReplacer("{ip}", n.Addr.String(), "{jail}", n.Jail, "{user}", n.User, "{device}", n.Device, "{kind}", n.Kind, "{text}", n.Text)
	argv := make([]string, len(e.opts.Notify))
	for i, a := range e.opts.Notify {
		argv[i] = r.Replace(a)
	}
	return e.run.Run(ctx, argv)
}

// Unban runs unban.
func (e *Exec) Unban(ctx context.Context, b Ban) error {
	return e.run.Run(ctx, expand(e.opts.Unban, b))
}
