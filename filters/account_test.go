package filters

import (
	"errors"
	"testing"
)

// The built-in filters read the account a failure names, from the field the server
// wrote: text a client sent as its user name never moves the address, and never
// stands for the account where the server wrote none.
func TestAccountsOfFailures(t *testing.T) {
	tests := []struct {
		filter, line, addr, user string
	}{
		{"zimbra-submission", "Mar  5 16:00:00 mta1 postfix/submission/smtpd[4242]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=anna@example.com",
			"203.0.113.5", "anna@example.com"},
		{"zimbra-submission", "Mar  5 16:00:00 mta1 postfix/submission/smtpd[4242]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=x [198.51.100.1], sasl_username=bob",
			"203.0.113.5", "x [198.51.100.1], sasl_username=bob"},
		{"zimbra-submission", "Mar  5 16:00:00 mta1 postfix/submission/smtpd[4242]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: authentication failure",
			"203.0.113.5", ""},
		{"zimbra-mailbox-auth", "2026-03-05 16:00:00,123 WARN  [qtp1-1:https://mail.example.com/service/soap/AuthRequest] [name=anna@example.com;oip=203.0.113.9;ua=zclient;] security - cmd=Auth; account=anna@example.com; protocol=soap; error=authentication failed for [anna@example.com], invalid password;",
			"203.0.113.9", "anna@example.com"},
		{"zimbra-mailbox-auth", "2026-03-05 16:00:00,123 INFO  [ImapServer-1] [name=bob@example.com;ip=203.0.113.9;] imap - authentication failed for [bob@example.com] (invalid password)",
			"203.0.113.9", "bob@example.com"},
		{"zimbra-mailbox-auth", "2026-03-05 16:00:00,123 INFO  [ImapServer-1] [ip=203.0.113.9;] imap - authentication failed for [eve@example.com] (invalid password)",
			"203.0.113.9", ""},
	}
	for _, tt := range tests {
		f := builtin(t, tt.filter, Options{})
		m, r := f.Match([]byte(tt.line), now)
		if r != Matched || m.Addr.String() != tt.addr || string(m.Account) != tt.user {
			t.Errorf("%s: %v %s %q; want %s %q\n  %s", tt.filter, r, m.Addr, m.Account, tt.addr, tt.user, tt.line)
		}
	}
}

// With Options.Successes, the built-in filters read the logins that worked, with their
// account; without it, those lines are no match, at no cost.
func TestLoginsThatWorked(t *testing.T) {
	tests := []struct {
		filter, line, addr, user string
	}{
		{"zimbra-submission", "Mar  5 16:00:00 mta1 postfix/submission/smtpd[4242]: 4F3A21C0B2: client=unknown[203.0.113.5], sasl_method=PLAIN, sasl_username=anna@example.com",
			"203.0.113.5", "anna@example.com"},
		{"zimbra-submission", "Mar  5 16:00:00 mta1 postfix/submission/smtpd[4242]: 4F3A21C0B2: client=host.example.net[2001:db8::5]:51234, sasl_method=LOGIN, sasl_username=bob@example.com, sasl_sender=bob@example.com",
			"2001:db8::5", "bob@example.com"},
		{"zimbra-smtp-auth", "Mar  5 16:00:00 mta1 postfix/smtpd[4242]: 4F3A21C0B2: client=unknown[203.0.113.5], sasl_method=PLAIN, sasl_username=anna@example.com",
			"203.0.113.5", "anna@example.com"},
		{"zimbra-mailbox-auth", "2026-03-05 16:00:00,123 INFO  [qtp1-1:https://mail.example.com/service/soap/AuthRequest] [name=anna@example.com;oip=203.0.113.9;ua=CarbonioWebClient;] account - authentication successful",
			"203.0.113.9", "anna@example.com"},
		{"zimbra-mailbox-auth", "2026-03-05 16:00:00,123 INFO  [qtp1-1:https://mail.example.com/service/soap/AuthRequest] [name=anna@example.com;oip=203.0.113.9;] security - cmd=Auth; account=anna@example.com; protocol=soap;",
			"203.0.113.9", "anna@example.com"},
	}
	for _, tt := range tests {
		if _, r := builtin(t, tt.filter, Options{}).Match([]byte(tt.line), now); r != NoMatch {
			t.Errorf("%s without successes: %v", tt.filter, r)
		}
		m, r := builtin(t, tt.filter, Options{Successes: true}).Match([]byte(tt.line), now)
		if r != Succeeded || m.Addr.String() != tt.addr || string(m.Account) != tt.user {
			t.Errorf("%s: %v %s %q; want a success of %s %q\n  %s", tt.filter, r, m.Addr, m.Account, tt.addr, tt.user, tt.line)
		}
	}
	// Not logins that worked: another service, a failure's account, a line of another shape.
	for _, tt := range []struct{ filter, line string }{
		{"zimbra-submission", "Mar  5 16:00:00 mta1 postfix/smtpd[4242]: 4F3A21C0B2: client=unknown[203.0.113.5], sasl_method=PLAIN, sasl_username=anna@example.com"},
		{"zimbra-submission", "Mar  5 16:00:00 mta1 postfix/submission/smtpd[4242]: 4F3A21C0B2: client=unknown[203.0.113.5]"},
		{"zimbra-mailbox-auth", "2026-03-05 16:00:00,123 INFO  [qtp1-1:https://mail.example.com/service/soap/AuthRequest] [name=x;oip=203.0.113.9;] security - cmd=Auth; account=x; protocol=soap; error=account locked;"},
		{"zimbra-mailbox-auth", "2026-03-05 16:00:00,123 INFO  [qtp1-1:https://mail.example.com/service/soap/X] [oip=203.0.113.9;] account - authentication successful"},
	} {
		if m, r := builtin(t, tt.filter, Options{Successes: true}).Match([]byte(tt.line), now); r == Succeeded {
			t.Errorf("%s: a success of %s %q\n  %s", tt.filter, m.Addr, m.Account, tt.line)
		}
	}
}

// A filter of one's own marks the account with <USER>, in failregex and successregex;
// a successregex without <USER> is refused.
func TestUserTag(t *testing.T) {
	d := Definition{
		FailRegex:    []string{`login failed for <USER> from <HOST>$`},
		SuccessRegex: []string{`login ok for <USER> from <HOST>$`},
	}
	f, err := New("webmail", d, Options{Successes: true})
	if err != nil {
		t.Fatal(err)
	}
	if m, r := f.Match([]byte("login failed for anna@example.com from 203.0.113.5"), now); r != Matched || string(m.Account) != "anna@example.com" {
		t.Errorf("failure: %v %+v", r, m)
	}
	if m, r := f.Match([]byte("login ok for anna@example.com from 203.0.113.5"), now); r != Succeeded || string(m.Account) != "anna@example.com" || m.Addr.String() != "203.0.113.5" {
		t.Errorf("success: %v %+v", r, m)
	}
	// <USER> stops at white space and delimiters: it cannot take in the address after it.
	if m, r := f.Match([]byte("login failed for a[203.0.113.9] from 203.0.113.5"), now); r == Matched && m.Addr.String() != "203.0.113.5" {
		t.Errorf("the account moved the address: %+v", m)
	}
	_, err = New("webmail", Definition{FailRegex: d.FailRegex, SuccessRegex: []string{`login ok from <HOST>$`}}, Options{})
	if !errors.Is(err, ErrNoUser) {
		t.Errorf("a successregex without <USER>: %v", err)
	}
	if _, err := New("p", Definition{Parser: "postfix-submission", SuccessRegex: d.SuccessRegex}, Options{}); !errors.Is(err, ErrParserAndSuccess) {
		t.Errorf("a parser with successregex: %v", err)
	}
}
