// Package store keeps what ban-server must not lose across a restart or a crash, in a
// SQLite database (modernc.org/sqlite: pure Go, no cgo). Tables and columns have plain
// names, so an operator can read them with sqlite3:
//
//	sqlite3 /var/lib/logban/logban.db 'SELECT path, offset, saved_at FROM positions'
//
// It stores and returns records; it decides nothing.
package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/openfile"
	"github.com/logban/logban/jails"
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
	2: `CREATE TABLE bans (
		jail       TEXT NOT NULL,
		addr       TEXT NOT NULL,    -- 203.0.113.5, 2001:db8::5; a network: 198.51.100.0/24
		banned_at  TEXT NOT NULL,    -- RFC 3339, UTC
		expires_at TEXT,             -- RFC 3339, UTC; NULL: until unbanned
		failures   INTEGER NOT NULL, -- failures that led to the ban; 0 for a manual ban
		ban_count  INTEGER NOT NULL, -- how many times this address was banned in this jail, this time included
		PRIMARY KEY (jail, addr)
	);
	CREATE TABLE ban_history (   -- outlives the bans, for longer bans of repeat offenders
		jail        TEXT NOT NULL,
		addr        TEXT NOT NULL,
		ban_count   INTEGER NOT NULL,
		last_banned TEXT NOT NULL,
		PRIMARY KEY (jail, addr)
	)`,
	3: `CREATE INDEX ban_history_addr ON ban_history (addr)`, // overalljails counts by address alone
	4: `ALTER TABLE bans ADD COLUMN decided_by TEXT NOT NULL DEFAULT ''; -- the farm node that decided; '' outside a farm
	ALTER TABLE bans ADD COLUMN why TEXT NOT NULL DEFAULT '';
	CREATE TABLE farm_outbox (   -- decisions and unbans waiting for the farm, in order
		id      INTEGER PRIMARY KEY AUTOINCREMENT,
		entry   TEXT NOT NULL    -- JSON, as package farm writes it
	)`,
	5: `ALTER TABLE bans ADD COLUMN matches TEXT NOT NULL DEFAULT '[]'`, // the last matched log lines, a JSON list
	6: `ALTER TABLE bans ADD COLUMN user TEXT NOT NULL DEFAULT ''; -- the account, in a jail keyed by user
	CREATE TABLE known_good (   -- logins that worked: an address trusted for an account
		account    TEXT NOT NULL,
		addr       TEXT NOT NULL,
		last_login TEXT NOT NULL, -- RFC 3339, UTC
		PRIMARY KEY (account, addr)
	) WITHOUT ROWID`,
	7: `CREATE TABLE key_bans (   -- bans of accounts and devices, which no firewall holds
		jail       TEXT NOT NULL,
		kind       TEXT NOT NULL,    -- user, device
		key        TEXT NOT NULL,    -- the account or device, as the client sent it
		banned_at  TEXT NOT NULL,    -- RFC 3339, UTC
		expires_at TEXT,             -- RFC 3339, UTC; NULL: until unbanned
		user       TEXT NOT NULL,    -- for a device, the account its lines last named
		count      INTEGER NOT NULL, -- failures or requests within findtime
		addrs      TEXT NOT NULL,    -- the addresses seen with it, space-separated
		PRIMARY KEY (jail, kind, key)
	) WITHOUT ROWID`,
	8: `CREATE TABLE local_unbans (   -- farm bans lifted on this host alone, until the farm's ends
		jail       TEXT NOT NULL,
		addr       TEXT NOT NULL,    -- an address, or a network in CIDR notation
		banned_at  TEXT NOT NULL,    -- RFC 3339, UTC: the lifted ban's decision
		until      TEXT,             -- RFC 3339, UTC: the lifted ban's end; NULL: until the farm lifts it
		PRIMARY KEY (jail, addr)
	) WITHOUT ROWID`,
	9: `CREATE TABLE policy_state (   -- what the policy service counted, kept from a stop to the next start
		id       INTEGER PRIMARY KEY CHECK (id = 1),
		state    TEXT NOT NULL,      -- JSON, as package policy writes it
		saved_at TEXT NOT NULL       -- RFC 3339, UTC
	)`,
	10: `CREATE TABLE directory_state (   -- the last good read of [zimbra]'s directory, for a start without it
		id      INTEGER PRIMARY KEY CHECK (id = 1),
		state   TEXT NOT NULL,       -- JSON, as the daemon writes it
		read_at TEXT NOT NULL        -- RFC 3339, UTC
	)`,
	// A journal reader's position: its key is the path, device, inode and offset are 0.
	11: `ALTER TABLE positions ADD COLUMN cursor TEXT NOT NULL DEFAULT ''`, // the journal's cursor of the last entry read
	12: `CREATE INDEX ban_history_last ON ban_history (last_banned)`,       // the oldest go first past historyMax (history.go)
}

// banColumns are the columns of bans, in the order scanBan reads them.
const banColumns = "jail, addr, banned_at, expires_at, failures, ban_count, decided_by, why, matches, user"

// Store is an open database.
type Store struct {
	db       *sql.DB
	rdb      *sql.DB // read-only, beside the one writer; nil in a salvage
	path     string
	id       identity // the file opened, to tell it from one put in its place
	salvaged *Salvage

	prepareSave sync.Once
	saveStmts   [2]*sql.Stmt // SaveBans' two statements for a whole chunk, once prepared

	countMu    sync.Mutex
	countStmts map[countShape]*sql.Stmt // BanCounts' lookups, prepared as first asked
	counted    atomic.Int64             // BanCounts' lookups made in SQLite

	history       *historyFilter     // what ban_history may hold
	historyLoaded chan struct{}      // closed once loadHistory has returned
	stopHistory   context.CancelFunc // ends loadHistory early, at Close
	historyRows   atomic.Int64       // rows ban_history holds, or more (history.go)
	historyMax    int64              // the rows it keeps: historyMax, but for tests
}

// countShape is the form of one BanCounts lookup: how many addresses it asks about (a
// power of two, up to countChunk), and whether of one jail.
type countShape struct {
	n      int
	inJail bool
}

// Open opens the database at path, creating it and its folder if needed, and brings its
// tables up to date. A database too damaged to use (not a database, or failing SQLite's
// quick check) is not a reason to leave the host unprotected: it is moved aside (see
// MoveAside), the rows that can still be read are salvaged into a new one, and Salvaged
// says what was done. Every error names the path.
func Open(ctx context.Context, path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("database folder: %w", err)
	}
	if err := private(path); err != nil {
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	s, err := open(ctx, path)
	if err == nil {
		err = s.quickCheck(ctx)
		if err == nil {
			return s, nil
		}
		s.Close()
	}
	if isPermission(err) {
		return nil, fmt.Errorf("database %s: %w (set [server] database to a path ban-server may write)", path, err)
	}
	if !isDamage(err) {
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	sv := salvage(ctx, path)
	moved, merr := MoveAside(path)
	if merr != nil {
		return nil, fmt.Errorf("database %s is damaged (%v), and %w", path, err, merr)
	}
	if s, err = open(ctx, path); err != nil {
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	if rerr := s.restore(ctx, sv); rerr != nil {
		s.Close()
		return nil, fmt.Errorf("database %s: writing what was salvaged: %w", path, rerr)
	}
	s.salvaged = &Salvage{MovedTo: moved, Damage: err, Bans: len(sv.bans), History: len(sv.history), Positions: len(sv.positions)}
	return s, nil
}

// LoadHistory reads the ban history's keys into the filter that spares SQLite the
// history lookups of new addresses (historyFilter), beside what the caller does next,
// until Close; until it is done, and without it, every lookup asks SQLite. ban-server
// calls it once the bans are restored, so that the two do not read the database at
// once. It is called once.
func (s *Store) LoadHistory() {
	ctx, stop := context.WithCancel(context.Background())
	s.stopHistory = stop
	go s.loadHistory(ctx)
}

// private makes the database at path, and its WAL and shared-memory files if there, mode
// 0600, creating the database empty if absent: it holds who failed how, and the lines
// that counted. SQLite gives the files it makes later the database's own mode.
func private(path string) error {
	for i, p := range []string{path, path + "-wal", path + "-shm"} {
		flag := os.O_RDWR
		if i == 0 {
			flag |= os.O_CREATE
		}
		f, err := openfile.Regular(p, flag, 0o600)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		err = f.Chmod(0o600)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// reader returns the database to read from while writes go on.
func (s *Store) reader() *sql.DB {
	if s.rdb != nil {
		return s.rdb
	}
	return s.db
}

// open opens the database at path as it is and migrates its schema.
func open(ctx context.Context, path string) (*Store, error) {
	dsn := "file:" + path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1) // one writer; SQLite serialises writes anyway
	s := &Store{db: db, path: path, history: newHistoryFilter(), historyLoaded: make(chan struct{}), historyMax: historyMax}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if s.id, err = identify(path); err != nil {
		db.Close()
		return nil, err
	}
	// Readers of their own: in WAL mode they read what was committed while a write goes
	// on, so a burst's history lookups do not wait on its records being written.
	if s.rdb, err = sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)"); err != nil {
		db.Close()
		return nil, err
	}
	s.rdb.SetMaxOpenConns(2)
	return s, nil
}

// quickCheck runs SQLite's quick check: every page and index readable and consistent.
func (s *Store) quickCheck(ctx context.Context) error {
	var result string
	if err := s.db.QueryRowContext(ctx, "PRAGMA quick_check(1)").Scan(&result); err != nil {
		return err
	}
	if result != "ok" {
		return fmt.Errorf("%s: %w", result, errDamaged)
	}
	return nil
}

// Salvaged reports what Open did with a damaged database; nil if it opened as it was.
func (s *Store) Salvaged() *Salvage { return s.salvaged }

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
func (s *Store) Close() error {
	if s.stopHistory != nil {
		s.stopHistory()
		<-s.historyLoaded
	}
	for _, stmt := range s.saveStmts {
		if stmt != nil {
			stmt.Close()
		}
	}
	for _, stmt := range s.countStmts {
		stmt.Close()
	}
	if s.rdb != nil {
		s.rdb.Close()
	}
	return s.db.Close()
}

// Positions returns every saved position, by path.
func (s *Store) Positions(ctx context.Context) (map[string]watcher.Position, error) {
	return s.scanPositions(ctx, false)
}

// scanPositions reads the positions; lenient, it keeps those read before a row it
// cannot read, for a salvage.
func (s *Store) scanPositions(ctx context.Context, lenient bool) (map[string]watcher.Position, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT path, device, inode, first_line_hash, offset, cursor FROM positions")
	if err != nil && lenient { // a database older than journal readers
		rows, err = s.db.QueryContext(ctx, "SELECT path, device, inode, first_line_hash, offset, '' FROM positions")
	}
	if err != nil {
		return nil, fmt.Errorf("reading positions: %w", err)
	}
	defer rows.Close()
	out := map[string]watcher.Position{}
	for rows.Next() {
		var path, cursor string
		var dev, ino, head, off int64
		if err := rows.Scan(&path, &dev, &ino, &head, &off, &cursor); err != nil {
			if lenient {
				return out, nil
			}
			return nil, fmt.Errorf("reading positions: %w", err)
		}
		out[path] = watcher.Position{
			File:   watcher.Identity{Device: uint64(dev), Inode: uint64(ino), Head: uint64(head)},
			Offset: off,
			Cursor: cursor,
		}
	}
	if err := rows.Err(); err != nil && !lenient {
		return nil, err
	}
	return out, nil
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
		_, err := tx.ExecContext(ctx, `INSERT INTO positions (path, device, inode, first_line_hash, offset, cursor, saved_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (path) DO UPDATE SET device = excluded.device, inode = excluded.inode,
				first_line_hash = excluded.first_line_hash, offset = excluded.offset, cursor = excluded.cursor,
				saved_at = excluded.saved_at`,
			path, int64(p.File.Device), int64(p.File.Inode), int64(p.File.Head), p.Offset, p.Cursor, now)
		if err != nil {
			return fmt.Errorf("saving position of %s: %w", path, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("saving positions: %w", err)
	}
	return nil
}

// The store is the daemon's ledger of bans, and records bursts in one transaction.
var _ jails.BatchLedger = (*Store)(nil)

const timeFormat = time.RFC3339Nano

// SaveBan records a ban and counts it in the address's history. It is called before the
// ban is applied, so a crash between the two loses nothing: the ban is applied at start.
func (s *Store) SaveBan(ctx context.Context, r jails.Record) error {
	return s.SaveBans(ctx, []jails.Record{r})
}

// SaveBans records many bans in one transaction.
func (s *Store) SaveBans(ctx context.Context, records []jails.Record) error {
	whole := s.saveStatements(ctx) // before the transaction takes the one connection
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	// In the order of the tables' keys: rows inserted in the index's order touch each page
	// once, where a burst handed over in no order (from a map) costs a quarter more.
	type row struct {
		r    *jails.Record
		addr string
	}
	rows := make([]row, len(records))
	for i := range records {
		rows[i] = row{&records[i], records[i].Target()}
		s.history.add(records[i].Jail, rows[i].addr) // before the row is: the filter never misses one
	}
	slices.SortFunc(rows, func(x, y row) int {
		return cmp.Or(strings.Compare(x.r.Jail, y.r.Jail), strings.Compare(x.addr, y.addr))
	})
	for chunk := range slices.Chunk(rows, saveChunk) {
		bans := make([]any, 0, 10*len(chunk))
		counts := make([]any, 0, 4*len(chunk))
		for _, row := range chunk {
			r, addr := row.r, row.addr
			var expires any
			if !r.Permanent() {
				expires = r.Expires.UTC().Format(timeFormat)
			}
			banned := r.BannedAt.UTC().Format(timeFormat)
			matches, _ := json.Marshal(orEmpty(r.Lines)) // strings: it cannot fail
			bans = append(bans, r.Jail, addr, banned, expires, r.Failures, r.Count, r.By, r.Why, string(matches), r.User)
			counts = append(counts, r.Jail, addr, r.Count, banned)
		}
		var err error
		if len(chunk) == saveChunk && whole[0] != nil {
			_, err = tx.StmtContext(ctx, whole[0]).ExecContext(ctx, bans...)
		} else {
			_, err = tx.ExecContext(ctx, saveBansSQL(len(chunk)), bans...)
		}
		if err != nil {
			return fmt.Errorf("saving %d bans: %w", len(chunk), err)
		}
		if len(chunk) == saveChunk && whole[1] != nil {
			_, err = tx.StmtContext(ctx, whole[1]).ExecContext(ctx, counts...)
		} else {
			_, err = tx.ExecContext(ctx, saveCountsSQL(len(chunk)), counts...)
		}
		if err != nil {
			return fmt.Errorf("counting %d bans: %w", len(chunk), err)
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	// Each record counts as a new row: an update of an old one is counted too, and the
	// removal counts exactly. Asking the filter which are new would count short, as a
	// filter that knows many keys takes new ones for old.
	s.historyRows.Add(int64(len(records)))
	// The bans are recorded: a history left over its bound is bounded at the next call.
	s.boundHistory(ctx) //nolint:errcheck
	return nil
}

// saveBansSQL and saveCountsSQL are SaveBans' statements for n bans.
func saveBansSQL(n int) string {
	return `INSERT OR REPLACE INTO bans (` + banColumns + `) VALUES ` + valuesList(n, "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
}

func saveCountsSQL(n int) string {
	return `INSERT INTO ban_history (jail, addr, ban_count, last_banned) VALUES ` + valuesList(n, "(?, ?, ?, ?)") +
		` ON CONFLICT (jail, addr) DO UPDATE SET ban_count = excluded.ban_count, last_banned = excluded.last_banned`
}

// saveStatements returns SaveBans' statements for a whole chunk, prepared at its first
// call: parsing 256 rows' worth of SQL for each chunk costs a seventh of recording a
// burst. A nil one (preparing it failed) leaves SaveBans to the statement unprepared.
func (s *Store) saveStatements(ctx context.Context) [2]*sql.Stmt {
	s.prepareSave.Do(func() {
		for i, text := range []string{saveBansSQL(saveChunk), saveCountsSQL(saveChunk)} {
			if stmt, err := s.db.PrepareContext(ctx, text); err == nil {
				s.saveStmts[i] = stmt
			}
		}
	})
	return s.saveStmts
}

// saveChunk is how many bans one INSERT statement records.
const saveChunk = 256

// valuesList returns n copies of row, joined by commas: a multi-row VALUES list.
func valuesList(n int, row string) string {
	return strings.Repeat(row+", ", n-1) + row
}

// countChunk is how many addresses one BanCounts query asks about: a power of two.
const countChunk = 512

// BanCounts returns how many times each address or network was banned in jail, or in
// all jails if "". A ban asks it on its way to the kernel, a few addresses at a time when
// they come a few at a time. Those the history surely lacks (historyFilter) are not
// asked of SQLite; each lookup of the rest asks about a power of two of them (the last
// address repeated to fill it), on statements prepared once, as parsing a statement
// costs more than running it.
func (s *Store) BanCounts(ctx context.Context, jail string, whats []netip.Prefix) (map[netip.Prefix]int, error) {
	out := make(map[netip.Prefix]int)
	if s.history.ready.Load() {
		var maybe []netip.Prefix
		for _, w := range whats {
			if s.history.mayHold(jail, actions.Target(w)) {
				maybe = append(maybe, w)
			}
		}
		whats = maybe
	}
	for chunk := range slices.Chunk(whats, countChunk) {
		s.counted.Add(1)
		n := 1
		for n < len(chunk) {
			n *= 2
		}
		stmt, err := s.countStmt(ctx, countShape{n, jail != ""})
		if err != nil {
			return out, fmt.Errorf("counting bans of %d addresses: %w", len(whats), err)
		}
		args := make([]any, 0, n+1)
		for i := range n {
			args = append(args, actions.Target(chunk[min(i, len(chunk)-1)]))
		}
		if jail != "" {
			args = append(args, jail)
		}
		rows, err := stmt.QueryContext(ctx, args...)
		if err != nil {
			return out, fmt.Errorf("counting bans of %d addresses: %w", len(whats), err)
		}
		for rows.Next() {
			var addr string
			var n int
			if err := rows.Scan(&addr, &n); err != nil {
				rows.Close()
				return out, err
			}
			if p, err := actions.ParseTarget(addr); err == nil {
				out[p] = n
			}
		}
		if err := rows.Close(); err != nil {
			return out, err
		}
		if err := rows.Err(); err != nil {
			return out, err
		}
	}
	return out, nil
}

// countStmt returns BanCounts' lookup of the given shape, preparing it the first time.
func (s *Store) countStmt(ctx context.Context, shape countShape) (*sql.Stmt, error) {
	s.countMu.Lock()
	defer s.countMu.Unlock()
	if stmt, ok := s.countStmts[shape]; ok {
		return stmt, nil
	}
	query := "SELECT addr, SUM(ban_count) FROM ban_history WHERE addr IN (?" + strings.Repeat(", ?", shape.n-1) + ")"
	if shape.inJail {
		query += " AND jail = ?"
	}
	stmt, err := s.reader().PrepareContext(ctx, query+" GROUP BY addr")
	if err != nil {
		return nil, err
	}
	if s.countStmts == nil {
		s.countStmts = map[countShape]*sql.Stmt{}
	}
	s.countStmts[shape] = stmt
	return stmt, nil
}

// BanLines returns the lines recorded with jail's ban of what: the last log lines that
// counted, oldest first; nil if there is no such ban or it has none. It is a
// jails.LineLedger method: the bans in memory do not hold their lines.
func (s *Store) BanLines(ctx context.Context, jail string, what netip.Prefix) ([]string, error) {
	var matches string
	err := s.db.QueryRowContext(ctx, "SELECT matches FROM bans WHERE jail = ? AND addr = ?", jail, actions.Target(what)).Scan(&matches)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the lines of the ban of %s: %w", actions.Target(what), err)
	}
	var lines []string
	if matches != "" && matches != "[]" {
		json.Unmarshal([]byte(matches), &lines) //nolint:errcheck // unreadable lines are only lost lines
	}
	return lines, nil
}

// DeleteBan removes a ban that ended; its count stays in the history.
func (s *Store) DeleteBan(ctx context.Context, jail string, what netip.Prefix) error {
	if _, err := s.db.ExecContext(ctx, "DELETE FROM bans WHERE jail = ? AND addr = ?", jail, actions.Target(what)); err != nil {
		return fmt.Errorf("removing ban of %s: %w", actions.Target(what), err)
	}
	return nil
}

// Bans returns every recorded ban, with its lines.
func (s *Store) Bans(ctx context.Context) ([]jails.Record, error) {
	var out []jails.Record
	for r, err := range s.eachBan(ctx, true) {
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// EachBan yields every recorded ban as it is read, a batch ahead of the loop, or, last,
// the error that stopped the reading. The bans come without their lines, which a ban in
// force does not keep in memory: a restart reads 100,000 bans' worth of them for
// nothing otherwise. The database's one writing connection is busy until every row is
// read: the loop's body must not use the store.
func (s *Store) EachBan(ctx context.Context) iter.Seq2[jails.Record, error] {
	return s.eachBan(ctx, false) // a ban in force keeps no lines in memory (BanLines reads them)
}

// eachBan is EachBan, with each ban's lines or without.
func (s *Store) eachBan(ctx context.Context, lines bool) iter.Seq2[jails.Record, error] {
	return func(yield func(jails.Record, error) bool) {
		// The rows are read and parsed ahead, a batch at a time, while the caller works on
		// the ones before: a restart restores 100,000 bans on two cores at once.
		type batch struct {
			records []jails.Record
			err     error
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		batches := make(chan batch, 4)
		// Read batches go back to be filled again: a restore of 100,000 bans would
		// otherwise take 20 MB of new memory for them.
		spare := make(chan []jails.Record, cap(batches)+2)
		go func() {
			defer close(batches)
			send := func(b batch) bool {
				select {
				case batches <- b:
					return true
				case <-ctx.Done():
					return false
				}
			}
			rows, err := s.db.QueryContext(ctx, "SELECT "+packedBan(lines)+" FROM bans")
			if err != nil {
				send(batch{err: fmt.Errorf("reading bans: %w", err)})
				return
			}
			defer rows.Close()
			const size = 1024
			fresh := func() batch {
				select {
				case records := <-spare:
					return batch{records: records}
				default:
					return batch{records: make([]jails.Record, 0, size)}
				}
			}
			b := fresh()
			var packed string
			texts := rowTexts{}
			for rows.Next() {
				var r jails.Record
				err := rows.Scan(&packed)
				if err == nil {
					r, err = unpackBan(packed)
					texts.own(&r)
				}
				if err != nil {
					b.err = fmt.Errorf("reading bans: %w", err)
					send(b)
					return
				}
				if b.records = append(b.records, r); len(b.records) == size {
					if !send(b) {
						return
					}
					b = fresh()
				}
			}
			if err := rows.Err(); err != nil && ctx.Err() == nil {
				b.err = fmt.Errorf("reading bans: %w", err)
			}
			send(b)
		}()
		for b := range batches {
			for _, r := range b.records {
				if !yield(r, nil) {
					return
				}
			}
			if b.err != nil {
				yield(jails.Record{}, b.err)
				return
			}
			clear(b.records) // what the caller kept of them is its copy
			select {
			case spare <- b.records[:0]:
			default:
			}
		}
	}
}

// scanBans reads bans from rows and closes them; it stops at the first row it cannot
// read and returns those before it, for a salvage.
func scanBans(rows *sql.Rows) []jails.Record {
	defer rows.Close()
	var out []jails.Record
	for rows.Next() {
		r, err := scanBan(rows)
		if err != nil {
			break
		}
		out = append(out, r)
	}
	return out
}

// BanCount returns how many times what (an address as a /32 or /128, or a network) has
// been banned in jail, or in every jail if jail is "".
func (s *Store) BanCount(ctx context.Context, jail string, what netip.Prefix) (int, error) {
	counts, err := s.BanCounts(ctx, jail, []netip.Prefix{what})
	return counts[what], err
}

// orEmpty returns s, or an empty slice for nil: JSON gets [], not null.
func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// History returns the ban history of what (an address as a /32 or /128, or a network)
// in every jail, or, for the zero Prefix, the limit addresses and networks banned last,
// newest first.
func (s *Store) History(ctx context.Context, what netip.Prefix, limit int) ([]jails.HistoryEntry, error) {
	query, args := "SELECT jail, addr, ban_count, last_banned FROM ban_history WHERE addr = ? ORDER BY jail", []any{actions.Target(what)}
	if !what.IsValid() {
		query, args = "SELECT jail, addr, ban_count, last_banned FROM ban_history ORDER BY last_banned DESC LIMIT ?", []any{limit}
	}
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("reading ban history: %w", err)
	}
	defer rows.Close()
	var out []jails.HistoryEntry
	for rows.Next() {
		var h jails.HistoryEntry
		var a, last string
		if err := rows.Scan(&h.Jail, &a, &h.Count, &last); err != nil {
			return out, fmt.Errorf("reading ban history: %w", err)
		}
		h.What, _ = actions.ParseTarget(a)
		h.LastBanned, _ = time.Parse(timeFormat, last)
		out = append(out, h)
	}
	return out, rows.Err()
}

// loginFormat writes login times at a fixed width, so that SQLite compares them as
// times when it compares them as text.
const loginFormat = "2006-01-02T15:04:05.000000000Z"

// SaveKnownGood records logins that worked, each pair's newest kept.
func (s *Store) SaveKnownGood(ctx context.Context, pairs []jails.TrustedPair) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	for chunk := range slices.Chunk(pairs, saveChunk) {
		args := make([]any, 0, 3*len(chunk))
		for _, p := range chunk {
			args = append(args, p.Account, p.Addr.String(), p.Last.UTC().Format(loginFormat))
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO known_good (account, addr, last_login) VALUES `+valuesList(len(chunk), "(?, ?, ?)")+
			` ON CONFLICT (account, addr) DO UPDATE SET last_login = max(last_login, excluded.last_login)`, args...); err != nil {
			return fmt.Errorf("saving %d logins: %w", len(chunk), err)
		}
	}
	return tx.Commit()
}

// KnownGood returns the logins recorded since since, and forgets the older ones.
func (s *Store) KnownGood(ctx context.Context, since time.Time) ([]jails.TrustedPair, error) {
	limit := since.UTC().Format(loginFormat)
	if _, err := s.db.ExecContext(ctx, "DELETE FROM known_good WHERE last_login < ?", limit); err != nil {
		return nil, fmt.Errorf("forgetting old logins: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, "SELECT account, addr, last_login FROM known_good")
	if err != nil {
		return nil, fmt.Errorf("reading logins: %w", err)
	}
	defer rows.Close()
	var out []jails.TrustedPair
	for rows.Next() {
		var account, addr, last string
		if err := rows.Scan(&account, &addr, &last); err != nil {
			return out, fmt.Errorf("reading logins: %w", err)
		}
		a, err1 := netip.ParseAddr(addr)
		t, err2 := time.Parse(loginFormat, last)
		if err1 == nil && err2 == nil {
			out = append(out, jails.TrustedPair{Account: account, Addr: a.Unmap(), Last: t})
		}
	}
	return out, rows.Err()
}

// SaveKeyBans records the bans of accounts and devices made, and forgets those ended.
func (s *Store) SaveKeyBans(ctx context.Context, c jails.KeyBanChanges) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	for _, b := range c.Deletes {
		if _, err := tx.ExecContext(ctx, "DELETE FROM key_bans WHERE jail = ? AND kind = ? AND key = ?", b.Jail, b.Kind, b.Key); err != nil {
			return fmt.Errorf("forgetting the ban of %s %q: %w", b.Kind, b.Key, err)
		}
	}
	for _, b := range c.Saves {
		var expires any
		if !b.Permanent() {
			expires = b.Expires.UTC().Format(time.RFC3339Nano)
		}
		addrs := make([]string, len(b.Addrs))
		for i, a := range b.Addrs {
			addrs[i] = a.String()
		}
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO key_bans (jail, kind, key, banned_at, expires_at, user, count, addrs) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			b.Jail, b.Kind, b.Key, b.BannedAt.UTC().Format(time.RFC3339Nano), expires, b.User, b.Count, strings.Join(addrs, " ")); err != nil {
			return fmt.Errorf("saving the ban of %s %q: %w", b.Kind, b.Key, err)
		}
	}
	return tx.Commit()
}

// KeyBans returns the bans of accounts and devices recorded. A row whose times cannot
// be parsed is skipped; one whose columns cannot be read at all is an error, as for
// the bans of addresses.
func (s *Store) KeyBans(ctx context.Context) ([]jails.KeyBan, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT jail, kind, key, banned_at, expires_at, user, count, addrs FROM key_bans")
	if err != nil {
		return nil, fmt.Errorf("reading bans of accounts and devices: %w", err)
	}
	defer rows.Close()
	var out []jails.KeyBan
	for rows.Next() {
		var b jails.KeyBan
		var bannedAt, addrs string
		var expires sql.NullString
		if err := rows.Scan(&b.Jail, &b.Kind, &b.Key, &bannedAt, &expires, &b.User, &b.Count, &addrs); err != nil {
			return out, fmt.Errorf("reading bans of accounts and devices: %w", err)
		}
		var err1, err2 error
		b.BannedAt, err1 = time.Parse(time.RFC3339Nano, bannedAt)
		if expires.Valid {
			b.Expires, err2 = time.Parse(time.RFC3339Nano, expires.String)
		}
		if err1 != nil || err2 != nil {
			continue
		}
		for _, f := range strings.Fields(addrs) {
			if a, err := netip.ParseAddr(f); err == nil {
				b.Addrs = append(b.Addrs, a)
			}
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// SavePolicyState keeps the policy service's counts (JSON, policy.State), in place of
// those kept before.
func (s *Store) SavePolicyState(ctx context.Context, state []byte) error {
	_, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO policy_state (id, state, saved_at) VALUES (1, ?, ?)`,
		string(state), time.Now().UTC().Format(time.RFC3339Nano))
	if err != nil {
		return fmt.Errorf("saving the policy service's counts: %w", err)
	}
	return nil
}

// PolicyState returns the policy service's counts last kept, or nil.
func (s *Store) PolicyState(ctx context.Context) ([]byte, error) {
	var state string
	err := s.db.QueryRowContext(ctx, `SELECT state FROM policy_state WHERE id = 1`).Scan(&state)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading the policy service's counts: %w", err)
	}
	return []byte(state), nil
}

// SaveDirectory keeps what the farm's directory last said ([zimbra]), to be spared at a
// start when the directory does not answer.
func (s *Store) SaveDirectory(ctx context.Context, state []byte, readAt time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO directory_state (id, state, read_at) VALUES (1, ?, ?)`,
		string(state), readAt.UTC().Format(time.RFC3339Nano))
	if err != nil {
		return fmt.Errorf("saving the directory's last read: %w", err)
	}
	return nil
}

// Directory returns what the farm's directory last said, and when; nil if never.
func (s *Store) Directory(ctx context.Context) ([]byte, time.Time, error) {
	var state, at string
	err := s.db.QueryRowContext(ctx, `SELECT state, read_at FROM directory_state WHERE id = 1`).Scan(&state, &at)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, time.Time{}, nil
	case err != nil:
		return nil, time.Time{}, fmt.Errorf("reading the directory's last read: %w", err)
	}
	t, _ := time.Parse(time.RFC3339Nano, at)
	return []byte(state), t, nil
}

// SaveLocalUnban remembers a farm ban lifted on this host alone (jails.LocalUnbanLedger).
func (s *Store) SaveLocalUnban(ctx context.Context, u jails.LocalUnban) error {
	var until any
	if !u.Until.IsZero() {
		until = u.Until.UTC().Format(time.RFC3339Nano)
	}
	_, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO local_unbans (jail, addr, banned_at, until) VALUES (?, ?, ?, ?)`,
		u.Jail, actions.Target(u.What), u.BannedAt.UTC().Format(time.RFC3339Nano), until)
	if err != nil {
		return fmt.Errorf("saving the local unban of %s in %s: %w", actions.Target(u.What), u.Jail, err)
	}
	return nil
}

// DeleteLocalUnban forgets the local unban of what in jail.
func (s *Store) DeleteLocalUnban(ctx context.Context, jail string, what netip.Prefix) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM local_unbans WHERE jail = ? AND addr = ?`, jail, actions.Target(what)); err != nil {
		return fmt.Errorf("deleting the local unban of %s in %s: %w", actions.Target(what), jail, err)
	}
	return nil
}

// LocalUnbans returns the local unbans remembered; a row that does not parse is skipped.
func (s *Store) LocalUnbans(ctx context.Context) ([]jails.LocalUnban, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT jail, addr, banned_at, until FROM local_unbans`)
	if err != nil {
		return nil, fmt.Errorf("reading local unbans: %w", err)
	}
	defer rows.Close()
	var out []jails.LocalUnban
	for rows.Next() {
		var jail, addr, bannedAt string
		var until sql.NullString
		if err := rows.Scan(&jail, &addr, &bannedAt, &until); err != nil {
			return nil, fmt.Errorf("reading local unbans: %w", err)
		}
		what, err := actions.ParseTarget(addr)
		at, err2 := time.Parse(time.RFC3339Nano, bannedAt)
		if err != nil || err2 != nil {
			continue
		}
		u := jails.LocalUnban{Jail: jail, What: what, BannedAt: at}
		if until.Valid {
			if u.Until, err = time.Parse(time.RFC3339Nano, until.String); err != nil {
				continue
			}
		}
		out = append(out, u)
	}
	return out, rows.Err()
}
