package daemon

import (
	"context"

	"github.com/logban/logban/jails"
)

// banQueueLen is how many batches' tickets may wait for the banner before a reader waits.
const banQueueLen = 64

// banMerge is the most tickets the banner bans at once: queued batches are merged up to
// it, so a burst is recorded in few transactions.
const banMerge = 4096

// banner is the one goroutine that bans what the readers find: each ban recorded in the
// database, then applied. A reader hands over a batch's tickets and reads on while they
// are written; this was a third of the time a reader spent on a batch.
//
// A file position may be saved only once the bans found in the lines before it are
// recorded, or a crash would lose them: savePositions reads the positions, then flushes
// the banner, which returns once everything queued before it is banned.
type banner struct {
	manager *jails.Manager
	jobs    chan banJob
	done    chan struct{}
}

// banJob is one batch's tickets, or, with flushed set, a flush.
type banJob struct {
	tickets []jails.Ticket
	flushed chan struct{}
}

func newBanner(m *jails.Manager) *banner {
	return &banner{manager: m, jobs: make(chan banJob, banQueueLen), done: make(chan struct{})}
}

// run bans until close, then bans what is left and returns. ctx is given to the bans;
// it should outlive the readers.
func (b *banner) run(ctx context.Context) {
	defer close(b.done)
	var pending []jails.Ticket
	for job := range b.jobs {
		pending = append(pending[:0], job.tickets...)
		var flushes []chan struct{}
		if job.flushed != nil {
			flushes = append(flushes, job.flushed)
		}
	merge:
		for len(pending) < banMerge && len(flushes) == 0 {
			select {
			case next, ok := <-b.jobs:
				if !ok {
					break merge
				}
				pending = append(pending, next.tickets...)
				if next.flushed != nil {
					flushes = append(flushes, next.flushed)
				}
			default:
				break merge
			}
		}
		if len(pending) > 0 {
			b.manager.BanAll(ctx, pending)
		}
		for _, f := range flushes {
			close(f)
		}
	}
}

// ban queues a batch's tickets, which the banner then owns.
func (b *banner) ban(tickets []jails.Ticket) { b.jobs <- banJob{tickets: tickets} }

// flush returns once every ticket queued before it is banned, or when ctx is done.
func (b *banner) flush(ctx context.Context) {
	f := make(chan struct{})
	select {
	case b.jobs <- banJob{flushed: f}:
	case <-ctx.Done():
		return
	}
	select {
	case <-f:
	case <-ctx.Done():
	}
}

// close stops the banner once what is queued is banned, and waits for it.
func (b *banner) close() {
	close(b.jobs)
	<-b.done
}
