package pipeline

import (
	"context"

	"github.com/logban/logban/jails"
)

// queueLen is how many batches' tickets may wait in the ban queue before a reader waits.
const queueLen = 64

// mergeMax is the most tickets the ban queue hands the manager at once: queued batches
// are merged up to it, so a burst is recorded in few transactions.
const mergeMax = 4096

// BanQueue is the one goroutine that hands the readers' tickets to the manager. A reader
// hands over a batch's tickets and reads on while they are decided and recorded.
//
// A file position may be saved only once the bans found in the lines before it are
// recorded, or a crash would lose them: the daemon reads the positions, then calls
// Flush, which returns once everything queued before it is banned.
type BanQueue struct {
	manager *jails.Manager
	jobs    chan banJob
	done    chan struct{}
}

// banJob is one batch's tickets, or, with flushed set, a flush.
type banJob struct {
	tickets []jails.Ticket
	flushed chan struct{}
}

// NewBanQueue starts a ban queue that bans through m, until Close. ctx is given to the
// bans; it should outlive the readers.
func NewBanQueue(ctx context.Context, m *jails.Manager) *BanQueue {
	q := &BanQueue{manager: m, jobs: make(chan banJob, queueLen), done: make(chan struct{})}
	go q.run(ctx)
	return q
}

// run bans until Close, then bans what is left and returns.
func (q *BanQueue) run(ctx context.Context) {
	defer close(q.done)
	for job := range q.jobs {
		pending := job.tickets // the queue's own: batches after it are appended to it
		var flushes []chan struct{}
		if job.flushed != nil {
			flushes = append(flushes, job.flushed)
		}
	merge:
		for len(pending) < mergeMax && len(flushes) == 0 {
			select {
			case next, ok := <-q.jobs:
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
			q.manager.BanAll(ctx, pending)
		}
		for _, f := range flushes {
			close(f)
		}
	}
}

// Add queues a batch's tickets, which the queue then owns. It waits while the queue is
// full, until ctx is done: then the tickets are not queued, and it returns ctx's error.
// While there is room they are queued even if ctx has ended: a reader stopped right
// after reading a batch hands its tickets over, and its position moves past them.
func (q *BanQueue) Add(ctx context.Context, tickets []jails.Ticket) error {
	return q.send(ctx, banJob{tickets: tickets})
}

// send queues job, at once if there is room, else once there is, until ctx is done.
func (q *BanQueue) send(ctx context.Context, job banJob) error {
	select {
	case q.jobs <- job:
		return nil
	default: // full: a select of both below would pick either when both are ready
	}
	select {
	case q.jobs <- job:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Flush returns once every ticket queued before it is banned. If ctx is done first it
// returns ctx's error: what was queued may not be recorded yet, and no file position
// may be saved on its account.
func (q *BanQueue) Flush(ctx context.Context) error {
	f := make(chan struct{})
	if err := q.send(ctx, banJob{flushed: f}); err != nil {
		return err
	}
	select {
	case <-f:
		return nil
	case <-ctx.Done():
	}
	select {
	case <-f: // flushed as ctx ended
		return nil
	default:
		return ctx.Err()
	}
}

// Close stops the queue once what is queued is banned, and waits for it. No Add or
// Flush may come after.
func (q *BanQueue) Close() {
	close(q.jobs)
	<-q.done
}
