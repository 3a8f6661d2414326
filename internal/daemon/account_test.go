package daemon

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/logban/logban/internal/control"
)

// failAs appends n submission failures of addr against account, stamped now.
func (h *harness) failAs(addr, account string, n int) {
	h.t.Helper()
	var b strings.Builder
	for range n {
		fmt.Fprintf(&b, "%s mta1 postfix/submission/smtpd[4242]: warning: unknown[%s]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=%s\n",
			time.Now().Format(time.Stamp), addr, account)
	}
	h.append(b.String())
}

// login appends a submission login of account from addr that worked, stamped now.
func (h *harness) login(addr, account string) {
	h.t.Helper()
	h.append(fmt.Sprintf("%s mta1 postfix/submission/smtpd[4242]: 4F3A21C0B2: client=unknown[%s], sasl_method=PLAIN, sasl_username=%s\n",
		time.Now().Format(time.Stamp), addr, account))
}

// The stale-password phone: an address that logged in to an account (a line of
// Postfix's) is not banned for failing against it, across a restart too; failing
// against another account, it is.
func TestKnownGoodAddressFromTheLog(t *testing.T) {
	h := start(t, baseConfig, Options{})
	h.login("203.0.113.50", "anna@example.com")
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.Logins == 1 })
	h.failAs("203.0.113.50", "anna@example.com", 10)
	s := h.waitFor("sasl", func(s control.JailStatus) bool { return s.KnownGood == 10 })
	if s.CurrentlyBanned != 0 {
		t.Fatalf("the account's own address was banned: %+v", s.Bans)
	}
	h.shutdown()
	h.run(Options{})
	h.failAs("203.0.113.50", "anna@example.com", 5)
	h.failAs("203.0.113.50", "bob@example.com", 3)
	s = h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 1 })
	if s.KnownGood != 5 {
		t.Errorf("after a restart, %d known-good failures; want 5 (the login is kept in the database)", s.KnownGood)
	}
}

// A jail keyed by user bans every address failing against one account, and the log
// action names the account.
func TestAccountKeyedJail(t *testing.T) {
	h := start(t, strings.Replace(baseConfig, "maxretry = 3", "maxretry = 5\nkey = \"user\"", 1), Options{})
	for i := range 50 {
		h.failAs(fmt.Sprintf("203.0.113.%d", i+1), "anna@example.com", 1)
	}
	s := h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 50 })
	if s.Key != "user" || s.Bans[0].User != "anna@example.com" {
		t.Errorf("status %+v", s)
	}
	// The log action writes on its own time: wait for its 51 lines.
	for deadline := time.Now().Add(10 * time.Second); strings.Count(h.banLog(), "\n") < 51 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
	}
	// One line per address banned, and one notice of the account's ban.
	log := h.banLog()
	if strings.Count(log, ` user="anna@example.com"`+"\n") != 50 || strings.Count(log, `kind=user-ban addr=203.0.113.5 user="anna@example.com" what="user anna@example.com: 5 failures within 1h0m0s, from 5 addresses"`) != 1 {
		t.Errorf("the log action's file:\n%s", log)
	}
	if s := h.waitFor("sasl", func(control.JailStatus) bool { return true }); len(s.KeyBans) != 1 || s.KeyBans[0].Key != "anna@example.com" {
		t.Errorf("the account's ban: %+v", s.KeyBans)
	}
	bans, _ := h.client.List(context.Background(), "sasl")
	if len(bans) != 50 || !strings.Contains(bans[0].Why, "failed against account anna@example.com") {
		t.Errorf("list: %d bans, the first %+v", len(bans), bans[0])
	}
}

// A jail's notify actions hear of a failure not counted because its address logged in
// to the account, once a pair and findtime.
func TestKnownGoodFailureNotified(t *testing.T) {
	h := start(t, strings.Replace(baseConfig, `actions = ["log"]`, `actions = ["log"]
notify = ["log"]`, 1), Options{})
	h.login("203.0.113.50", "anna@example.com")
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.Logins == 1 })
	h.failAs("203.0.113.50", "anna@example.com", 4)
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.KnownGood == 4 })
	want := `notice jail=sasl kind=known-good addr=203.0.113.50 user="anna@example.com"`
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(h.banLog(), want) && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
	}
	if log := h.banLog(); strings.Count(log, want) != 1 {
		t.Errorf("the log action's file holds %d notices; want 1:\n%s", strings.Count(log, want), log)
	}
}
