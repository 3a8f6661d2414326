package policy

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// A new Policy restored from another's state goes on counting where it stopped: a quota
// of the same name, key and window keeps its holders' messages; one whose window changed
// starts afresh; an account flagged stays flagged (not flagged again) and its logins
// count on. The state passes through JSON, as the database keeps it.
func TestStateCarriesCountsToANewPolicy(t *testing.T) {
	c := &clock{time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)}
	settings := func(window time.Duration) Settings {
		return Settings{Default: "DUNNO",
			Quotas: []Quota{
				{Name: "outbound", Key: "sasl_username", Messages: 6, Window: time.Hour, Action: "DEFER_IF_PERMIT over"},
				{Name: "senders", Key: "sender", Messages: 6, Window: window, Action: "HOLD"},
			},
			Compromised: Compromised{Addresses: 4, Window: time.Hour}}
	}
	var flags []Flag
	deps := Deps{Now: c.Now, Flagged: func(f Flag) { flags = append(flags, f) }}
	send := func(p *Policy) string {
		a, _ := p.Decide(Request{ProtocolState: "DATA", SASLUsername: "anna", Sender: "anna@example.com", ClientAddress: "198.51.100.7", RecipientCount: 1})
		return a
	}
	login := func(p *Policy, addr string) {
		p.Decide(Request{ProtocolState: "RCPT", SASLUsername: "bob", ClientAddress: addr})
	}
	old := New(settings(time.Hour), deps)
	for range 5 {
		send(old)
	}
	for i := range 4 {
		login(old, fmt.Sprintf("203.0.113.%d", i))
	}
	if len(flags) != 1 {
		t.Fatalf("bob flagged %d times at four addresses", len(flags))
	}
	data, err := json.Marshal(old.State())
	if err != nil {
		t.Fatal(err)
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}

	c.now = c.now.Add(time.Minute)
	p := New(settings(2*time.Hour), deps) // the senders quota's window changed
	p.Restore(s)
	if a := send(p); a != "DUNNO" {
		t.Fatalf("message 6 of 6: %s", a)
	}
	if a := send(p); a != "DEFER_IF_PERMIT over" {
		t.Errorf("message 7 of 6, after a restart: %s; the count started afresh", a)
	}
	if near := p.Near(0, 10); len(near) != 2 {
		t.Errorf("holders: %+v; want outbound's 6 and senders' 1 (its window changed, its count afresh)", near)
	}
	login(p, "203.0.113.9")
	if len(flags) != 1 {
		t.Errorf("bob flagged again right after a restart: %d flags", len(flags))
	}

	c.now = c.now.Add(3 * time.Hour) // past every window
	late := New(settings(2*time.Hour), deps)
	late.Restore(p.State())
	if tb := late.Tables(); tb.Holders != 0 {
		t.Errorf("a state restored after its windows holds %d holders", tb.Holders)
	}
}
