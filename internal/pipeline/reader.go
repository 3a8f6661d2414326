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

// Reader follows one file and feeds its lines to the jails that watch it.
type Reader struct {
	follower *watcher.Follower
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
	r := &Reader{follower: fw, done: make(chan struct{})}
	r.jails.Store(&js)
	return r, nil
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
		r.unsent = &watcher.Position{File: b.File, Offset: b.Start()}
	}
}

// Path returns the followed path.
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
			tickets = j.LineFrom(l.Text, now, jails.Origin{File: batch.File.Head, Offset: l.Offset}, tickets)
		})
	}
	return tickets
}
