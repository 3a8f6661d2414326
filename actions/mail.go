package actions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"net/smtp"
	"os"
	"strings"
	"sync"
	"time"
)

func init() {
	Register(Kind{
		Name:     "mail",
		Notifies: true,
		Options: func() any {
			host, _ := os.Hostname()
			return &MailOptions{Server: "localhost:25", From: "logban@" + host, Interval: "1m", Subject: "logban on " + host}
		},
		New: func(name string, options any, logger *slog.Logger) (Action, error) {
			return NewMail(*options.(*MailOptions), logger)
		},
	})
}

// MailOptions configures the mail action.
type MailOptions struct {
	Server   string   `toml:"server"` // host:port of an SMTP server that relays for this host
	From     string   `toml:"from"`
	To       []string `toml:"to"`
	Interval string   `toml:"interval"` // bans are gathered this long into one mail
	Subject  string   `toml:"subject"`
}

// Validate checks the options.
func (o *MailOptions) Validate() error {
	if _, _, err := net.SplitHostPort(o.Server); err != nil {
		return fmt.Errorf("server %q: want host:port", o.Server)
	}
	if len(o.To) == 0 {
		return errors.New("to: no recipients")
	}
	for _, a := range append([]string{o.From}, o.To...) {
		if _, err := mail.ParseAddress(a); err != nil {
			return fmt.Errorf("address %q: %w", a, err)
		}
	}
	if d, err := time.ParseDuration(o.Interval); err != nil || d <= 0 {
		return fmt.Errorf("interval %q: want a duration like \"1m\"", o.Interval)
	}
	return nil
}

// Mail reports bans by mail, gathered over an interval: an attack from ten thousand
// addresses sends one mail, not ten thousand. A mail that cannot be sent is tried again
// at the next interval with what has come since.
type Mail struct {
	opts     MailOptions
	interval time.Duration
	logger   *slog.Logger

	mu      sync.Mutex
	pending []Ban
	notices []Notice
	stop    chan struct{}
	done    chan struct{}
}

// NewMail returns a mail action.
func NewMail(opts MailOptions, logger *slog.Logger) (*Mail, error) {
	d, err := time.ParseDuration(opts.Interval)
	if err != nil {
		return nil, err
	}
	return &Mail{opts: opts, interval: d, logger: logger}, nil
}

// Start begins sending gathered bans every interval.
func (m *Mail) Start(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stop != nil {
		return nil
	}
	m.stop, m.done = make(chan struct{}), make(chan struct{})
	go m.loop(m.stop, m.done)
	return nil
}

func (m *Mail) loop(stop, done chan struct{}) {
	defer close(done)
	tick := time.NewTicker(m.interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			if err := m.flush(); err != nil {
				m.logger.Error("ban report not sent; will try again", "err", err)
			}
		}
	}
}

// Stop sends what is gathered and stops.
func (m *Mail) Stop(context.Context) error {
	m.mu.Lock()
	stop, done := m.stop, m.done
	m.stop = nil
	m.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
	return m.flush()
}

// Ban adds b to the next mail.
func (m *Mail) Ban(_ context.Context, b Ban) error {
	m.mu.Lock()
	m.pending = append(m.pending, b)
	m.mu.Unlock()
	return nil
}

// Notify adds n to the next mail.
func (m *Mail) Notify(_ context.Context, n Notice) error {
	m.mu.Lock()
	m.notices = append(m.notices, n)
	m.mu.Unlock()
	return nil
}

// Unban does nothing: the report is of bans.
func (m *Mail) Unban(context.Context, Ban) error { return nil }

// flush sends the gathered bans in one mail.
func (m *Mail) flush() error {
	m.mu.Lock()
	bans, notices := m.pending, m.notices
	m.pending, m.notices = nil, nil
	m.mu.Unlock()
	if len(bans) == 0 && len(notices) == 0 {
		return nil
	}
	if err := smtp.SendMail(m.opts.Server, nil, m.opts.From, m.opts.To, m.message(bans, notices)); err != nil {
		m.mu.Lock()
		m.pending = append(bans, m.pending...)
		m.notices = append(notices, m.notices...)
		m.mu.Unlock()
		return fmt.Errorf("sending %d bans and %d notices to %s: %w", len(bans), len(notices), m.opts.Server, err)
	}
	return nil
}

func (m *Mail) message(bans []Ban, notices []Notice) []byte {
	var b strings.Builder
	subject := fmt.Sprintf("%d addresses banned", len(bans))
	if len(notices) > 0 {
		subject += fmt.Sprintf(", %d notices", len(notices))
	}
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s: %s\r\nDate: %s\r\n\r\n",
		m.opts.From, strings.Join(m.opts.To, ", "), m.opts.Subject, subject, time.Now().Format(time.RFC1123Z))
	for _, ban := range bans {
		expires := "until unbanned"
		if !ban.Permanent() {
			expires = "until " + ban.Expires.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(&b, "%s\t%s\t%d failures\t%s", ban.Target(), ban.Jail, ban.Failures, expires)
		if ban.User != "" {
			fmt.Fprintf(&b, "\taccount %q", ban.User) // as the client sent it: quoted
		}
		b.WriteString("\r\n")
	}
	for _, n := range notices {
		fmt.Fprintf(&b, "notice\t%s\t%s\t%s\taccount %q", n.Addr, n.Jail, n.Kind, n.User)
		if n.Device != "" {
			fmt.Fprintf(&b, "\tdevice %q", n.Device)
		}
		fmt.Fprintf(&b, "\t%s\r\n", n.Text)
	}
	return []byte(b.String())
}
