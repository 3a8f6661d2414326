package actions

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/logban/logban/internal/testenv"
)

func TestLogActionWritesOneLinePerEvent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "bans.log")
	a, err := New("log", "audit", &LogOptions{Path: path}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 5, 16, 0, 0, 0, time.UTC)
	b := Ban{Jail: "sasl", Addr: netip.MustParseAddr("2001:db8::5"), Failures: 3, BannedAt: t0, Expires: t0.Add(time.Hour)}
	a.Ban(ctx, b)
	a.Unban(ctx, b)
	a.Ban(ctx, Ban{Jail: "manual", Addr: netip.MustParseAddr("203.0.113.5"), BannedAt: t0})
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	got, _ := os.ReadFile(path)
	stamp := regexp.MustCompile(`(?m)^\S+ `)
	want := "ban jail=sasl addr=2001:db8::5 failures=3 expires=2026-03-05T17:00:00Z\n" +
		"unban jail=sasl addr=2001:db8::5 failures=3 expires=2026-03-05T17:00:00Z\n" +
		"ban jail=manual addr=203.0.113.5 failures=0 expires=never\n"
	if s := stamp.ReplaceAllString(string(got), ""); s != want {
		t.Errorf("output:\n%s\nwant:\n%s", s, want)
	}
}

func TestUnknownKindListsTheValidOnes(t *testing.T) {
	_, err := New("iptable", "fw", nil, slog.New(slog.DiscardHandler))
	if err == nil || err.Error() != `unknown action type "iptable"; valid: `+strings.Join(Kinds(), ", ") {
		t.Errorf("got %v", err)
	}
}

func TestRegisterTwicePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("second Register of a kind did not panic")
		}
	}()
	Register(Kind{Name: "log"})
}

// The owner of the log action's folder plants a link to a file only root may write:
// the action refuses to start rather than append to it, and the file is untouched.
func TestLogActionRefusesAPlantedLink(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	if err := os.Chown(dir, testenv.Nobody, testenv.Nobody); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "sudoers")
	if err := os.WriteFile(secret, []byte("root ALL=(ALL) ALL\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "bans.log")
	if err := os.Symlink(secret, path); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(path, testenv.Nobody, testenv.Nobody); err != nil {
		t.Fatal(err)
	}
	l := NewLog(LogOptions{Path: path}, slog.New(slog.DiscardHandler))
	if err := l.Start(context.Background()); err == nil {
		l.Ban(context.Background(), Ban{Jail: "sasl", Addr: netip.MustParseAddr("203.0.113.5")})
		l.Stop(context.Background())
		t.Error("the log action started through nobody's link")
	}
	if b, _ := os.ReadFile(secret); string(b) != "root ALL=(ALL) ALL\n" {
		t.Errorf("the linked file was written to: %q", b)
	}
}
