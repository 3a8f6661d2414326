package actions

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/logban/logban/internal/openfile"
)

func init() {
	Register(Kind{
		Name:     "log",
		Notifies: true,
		Options:  func() any { return &LogOptions{} },
		New: func(name string, options any, logger *slog.Logger) (Action, error) {
			return NewLog(*options.(*LogOptions), logger), nil
		},
	})
}

// LogOptions configures the log action.
type LogOptions struct {
	// Path, if set, is a file that gets one plain line per ban and unban, appended.
	// Otherwise the lines go to the daemon's log. It must be a regular file with one
	// name, reached through links root owns only (openfile.Regular).
	Path string `toml:"path"`
}

// Log records bans and unbans and touches nothing else. It is what -dry-run puts in place
// of every action, and what the demo runs.
type Log struct {
	opts   LogOptions
	logger *slog.Logger

	mu sync.Mutex
	w  io.WriteCloser
}

// NewLog returns a log action.
func NewLog(opts LogOptions, logger *slog.Logger) *Log {
	return &Log{opts: opts, logger: logger}
}

// Start opens the output file, if any.
func (l *Log) Start(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.opts.Path == "" || l.w != nil {
		return nil
	}
	f, err := openfile.Regular(l.opts.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("opening log action file: %w", err)
	}
	l.w = f
	return nil
}

// Reopen closes the output file and opens it again by its path: after logrotate moved
// it, the lines go to the new file.
func (l *Log) Reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		return nil
	}
	f, err := openfile.Regular(l.opts.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("reopening log action file: %w", err) // the old file keeps the lines
	}
	l.w.Close()
	l.w = f
	return nil
}

// Ban records b.
func (l *Log) Ban(_ context.Context, b Ban) error { return l.record("ban", b) }

// Unban records the end of b.
func (l *Log) Unban(_ context.Context, b Ban) error { return l.record("unban", b) }

// Stop closes the output file.
func (l *Log) Stop(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		return nil
	}
	err := l.w.Close()
	l.w = nil
	return err
}

func (l *Log) record(event string, b Ban) error {
	expires := "never"
	if !b.Permanent() {
		expires = b.Expires.UTC().Format(time.RFC3339)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		args := []any{"jail", b.Jail, "addr", b.Target(), "failures", b.Failures, "expires", expires}
		if b.User != "" {
			args = append(args, "user", b.User)
		}
		l.logger.Info(event, args...)
		return nil
	}
	user := ""
	if b.User != "" {
		user = fmt.Sprintf(" user=%q", b.User) // the account as the client sent it: quoted
	}
	_, err := fmt.Fprintf(l.w, "%s %s jail=%s addr=%s failures=%d expires=%s%s\n",
		time.Now().UTC().Format(time.RFC3339), event, b.Jail, b.Target(), b.Failures, expires, user)
	if err != nil {
		return fmt.Errorf("writing %s of %s: %w", event, b.Target(), err)
	}
	return nil
}

// Notify writes the notice as a line of its own.
func (l *Log) Notify(_ context.Context, n Notice) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		l.logger.Warn("notice", "jail", n.Jail, "kind", n.Kind, "addr", n.Addr, "user", n.User, "device", n.Device, "what", n.Text)
		return nil
	}
	device := ""
	if n.Device != "" {
		device = " device=" + n.Device // letters, digits, '-', '_', '.' and ':' only
	}
	_, err := fmt.Fprintf(l.w, "%s notice jail=%s kind=%s addr=%s user=%q%s what=%q\n",
		n.Time.UTC().Format(time.RFC3339), n.Jail, n.Kind, n.Addr, n.User, device, n.Text)
	if err != nil {
		return fmt.Errorf("writing a notice: %w", err)
	}
	return nil
}

// ResolvePaths makes a relative Path relative to dir, the configuration's folder.
func (o *LogOptions) ResolvePaths(dir string) {
	if o.Path != "" && !filepath.IsAbs(o.Path) {
		o.Path = filepath.Join(dir, o.Path)
	}
}
