package store

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/jails"
)

// banRow is a row of bans as SQLite holds it.
type banRow struct {
	jail, addr, banned string
	expires            sql.NullString
	failures, count    int
	by, why, matches   string
	user               string
}

// record makes the ban the row records.
func (row banRow) record() (jails.Record, error) {
	r := jails.Record{Ban: actions.Ban{Jail: row.jail, Failures: row.failures, By: row.by, Why: row.why, User: row.user}, Count: row.count}
	if row.matches != "" && row.matches != "[]" {
		json.Unmarshal([]byte(row.matches), &r.Lines) //nolint:errcheck // unreadable lines are only lost lines
	}
	p, err := actions.ParseTarget(row.addr)
	if err != nil {
		return r, fmt.Errorf("address %q: %w", row.addr, err)
	}
	b := actions.BanOf(r.Jail, p)
	r.Addr, r.Bits = b.Addr, b.Bits
	if r.BannedAt, err = time.Parse(timeFormat, row.banned); err != nil {
		return r, err
	}
	if row.expires.Valid {
		if r.Expires, err = time.Parse(timeFormat, row.expires.String); err != nil {
			return r, err
		}
	}
	return r, nil
}

// scanBan reads the ban in the row rows is at, of banColumns, or of fewer of them (a
// salvage from a database older than the later columns).
func scanBan(rows *sql.Rows) (jails.Record, error) {
	var row banRow
	dest := []any{&row.jail, &row.addr, &row.banned, &row.expires, &row.failures, &row.count, &row.by, &row.why, &row.matches, &row.user}
	if cols, err := rows.Columns(); err == nil && len(cols) < len(dest) {
		dest = dest[:len(cols)]
	}
	if err := rows.Scan(dest...); err != nil {
		return jails.Record{}, err
	}
	return row.record()
}

// packedBan returns the expression that reads a row of bans as one text: each column
// its length in bytes, a colon and itself; failures and ban_count each a number and a
// colon; an expiry of NULL as "-:". Read column by column, a row costs three calls into
// SQLite a column, each through the connection's lock: half of what reading 100,000
// bans costs (BenchmarkEachBan). Without lines, the matches column is empty.
func packedBan(lines bool) string {
	text := func(col string) string { return "octet_length(" + col + ") || ':' || " + col }
	matches := text("matches")
	if !lines {
		matches = "'0:'"
	}
	return strings.Join([]string{
		text("jail"), text("addr"), text("banned_at"),
		"coalesce(" + text("expires_at") + ", '-:')",
		"failures || ':'", "ban_count || ':'",
		text("decided_by"), text("why"), matches, text("user"),
	}, " || ")
}

var errPacked = errors.New("not a packed row of bans")

// unpackBan makes the ban of a row read by packedBan.
func unpackBan(packed string) (jails.Record, error) {
	rest := packed
	ok := true
	upTo := func() string { // the text before the next colon, which it passes
		i := strings.IndexByte(rest, ':')
		if i < 0 {
			ok = false
			return ""
		}
		s := rest[:i]
		rest = rest[i+1:]
		return s
	}
	num := func() int {
		n, err := strconv.Atoi(upTo())
		if err != nil {
			ok = false
		}
		return n
	}
	text := func() string {
		n := num()
		if !ok || n < 0 || n > len(rest) {
			ok = false
			return ""
		}
		s := rest[:n]
		rest = rest[n:]
		return s
	}
	var row banRow
	row.jail, row.addr, row.banned = text(), text(), text()
	if strings.HasPrefix(rest, "-:") {
		rest = rest[2:]
	} else {
		row.expires = sql.NullString{String: text(), Valid: true}
	}
	row.failures, row.count = num(), num()
	row.by, row.why, row.matches, row.user = text(), text(), text(), text()
	if !ok || rest != "" {
		return jails.Record{}, errPacked
	}
	return row.record()
}

// rowTexts gives the texts of bans read from packed rows memory of their own. A text
// cut from a packed row keeps the whole row alive, and a ban in force is kept for as
// long as it lasts: 100,000 restored bans would hold 100,000 rows. The names that
// repeat from ban to ban (the jail, the node that decided) are shared, up to
// rowNamesMax of them; the rest are copied.
type rowTexts map[string]string

// rowNamesMax bounds the names rowTexts shares.
const rowNamesMax = 1024

// own makes r's texts its own.
func (t rowTexts) own(r *jails.Record) {
	r.Jail, r.By = t.name(r.Jail), t.name(r.By)
	r.Why, r.User = strings.Clone(r.Why), strings.Clone(r.User)
}

// name returns s, shared with the bans before it of the same name.
func (t rowTexts) name(s string) string {
	if shared, ok := t[s]; ok {
		return shared
	}
	s = strings.Clone(s)
	if len(t) < rowNamesMax {
		t[s] = s
	}
	return s
}
