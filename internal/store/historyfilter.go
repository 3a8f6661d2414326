package store

import (
	"context"
	"hash/maphash"
	"sync/atomic"
)

// historyFilter is a Bloom filter of what ban_history holds: a jail and an address or
// network, and the address alone for the counts over all jails. A ban asks the history
// how often its address was banned before, and in a burst of bans almost every address
// is new: the filter answers "never" for those without asking SQLite, and sends only
// the rest to BanCounts' query.
//
// It never answers "never" for a key the history holds: SaveBans adds every key before
// it writes the row, and LoadHistory reads the rows on disk (a salvage's among them)
// into the filter before it is trusted (ready). It may answer "maybe" for a
// key the history lacks, which costs the query it would have cost anyway; rows the
// history's bound removes keep their bits. It is a fixed historyFilterBits bits,
// whatever the history holds: the more keys, the more often it answers "maybe", and the
// lookups go to SQLite as before.
type historyFilter struct {
	seed  maphash.Seed
	words [historyFilterBits / 64]atomic.Uint64
	ready atomic.Bool // every key on disk at Open is in the filter
}

// historyFilterBits is the filter's size: 256 KiB. A new address's lookup goes to SQLite
// once in 500,000 with 10,000 addresses in the history (two keys each), once in 100 with
// 100,000, and half the time with 500,000.
const historyFilterBits = 1 << 21

// historyHashes is how many bits of the filter each key sets.
const historyHashes = 4

func newHistoryFilter() *historyFilter {
	return &historyFilter{seed: maphash.MakeSeed()}
}

// hash returns the key's hash: jail is "" for the key of the address alone.
func (f *historyFilter) hash(jail, addr string) uint64 {
	var h maphash.Hash
	h.SetSeed(f.seed)
	h.WriteString(jail)
	h.WriteByte(0)
	h.WriteString(addr)
	return h.Sum64()
}

// add puts the history row of jail and addr in the filter, under both its keys.
func (f *historyFilter) add(jail, addr string) {
	f.set(f.hash(jail, addr))
	f.set(f.hash("", addr))
}

func (f *historyFilter) set(h uint64) {
	for i := range uint32(historyHashes) {
		word, mask := bitOf(h, i)
		f.words[word].Or(mask)
	}
}

// bitOf returns the word and the bit in it of a key's i-th bit, of its hash h: double
// hashing, the hash's two halves each a hash of its own.
func bitOf(h uint64, i uint32) (word uint32, mask uint64) {
	bit := (uint32(h) + i*(uint32(h>>32)|1)) % historyFilterBits
	return bit / 64, 1 << (bit % 64)
}

// mayHold reports whether the history may hold a row of jail ("": any jail) and addr:
// false only if it surely holds none, and only once the filter is ready.
func (f *historyFilter) mayHold(jail, addr string) bool {
	if !f.ready.Load() {
		return true
	}
	h := f.hash(jail, addr)
	for i := range uint32(historyHashes) {
		if word, mask := bitOf(h, i); f.words[word].Load()&mask == 0 {
			return false
		}
	}
	return true
}

// loadHistory adds every key of the history on disk to the filter, then trusts it. Rows
// written meanwhile add their own keys. If reading fails, the filter is never trusted,
// and every lookup asks SQLite.
func (s *Store) loadHistory(ctx context.Context) {
	defer close(s.historyLoaded)
	rows, err := s.reader().QueryContext(ctx, "SELECT jail, addr FROM ban_history")
	if err != nil {
		return
	}
	defer rows.Close()
	n := int64(0)
	for rows.Next() {
		var jail, addr string
		if err := rows.Scan(&jail, &addr); err != nil {
			return
		}
		s.history.add(jail, addr)
		n++
	}
	if rows.Err() == nil {
		// A row recorded while this read is counted by SaveBans too, if read here: the
		// count may run over, never under (history.go).
		s.historyRows.Add(n)
		s.history.ready.Store(true)
	}
}
