package actions

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// runner runs a command given as an argv list, never through a shell.
type runner interface {
	Run(ctx context.Context, argv []string) error
}

// execRunner runs commands with os/exec.
type execRunner struct {
	timeout time.Duration
}

// Run runs argv and waits for it, at most the runner's timeout. A failure carries the
// command's output.
func (r execRunner) Run(ctx context.Context, argv []string) error {
	if r.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 500 {
			msg = msg[:500] + "..."
		}
		if msg != "" {
			return fmt.Errorf("%s: %w: %s", argv[0], err, msg)
		}
		return fmt.Errorf("%s: %w", argv[0], err)
	}
	return nil
}
