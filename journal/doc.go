// Package journal follows the systemd journal and hands its entries on as the lines
// syslog would have written for them, in the batches and positions package watcher
// uses for files, so that every filter reads a journal as it reads a log file.
//
// It drives journalctl (--follow --output=export), as CrowdSec does, rather than
// linking libsystemd (cgo, and a binary that needs the library at run time) or reading
// the journal's files itself (their format, compression, sealing and the merging of
// many files, rotated and vacuumed under the reader, are journalctl's to get right).
// journalctl reads about 180,000 entries a second here, far above what a mail host's
// journal takes in (bench/README.md).
//
// An entry becomes "TIME HOST IDENT[PID]: MESSAGE": the time from its realtime stamp,
// in RFC 3339 with microseconds as Debian's rsyslog writes it, the identifier and PID as
// journalctl's short output takes them, and control characters in any field written
// as rsyslog does ("#012" for a newline), so that one entry is one line however its
// writer formed it. The position is the journal's cursor of the last entry handed on.
//
// Any local user can write an entry with any SYSLOG_IDENTIFIER (logger -t); only the
// fields journald adds itself, whose names begin with an underscore (_SYSTEMD_UNIT,
// _COMM, _UID), say which process wrote it. So every group of matches must hold one of
// those (CheckMatches).
package journal
