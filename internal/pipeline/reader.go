package pipeline

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logban/logban/jails"
	"github.com/logban/logban/watcher"
)

// Source is what a Reader follows: a file (watcher.Follower) or the systemd journal
// (journal.Follower).
type Source interface {
	// Run hands the source's lines on in batches until ctx is done.
	Run(ctx context.Context, handle watcher.Handler) error
	// Position is where reading resumes after a restart: past the last batch handled.
	Position() watcher.Position
	// BatchStart is the position before the batch b being handled.
	BatchStart(b watcher.Batch) watcher.Position
	// Path names the source: the file's path, or the journal's key.
	Path() string
	Stats() watcher.Stats
	// Close releases what the source holds if Run is never called.
	Close()
}

// Reader follows one source and feeds its lines to the jails that watch it.
type Reader struct {
	follower Source
	jails    atomic.Pointer[[]*jails.Jail]
	cancel   context.CancelFunc // nil until it reads
	done     chan struct{}

	mu     sync.Mutex
	unsent *watcher.Position // where the first batch whose tickets were not queued began
}

// Open positions a reader on path as opts say, for the jails js. It is synchronous, so
// no line written after it returns is missed; reading begins with Start.
func Open(path string, js []*jails.Jail, opts watcher.Options) (*Reader, error) {
	fw, err := watcher.Open(path, opts)
	if err != nil {
		return nil, err
	}
	return New(fw, js), nil
}

// New makes a reader of src for the jails js; reading begins with Start.
func New(src Source, js []*jails.Jail) *Reader {
	r := &Reader{follower: src, done: make(chan struct{})}
	r.jails.Store(&js)
	return r
}

// SetJails makes js the jails the reader feeds, from its next batch on.
func (r *Reader) SetJails(js []*jails.Jail) { r.jails.Store(&js) }

// Start reads the file into its jails and their tickets into bans, until ctx is done or
// Stop. clock stands in for the time of lines that carry none.
func (r *Reader) Start(ctx context.Context, bans *BanQueue, clock jails.Clock, logger *slog.Logger) {
	rctx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	go func() {
		defer close(r.done)
		err := r.follower.Run(rctx, func(b watcher.Batch) {
			if tickets := feed(*r.jails.Load(), b, clock.Now(), nil); len(tickets) > 0 {
				if err := bans.Add(rctx, tickets); err != nil {
					r.holdBack(b)
				}
			}
		})
		if err != nil {
			logger.Error("file no longer followed", "file", r.follower.Path(), "err", err)
		}
	}()
}

// Reading reports whether Start was called.
func (r *Reader) Reading() bool { return r.cancel != nil }

// Stop ends the reading, or closes the file if it never began.
func (r *Reader) Stop() {
	if r.cancel == nil {
		r.follower.Close()
		return
	}
	r.cancel()
	<-r.done
}

// holdBack keeps the position at the start of b, whose tickets found no room in the ban
// queue before the reading stopped: the next start reads its lines again.
func (r *Reader) holdBack(b watcher.Batch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.unsent == nil && len(b.Lines) > 0 {
		p := r.follower.BatchStart(b)
		r.unsent = &p
	}
}

// Path returns the followed path, or the journal's key.
func (r *Reader) Path() string { return r.follower.Path() }

// Position returns where the file has been read to, and its tickets handed on: where
// reading resumes after a restart.
func (r *Reader) Position() watcher.Position {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.unsent != nil {
		return *r.unsent
	}
	return r.follower.Position()
}

// Stats returns the follower's counters.
func (r *Reader) Stats() watcher.Stats { return r.follower.Stats() }

// feed runs a batch through each of the jails and returns the tickets, appended to
// tickets: only the lines that may hold the text every match of a jail's filter holds
// are judged (watcher.Batch.Search). This is the hot path; it allocates nothing for a
// batch without a ticket.
func feed(js []*jails.Jail, batch watcher.Batch, now time.Time, tickets []jails.Ticket) []jails.Ticket {
	for _, j := range js {
		batch.SearchAny(j.Needles(), func(i int) {
			l := batch.Lines[i]
			from := jails.Origin{File: batch.File.Head, Offset: l.Offset}
			if batch.Seqnums != nil { // the journal's: the entry's sequence number names it
				from.Offset = batch.Seqnums[i]
			}
			tickets = j.LineFrom(l.Text, now, from, tickets)
		})
	}
	return tickets
}
