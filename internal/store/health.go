package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/logban/logban/jails"
	"github.com/logban/logban/watcher"
)

// ErrLost reports a database file that was deleted, replaced or damaged while open: what
// is written to it from now on would be lost. The daemon makes it anew from what it holds
// in memory (see Check).
var ErrLost = errors.New("database lost")

// Salvage says what Open did with a database too damaged to use.
type Salvage struct {
	MovedTo   string // where the damaged file was moved
	Damage    error  // what was wrong with it
	Bans      int    // rows salvaged into the new database
	History   int
	Positions int
}

// errDamaged reports a database that failed SQLite's quick check.
var errDamaged = errors.New("failed SQLite's quick check")

// isDamage reports whether err says the database file is not a sound SQLite database.
func isDamage(err error) bool {
	if errors.Is(err, errDamaged) {
		return true
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
			return true
		}
	}
	return false
}

// isPermission reports whether err says the database cannot be opened or written where
// it is: a read-only place, or no right to it.
func isPermission(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM:
			return true
		}
	}
	return errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS)
}

// sqliteHeader begins every SQLite database file.
var sqliteHeader = []byte("SQLite format 3\x00")

// identity is the file a Store opened, to tell it from one put in its place.
type identity struct{ dev, ino uint64 }

func identify(path string) (identity, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return identity{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return identity{}, nil
	}
	return identity{uint64(st.Dev), st.Ino}, nil
}

// Check tells whether the database is still the sound file it opened, and returns an
// error wrapping ErrLost if it is not: the file was deleted (SQLite would go on writing
// to the deleted file, and a restart would find nothing), another was put in its place,
// or its header or bans table is damaged. It costs a stat, a read of 16 bytes and a
// count of the bans.
func (s *Store) Check(ctx context.Context) error {
	id, err := identify(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("database %s: deleted while in use: %w", s.path, ErrLost)
	case err != nil:
		return fmt.Errorf("database %s: %w", s.path, err)
	case id != s.id:
		return fmt.Errorf("database %s: another file was put in its place: %w", s.path, ErrLost)
	}
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("database %s: %w", s.path, err)
	}
	head := make([]byte, len(sqliteHeader))
	_, err = io.ReadFull(f, head)
	f.Close()
	if err != nil || !bytes.Equal(head, sqliteHeader) {
		return fmt.Errorf("database %s: its header is damaged: %w", s.path, ErrLost)
	}
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM bans").Scan(&n); err != nil {
		if isDamage(err) {
			return fmt.Errorf("database %s: damaged (%v): %w", s.path, err, ErrLost)
		}
		return fmt.Errorf("database %s: %w", s.path, err)
	}
	return nil
}

// MoveAside moves the database at path, and its write-ahead log and shared-memory files,
// to path.corrupt-TIME (TIME in UTC, to the second), and returns where the database went.
// Files that are absent are skipped; "" is returned if the database itself was.
func MoveAside(path string) (string, error) {
	stamp := time.Now().UTC().Format("20060102T150405Z")
	moved := ""
	for _, suffix := range []string{"", "-wal", "-shm"} {
		to := path + ".corrupt-" + stamp + suffix
		if err := os.Rename(path+suffix, to); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return moved, fmt.Errorf("moving damaged database aside: %w", err)
		}
		if suffix == "" {
			moved = to
		}
	}
	return moved, nil
}

// salvage reads what it can of a damaged database: every row of bans, ban_history and
// positions up to the first it cannot read.
type salvaged struct {
	bans      []jails.Record
	history   []historyRow
	positions map[string]watcher.Position
}

type historyRow struct {
	jail, addr, last string
	count            int
}

func salvage(ctx context.Context, path string) salvaged {
	out := salvaged{positions: map[string]watcher.Position{}}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(1000)")
	if err != nil {
		return out
	}
	defer db.Close()
	s := &Store{db: db, path: path}
	rows, err := db.QueryContext(ctx, "SELECT "+banColumns+" FROM bans")
	if err != nil { // older than the farm columns
		rows, err = db.QueryContext(ctx, "SELECT jail, addr, banned_at, expires_at, failures, ban_count FROM bans")
	}
	if err == nil {
		out.bans = scanBans(rows)
	}
	if rows, err := db.QueryContext(ctx, "SELECT jail, addr, ban_count, last_banned FROM ban_history"); err == nil {
		for rows.Next() {
			var h historyRow
			if rows.Scan(&h.jail, &h.addr, &h.count, &h.last) != nil {
				break
			}
			out.history = append(out.history, h)
		}
		rows.Close()
	}
	if p, err := s.scanPositions(ctx, true); err == nil {
		out.positions = p
	}
	return out
}

// restore writes what was salvaged into the new database s.
func (s *Store) restore(ctx context.Context, sv salvaged) error {
	if err := s.SaveBans(ctx, sv.bans); err != nil {
		return err
	}
	for _, h := range sv.history {
		if _, err := s.db.ExecContext(ctx, `INSERT INTO ban_history (jail, addr, ban_count, last_banned) VALUES (?, ?, ?, ?)
			ON CONFLICT (jail, addr) DO UPDATE SET ban_count = max(ban_count, excluded.ban_count)`, h.jail, h.addr, h.count, h.last); err != nil {
			return err
		}
	}
	return s.SavePositions(ctx, sv.positions)
}
