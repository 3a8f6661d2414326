package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func quotaPolicy(c *clock) *Policy {
	return New(Settings{RejectBanned: "554 5.7.1 Access denied: {jail}", Default: "DUNNO",
		Quotas: []Quota{{Name: "outbound", Key: "sasl_username", Messages: 200, Recipients: 2000, Window: time.Hour,
			Action: "DEFER_IF_PERMIT Sending quota exceeded, try later"}}},
		Deps{Now: c.Now, Banned: func(a netip.Addr) (string, bool) { return "zimbra-submission", a == netip.MustParseAddr("203.0.113.5") }})
}

func data(user, addr string, rcpts int) Request {
	return Request{ProtocolState: "DATA", SASLUsername: user, ClientAddress: addr, RecipientCount: rcpts}
}

// The 201st message of one SASL user within the hour is deferred; another user, and the
// same user an hour after its first message, send on.
func TestMessageQuota(t *testing.T) {
	c := &clock{time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)}
	p := quotaPolicy(c)
	for i := range 200 {
		if action, kind := p.Decide(data("anna", "198.51.100.7", 1)); action != "DUNNO" {
			t.Fatalf("message %d: %s (%s)", i+1, action, kind)
		}
		c.now = c.now.Add(time.Second)
	}
	if action, kind := p.Decide(data("anna", "198.51.100.7", 1)); action != "DEFER_IF_PERMIT Sending quota exceeded, try later" || kind != AnswerQuota {
		t.Errorf("message 201: %s (%s)", action, kind)
	}
	if action, _ := p.Decide(data("bob", "198.51.100.8", 1)); action != "DUNNO" {
		t.Errorf("another user: %s", action)
	}
	// Refused messages are not counted: an hour after the first, one slot is free.
	c.now = time.Date(2026, 11, 30, 11, 0, 0, 1, time.UTC)
	if action, _ := p.Decide(data("anna", "198.51.100.7", 1)); action != "DUNNO" {
		t.Errorf("an hour after the first message: %s", action)
	}
	if action, _ := p.Decide(data("anna", "198.51.100.7", 1)); action == "DUNNO" {
		t.Error("the slot was counted twice")
	}
	if near := p.Near(0.8, 10); len(near) != 1 || near[0].Holder != "anna" || near[0].Messages != 200 {
		t.Errorf("near their limits: %+v", near)
	}
}

func TestRecipientQuota(t *testing.T) {
	c := &clock{time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)}
	p := quotaPolicy(c)
	if action, _ := p.Decide(data("anna", "198.51.100.7", 1999)); action != "DUNNO" {
		t.Fatalf("1999 recipients: %s", action)
	}
	if action, _ := p.Decide(data("anna", "198.51.100.7", 2)); action == "DUNNO" {
		t.Error("2001 recipients within the hour were let through")
	}
	if action, _ := p.Decide(data("anna", "198.51.100.7", 1)); action != "DUNNO" {
		t.Errorf("the 2000th recipient: %s", action)
	}
}

// A banned client is refused at every stage, with its jail named; an RCPT request
// counts toward no quota.
func TestBannedClient(t *testing.T) {
	p := quotaPolicy(&clock{time.Now()})
	for _, state := range []string{"CONNECT", "RCPT", "DATA"} {
		action, kind := p.Decide(Request{ProtocolState: state, ClientAddress: "203.0.113.5"})
		if action != "554 5.7.1 Access denied: zimbra-submission" || kind != AnswerBanned {
			t.Errorf("%s: %s (%s)", state, action, kind)
		}
	}
	for range 300 {
		if action, _ := p.Decide(Request{ProtocolState: "RCPT", SASLUsername: "anna", ClientAddress: "198.51.100.7"}); action != "DUNNO" {
			t.Fatalf("RCPT: %s", action)
		}
	}
	if action, _ := p.Decide(Request{ProtocolState: "CONNECT", ClientAddress: "not an address"}); action != "DUNNO" {
		t.Errorf("no address: %s", action)
	}
}

// An account logging in from 10 addresses (or 4 networks) within the hour is flagged
// once, not at each further login, and again after the window.
func TestCompromisedAccount(t *testing.T) {
	c := &clock{time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)}
	var flags []Flag
	p := New(Settings{Default: "DUNNO", Compromised: Compromised{Addresses: 10, Networks: 4, Window: time.Hour}},
		Deps{Now: c.Now, Flagged: func(f Flag) { flags = append(flags, f) }})
	login := func(user, addr string) {
		p.Decide(Request{ProtocolState: "RCPT", SASLUsername: user, ClientAddress: addr})
	}
	for i := range 9 { // nine addresses of one /16
		login("anna", fmt.Sprintf("198.51.%d.7", i))
		login("anna", fmt.Sprintf("198.51.%d.7", i)) // again: one address
	}
	if len(flags) != 0 {
		t.Fatalf("flagged at nine addresses of one network: %+v", flags)
	}
	login("anna", "198.51.100.99")
	if len(flags) != 1 || flags[0].Account != "anna" || len(flags[0].Addresses) != 10 {
		t.Fatalf("at ten addresses: %+v", flags)
	}
	login("anna", "198.51.101.99")
	// Four networks: 203.0.113.0/16 ... for bob, from four /16s.
	for _, a := range []string{"192.0.2.1", "198.51.100.1", "203.0.113.1", "2001:db8::1"} {
		login("bob", a)
	}
	if len(flags) != 2 || flags[1].Account != "bob" || flags[1].Networks != 4 {
		t.Fatalf("bob from four networks: %+v", flags)
	}
	c.now = c.now.Add(61 * time.Minute)
	for i := range 10 {
		login("anna", fmt.Sprintf("198.51.%d.8", i))
	}
	if len(flags) != 3 {
		t.Errorf("anna again after the window: %d flags", len(flags))
	}
}

// In a farm, the farm's count says over, even where this host has sent little; where
// the farm cannot answer, this host's own count judges.
func TestFarmCountedQuota(t *testing.T) {
	c := &clock{time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)}
	farmSent := 198 // anna's messages through the farm's other hosts
	var farmDown bool
	p := New(Settings{Default: "DUNNO", Quotas: []Quota{{Name: "outbound", Key: "sasl_username", Messages: 200, Window: time.Hour, Action: "DEFER_IF_PERMIT over"}}},
		Deps{Now: c.Now, FarmCount: func(q Quota, holder string, _ int) (bool, error) {
			if farmDown {
				return false, errors.New("farm away")
			}
			if farmSent >= q.Messages {
				return true, nil
			}
			farmSent++
			return false, nil
		}})
	for i, want := range []string{"DUNNO", "DUNNO", "DEFER_IF_PERMIT over"} {
		if got, _ := p.Decide(data("anna", "198.51.100.7", 1)); got != want {
			t.Errorf("message %d through this host: %q, want %q", i+1, got, want)
		}
	}
	farmDown = true
	for i := range 198 {
		if got, _ := p.Decide(data("anna", "198.51.100.7", 1)); got != "DUNNO" {
			t.Fatalf("farm away, this host's message %d: %q", i+3, got)
		}
	}
	if got, _ := p.Decide(data("anna", "198.51.100.7", 1)); got != "DEFER_IF_PERMIT over" {
		t.Errorf("farm away, this host's 201st: %q", got)
	}
	if p.FarmErrors() != 198 { // the 201st was over here, the farm not asked
		t.Errorf("%d farm errors counted, want 198", p.FarmErrors())
	}
}

// Messages of one holder sent at once take a quota's slots one each: of 200 at once
// against a quota of 100, exactly 100 go.
func TestQuotaUnderConcurrentRequests(t *testing.T) {
	p := New(Settings{Default: "DUNNO", Quotas: []Quota{{Name: "outbound", Key: "sasl_username", Messages: 100, Window: time.Hour, Action: "DEFER"}}},
		Deps{})
	var wg sync.WaitGroup
	var passed atomic.Int64
	for range 200 {
		wg.Go(func() {
			if a, _ := p.Decide(data("anna", "198.51.100.7", 1)); a == "DUNNO" {
				passed.Add(1)
			}
		})
	}
	wg.Wait()
	if passed.Load() != 100 {
		t.Errorf("%d of 200 went, want 100", passed.Load())
	}
}

// A flood of names (senders are the client's to choose) never grows a quota's table
// past its bounds; the holders dropped are the least recently active, so a busy
// holder's count stands and it is still deferred at its limit.
func TestQuotaTableIsBounded(t *testing.T) {
	c := &clock{time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)}
	p := New(Settings{Default: "DUNNO", Limits: Limits{Holders: 1000, Entries: 3000},
		Quotas: []Quota{{Name: "out", Key: "sender", Messages: 10, Window: time.Hour, Action: "DEFER_IF_PERMIT over"}}},
		Deps{Now: c.Now})
	send := func(sender string) string {
		a, _ := p.Decide(Request{ProtocolState: "DATA", Sender: sender, ClientAddress: "198.51.100.7", RecipientCount: 1})
		return a
	}
	for i := range 9 {
		if a := send("busy@example.com"); a != "DUNNO" {
			t.Fatalf("busy message %d: %s", i+1, a)
		}
	}
	long := strings.Repeat("x", 4000)
	for i := range 50_000 {
		c.now = c.now.Add(time.Millisecond)
		send(fmt.Sprintf("%d-%s@example.com", i, long))
		if i%100 == 0 {
			send("busy@example.com") // over its quota: refused, not counted, but seen
		}
		if tb := p.Tables(); tb.Holders > 1000 {
			t.Fatalf("after %d senders the table holds %d, past its bound of 1000", i+1, tb.Holders)
		}
	}
	if tb := p.Tables(); tb.Dropped == 0 {
		t.Errorf("tables %+v: nothing counted as dropped", tb)
	}
	p.mu.Lock()
	entries, names := p.usage[0].entries, 0
	for h := range p.usage[0].m {
		names += len(h)
	}
	p.mu.Unlock()
	if entries > 3000 || names > 1000*MaxName {
		t.Errorf("%d messages and %d bytes of names kept, past the bounds", entries, names)
	}
	if a := send("busy@example.com"); a != "DEFER_IF_PERMIT over" {
		t.Errorf("the busy sender after the flood: %s; its count was dropped", a)
	}
}

// Logins of many accounts (each a successful SASL login) keep at most the bound of
// accounts.
func TestLoginTableIsBounded(t *testing.T) {
	c := &clock{time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)}
	p := New(Settings{Default: "DUNNO", Limits: Limits{Holders: 500, Entries: 2000},
		Compromised: Compromised{Addresses: 5, Window: time.Hour}}, Deps{Now: c.Now})
	for i := range 20_000 {
		c.now = c.now.Add(time.Millisecond)
		p.Decide(Request{ProtocolState: "RCPT", SASLUsername: fmt.Sprintf("user%d@example.com", i), ClientAddress: "198.51.100.7"})
		if tb := p.Tables(); tb.Accounts > 500 {
			t.Fatalf("after %d accounts the table holds %d, past its bound of 500", i+1, tb.Accounts)
		}
	}
	if p.Tables().Dropped == 0 {
		t.Error("nothing counted as dropped")
	}
}
