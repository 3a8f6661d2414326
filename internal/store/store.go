// Package store keeps what ban-server must not lose across a restart or a crash, in a
// SQLite database (modernc.org/sqlite: pure Go, no cgo). Tables and columns have plain
// names, so an operator can read them with sqlite3:
//
//	sqlite3 /var/lib/logban/logban.db 'SELECT path, offset, saved_at FROM positions'
//
// It stores and returns records; it decides nothing.
package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/logban/logban/watcher"
)

// schema creates the tables of each version in turn; PRAGMA user_version says how far a
// database has come.
var schema = []string{
	1: `CREATE TABLE positions (
		path            TEXT PRIMARY KEY, -- the followed path, as configured
		device          INTEGER NOT NULL, -- identity of the file read: device,
		inode           INTEGER NOT NULL, -- inode,
		first_line_hash INTEGER NOT NULL, -- and FNV-1a of its first line (0: none yet)
		offset          INTEGER NOT NULL, -- bytes handed on: just past the last line read
		saved_at        TEXT NOT NULL     -- RFC 3339
	)`,
}

// Store is an open database.
type Store struct {
	db   *sql.DB
	path string
}

// Open opens the database at path, creating it and its folder if needed, and brings its
// tables up to date.
func Open(ctx context.Context, path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("database folder: %w", err)
	}
	dsn := "file:" + path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // one writer; SQLite serialises writes anyway
	s := &Store{db: db, path: path}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	var version int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return err
	}
	if version >= len(schema) {
		if version > len(schema)-1 {
			return fmt.Errorf("written by a newer logban (schema %d, this one knows %d)", version, len(schema)-1)
		}
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	for v := version + 1; v < len(schema); v++ {
		if _, err := tx.ExecContext(ctx, schema[v]); err != nil {
			return fmt.Errorf("schema %d: %w", v, err)
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(schema)-1)); err != nil {
		return err
	}
	return tx.Commit()
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Positions returns every saved position, by path.
func (s *Store) Positions(ctx context.Context) (map[string]watcher.Position, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT path, device, inode, first_line_hash, offset FROM positions")
	if err != nil {
		return nil, fmt.Errorf("reading positions: %w", err)
	}
	defer rows.Close()
	out := map[string]watcher.Position{}
	for rows.Next() {
		var path string
		var dev, ino, head, off int64
		if err := rows.Scan(&path, &dev, &ino, &head, &off); err != nil {
			return nil, fmt.Errorf("reading positions: %w", err)
		}
		out[path] = watcher.Position{
			File:   watcher.Identity{Device: uint64(dev), Inode: uint64(ino), Head: uint64(head)},
			Offset: off,
		}
	}
	return out, rows.Err()
}

// SavePositions records positions, by path, in one transaction.
func (s *Store) SavePositions(ctx context.Context, positions map[string]watcher.Position) error {
	if len(positions) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("saving positions: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	now := time.Now().UTC().Format(time.RFC3339)
	for path, p := range positions {
		// Unsigned identity values keep their bits in SQLite's signed integers.
		_, err := tx.ExecContext(ctx, `INSERT INTO positions (path, device, inode, first_line_hash, offset, saved_at)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (path) DO UPDATE SET device = excluded.device, inode = excluded.inode,
				first_line_hash = excluded.first_line_hash, offset = excluded.offset, saved_at = excluded.saved_at`,
			path, int64(p.File.Device), int64(p.File.Inode), int64(p.File.Head), p.Offset, now)
		if err != nil {
			return fmt.Errorf("saving position of %s: %w", path, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("saving positions: %w", err)
	}
	return nil
}
