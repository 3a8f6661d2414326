package farm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logban/logban/jails"
)

// isPerSubjectLimit reports a failure refused because its address's subject is full:
// the maxretry-th failure within findtime. 10077 is a generic store error, so its words
// are matched too.
func isPerSubjectLimit(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == 10077 &&
		strings.Contains(apiErr.Description, "maximum messages per subject exceeded")
}

// futureWait is how many published failures may wait for their answer. They wait as
// pointers: a channel keeps its buffer for life, and a burst's are freed once answered.
const futureWait = 4096

type published struct {
	fut jetstream.PubAckFuture
	msg *nats.Msg
	id  string
	f   failure
	j   Jail
}

// count publishes the failures of counting jails, and decides the ban when the farm
// refuses one for being the maxretry-th, until ctx is done.
func (f *Farm) count(ctx context.Context, h *handles, _ Target, decide Decide) {
	answers := make(chan *published, futureWait)
	var wg sync.WaitGroup
	wg.Go(func() { f.judge(ctx, h, answers, decide) })
	defer wg.Wait()
	defer close(answers)
	var seq atomic.Uint64
	start := time.Now().UnixNano()
	for {
		fl, ok := f.failures.next(ctx)
		if !ok {
			return
		}
		f.mu.Lock()
		j, ok := f.jails[fl.jail]
		f.mu.Unlock()
		if !ok || !countsAcross(j) {
			continue // a ban of one failure is decided where it happens
		}
		if _, err := f.failStream(ctx, h, j); err != nil {
			f.dropped.Add(1)
			f.failf("counting failures across the farm", err)
			continue
		}
		msg := nats.NewMsg(f.failSubject(j.Name, addrToken(fl.addr)))
		id := fmt.Sprintf("%s:%x:%d", f.cfg.Node, fl.from.File, fl.from.Offset)
		if fl.from == (jails.Origin{}) {
			id = fmt.Sprintf("%s:%d:%d", f.cfg.Node, start, seq.Add(1))
		}
		// A burst waits here for answers, not on the reading path: failures queue before.
		fut, err := h.js.PublishMsgAsync(msg, jetstream.WithMsgID(id), jetstream.WithStallWait(5*time.Second))
		for errors.Is(err, jetstream.ErrTooManyStalledMsgs) && ctx.Err() == nil {
			fut, err = h.js.PublishMsgAsync(msg, jetstream.WithMsgID(id), jetstream.WithStallWait(5*time.Second))
		}
		if err != nil {
			f.dropped.Add(1)
			continue
		}
		f.shared.Add(1)
		select {
		case answers <- &published{fut, msg, id, fl, j}:
		case <-ctx.Done():
			return
		}
	}
}

// makeStreams makes the counting streams of the jails known now, before their first
// failure and before this host counts as joined: a failure that finds its stream missing
// is counted here alone.
func (f *Farm) makeStreams(ctx context.Context, h *handles) {
	f.mu.Lock()
	var js []Jail
	for _, j := range f.jails {
		if countsAcross(j) {
			js = append(js, j)
		}
	}
	f.mu.Unlock()
	for _, j := range js {
		for b := newBackoff(); ; {
			_, err := f.failStream(ctx, h, j)
			if err == nil || !b.wait(ctx) {
				break
			}
			if b.next >= 10*time.Second {
				f.failf("making the counting stream of jail "+j.Name+"; made at its first failure", err)
				break
			}
		}
	}
}

// judge waits for the farm's answer to each failure published and decides the bans the
// farm's count reached.
func (f *Farm) judge(ctx context.Context, h *handles, answers <-chan *published, decide Decide) {
	var tickets []jails.Ticket
	for p := range answers {
		select {
		case <-p.fut.Ok():
		case err := <-p.fut.Err():
			// An answer lost (a timeout, a leader changing) is asked again with the same
			// message id: if the first was stored, the farm says so and counts it once.
			for try := 0; try < 3 && err != nil && !isPerSubjectLimit(err) && ctx.Err() == nil; try++ {
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err = h.js.PublishMsg(pctx, p.msg, jetstream.WithMsgID(p.id))
				cancel()
			}
			if err == nil {
				continue
			}
			if !isPerSubjectLimit(err) {
				f.dropped.Add(1)
				f.shared.Add(-1)
				continue
			}
			n := f.countedAt(h, p.j) // the farm's count, which may not be this host's yet
			tickets = append(tickets, jails.Ticket{Jail: p.j.Name, Addr: p.f.addr, Failures: n, Time: p.f.t,
				Why: fmt.Sprintf("%d failures across the farm", n)})
		case <-ctx.Done():
			return
		}
		// The bans decided go to the ban path together while more answers wait: a
		// burst is recorded in few transactions.
		if len(tickets) > 0 && (len(answers) == 0 || len(tickets) >= publishBatch) {
			if err := decide(ctx, tickets); err != nil {
				return
			}
			tickets = nil
		}
	}
}

// failureSubject names the failures of one address in one jail.
type failureSubject struct{ jail, addr string }

// purgeQueue is how many purges may wait; purgers, how many are made side by side.
const (
	purgeQueue = 1 << 16
	purgers    = 8
)

// purgeNeeded reports whether a ban of jail must forget its address's failures in the
// farm: only if the ban ends before they age out of findtime. A purge is a JetStream
// API call the servers make one at a time, so it is left out where it changes nothing.
func (f *Farm) purgeNeeded(jail string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jails[jail]
	return ok && countsAcross(j) && j.BanTime > 0 && j.BanTime < j.FindTime
}

// purge forgets, farm-wide, the failures the bans this host decided answer for, until
// ctx is done: a ban resets its address's count on every host, as it does on one.
func (f *Farm) purge(ctx context.Context, h *handles, _ Target, _ Decide) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for range purgers {
		wg.Go(func() {
			for {
				p, ok := f.purges.next(ctx)
				if !ok {
					return
				}
				f.purgeFailure(ctx, h, p)
			}
		})
	}
}

func (f *Farm) purgeFailure(ctx context.Context, h *handles, p failureSubject) {
	f.mu.Lock()
	j, ok := f.jails[p.jail]
	f.mu.Unlock()
	addr, err := parseAddr(p.addr)
	if !ok || !countsAcross(j) || err != nil {
		return
	}
	s, err := f.failStream(ctx, h, j)
	if err != nil {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.Purge(pctx, jetstream.WithPurgeSubject(f.failSubject(j.Name, addrToken(addr)))); err != nil {
		f.logger.Debug("purging the failures of a ban", "addr", addr, "err", err)
	}
}
