package jails

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logban/logban/actions"
)

// queueLen is how many calls an action's queue holds before calls overflow (see
// actionQueue).
const queueLen = 65536

// actionQueue is one action's own worker: the manager hands it the calls to make (ban
// b, unban b), in order, and goes on deciding; the worker makes them one after the
// other. A slow or hung action (a webhook that never answers, an exec at its timeout, a
// slow ufw) then holds up nothing but its own queue.
//
// Order holds per address: one worker makes an action's calls in the order they came. A
// call that fails is retried with backoff (RetryMin doubling to RetryMax) until it works,
// unless a later call for the same jail and address comes first, which replaces it: the
// action ends in the state the manager last asked for (for a Shared action, the address
// alone is the key).
//
// The queue holds queueLen calls, in a slice that grows as they come and is let go of
// once they are made. When it is full, calls go to an overflow that keeps,
// per jail and address, only the last call asked for, and is worked through once the
// queue is empty; no call is dropped but those a later one makes moot (a ban lifted
// before it was made), and each overflow is logged and counted (Overflowed).
type actionQueue struct {
	name    string
	action  actions.Action
	shared  bool            // the action is Shared: its calls are keyed by address alone
	batcher actions.Batcher // the action, if it makes many calls at once
	logger  *slog.Logger
	clock   Clock
	observe func(action string, unban bool, took time.Duration, err error)
	limit   int // calls the queue holds before they overflow

	wake chan struct{}      // a call came, or the queue was closed
	done chan struct{}      // closed when the worker has returned
	stop context.CancelFunc // abandons the calls left, and the one being made

	mu       sync.Mutex
	closed   bool
	calls    callFIFO // waiting, in order
	overflow map[banKey]actionCall
	order    []banKey // the overflow's keys, as they came
	pending  map[banKey]*pendingCall

	queued, overflowed, failures atomic.Int64
	added                        atomic.Int64 // calls handed to the queue, ever
	restored, removed            atomic.Int64 // repairs by Reconcile
}

// actionCall is a ban or its undoing.
type actionCall struct {
	ban   actions.Ban
	unban bool
}

// pendingCall is a call that failed and waits to be made again.
type pendingCall struct {
	call     actionCall
	attempts int
	next     time.Time
}

// Retry backoff of a failed action call: the first retry after RetryMin, doubling up to
// RetryMax.
const (
	RetryMin = time.Second
	RetryMax = 5 * time.Minute
)

func backoff(attempts int) time.Duration {
	d := RetryMin
	for i := 1; i < attempts && d < RetryMax; i++ {
		d *= 2
	}
	return min(d, RetryMax)
}

// newQueue starts a queue and its worker for na, until the queue is closed, or stopped,
// or the manager's life ends. Caller holds m.mu.
func (m *Manager) newQueue(na NamedAction) *actionQueue {
	life, stop := context.WithCancel(m.life)
	q := &actionQueue{stop: stop,
		name: na.Name, action: na.Action, logger: m.logger.With("action", na.Name), clock: m.clock, observe: m.observe,
		limit: m.queueCap, wake: make(chan struct{}, 1), done: make(chan struct{}),
		overflow: map[banKey]actionCall{}, pending: map[banKey]*pendingCall{},
	}
	_, q.shared = na.Action.(actions.Shared)
	q.batcher, _ = na.Action.(actions.Batcher)
	go q.work(life)
	return q
}

// key is what a later call replaces an earlier one by: the jail and address, or for a
// Shared action, whose effect belongs to the address, the address alone.
func (q *actionQueue) key(c actionCall) banKey {
	if q.shared {
		return banKey{what: c.ban.Prefix()}
	}
	return banKey{c.ban.Jail, c.ban.Prefix()}
}

// add hands the worker a call. It never waits.
func (q *actionQueue) add(c actionCall) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.queued.Add(1)
	q.added.Add(1)
	q.signal()
	if len(q.overflow) == 0 {
		if q.calls.len() < q.limit {
			q.calls.push(c)
			return
		}
		q.logger.Warn("action queue full: calls wait in its overflow, the last one per address kept", "queue", q.limit)
	}
	k := q.key(c)
	if _, ok := q.overflow[k]; ok {
		q.queued.Add(-1) // the call it replaces is moot
	} else {
		q.order = append(q.order, k)
	}
	q.overflow[k] = c
	q.overflowed.Add(1)
}

// signal wakes the worker, if it waits.
func (q *actionQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// batchLen is the most calls handed to a Batcher at once.
const batchLen = 1024

// work makes the queue's calls, then those of its overflow, and retries failed ones on
// time, until the queue is closed and empty, or ctx is done.
func (q *actionQueue) work(ctx context.Context) {
	defer close(q.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var calls []actionCall
	for ctx.Err() == nil {
		q.retryDue(ctx)
		var closed bool
		if calls, closed = q.take(calls[:0]); len(calls) > 0 {
			q.makeAll(ctx, calls)
			continue
		}
		if calls = q.takeOverflow(calls[:0]); len(calls) > 0 {
			for len(calls) > 0 && ctx.Err() == nil {
				n := min(len(calls), batchLen)
				q.makeAll(ctx, calls[:n])
				calls = calls[n:]
			}
			continue
		}
		if closed {
			return
		}
		timer.Reset(q.untilRetry())
		select {
		case <-ctx.Done():
		case <-q.wake:
		case <-timer.C:
		}
	}
}

// take appends to calls the next waiting ones: up to batchLen for a Batcher, else one.
// It reports whether the queue is closed.
func (q *actionQueue) take(calls []actionCall) ([]actionCall, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 1
	if q.batcher != nil {
		n = batchLen
	}
	return q.calls.take(calls, n), q.closed
}

// callFIFO holds calls in order, in blocks of batchLen at most: it grows a block at a
// time and never copies a burst's calls to a larger array, and a block is let go once
// taken. The zero value is empty.
type callFIFO struct {
	blocks [][]actionCall // the first is read from head; the last is appended to
	head   int
	n      int
}

func (f *callFIFO) len() int { return f.n }

// push appends c.
func (f *callFIFO) push(c actionCall) {
	switch k := len(f.blocks); {
	case k == 0:
		f.blocks = append(f.blocks, nil) // grows as calls come: most come one at a time
	case len(f.blocks[k-1]) == batchLen:
		f.blocks = append(f.blocks, make([]actionCall, 0, batchLen)) // a burst: whole blocks
	}
	last := &f.blocks[len(f.blocks)-1]
	*last = append(*last, c)
	f.n++
}

// take appends to out up to max calls from the front, in order, and returns it.
func (f *callFIFO) take(out []actionCall, max int) []actionCall {
	for max > 0 && f.n > 0 {
		b := f.blocks[0]
		k := min(max, len(b)-f.head)
		out = append(out, b[f.head:f.head+k]...)
		clear(b[f.head : f.head+k])
		f.head += k
		f.n -= k
		max -= k
		if f.head < len(b) {
			break
		}
		switch {
		case f.n == 0 && cap(b) <= 64: // empty: a small block is kept for the next calls
			f.blocks[0], f.head = b[:0], 0
		default: // read to its end: let it go
			f.blocks[0] = nil
			f.blocks, f.head = f.blocks[1:], 0
			if len(f.blocks) == 0 {
				f.blocks = nil
			}
		}
	}
	return out
}

// takeOverflow appends to calls those waiting in the overflow, in the order they came,
// once the queue is empty; new calls then queue again.
func (q *actionQueue) takeOverflow(calls []actionCall) []actionCall {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.order) == 0 || q.calls.len() > 0 {
		return calls
	}
	for _, k := range q.order {
		calls = append(calls, q.overflow[k])
	}
	q.overflow = map[banKey]actionCall{} // a new map: a cleared one keeps its room
	q.order = nil
	return calls
}

// makeAll makes calls in order: through a Batcher, each run of bans or of unbans at
// once; else one at a time.
func (q *actionQueue) makeAll(ctx context.Context, calls []actionCall) {
	for len(calls) > 0 {
		if ctx.Err() != nil {
			return
		}
		run := 1
		for q.batcher != nil && run < len(calls) && calls[run].unban == calls[0].unban {
			run++
		}
		if run == 1 {
			q.settle(calls[0], q.call(ctx, calls[0]))
		} else {
			for i, err := range q.callBatch(ctx, calls[:run]) {
				q.settle(calls[i], err)
			}
		}
		calls = calls[run:]
	}
}

// settle ends a call made: one that failed waits to be retried, replacing any older
// failed call for its key.
func (q *actionQueue) settle(c actionCall, err error) {
	defer q.queued.Add(-1)
	k := q.key(c)
	q.mu.Lock()
	defer q.mu.Unlock()
	if err == nil {
		delete(q.pending, k)
		return
	}
	op := "ban"
	if c.unban {
		op = "unban"
	}
	q.pending[k] = &pendingCall{call: c, attempts: 1, next: q.clock.Now().Add(backoff(1))}
	q.logger.Error(op+" failed; will retry", "jail", c.ban.Jail, "addr", c.ban.Target(), "retry_in", backoff(1), "err", err)
}

// call makes c through the action, timed.
func (q *actionQueue) call(ctx context.Context, c actionCall) error {
	start := time.Now()
	var err error
	if c.unban {
		err = q.action.Unban(ctx, c.ban)
	} else {
		err = q.action.Ban(ctx, c.ban)
	}
	q.observed(c.unban, time.Since(start), []error{err})
	return err
}

// callBatch makes calls, all bans or all unbans, through the Batcher at once, timed;
// each call is observed as taking its share of the batch's time.
func (q *actionQueue) callBatch(ctx context.Context, calls []actionCall) []error {
	bans := make([]actions.Ban, len(calls))
	for i, c := range calls {
		bans[i] = c.ban
	}
	start := time.Now()
	var errs []error
	if calls[0].unban {
		errs = q.batcher.UnbanBatch(ctx, bans)
	} else {
		errs = q.batcher.BanBatch(ctx, bans)
	}
	q.observed(calls[0].unban, time.Since(start)/time.Duration(len(calls)), errs)
	return errs
}

// observed counts the calls' failures and tells the observer each call's time.
func (q *actionQueue) observed(unban bool, each time.Duration, errs []error) {
	for _, err := range errs {
		if err != nil {
			q.failures.Add(1)
		}
		if q.observe != nil {
			q.observe(q.name, unban, each, err)
		}
	}
}

// retryDue makes again the failed calls whose time has come.
func (q *actionQueue) retryDue(ctx context.Context) {
	now := q.clock.Now()
	q.mu.Lock()
	var due []*pendingCall
	for _, p := range q.pending {
		if !p.next.After(now) {
			due = append(due, p)
		}
	}
	q.mu.Unlock()
	for _, p := range due {
		err := q.call(ctx, p.call)
		k := q.key(p.call)
		q.mu.Lock()
		if q.pending[k] != p { // a later call replaced it meanwhile
			q.mu.Unlock()
			continue
		}
		if err == nil {
			delete(q.pending, k)
			q.logger.Info("action recovered", "jail", p.call.ban.Jail, "addr", p.call.ban.Target(), "unban", p.call.unban, "attempts", p.attempts+1)
		} else {
			p.attempts++
			p.next = now.Add(backoff(p.attempts))
			q.logger.Warn("action still failing", "jail", p.call.ban.Jail, "addr", p.call.ban.Target(), "unban", p.call.unban,
				"attempts", p.attempts, "retry_in", backoff(p.attempts), "err", err)
		}
		q.mu.Unlock()
	}
}

// untilRetry returns how long until the next failed call is due again.
func (q *actionQueue) untilRetry() time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	wait := time.Hour
	for _, p := range q.pending {
		wait = min(wait, max(p.next.Sub(q.clock.Now()), 0))
	}
	return wait
}

// close stops taking calls; the worker makes those it has, and returns.
func (q *actionQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.signal()
}

// pendingIn returns how many failed calls for jail wait to be retried.
func (q *actionQueue) pendingIn(jail string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, p := range q.pending {
		if p.call.ban.Jail == jail {
			n++
		}
	}
	return n
}

// idle reports whether the queue has nothing to make (failed calls waiting aside).
func (q *actionQueue) idle() bool { return q.queued.Load() == 0 }

// retireQueues closes and returns the queues of actions no jail uses any more; they go
// on to make their last calls (the unbans of the jails that left them), which letGo
// waits for. Caller holds m.mu.
func (m *Manager) retireQueues() []*actionQueue {
	live := map[actions.Action]bool{}
	for _, j := range m.jails {
		for _, na := range j.actions {
			live[na.Action] = true
		}
	}
	var retired []*actionQueue
	for a, q := range m.queues {
		if !live[a] {
			q.close()
			delete(m.queues, a)
			retired = append(retired, q)
		}
	}
	return retired
}

// letGo waits for retired queues to make their last calls, until ctx is done; then
// what is left is abandoned, and the worker returns. The daemon stops such an action
// next. Caller does not hold m.mu: bans go on being decided meanwhile.
func (m *Manager) letGo(ctx context.Context, retired []*actionQueue) {
	for _, q := range retired {
		select {
		case <-q.done:
		case <-ctx.Done():
			m.logger.Warn("a retired action had calls left; they are abandoned", "action", q.name, "left", q.queued.Load())
			q.stop()
			<-q.done
		}
	}
}

// Pending returns how many failed action calls of jail's actions wait to be retried.
func (m *Manager) Pending(jail string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, q := range m.queues {
		n += q.pendingIn(jail)
	}
	return n
}

// QueueStats are an action's queue figures.
type QueueStats struct {
	Queued     int64 // calls waiting or being made
	Overflowed int64 // calls that found the queue full and waited in its overflow
	Failures   int64 // calls that failed
	// Restored and Removed count the repairs Reconcile made: bans the kernel had lost,
	// applied again, and holds no ban stood behind, lifted.
	Restored, Removed int64
}

// Queues returns each action's queue figures, by action name.
func (m *Manager) Queues() map[string]QueueStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]QueueStats, len(m.queues))
	for _, q := range m.queues {
		out[q.name] = QueueStats{Queued: q.queued.Load(), Overflowed: q.overflowed.Load(), Failures: q.failures.Load(),
			Restored: q.restored.Load(), Removed: q.removed.Load()}
	}
	return out
}

// Close lets each action make the calls handed to it until ctx is done, then abandons
// what is left (calls not yet made, and failed calls waiting for a retry), and returns
// how many calls that was. The manager hands out no calls
// after. An orderly stop calls it before the actions' Stop.
func (m *Manager) Close(ctx context.Context) int {
	m.mu.Lock()
	queues := make([]*actionQueue, 0, len(m.queues))
	for _, q := range m.queues {
		q.close()
		queues = append(queues, q)
	}
	m.mu.Unlock()
	for _, q := range queues {
		select {
		case <-q.done:
		case <-ctx.Done():
		}
	}
	m.end()
	left := 0
	for _, q := range queues {
		<-q.done
		q.mu.Lock()
		left += int(q.queued.Load()) + len(q.pending)
		q.mu.Unlock()
	}
	return left
}
