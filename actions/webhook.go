package actions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"
)

func init() {
	Register(Kind{
		Name:     "webhook",
		Notifies: true,
		Options:  func() any { return &WebhookOptions{Timeout: "10s"} },
		New: func(name string, options any, logger *slog.Logger) (Action, error) {
			return NewWebhook(*options.(*WebhookOptions), logger)
		},
	})
}

// WebhookOptions configures the webhook action.
type WebhookOptions struct {
	URL     string            `toml:"url"`
	Headers map[string]string `toml:"headers"` // e.g. Authorization
	Timeout string            `toml:"timeout"` // a Go duration
}

// Validate checks the options.
func (o *WebhookOptions) Validate() error {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url %q: want an http:// or https:// address", RedactURL(o.URL))
	}
	if _, err := time.ParseDuration(o.Timeout); err != nil {
		return fmt.Errorf("timeout %q: %w", o.Timeout, err)
	}
	return nil
}

// WebhookEvent is the JSON body the webhook action posts.
type WebhookEvent struct {
	Event    string     `json:"event"` // "ban" or "unban"
	Jail     string     `json:"jail"`
	Addr     string     `json:"addr"`             // an address, or a network in CIDR notation
	User     string     `json:"user,omitempty"`   // the account, in a jail keyed by user
	Device   string     `json:"device,omitempty"` // a notice's device, in a jail keyed by device
	Kind     string     `json:"kind,omitempty"`   // a notice's kind ("known-good")
	Text     string     `json:"text,omitempty"`   // a notice's words
	Failures int        `json:"failures"`
	BannedAt time.Time  `json:"banned_at"`
	Expires  *time.Time `json:"expires"` // null: until unbanned
}

// Webhook posts each ban and unban as JSON; any answer but 2xx is an error, retried.
type Webhook struct {
	opts   WebhookOptions
	logger *slog.Logger
	client *http.Client
}

// NewWebhook returns a webhook action.
func NewWebhook(opts WebhookOptions, logger *slog.Logger) (*Webhook, error) {
	timeout, err := time.ParseDuration(opts.Timeout)
	if err != nil {
		return nil, err
	}
	return &Webhook{opts: opts, logger: logger, client: &http.Client{Timeout: timeout}}, nil
}

// Start does nothing.
func (w *Webhook) Start(context.Context) error { return nil }

// Stop does nothing.
func (w *Webhook) Stop(context.Context) error { return nil }

// Ban posts the ban.
func (w *Webhook) Ban(ctx context.Context, b Ban) error { return w.post(ctx, "ban", b) }

// Unban posts the unban.
func (w *Webhook) Unban(ctx context.Context, b Ban) error { return w.post(ctx, "unban", b) }

// Notify posts the notice as an event "notice".
func (w *Webhook) Notify(ctx context.Context, n Notice) error {
	return w.send(ctx, WebhookEvent{Event: "notice", Jail: n.Jail, Addr: n.Addr.String(), User: n.User, Device: n.Device, Kind: n.Kind, Text: n.Text, BannedAt: n.Time}, n.Addr.String())
}

func (w *Webhook) post(ctx context.Context, event string, b Ban) error {
	ev := WebhookEvent{Event: event, Jail: b.Jail, Addr: b.Target(), User: b.User, Failures: b.Failures, BannedAt: b.BannedAt}
	if !b.Permanent() {
		ev.Expires = &b.Expires
	}
	return w.send(ctx, ev, b.Target())
}

// send posts ev; what names its address in errors.
func (w *Webhook) send(ctx context.Context, ev WebhookEvent, what string) error {
	event := ev.Event
	body, _ := json.Marshal(ev)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.opts.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range w.opts.Headers {
		req.Header.Set(k, v)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) { // its URL may carry a token: logs show where, not what
			ue.URL = RedactURL(ue.URL)
		}
		return fmt.Errorf("posting %s of %s: %w", event, what, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) //nolint:errcheck // drained for reuse only
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("posting %s of %s: %w", event, what, errors.New(resp.Status))
	}
	return nil
}

// RedactURL returns raw with what may be a secret hidden: a password, the path and the
// query (chat webhooks carry their token in the path, others in ?token=). The scheme
// and host stay, to tell which hook it is.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(a URL that does not parse)"
	}
	out := u.Scheme + "://" + u.Host
	if u.User != nil {
		out = u.Scheme + "://" + u.User.Username() + ":xxxxx@" + u.Host
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		out += "/…"
	}
	return out
}
