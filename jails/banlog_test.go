package jails

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/filters"
)

// syncBuffer is a buffer a logger may write to from the manager's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// Every ban, unban, expiry and restore is one line at info in the server's log, whatever
// the jail's actions, as fail2ban's Ban and Unban notices are; each failure is a debug line.
func TestEveryBanAndItsEndIsOneLogLine(t *testing.T) {
	var out syncBuffer
	logger := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	clock := &fakeClock{now: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	m := NewManager(clock, logger)
	ctx := context.Background()
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{Name: "r", Action: &recorder{}}})
	j := New("sasl", nil, Settings{MaxRetry: 2, FindTime: time.Hour, Logger: logger})

	a, b := netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("203.0.113.6")
	j.Failure(a, clock.Now(), clock.Now())
	tk := j.Failure(a, clock.Now(), clock.Now())[0]
	m.BanAll(ctx, []Ticket{tk})
	manual, _ := j.Manual(actions.Host(b), clock.Now())
	m.BanAll(ctx, []Ticket{manual})
	if _, err := m.Unban(ctx, "sasl", actions.Host(b)); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	m.ExpireDue(ctx)

	restarted := NewManager(clock, logger)
	restarted.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, nil)
	r := Record{Ban: tk2ban(tk, clock.Now(), time.Hour), Count: 1}
	if _, _, err := restarted.Restore(ctx, func(yield func(Record, error) bool) { yield(r, nil) }); err != nil {
		t.Fatal(err)
	}

	for want, times := range map[string]int{
		`level=DEBUG msg=failure jail=sasl addr=203.0.113.5`:                                                      2,
		`level=INFO msg=banned jail=sasl addr=203.0.113.5 failures=2 bantime=1h0m0s ban_count=1 why="2 failures"`: 1,
		`level=INFO msg=banned jail=sasl addr=203.0.113.6 failures=0 bantime=1h0m0s ban_count=1 why="by hand"`:    1,
		`level=INFO msg=unbanned jail=sasl addr=203.0.113.6 failures=0 banned_for=0s how="by hand"`:               1,
		`level=INFO msg=unbanned jail=sasl addr=203.0.113.5 failures=2 banned_for=1h0m0s how=expired`:             1,
		`level=INFO msg="ban restored" jail=sasl addr=203.0.113.5`:                                                1,
	} {
		if n := strings.Count(out.String(), want); n != times {
			t.Errorf("%d lines hold %s; want %d\n%s", n, want, times, out.String())
		}
	}
}

// tk2ban is the ban t would make at now, for d.
func tk2ban(t Ticket, now time.Time, d time.Duration) actions.Ban {
	return actions.Ban{Jail: t.Jail, Addr: t.Addr, Failures: t.Failures, BannedAt: now, Expires: now.Add(d)}
}

// A line the filter's ignoreregex sets aside is counted as dropped, not as a failure.
func TestFilterDropsAreCounted(t *testing.T) {
	f, err := filters.New("t", filters.Definition{FailRegex: []string{`fail from <HOST>`}, IgnoreRegex: []string{`monitor`}}, filters.Options{})
	if err != nil {
		t.Fatal(err)
	}
	j := New("t", f, Settings{MaxRetry: 5, FindTime: time.Hour})
	now := time.Now()
	j.Line([]byte("fail from 192.0.2.1"), now)
	j.Line([]byte("monitor fail from 192.0.2.2"), now)
	if c := j.Counts(now); c.TotalFailed != 1 || c.Dropped != 1 {
		t.Errorf("counts %+v; want 1 failure and 1 dropped", c)
	}
}
