package store

import (
	"context"
	"fmt"
)

// historyMax is how many rows ban_history keeps: how often each address or network was
// banned in each jail, which makes a repeat offender's ban longer. Every ban an attacker
// earns, from an address of its own (an IPv6 network has 2^64), would add a row for
// good; past historyMax, those banned longest ago make room, historySlack rows at a
// time. About 200 MB of database at most.
const historyMax = 1_000_000

// historySlack is how far past its bound the history may grow before the oldest rows
// go: a tenth, so that a burst of bans costs one removal, not one for each.
func (s *Store) historySlack() int64 { return max(s.historyMax/10, 1) }

// boundHistory removes the rows of the history banned longest ago once it holds more
// than historyMax plus its slack, down to historyMax less the slack. historyRows counts
// the rows or more (a row it counted as new may have been an old one's update): the
// removal counts them again, exactly.
func (s *Store) boundHistory(ctx context.Context) error {
	if s.historyRows.Load() <= s.historyMax+s.historySlack() {
		return nil
	}
	var rows int64
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM ban_history").Scan(&rows); err != nil {
		return fmt.Errorf("counting the ban history: %w", err)
	}
	if over := rows - (s.historyMax - s.historySlack()); rows > s.historyMax && over > 0 {
		res, err := s.db.ExecContext(ctx, `DELETE FROM ban_history WHERE rowid IN
			(SELECT rowid FROM ban_history ORDER BY last_banned, rowid LIMIT ?)`, over)
		if err != nil {
			return fmt.Errorf("removing the oldest of the ban history: %w", err)
		}
		gone, _ := res.RowsAffected()
		rows -= gone
	}
	s.historyRows.Store(rows)
	return nil
}
