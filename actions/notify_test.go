package actions

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestWebhookPostsJSON(t *testing.T) {
	var mu sync.Mutex
	var got []WebhookEvent
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Authorization") != "Bearer s3cret" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("request %s %v", r.Method, r.Header)
		}
		var ev WebhookEvent
		json.NewDecoder(r.Body).Decode(&ev)
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
		w.WriteHeader(status)
	}))
	defer srv.Close()
	opts := WebhookOptions{URL: srv.URL + "/bans", Headers: map[string]string{"Authorization": "Bearer s3cret"}, Timeout: "5s"}
	if err := opts.Validate(); err != nil {
		t.Fatal(err)
	}
	w, _ := NewWebhook(opts, quiet)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 5, 16, 0, 0, 0, time.UTC)
	b := Ban{Jail: "sasl", Addr: netip.MustParseAddr("203.0.113.5"), Failures: 3, BannedAt: t0, Expires: t0.Add(time.Hour)}
	if err := w.Ban(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := w.Unban(ctx, Ban{Jail: "manual", Addr: netip.MustParseAddr("2001:db8::1"), BannedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Event != "ban" || got[0].Addr != "203.0.113.5" || got[0].Expires == nil || !got[0].Expires.Equal(t0.Add(time.Hour)) ||
		got[1].Event != "unban" || got[1].Expires != nil {
		t.Errorf("posted %+v", got)
	}
	if err := w.Notify(ctx, Notice{Jail: "sasl", Kind: "known-good", Addr: netip.MustParseAddr("203.0.113.50"), User: "anna", Text: "not counted", Time: t0}); err != nil {
		t.Fatal(err)
	}
	if n := got[len(got)-1]; n.Event != "notice" || n.Kind != "known-good" || n.User != "anna" || n.Addr != "203.0.113.50" || n.Text != "not counted" {
		t.Errorf("notice posted as %+v", n)
	}
	status = http.StatusServiceUnavailable
	if err := w.Ban(ctx, b); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("a 503 answer: %v", err)
	}
	if (&WebhookOptions{URL: "ftp://x", Timeout: "1s"}).Validate() == nil {
		t.Error("ftp URL accepted")
	}
}

// smtpServer is the least of an SMTP server, on loopback, that keeps each message.
type smtpServer struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []string
}

func newSMTPServer(t *testing.T) *smtpServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpServer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *smtpServer) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	io.WriteString(c, "220 test ESMTP\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			io.WriteString(c, "250 test\r\n")
		case cmd == "DATA":
			io.WriteString(c, "354 go on\r\n")
			var msg strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil || l == ".\r\n" {
					break
				}
				msg.WriteString(l)
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, msg.String())
			s.mu.Unlock()
			io.WriteString(c, "250 queued\r\n")
		case cmd == "QUIT":
			io.WriteString(c, "221 bye\r\n")
			return
		default:
			io.WriteString(c, "250 ok\r\n")
		}
	}
}

func (s *smtpServer) messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}

func TestMailGathersBansIntoOneMessage(t *testing.T) {
	srv := newSMTPServer(t)
	opts := MailOptions{Server: srv.ln.Addr().String(), From: "logban@mta1.example.com", To: []string{"postmaster@example.com"}, Interval: "1h", Subject: "logban on mta1"}
	if err := opts.Validate(); err != nil {
		t.Fatal(err)
	}
	m, _ := NewMail(opts, quiet)
	ctx := context.Background()
	m.Start(ctx)
	for _, a := range []string{"203.0.113.5", "203.0.113.6", "2001:db8::7"} {
		m.Ban(ctx, Ban{Jail: "sasl", Addr: netip.MustParseAddr(a), Failures: 3})
	}
	m.Notify(ctx, Notice{Jail: "sasl", Kind: "known-good", Addr: netip.MustParseAddr("203.0.113.50"), User: "anna\r\nBcc: x", Text: "not counted"})
	if n := len(srv.messages()); n != 0 {
		t.Fatalf("%d mails sent before the interval", n)
	}
	if err := m.Stop(ctx); err != nil { // stop sends what is gathered
		t.Fatal(err)
	}
	msgs := srv.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d mails, want 1", len(msgs))
	}
	for _, want := range []string{"Subject: logban on mta1: 3 addresses banned, 1 notices", "203.0.113.5\tsasl\t3 failures\tuntil unbanned", "2001:db8::7",
		"notice\t203.0.113.50\tsasl\tknown-good\taccount \"anna\\r\\nBcc: x\"\tnot counted"} {
		if !strings.Contains(msgs[0], want) {
			t.Errorf("mail lacks %q:\n%s", want, msgs[0])
		}
	}
}

func TestMailKeepsBansWhenTheServerIsDown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	m, _ := NewMail(MailOptions{Server: addr, From: "a@example.com", To: []string{"b@example.com"}, Interval: "1h"}, quiet)
	ctx := context.Background()
	m.Ban(ctx, Ban{Jail: "sasl", Addr: netip.MustParseAddr("203.0.113.5")})
	if err := m.flush(); err == nil {
		t.Fatal("sent to a closed port")
	}
	m.mu.Lock()
	n := len(m.pending)
	m.mu.Unlock()
	if n != 1 {
		t.Errorf("%d bans kept for the next try, want 1", n)
	}
}

// A webhook's URL often carries its token (a chat hook's path, ?token=): an error
// posting to it names the host, never the token.
func TestWebhookErrorsHideTheToken(t *testing.T) {
	w, err := NewWebhook(WebhookOptions{URL: "http://127.0.0.1:1/services/T0/B0/s3cr3tToken?token=s3cr3tToo", Timeout: "1s"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	err = w.Ban(context.Background(), Ban{Jail: "sasl", Addr: netip.MustParseAddr("203.0.113.5")})
	if err == nil || strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("error %v: want the host, not the token", err)
	}
	for in, want := range map[string]string{
		"https://hooks.example.com/services/T0/B0/XyZ": "https://hooks.example.com/…",
		"https://user:pass@example.com":                "https://user:xxxxx@example.com",
		"http://example.com/":                          "http://example.com",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
