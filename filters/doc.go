// Package filters turns fail2ban-style failregex and ignoreregex patterns into matchers
// that answer one question for a log line: which address failed, and when.
//
// A pattern names the failing client with <HOST>, which becomes a named group matching an
// IPv4 or IPv6 literal; the capture is parsed with net/netip, so a hostname or garbage in
// that position is never a failure. Every Filter derives the literal text that each of its
// matches must contain and rejects a line that lacks it with a single bytes.Index, so the
// lines no filter wants cost no allocation.
//
// This package does not count failures, keep state between lines, or know about jails,
// files or actions.
package filters
