package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// OutboxEntry is one message waiting for the farm, as the farm wrote it.
type OutboxEntry struct {
	ID   int64
	Data []byte
}

// AddOutbox appends messages to the farm's outbox in one transaction and returns their
// ids, in order.
func (s *Store) AddOutbox(ctx context.Context, messages [][]byte) ([]int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	ids := make([]int64, 0, len(messages))
	for chunk := range slices.Chunk(messages, saveChunk) {
		args := make([]any, len(chunk))
		for i, m := range chunk {
			args[i] = string(m)
		}
		rows, err := tx.QueryContext(ctx, "INSERT INTO farm_outbox (entry) VALUES "+valuesList(len(chunk), "(?)")+" RETURNING id", args...)
		if err != nil {
			return nil, fmt.Errorf("adding %d messages to the farm outbox: %w", len(chunk), err)
		}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			ids = append(ids, id)
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	slices.Sort(ids)
	return ids, tx.Commit()
}

// Outbox returns every message in the farm's outbox, oldest first.
func (s *Store) Outbox(ctx context.Context) ([]OutboxEntry, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT id, entry FROM farm_outbox ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("reading the farm outbox: %w", err)
	}
	defer rows.Close()
	var out []OutboxEntry
	for rows.Next() {
		var e OutboxEntry
		var data string
		if err := rows.Scan(&e.ID, &data); err != nil {
			return nil, fmt.Errorf("reading the farm outbox: %w", err)
		}
		e.Data = []byte(data)
		out = append(out, e)
	}
	return out, rows.Err()
}

// DeleteOutbox removes messages the farm has taken.
func (s *Store) DeleteOutbox(ctx context.Context, ids []int64) error {
	for chunk := range slices.Chunk(ids, countChunk) {
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		q := "DELETE FROM farm_outbox WHERE id IN (?" + strings.Repeat(", ?", len(chunk)-1) + ")"
		if _, err := s.db.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("removing %d messages from the farm outbox: %w", len(chunk), err)
		}
	}
	return nil
}
