package filters

import (
	"maps"
	"net/netip"
	"slices"
	"time"
)

// A format reads one family of log lines field by field, the way the server that writes
// them lays them out, for the built-in filters whose lines a regex cannot read safely:
// where a field the client controls may hold anything, including a copy of the fields
// around it, only a reader that knows where each field begins and ends (and how the
// server escapes it) can tell the server's text from the client's. Each format's threat
// model is written out in builtin/testdata/README.md and held by its tests.
type format struct {
	// literal is text every line the format counts holds: Filter.Next searches for it.
	literal string
	// kinds names the kinds of line the format counts, as test-filter reports them.
	kinds []string
	// reader makes the format's reader for a filter's options.
	reader func(Options) lineReader
	// account, if set, reads the account a line the reader counted names, or nil if it
	// names none. It is called on counted lines only.
	account func(line []byte) []byte
	// device, if set, reads the device a counted line names, or nil.
	device func(line []byte) []byte
	// time, if set, reads the time a line carries where TimeParser does not find it
	// (not at the start of the line).
	time func(line []byte) (time.Time, bool)
	// success, if set, reads the logins that worked, each line holding successLiteral.
	success        func(Options) successReader
	successLiteral string
}

// A successReader judges one line: whether it is a login that worked, and if so the
// client's address and the account.
type successReader func(line []byte) (addr netip.Addr, account []byte, ok bool)

// A lineReader judges one line: the failing client's address and the kind of line it is
// (an index into its format's kinds), or why the line is no failure.
type lineReader func(line []byte) (addr netip.Addr, kind int, r Result)

// formats maps the names a filter definition's parser key takes to their formats.
var formats = map[string]format{
	"postfix-submission": {
		literal:        postfixLiteral,
		kinds:          []string{"postfix/submission/smtpd: warning: CLIENT[ADDR]: SASL MECHANISM authentication failed"},
		reader:         func(Options) lineReader { return postfixSASL(isSubmission) },
		account:        postfixAccount,
		success:        func(Options) successReader { return postfixLogin(isSubmission) },
		successLiteral: postfixSuccessLiteral,
	},
	"postfix-smtp": {
		literal:        postfixLiteral,
		kinds:          []string{"postfix/smtpd, postfix/smtps/smtpd: warning: CLIENT[ADDR]: SASL MECHANISM authentication failed"},
		reader:         func(Options) lineReader { return postfixSASL(isSMTP) },
		account:        postfixAccount,
		success:        func(Options) successReader { return postfixLogin(isSMTP) },
		successLiteral: postfixSuccessLiteral,
	},
	"zimbra-mailbox-auth": {
		literal:        mailboxAuthLiteral,
		kinds:          mailboxAuthKinds,
		reader:         mailboxAuth,
		account:        mailboxAccount,
		success:        mailboxLogin,
		successLiteral: mailboxLoginLiteral,
	},
	"nginx-activesync": {
		literal: activeSyncLiteral,
		kinds:   activeSyncKinds,
		reader:  func(Options) lineReader { return activeSync },
		account: activeSyncAccount,
		device:  activeSyncDevice,
		time:    nginxTime,
	},
	"nginx-mail-auth": {
		literal: proxyAuthLiteral,
		kinds:   proxyAuthKinds,
		reader:  proxyAuth,
	},
	"jetty-dosfilter": {
		literal: dosAlertLiteral,
		kinds:   dosAlertKinds,
		reader:  func(Options) lineReader { return dosFilter },
	},
}

// FormatNames lists the formats a filter's parser key may name, sorted.
func FormatNames() []string { return slices.Sorted(maps.Keys(formats)) }
