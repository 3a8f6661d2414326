package farm

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logban/logban/actions"
)

// publishBatch is the most outbox messages taken at once, and the most bans the farm's
// count hands the ban path at once.
const publishBatch = 4096

// publish empties the outbox into the farm, in order, while connected and synced (the
// bans watch has delivered what the farm holds), until ctx is done.
func (f *Farm) publish(ctx context.Context, h *handles, target Target, _ Decide) {
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		case <-retry.C:
			f.dropEnded(ctx)
		}
		for ctx.Err() == nil {
			if nc := f.conn.Load(); nc == nil || !nc.IsConnected() {
				break
			}
			f.mu.Lock()
			if !f.synced {
				// The farm's bans are read first: one may settle a waiting ban, or an
				// unban made while this host was away lift it.
				f.mu.Unlock()
				break
			}
			batch := append([]pendingMessage(nil), f.pending[:min(len(f.pending), publishBatch)]...)
			f.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			done, purges := f.publishRun(ctx, h, target, batch)
			f.remove(ctx, done)
			for _, p := range purges {
				f.purges.push(p) // if too many wait, the failures age out of findtime instead
			}
			if len(done) < len(batch) {
				break // the farm refused or did not answer: wait for the retry
			}
			f.resolved("publishing")
		}
	}
}

// dropEnded takes out of the outbox the bans that ended while they waited, as publishing
// them would (banMessage): else an outbox kept through a long partition holds every ban
// made in it, where it need hold no more than the bans still in force. Unbans stay (they
// are made by hand), and so do bans the watch settled, which publishing counts. It runs
// where the outbox is published, or before publishing starts, never beside publishRun.
func (f *Farm) dropEnded(ctx context.Context) {
	soon := f.clock.Now().Add(time.Second).UnixMilli() // banMessage's shortest TTL
	var ended []pendingMessage
	f.mu.Lock()
	for _, p := range f.pending {
		if _, moot := f.moot[p.seq]; !moot && p.msg.Op == opBan && p.msg.Ban.Until != 0 && p.msg.Ban.Until < soon {
			ended = append(ended, p)
		}
	}
	f.mu.Unlock()
	for _, p := range ended {
		f.settle(p, false)
	}
	f.remove(ctx, ended)
}

// publishRun publishes batch: runs of bans side by side, unbans one at a time, in
// order; it stops at the first message the farm did not take. It returns the messages
// done with, and the failures the bans it decided answer for.
func (f *Farm) publishRun(ctx context.Context, h *handles, target Target, batch []pendingMessage) (done []pendingMessage, purges []failureSubject) {
	// A ban lifted here before it was published is not published: the farm would hold
	// it for a moment, and every host apply it and lift it. Its unban still is, for a ban
	// of the address the farm may hold from before.
	batch, done = withoutLifted(batch)
	for _, p := range done {
		f.settle(p, false)
	}
	for i := 0; i < len(batch); {
		if m := batch[i].msg; m.Op == opUnban {
			newer, err := f.publishUnban(ctx, h, m)
			if err != nil {
				f.failf("publishing an unban to the farm; kept in the outbox", err)
				return done, purges
			}
			f.settle(batch[i], false)
			if newer != nil { // the farm's newer ban stands, here too
				f.adopt(ctx, target, []jetstream.KeyValueEntry{newer}, false, nil)
			} else {
				// An unban forgets the address's failures farm-wide, as on one host: the
				// next failure starts a new count.
				purges = append(purges, failureSubject{m.Ban.Jail, m.Ban.Addr})
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
		ok, decided, lost, err := f.publishBans(ctx, h, run)
		for k, p := range run {
			if ok[k] {
				f.settle(p, lost[k])
				done = append(done, p)
			}
			if decided[k] && f.purgeNeeded(p.msg.Ban.Jail) {
				purges = append(purges, failureSubject{p.msg.Ban.Jail, p.msg.Ban.Addr})
			}
		}
		if err != nil {
			f.failf("publishing bans to the farm; kept in the outbox", err)
			return done, purges
		}
		i = j
	}
	return done, purges
}

// withoutLifted returns batch without the bans an unban later in batch lifts, and those
// bans.
func withoutLifted(batch []pendingMessage) (kept, lifted []pendingMessage) {
	if !slices.ContainsFunc(batch, func(p pendingMessage) bool { return p.msg.Op == opUnban }) {
		return batch, nil // a burst of bans: nothing to look up
	}
	unbanned := map[string]bool{}
	skip := make([]bool, len(batch))
	for i := len(batch) - 1; i >= 0; i-- {
		m := batch[i].msg
		switch k := keyOf(m.Ban); {
		case m.Op == opUnban:
			unbanned[k] = true
		case unbanned[k]:
			skip[i] = true
		}
	}
	for i, p := range batch {
		if skip[i] {
			lifted = append(lifted, p)
		} else {
			kept = append(kept, p)
		}
	}
	return kept, lifted
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
	if len(f.moot) > 0 {
		for _, p := range done {
			delete(f.moot, p.seq)
		}
	}
	kept := f.pending[:0]
	for _, p := range f.pending {
		if !drop[p.seq] {
			kept = append(kept, p)
		}
	}
	clear(f.pending[len(kept):])
	f.pending = kept
	if len(kept) == 0 && cap(kept) > 1024 {
		f.pending = nil // a burst's outbox, drained: its memory goes
	}
	o := f.outbox
	f.mu.Unlock()
	if o != nil && len(ids) > 0 {
		if err := o.DeleteOutbox(context.WithoutCancel(ctx), ids); err != nil {
			f.failf("removing published messages from the farm outbox (they may be published again, which is harmless)", err)
		}
	}
}

// publishBans makes each of run's bans the farm's, unless the farm holds one for its
// key already, as publishBan does, but all at once: each a kv.Create written as an
// asynchronous publish (expected last sequence 0, the ban's TTL), so a burst costs no
// round trip per ban. A key the farm holds, or held (a marker), is settled by
// publishBan. It reports, per ban, whether it is done with, and whether this host's ban
// became the farm's, or lost to another host's; and the first error.
func (f *Farm) publishBans(ctx context.Context, h *handles, run []pendingMessage) (ok, decided, lost []bool, firstErr error) {
	ok, decided, lost = make([]bool, len(run)), make([]bool, len(run)), make([]bool, len(run))
	type sent struct {
		k   int
		key string
		fut jetstream.PubAckFuture
	}
	var futs []sent
	for k, p := range run {
		key, data, ttl, publish := f.banMessage(p)
		if !publish {
			ok[k] = true
			continue
		}
		msg := &nats.Msg{Subject: "$KV." + f.cfg.Name + "_bans." + key, Header: nats.Header{}, Data: data}
		opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(0), jetstream.WithStallWait(5 * time.Second)}
		if ttl > 0 {
			opts = append(opts, jetstream.WithMsgTTL(ttl))
		}
		fut, err := h.js.PublishMsgAsync(msg, opts...)
		if err != nil {
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		futs = append(futs, sent{k, key, fut})
	}
	for _, s := range futs {
		select {
		case ack := <-s.fut.Ok():
			f.published(s.key, ack.Sequence, run[s.k].msg)
			ok[s.k], decided[s.k] = true, true
		case err := <-s.fut.Err():
			if !isWrongLastSequence(err) {
				// A timeout, or a write to the key still in flight (perhaps this
				// one, its answer lost): it may yet be lost at a leader change, so the
				// ban stays in the outbox until the farm is seen to hold one.
				firstErr = cmp.Or(firstErr, err)
				continue
			}
			won, other, err := f.publishBan(ctx, h, run[s.k])
			if err != nil {
				firstErr = cmp.Or(firstErr, err)
				continue
			}
			ok[s.k], decided[s.k], lost[s.k] = true, won, other
		case <-ctx.Done():
			return ok, decided, lost, ctx.Err()
		}
	}
	return ok, decided, lost, firstErr
}

// banMessage returns the key, value and TTL of p's ban in the bucket, or publish false
// for a ban that is not to be published: unreadable, settled by the watch (moot), of a
// jail no longer shared, or ended (or so nearly that the farm's TTL, a second at least,
// could not hold it).
func (f *Farm) banMessage(p pendingMessage) (key string, data []byte, ttl time.Duration, publish bool) {
	m := p.msg
	r, err := m.Ban.record()
	if err != nil {
		return "", nil, 0, false
	}
	f.mu.Lock()
	_, shared := f.jails[r.Jail]
	own, moot := f.moot[p.seq]
	f.mu.Unlock()
	if moot && own {
		f.decided.Add(1) // its write's answer was lost: the watch showed it the farm's
	}
	if !shared || moot {
		return "", nil, 0, false
	}
	if !r.Permanent() {
		if ttl = r.Expires.Sub(f.clock.Now()); ttl < time.Second {
			return "", nil, 0, false
		}
	}
	data, _ = json.Marshal(m.Ban)
	return banKey(r.Jail, r.Prefix()), f.signer.seal(data), ttl, true
}

// published notes that this host's ban m is the farm's, at revision rev.
func (f *Farm) published(key string, rev uint64, m outboxMessage) {
	f.decided.Add(1)
	f.wrote()
	f.mu.Lock()
	if rev > f.revs[key] {
		f.revs[key] = rev
	}
	f.ownRevs[key] = rev
	f.mu.Unlock()
	if f.observe != nil {
		f.observe("publish", f.clock.Now().Sub(time.UnixMilli(m.At)))
	}
}

// publishBan makes p's ban the farm's, unless the farm holds one for its key already:
// then another host decided first (lost), and its ban comes through the watch. A ban
// that is not to be published (banMessage) is done with. It reports whether this host's
// ban became the farm's.
func (f *Farm) publishBan(ctx context.Context, h *handles, p pendingMessage) (won, lost bool, err error) {
	m := p.msg
	key, data, ttl, publish := f.banMessage(p)
	if !publish {
		return false, false, nil
	}
	var opts []jetstream.KVCreateOpt
	if ttl > 0 {
		opts = append(opts, jetstream.KeyTTL(ttl))
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rev, err := h.bans.Create(cctx, key, data, opts...)
	switch {
	case err == nil:
		f.published(key, rev, m)
		return true, false, nil
	case isInFlight(err):
		return false, false, fmt.Errorf("ban of %s in %s: a write of it is in flight in the farm: %w", m.Ban.Addr, m.Ban.Jail, err)
	case !errors.Is(err, jetstream.ErrKeyExists):
		return false, false, fmt.Errorf("ban of %s in %s: %w", m.Ban.Addr, m.Ban.Jail, err)
	}
	// The farm says it holds the key. The ban is done with only once the farm is seen
	// to hold a ban there: this one (a write whose answer was lost), or another host's.
	e, err := h.bans.Get(cctx, key)
	if err != nil {
		return false, false, fmt.Errorf("ban of %s in %s: the farm holds its key, but %w", m.Ban.Addr, m.Ban.Jail, err)
	}
	var v banValue
	body, node, err := f.keys.open(e.Value())
	if err != nil || json.Unmarshal(body, &v) != nil || keyOf(v) != key {
		// No node's ban: a value no node of the farm signed. This host's replaces it.
		rev, err := h.bans.Update(cctx, key, data, e.Revision())
		if err != nil {
			return false, false, fmt.Errorf("ban of %s in %s, over a value no node signed: %w", m.Ban.Addr, m.Ban.Jail, err)
		}
		f.published(key, rev, m)
		return true, false, nil
	}
	if v.By == f.cfg.Node && (node == "" || node == f.cfg.Node) && v.At == m.Ban.At {
		f.published(key, e.Revision(), m) // this host's own write, its answer lost
		return true, false, nil
	}
	return false, true, nil // another host decided it first: its decision stands, as the watch brings it
}

// publishUnban lifts m's ban in the farm: the revision this host knew when it was
// lifted here, so that an unban cannot lift a newer ban. If this host knew none (its own
// ban, not yet published then), the farm's ban is lifted if it is not newer than the
// unban. A newer ban the farm holds is returned: it stands.
func (f *Farm) publishUnban(ctx context.Context, h *handles, m outboxMessage) (newer jetstream.KeyValueEntry, err error) {
	what, err := actions.ParseTarget(m.Ban.Addr)
	if err != nil {
		return nil, nil
	}
	key := banKey(m.Ban.Jail, what)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rev := m.Rev
	if rev == 0 {
		// The ban lifted was this host's, published after the unban was decided (the
		// outbox keeps their order): if it is still the farm's latest this host knows of,
		// its revision is the one to lift. That is this host's own record; a KV get may be
		// answered by a replica that has not seen the ban yet.
		f.mu.Lock()
		if own := f.ownRevs[key]; own != 0 && own == f.revs[key] {
			rev = own
		}
		f.mu.Unlock()
	}
	if rev == 0 {
		e, err := h.bans.Get(cctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
			return nil, nil
		case err != nil:
			return nil, err
		}
		var v banValue
		body, _, err := f.keys.open(e.Value())
		if err != nil || json.Unmarshal(body, &v) != nil || v.At > m.At {
			return e, nil // a newer ban than the one lifted, or not one to judge
		}
		rev = e.Revision()
	}
	err = f.publishPurge(cctx, h, key, rev, m.Ban)
	switch {
	case err == nil:
		f.wrote()
		f.mu.Lock()
		f.lifts.note(key, rev) // the watch may deliver the ban lifted after this
		f.mu.Unlock()
		f.logger.Info("unban published to the farm", "jail", m.Ban.Jail, "addr", m.Ban.Addr)
		return nil, nil
	case isWrongLastSequence(err):
		f.logger.Warn("unban not published: the farm holds a newer ban of the address, which stands", "jail", m.Ban.Jail, "addr", m.Ban.Addr)
		e, err := h.bans.Get(cctx, key)
		if err != nil {
			return nil, nil // gone meanwhile: nothing stands
		}
		return e, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, nil
	}
	return nil, err
}

// unbanValue is what an unban carries: the ban lifted, who lifted it and when, signed
// like every value a node writes, so that no host can lift a ban in another's name, and
// a purge signed by no node of the farm lifts nothing (the ban ends on each host's own
// clock).
type unbanValue struct {
	Jail string `json:"jail"`
	Addr string `json:"addr"`
	By   string `json:"by"`
	At   int64  `json:"at"` // unix ms
	// Rev is the revision of the ban lifted: a host whose own decision of the address,
	// older than that ban, waits in its outbox, drops it.
	Rev uint64 `json:"rev,omitempty"`
}

// publishPurge lifts the ban at key, at revision rev, in the farm: a purge of the key (as
// KeyValue.Purge makes it, its marker kept markerTTL) whose body is this node's signed
// unbanValue.
func (f *Farm) publishPurge(ctx context.Context, h *handles, key string, rev uint64, b banValue) error {
	body, _ := json.Marshal(unbanValue{Jail: b.Jail, Addr: b.Addr, By: f.cfg.Node, At: f.clock.Now().UnixMilli(), Rev: rev})
	m := nats.NewMsg("$KV." + f.cfg.Name + "_bans." + key)
	m.Data = f.signer.seal(body)
	m.Header.Set("KV-Operation", "PURGE")
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	_, err := h.js.PublishMsg(ctx, m, jetstream.WithMsgTTL(markerTTL))
	return err
}

func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// isInFlight reports 10164: the server refused a compare-and-set because another write
// to the key is in flight (on replicated streams). It says nothing of what the farm
// holds: that write, perhaps this host's own whose answer was lost, may yet be lost at
// a leader change.
func isInFlight(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}
