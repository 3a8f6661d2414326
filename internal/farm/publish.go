package farm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logban/logban/internal/config"
	"github.com/logban/logban/jails"
)

// publishBatch is the most outbox messages taken at once; publishers is how many bans
// of them are published side by side.
const (
	publishBatch = 4096
	publishers   = 32
)

// publish empties the outbox into the farm, in order, while connected, until ctx is done.
func (f *Farm) publish(ctx context.Context, h *handles, _ Target, _ Decide) {
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		case <-retry.C:
		}
		for ctx.Err() == nil {
			if nc := f.conn.Load(); nc == nil || !nc.IsConnected() {
				break
			}
			f.mu.Lock()
			batch := append([]pendingMessage(nil), f.pending[:min(len(f.pending), publishBatch)]...)
			f.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			done, purges := f.publishRun(ctx, h, batch)
			f.remove(ctx, done)
			f.purgeFailures(ctx, h, purges)
			if len(done) < len(batch) {
				break // the farm refused or did not answer: wait for the retry
			}
		}
	}
}

// publishRun publishes batch: runs of bans side by side, unbans one at a time, in
// order; it stops at the first message the farm did not take. It returns the messages
// done with, and the failures the bans it decided answer for.
func (f *Farm) publishRun(ctx context.Context, h *handles, batch []pendingMessage) (done []pendingMessage, purges []failureSubject) {
	for i := 0; i < len(batch); {
		if batch[i].msg.Op == opUnban {
			if err := f.publishUnban(ctx, h, batch[i].msg); err != nil {
				f.failf("publishing an unban to the farm; kept in the outbox", err)
				return done, purges
			}
			done = append(done, batch[i])
			i++
			continue
		}
		j := i
		for j < len(batch) && batch[j].msg.Op == opBan {
			j++
		}
		run := batch[i:j]
		ok := make([]bool, len(run))
		decided := make([]bool, len(run))
		var next atomic.Int64
		var wg sync.WaitGroup
		var firstErr atomic.Pointer[error]
		for range min(publishers, len(run)) {
			wg.Go(func() {
				for k := int(next.Add(1) - 1); k < len(run); k = int(next.Add(1) - 1) {
					won, err := f.publishBan(ctx, h, run[k].msg)
					if err != nil {
						firstErr.CompareAndSwap(nil, &err)
						continue
					}
					ok[k], decided[k] = true, won
				}
			})
		}
		wg.Wait()
		for k, p := range run {
			if ok[k] {
				done = append(done, p)
			}
			if decided[k] {
				purges = append(purges, failureSubject{p.msg.Ban.Jail, p.msg.Ban.Addr})
			}
		}
		if err := firstErr.Load(); err != nil {
			f.failf("publishing bans to the farm; kept in the outbox", *err)
			return done, purges
		}
		i = j
	}
	return done, purges
}

// failureSubject names the failures of one address in one jail.
type failureSubject struct{ jail, addr string }

// purgeFailures forgets, farm-wide, the failures the bans this host decided answer for:
// a ban resets its address's count, on every host.
func (f *Farm) purgeFailures(ctx context.Context, h *handles, purges []failureSubject) {
	for _, p := range purges {
		f.mu.Lock()
		j, ok := f.jails[p.jail]
		f.mu.Unlock()
		addr, err := parseAddr(p.addr)
		if !ok || j.Mode != config.FarmCount || err != nil {
			continue
		}
		s, err := f.failStream(ctx, h, j)
		if err != nil {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := s.Purge(pctx, jetstream.WithPurgeSubject(f.failSubject(j.Name, addrToken(addr)))); err != nil {
			f.logger.Debug("purging the failures of a ban", "addr", addr, "err", err)
		}
		cancel()
	}
}

// remove takes done messages out of the outbox.
func (f *Farm) remove(ctx context.Context, done []pendingMessage) {
	if len(done) == 0 {
		return
	}
	drop := make(map[uint64]bool, len(done))
	var ids []int64
	for _, p := range done {
		drop[p.seq] = true
		if p.id != 0 {
			ids = append(ids, p.id)
		}
	}
	f.mu.Lock()
	kept := f.pending[:0]
	for _, p := range f.pending {
		if !drop[p.seq] {
			kept = append(kept, p)
			continue
		}
		if p.msg.Op == opBan {
			k := keyOf(p.msg.Ban)
			if f.pendBans[k]--; f.pendBans[k] <= 0 {
				delete(f.pendBans, k)
			}
		}
	}
	clear(f.pending[len(kept):])
	f.pending = kept
	o := f.outbox
	f.mu.Unlock()
	if o != nil && len(ids) > 0 {
		if err := o.DeleteOutbox(context.WithoutCancel(ctx), ids); err != nil {
			f.failf("removing published messages from the farm outbox (they may be published again, which is harmless)", err)
		}
	}
}

// publishBan makes m's ban the farm's, unless the farm holds one for its key already:
// then another host decided first, and its ban comes through the watch. A ban that has
// ended, or whose jail is no longer shared, is done with. It reports whether this host's
// ban became the farm's.
func (f *Farm) publishBan(ctx context.Context, h *handles, m outboxMessage) (bool, error) {
	r, err := m.Ban.record()
	if err != nil {
		return false, nil // unreadable: nothing to publish
	}
	f.mu.Lock()
	_, shared := f.jails[r.Jail]
	f.mu.Unlock()
	if !shared {
		return false, nil
	}
	var opts []jetstream.KVCreateOpt
	if !r.Permanent() {
		left := r.Expires.Sub(f.clock.Now())
		if left < time.Second {
			return false, nil // over, or nearly: the farm's TTL could not hold it
		}
		opts = append(opts, jetstream.KeyTTL(left))
	}
	data, _ := json.Marshal(m.Ban)
	key := banKey(r.Jail, r.Addr)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rev, err := h.bans.Create(cctx, key, data, opts...)
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("ban of %s in %s: %w", r.Addr, r.Jail, err)
	}
	f.decided.Add(1)
	f.mu.Lock()
	if rev > f.revs[key] {
		f.revs[key] = rev
	}
	f.mu.Unlock()
	if f.observe != nil {
		f.observe("publish", f.clock.Now().Sub(time.UnixMilli(m.At)))
	}
	return true, nil
}

// publishUnban lifts m's ban in the farm: the revision this host knew when it was
// lifted here, so that an unban cannot lift a newer ban. If this host knew none (its own
// ban, not yet published then), the farm's ban is lifted if it is not newer than the
// unban.
func (f *Farm) publishUnban(ctx context.Context, h *handles, m outboxMessage) error {
	addr, err := parseAddr(m.Ban.Addr)
	if err != nil {
		return nil
	}
	key := banKey(m.Ban.Jail, addr)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rev := m.Rev
	if rev == 0 {
		e, err := h.bans.Get(cctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
			return nil
		case err != nil:
			return err
		}
		var v banValue
		if json.Unmarshal(e.Value(), &v) != nil || v.At > m.At {
			return nil // a newer ban than the one lifted
		}
		rev = e.Revision()
	}
	err = h.bans.Purge(cctx, key, jetstream.LastRevision(rev), jetstream.PurgeTTL(markerTTL))
	switch {
	case err == nil:
		f.logger.Info("unban published to the farm", "jail", m.Ban.Jail, "addr", addr)
		return nil
	case isWrongLastSequence(err):
		f.logger.Warn("unban not published: the farm holds a newer ban of the address, which stands", "jail", m.Ban.Jail, "addr", addr)
		return nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil
	}
	return err
}

// isWrongLastSequence reports a compare-and-set that lost: 10071, or 10164 on replicated
// streams under contention.
func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// isPerSubjectLimit reports a failure refused because its address's subject is full:
// the maxretry-th failure within findtime. 10077 is a generic store error, so its words
// are matched too.
func isPerSubjectLimit(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == 10077 &&
		strings.Contains(apiErr.Description, "maximum messages per subject exceeded")
}

// futureWait is how many published failures may wait for their answer.
const futureWait = 4096

type published struct {
	fut jetstream.PubAckFuture
	f   failure
	j   Jail
}

// count publishes the failures of counting jails, and decides the ban when the farm
// refuses one for being the maxretry-th, until ctx is done.
func (f *Farm) count(ctx context.Context, h *handles, _ Target, decide Decide) {
	answers := make(chan published, futureWait)
	var wg sync.WaitGroup
	wg.Go(func() { f.judge(ctx, answers, decide) })
	defer wg.Wait()
	defer close(answers)
	var seq atomic.Uint64
	start := time.Now().UnixNano()
	for {
		var fl failure
		select {
		case <-ctx.Done():
			return
		case fl = <-f.failures:
		}
		f.mu.Lock()
		j, ok := f.jails[fl.jail]
		f.mu.Unlock()
		if !ok || j.Mode != config.FarmCount || j.MaxRetry <= 1 {
			continue // a ban of one failure is decided where it happens
		}
		if _, err := f.failStream(ctx, h, j); err != nil {
			f.dropped.Add(1)
			f.failf("counting failures across the farm", err)
			continue
		}
		msg := nats.NewMsg(f.failSubject(j.Name, addrToken(fl.addr)))
		msg.Data = []byte(fl.t.UTC().Format(time.RFC3339Nano))
		id := fmt.Sprintf("%s:%x:%d", f.cfg.Node, fl.from.File, fl.from.Offset)
		if fl.from == (jails.Origin{}) {
			id = fmt.Sprintf("%s:%d:%d", f.cfg.Node, start, seq.Add(1))
		}
		fut, err := h.js.PublishMsgAsync(msg, jetstream.WithMsgID(id))
		if err != nil {
			f.dropped.Add(1)
			continue
		}
		f.shared.Add(1)
		select {
		case answers <- published{fut, fl, j}:
		case <-ctx.Done():
			return
		}
	}
}

// judge waits for the farm's answer to each failure published and decides the bans the
// farm's count reached.
func (f *Farm) judge(ctx context.Context, answers <-chan published, decide Decide) {
	for p := range answers {
		select {
		case <-p.fut.Ok():
		case err := <-p.fut.Err():
			if !isPerSubjectLimit(err) {
				f.dropped.Add(1)
				continue
			}
			t := jails.Ticket{Jail: p.j.Name, Addr: p.f.addr, Failures: p.j.MaxRetry, Time: p.f.t,
				Why: fmt.Sprintf("%d failures across the farm", p.j.MaxRetry)}
			if err := decide(ctx, []jails.Ticket{t}); err != nil {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}
