package main

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/logban/logban/internal/control"
)

func TestClean(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"anna@example.com", "anna@example.com"},
		{"anna\x1b]0;owned\x07", `anna\x1b]0;owned\x07`},
		{"a\nb\tc\rd", `a\nb\tc\rd`},
		{"evil\u202egpj.exe", `evil\u202egpj.exe`},
		{"bad\xffbyte", `bad\xffbyte`},
		{"\u009bc1", `\x9bc1`},
		{"café", "café"},
	} {
		if got := clean(tt.in); got != tt.want {
			t.Errorf("clean(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	var b bytes.Buffer
	escapeWriter{&b}.Write([]byte("row\tcell\n\x1b[2Jgone\n"))
	if got := b.String(); got != "row\tcell\n\\x1b[2Jgone\n" {
		t.Errorf("escapeWriter wrote %q", got)
	}
}

// why shows the lines that counted, written by the client: an escape sequence in a
// user name (clearing the screen, retitling the window) reaches the terminal escaped,
// and a farm node's reason cannot forge a second row in list.
func TestClientTextIsEscapedOnTheTerminal(t *testing.T) {
	now := time.Now()
	why := control.Why{Target: control.Target{Addr: netip.MustParseAddr("203.0.113.5")}, Bans: []control.BanInfo{{
		Target: control.Target{Addr: netip.MustParseAddr("203.0.113.5")}, Jail: "sasl", BannedAt: now, Why: "3 failures\x1b[2J", By: "mta2\nmta3",
		Lines: []string{"Dec  7 03:00:00 mta postfix/submission/smtpd[1]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: user \x1b]0;pwned\x07"},
	}}}
	var b bytes.Buffer
	printWhy(escapeWriter{&b}, why, now)
	out := b.String()
	if strings.ContainsAny(out, "\x1b\x07") || !strings.Contains(out, `\x1b]0;pwned\x07`) || !strings.Contains(out, `mta2\nmta3`) {
		t.Errorf("why printed:\n%q", out)
	}
	b.Reset()
	printList(escapeWriter{&b}, why.Bans, now)
	if lines := strings.Split(strings.TrimSpace(b.String()), "\n"); len(lines) != 2 || strings.Contains(b.String(), "\x1b") {
		t.Errorf("list printed %d lines:\n%q", len(lines), b.String())
	}
}
