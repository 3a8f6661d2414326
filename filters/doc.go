// Package filters finds failures in log lines: for a line, which address failed, and
// when.
//
// A filter is either fail2ban-style failregex patterns, which name the failing client
// with <HOST> (a named group matching an IPv4 or IPv6 literal, parsed with net/netip so
// that a hostname or garbage in that position is never a failure), or one of the
// built-in formats: readers of Postfix's, Zimbra's and Jetty's lines that take the
// address only from the field the server writes, by the server's own rules for where
// fields begin and end (see format.go, and the threat models in
// builtin/testdata/README.md). Either may add ignoreregex. Every Filter knows text each
// failure holds and rejects a line that lacks it with a single bytes.Index, so the lines
// no filter wants cost no allocation.
//
// This package does not count failures, keep state between lines, or know about jails,
// files or actions.
package filters
