package actions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"
)

func init() {
	Register(Kind{
		Name:    "ufw",
		Options: func() any { return &UFWOptions{InsertPos: 1, BlockType: "reject", Binary: "ufw"} },
		New: func(name string, options any, logger *slog.Logger) (Action, error) {
			return NewUFW(*options.(*UFWOptions), logger), nil
		},
	})
}

// UFWOptions configures the ufw action, with the options of the fail2ban ufw setup.
type UFWOptions struct {
	// Application limits the block to a ufw application profile ("Postfix Submission").
	Application string `toml:"application"`
	// InsertPos is where the rule goes in ufw's list; 1 puts it before any allow rule.
	InsertPos int `toml:"insertpos"`
	// BlockType is reject (the default) or deny.
	BlockType string `toml:"blocktype"`
	// Port and Proto limit the block to a port ("587") and protocol (tcp, udp).
	Port  string `toml:"port"`
	Proto string `toml:"proto"`
	// Binary is the ufw program, found in PATH by default.
	Binary string `toml:"binary"`
	// Args come before ufw's command (for example "--rootdir=/srv/ufw").
	Args []string `toml:"args"`
}

// Validate checks the options.
func (o *UFWOptions) Validate() error {
	if !slices.Contains([]string{"reject", "deny"}, o.BlockType) {
		return fmt.Errorf("blocktype %q; valid: reject, deny", o.BlockType)
	}
	if o.InsertPos < 1 {
		return fmt.Errorf("insertpos %d: must be 1 or more", o.InsertPos)
	}
	if o.Application != "" && (o.Port != "" || o.Proto != "") {
		return errors.New("application and port/proto exclude each other")
	}
	if o.Proto != "" && !slices.Contains([]string{"tcp", "udp"}, o.Proto) {
		return fmt.Errorf("proto %q; valid: tcp, udp", o.Proto)
	}
	if o.Port != "" && !validPort(o.Port) {
		return fmt.Errorf("port %q: want a number 1..65535", o.Port)
	}
	return nil
}

// UFW bans through ufw, as `ufw insert POS BLOCKTYPE from ADDR to any [app APPLICATION]`
// (ADDR a network in CIDR notation for a subnet ban)
// and lifts with the matching `ufw delete`.
type UFW struct {
	opts   UFWOptions
	logger *slog.Logger
	run    runner
}

// NewUFW returns a ufw action.
func NewUFW(opts UFWOptions, logger *slog.Logger) *UFW {
	return &UFW{opts: opts, logger: logger, run: execRunner{timeout: 30 * time.Second}}
}

// rule is the part of the command after insert POS or delete.
func (u *UFW) rule(b Ban) []string {
	r := []string{u.opts.BlockType, "from", b.Target(), "to", "any"}
	switch {
	case u.opts.Application != "":
		r = append(r, "app", u.opts.Application)
	case u.opts.Port != "":
		r = append(r, "port", u.opts.Port)
		if u.opts.Proto != "" {
			r = append(r, "proto", u.opts.Proto)
		}
	case u.opts.Proto != "":
		r = append(r, "proto", u.opts.Proto)
	}
	return r
}

func (u *UFW) argv(cmd ...string) []string {
	return slices.Concat([]string{u.opts.Binary}, u.opts.Args, cmd)
}

// BanArgv returns the command a ban runs.
func (u *UFW) BanArgv(b Ban) []string {
	return u.argv(slices.Concat([]string{"insert", strconv.Itoa(u.opts.InsertPos)}, u.rule(b))...)
}

// UnbanArgv returns the command an unban runs.
func (u *UFW) UnbanArgv(b Ban) []string {
	return u.argv(slices.Concat([]string{"delete"}, u.rule(b))...)
}

// Start does nothing: ufw keeps its own rules.
func (u *UFW) Start(context.Context) error { return nil }

// Stop does nothing: the bans' rules are lifted by unban.
func (u *UFW) Stop(context.Context) error { return nil }

// PrependArgv returns the command a ban falls back to when ufw has no rule at the
// insert position yet (an empty rule list, or only rules of the other IP family there).
func (u *UFW) PrependArgv(b Ban) []string {
	return u.argv(slices.Concat([]string{"prepend"}, u.rule(b))...)
}

// Ban inserts the block rule; ufw skips a rule it already has.
func (u *UFW) Ban(ctx context.Context, b Ban) error {
	err := u.run.Run(ctx, u.BanArgv(b))
	if err != nil && strings.Contains(err.Error(), "Invalid position") {
		err = u.run.Run(ctx, u.PrependArgv(b))
	}
	if err != nil {
		return fmt.Errorf("ufw rule for %s: %w", b.Target(), err)
	}
	return nil
}

// Unban deletes the block rule; ufw reports a missing one without failing.
func (u *UFW) Unban(ctx context.Context, b Ban) error {
	if err := u.run.Run(ctx, u.UnbanArgv(b)); err != nil {
		return fmt.Errorf("removing ufw rule for %s: %w", b.Target(), err)
	}
	return nil
}
