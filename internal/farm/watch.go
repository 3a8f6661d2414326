package farm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/jails"
)

// errResync ends a watch so that it starts again: the connection came back, or the jails
// changed.
var errResync = errors.New("watching again")

// watchBatch is how many watched entries are applied at once.
const watchBatch = 1024

// watchBans applies the farm's bans here, and lifts here those the farm lifted, until ctx
// is done. It never writes to the farm, so nothing echoes.
func (f *Farm) watchBans(ctx context.Context, h *handles, target Target, _ Decide) {
	f.keepWatching(ctx, "the farm's bans", func() error { return f.watchBansOnce(ctx, h, target) })
}

// keepWatching runs watch again whenever it ends, with a growing pause after errors: a
// storm of reconnects must not pile up consumers.
func (f *Farm) keepWatching(ctx context.Context, what string, watch func() error) {
	b := newBackoff()
	for ctx.Err() == nil {
		err := watch()
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errResync):
			b.reset()
			continue
		case err != nil:
			f.failf("watching "+what+"; watching again", err)
		}
		b.wait(ctx)
	}
}

func (f *Farm) watchBansOnce(ctx context.Context, h *handles, target Target) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f.setSynced(false)
	defer f.setSynced(false) // a watch that ends is behind from then on
	// The bucket's newest revision before the watch: a ban this host publishes later may
	// reach the farm after the watch's first delivery, and must not be lifted at its end.
	// Without it (the bucket did not answer), the first delivery's newest stands in.
	var seen uint64
	if st, err := h.bans.Status(wctx); err == nil {
		if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok {
			seen = bs.StreamInfo().State.LastSeq
		}
	}
	w, err := h.bans.WatchAll(wctx)
	if err != nil {
		return err
	}
	defer w.Stop() //nolint:errcheck // the watch ends either way
	initial := true
	live := map[string]bool{} // keys holding a ban, as first delivered
	for {
		var first jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return nil
		case <-f.resync:
			return errResync
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("the watch ended")
			}
			first = e
		}
		batch := f.gather(ctx, w, first)
		if !initial && hasBan(batch) {
			batch = f.holdWhileBehind(ctx, h, w, batch)
		}
		for _, e := range batch {
			if !initial || e == nil {
				break
			}
			seen = max(seen, e.Revision())
		}
		for i := 0; i < len(batch); {
			switch e := batch[i]; {
			case e == nil: // every ban in force is delivered
				f.catchUp(ctx, target, live, seen)
				f.resolved("watching the farm's bans")
				initial, live = false, nil
				i++
			case e.Operation() == jetstream.KeyValuePut:
				j := i
				for j < len(batch) && batch[j] != nil && batch[j].Operation() == jetstream.KeyValuePut {
					j++
				}
				f.adopt(ctx, target, batch[i:j], initial, live)
				i = j
			default:
				f.lifted(ctx, target, e)
				i++
			}
		}
		f.handedOver(batch)
	}
}

// handedOver notes the newest revision in batch, now applied, as seen: a decision made
// from now on knows every entry up to it.
func (f *Farm) handedOver(batch []jetstream.KeyValueEntry) {
	var newest uint64
	for _, e := range batch {
		if e != nil {
			newest = max(newest, e.Revision())
		}
	}
	f.mu.Lock()
	f.seenRev = max(f.seenRev, newest)
	f.mu.Unlock()
}

// gather returns first and the entries that follow it at once: those waiting, and while
// the server says more are pending (a host back from a partition, its server replaying
// what it missed), those still on their way, for up to catchUpWait. Of each key, only its
// last entry is kept: a ban made and lifted while this host was away is neither applied
// nor lifted here, as the farm no longer holds it.
func (f *Farm) gather(ctx context.Context, w jetstream.KeyWatcher, first jetstream.KeyValueEntry) []jetstream.KeyValueEntry {
	batch := []jetstream.KeyValueEntry{first}
	var deadline <-chan time.Time
	for len(batch) < watchBatch {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return collapse(batch)
			}
			batch = append(batch, e)
			continue
		default:
		}
		if last := batch[len(batch)-1]; last == nil || last.Delta() == 0 {
			return collapse(batch) // nothing more pending
		}
		if deadline == nil {
			t := time.NewTimer(catchUpWait)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return collapse(batch)
			}
			batch = append(batch, e)
		case <-deadline:
			return collapse(batch)
		case <-ctx.Done():
			return collapse(batch)
		}
	}
	return collapse(batch)
}

// maxHold bounds how long a batch waits for this host's server to catch up with the
// farm, maxHeld how many entries it holds.
const (
	maxHold = time.Minute
	maxHeld = 1 << 17 // entries held at once, at most; past it they are applied
)

// hasBan reports whether batch holds a ban.
func hasBan(batch []jetstream.KeyValueEntry) bool {
	for _, e := range batch {
		if e != nil && e.Operation() == jetstream.KeyValuePut {
			return true
		}
	}
	return false
}

// holdWhileBehind keeps batch, and the entries that follow, until the watch has
// delivered every entry the bans bucket's leader holds (its last sequence, asked once
// the batch is in), then returns them collapsed: a server back from a partition replays
// what it missed, bans and their unbans apart, and its watch would apply bans the farm
// lifted meanwhile. Catch-up applies only what the farm holds. Every batch of bans
// asks, however fresh its bans (after a cut of a second, a ban made and lifted just
// before the link came back is as fresh as any); a watch that is current has delivered
// the leader's last entry already, and waits no longer than the answer. While no leader
// answers, this host is cut off still, and the batch waits, up to maxHold.
func (f *Farm) holdWhileBehind(ctx context.Context, h *handles, w jetstream.KeyWatcher, batch []jetstream.KeyValueEntry) []jetstream.KeyValueEntry {
	var seen uint64
	for _, e := range batch {
		if e != nil {
			seen = max(seen, e.Revision())
		}
	}
	deadline := time.Now().Add(maxHold)
	tick := time.NewTicker(catchUpWait)
	defer tick.Stop()
	held := false
	last, ok := f.leaderLastSeq(ctx, h)
	for (!ok || seen < last) && len(batch) < maxHeld && time.Now().Before(deadline) {
		held = true
		select {
		case e, open := <-w.Updates():
			if !open {
				return collapse(batch)
			}
			batch = append(batch, e)
			if e != nil {
				seen = max(seen, e.Revision())
			}
		case <-tick.C:
			// The leader's last entry may be gone (its ban expired) with nothing after
			// it: a replica current with the leader has nothing more to deliver.
			if ok && !f.ownReplicaBehind(ctx, h) {
				ok, last = true, seen
			} else if !ok {
				last, ok = f.leaderLastSeq(ctx, h)
			}
		case <-ctx.Done():
			return collapse(batch)
		}
	}
	if held {
		f.logger.Info("this host's server caught up with the farm; applying what the farm holds", "entries", len(batch))
	}
	return collapse(batch)
}

// leaderLastSeq asks the bans bucket's leader for the bucket's last sequence; false if
// no leader answers.
func (f *Farm) leaderLastSeq(ctx context.Context, h *handles) (uint64, bool) {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := h.js.Stream(cctx, "KV_"+f.cfg.Name+"_bans")
	if err != nil {
		return 0, false
	}
	return st.CachedInfo().State.LastSeq, true
}

// ownReplicaBehind asks the bans bucket's leader whether this host's own server, as a
// replica of it, is behind.
func (f *Farm) ownReplicaBehind(ctx context.Context, h *handles) bool {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := h.js.Stream(cctx, "KV_"+f.cfg.Name+"_bans")
	if err != nil {
		return ctx.Err() == nil // no leader answers: this host is cut off still
	}
	c := st.CachedInfo().Cluster
	if c == nil || c.Leader == f.cfg.Node {
		return false
	}
	for _, p := range c.Replicas {
		if p.Name == f.cfg.Node {
			return !p.Current || p.Lag > 0
		}
	}
	return false
}

// catchUpWait is how long gather waits for entries the server says are pending.
const catchUpWait = 250 * time.Millisecond

// collapse keeps, of each key's entries in batch, only the last, in order; the nil that
// ends the first delivery stays where it is, and no entry moves across it.
func collapse(batch []jetstream.KeyValueEntry) []jetstream.KeyValueEntry {
	out := make([]jetstream.KeyValueEntry, 0, len(batch))
	start := 0
	for i := 0; i <= len(batch); i++ {
		if i < len(batch) && batch[i] != nil {
			continue
		}
		seg := batch[start:i]
		last := make(map[string]int, len(seg))
		for k, e := range seg {
			last[e.Key()] = k
		}
		for k, e := range seg {
			if last[e.Key()] == k {
				out = append(out, e)
			}
		}
		if i < len(batch) {
			out = append(out, nil)
		}
		start = i + 1
	}
	return out
}

// adopt puts the farm's bans in entries in force here.
func (f *Farm) adopt(ctx context.Context, target Target, entries []jetstream.KeyValueEntry, initial bool, live map[string]bool) {
	var records []jails.Record
	var decidedAt []time.Time
	var held map[string]heldBan // keys with bans in the outbox the farm holds a ban for
	opened := f.openAll(entries)
	f.mu.Lock()
	for i, e := range entries {
		var v banValue
		body, signer, err := opened[i].body, opened[i].signer, opened[i].err
		if err != nil {
			f.refuse("ban", e.Key(), err)
			continue
		}
		if err := json.Unmarshal(body, &v); err != nil {
			f.logger.Warn("farm ban unreadable; skipped", "key", e.Key(), "err", err)
			continue
		}
		if f.keys != nil && v.By != signer { // a node decides only in its own name
			f.refuse("ban", e.Key(), fmt.Errorf("says it was decided by %q but %q signed it: %w", v.By, signer, errForged))
			continue
		}
		r, err := v.record()
		if err != nil || banKey(r.Jail, r.Prefix()) != e.Key() {
			f.logger.Warn("farm ban does not match its key; skipped", "key", e.Key(), "addr", v.Addr, "jail", v.Jail)
			continue
		}
		if f.lifts.covers(e.Key(), e.Revision()) {
			continue // delivered after its lift: a lagging watch, or a replica replaying
		}
		f.lifts.forget(e.Key())
		if e.Revision() > f.revs[e.Key()] {
			f.revs[e.Key()] = e.Revision()
		}
		if live != nil {
			live[e.Key()] = true
		}
		if f.pendBans[e.Key()] > 0 && f.ownRevs[e.Key()] != e.Revision() { // its own the publisher settles
			if held == nil {
				held = map[string]heldBan{}
			}
			held[e.Key()] = heldBan{rev: e.Revision(), other: r.By != f.cfg.Node}
		}
		j, ok := f.jails[r.Jail]
		if !ok || (!f.cfg.Enforce && r.By != f.cfg.Node) {
			continue
		}
		if why := j.Ignore.WhyNet(r.Prefix()); why != "" {
			if !initial {
				f.logger.Warn("farm ban not applied here: the address is "+why, "jail", r.Jail, "addr", r.Target(), "decided_by", r.By)
			}
			f.ignored.Add(1)
			continue
		}
		records = append(records, r)
		decidedAt = append(decidedAt, r.BannedAt)
	}
	if held != nil {
		f.settleHeld(held)
	}
	f.mu.Unlock()
	if len(records) == 0 {
		return
	}
	fresh := target.Adopt(ctx, records)
	now := f.clock.Now()
	f.applied.Add(int64(len(fresh)))
	if f.observe != nil && !initial {
		for i, r := range records {
			if r.By != f.cfg.Node {
				f.observe("apply", now.Sub(decidedAt[i]))
			}
		}
	}
	for _, b := range fresh {
		f.logger.Debug("farm ban applied", "jail", b.Jail, "addr", b.Target(), "decided_by", b.By, "why", b.Why)
	}
}

// openedValue is a watched value's body and signer, or why it was refused.
type openedValue struct {
	body   []byte
	signer string
	err    error
}

// openAll opens the values of entries (keys.open), checking signatures on every core: a
// burst of bans is thousands of checks of 45 µs each. A ban this host published itself
// (its revision is the one this host was told) is taken as this host signed it.
func (f *Farm) openAll(entries []jetstream.KeyValueEntry) []openedValue {
	out := make([]openedValue, len(entries))
	f.mu.Lock()
	own := make([]bool, len(entries))
	for i, e := range entries {
		own[i] = f.ownRevs[e.Key()] == e.Revision() && f.signer != nil
	}
	f.mu.Unlock()
	open := func(i int) {
		if own[i] {
			var env envelope
			if json.Unmarshal(entries[i].Value(), &env) == nil && env.Node == f.cfg.Node {
				out[i] = openedValue{body: env.Body, signer: env.Node}
				return
			}
		}
		out[i].body, out[i].signer, out[i].err = f.keys.open(entries[i].Value())
	}
	if f.keys == nil || len(entries) < 64 {
		for i := range entries {
			open(i)
		}
		return out
	}
	workers := min(runtime.GOMAXPROCS(0), len(entries)/32)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(entries); i += workers {
				open(i)
			}
		}()
	}
	wg.Wait()
	return out
}

// lifted lifts here the ban the farm no longer holds (an unban anywhere, or its expiry),
// unless a newer decision of this host waits to be published. An unban of a ban newer
// than a waiting decision lifts that decision too: the farm held a ban in its place.
func (f *Farm) lifted(ctx context.Context, target Target, e jetstream.KeyValueEntry) {
	jail, what, err := parseKey(e.Key())
	if err != nil {
		return
	}
	u, lifts, refused := f.unbanOf(e, jail, what)
	f.mu.Lock()
	if lifts && u.Rev != 0 && f.pendBans[e.Key()] > 0 {
		f.settleHeld(map[string]heldBan{e.Key(): {rev: u.Rev, other: f.ownRevs[e.Key()] != u.Rev}})
	}
	if f.revs[e.Key()] > e.Revision() || f.pendBans[e.Key()] > 0 {
		f.mu.Unlock()
		return
	}
	delete(f.revs, e.Key())
	delete(f.ownRevs, e.Key())
	f.lifts.note(e.Key(), e.Revision())
	f.mu.Unlock()
	if refused != nil {
		f.refuse("unban", e.Key(), refused)
	}
	if !lifts {
		return // the ban ends on this host's own clock
	}
	if target.LiftIf(ctx, jail, what, fromFarm) {
		f.logger.Info("farm ban lifted", "jail", jail, "addr", actions.Target(what))
	}
}

// unbanOf reads e, the end of the ban of what in jail: the unban it carries, and whether
// it lifts the ban early. With the farm's keys only an unban a node signed for that ban
// does: an end without a body is the server's expiry marker, or a purge no node signed,
// and neither lifts a ban whose end each host keeps on its own clock; a body whose
// signature does not hold is refused. Without the keys every end lifts the ban.
func (f *Farm) unbanOf(e jetstream.KeyValueEntry, jail string, what netip.Prefix) (u unbanValue, lifts bool, refused error) {
	if len(e.Value()) == 0 {
		return u, f.keys == nil, nil
	}
	body, signer, err := f.keys.open(e.Value())
	if err != nil {
		return u, false, err
	}
	ok := json.Unmarshal(body, &u) == nil && u.Jail == jail && u.Addr == actions.Target(what)
	if f.keys == nil {
		if !ok {
			u = unbanValue{}
		}
		return u, true, nil
	}
	if !ok || u.By != signer {
		return unbanValue{}, false, fmt.Errorf("an unban of %s in %s by %q, signed by %q, under this key: %w", u.Addr, u.Jail, u.By, signer, errForged)
	}
	return u, true, nil
}

// setSynced notes whether the bans watch has delivered what the farm holds; the outbox
// waits for it.
func (f *Farm) setSynced(synced bool) {
	f.mu.Lock()
	f.synced = synced
	f.mu.Unlock()
	if synced {
		f.poke(f.wake)
	}
}

// fromFarm says whether a ban here is the farm's: one decided in farm mode.
func fromFarm(r jails.Record) bool { return r.By != "" }

// catchUp lifts the farm bans in force here that the farm no longer holds: they ended
// while this host was away, or were lifted meanwhile. live are the keys the watch first
// delivered, seen the bucket's newest revision when it began. A ban this host published
// since (its revision is newer) is the farm's, though maybe not in live: the watch
// brings it next, or its end.
func (f *Farm) catchUp(ctx context.Context, target Target, live map[string]bool, seen uint64) {
	defer f.setSynced(true)
	f.mu.Lock()
	names := make([]string, 0, len(f.jails))
	for name := range f.jails {
		names = append(names, name)
	}
	f.mu.Unlock()
	if live == nil {
		return
	}
	lifted := 0
	for _, name := range names {
		for _, b := range target.Bans(name) {
			key := banKey(b.Jail, b.Prefix())
			f.mu.Lock()
			keep := live[key] || f.pendBans[key] > 0 || f.revs[key] > seen
			f.mu.Unlock()
			if !keep && target.LiftIf(ctx, b.Jail, b.Prefix(), fromFarm) {
				lifted++
			}
		}
	}
	if lifted > 0 {
		f.logger.Info("farm bans that ended while this host was away lifted", "bans", lifted)
	}
}

// nodeValue is a node's entry in the nodes bucket, under its own name.
type nodeValue struct {
	Node  string   `json:"node"`
	Addrs []string `json:"addrs"` // addresses no host of the farm bans
	At    int64    `json:"at"`    // unix ms
	// Jails says how the node counts each jail it counts across the farm.
	Jails map[string]countSettings `json:"jails,omitempty"`
}

// maxNodeJails is how many jails' settings a node entry carries, at most.
const maxNodeJails = 32

// maxNodeAddrs is how many addresses a node may announce as its own: single addresses,
// never a network (one node announcing 0.0.0.0/0 would stop every ban of the farm).
const maxNodeAddrs = 16

// nodeInfo is another node, as last announced.
type nodeInfo struct {
	prefixes []netip.Prefix
	jails    map[string]countSettings // how it counts each jail it counts across the farm
	seen     time.Time                // when the node wrote its entry, by its clock
	heard    time.Time                // when this host read it, by its own
}

// announceEvery is how often a node refreshes its entry.
const announceEvery = 30 * time.Second

// announce publishes this node's entry, and refreshes it every announceEvery (after a
// failure, every healthEvery), until ctx is done.
func (f *Farm) announce(ctx context.Context, h *handles, _ Target, _ Decide) {
	t := time.NewTimer(announceEvery)
	defer t.Stop()
	for {
		f.mu.Lock()
		v := nodeValue{Node: f.cfg.Node, At: f.clock.Now().UnixMilli(), Jails: map[string]countSettings{}}
		for _, p := range f.own {
			if p.IsSingleIP() && len(v.Addrs) < maxNodeAddrs {
				v.Addrs = append(v.Addrs, p.Addr().String())
			}
		}
		for _, j := range f.jails {
			if countsAcross(j) && len(v.Jails) < maxNodeJails {
				v.Jails[j.Name] = settingsOf(j)
			}
		}
		f.mu.Unlock()
		data, _ := json.Marshal(v)
		data = f.signer.seal(data)
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := h.nodes.Put(pctx, f.cfg.Node, data)
		cancel()
		next := announceEvery
		switch {
		case err == nil:
			f.wrote()
			f.resolved("announcing this node")
		case ctx.Err() == nil:
			f.failf("announcing this node to the farm", err)
			next = healthEvery // again soon: the farm may be back in seconds
		}
		t.Reset(next)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-f.reannounce: // the jails changed: the others learn how this host counts
		}
	}
}

// watchNodes keeps the other nodes' addresses, which no ban may touch, until ctx is done.
func (f *Farm) watchNodes(ctx context.Context, h *handles, _ Target, _ Decide) {
	f.keepWatching(ctx, "the farm's nodes", func() error {
		w, err := h.nodes.WatchAll(ctx)
		if err != nil {
			return err
		}
		defer w.Stop() //nolint:errcheck // the watch ends either way
		for {
			select {
			case <-ctx.Done():
				return nil
			case e, ok := <-w.Updates():
				if !ok {
					return errors.New("the watch ended")
				}
				switch {
				case e == nil:
					f.resolved("watching the farm's nodes")
					f.mu.Lock()
					f.nodesRead = true
					f.mu.Unlock()
				case e.Operation() == jetstream.KeyValuePut:
					f.node(e.Key(), e.Value())
				default: // the entry expired, or was removed: the node is gone
					f.mu.Lock()
					delete(f.others, e.Key())
					f.mu.Unlock()
				}
			}
		}
	})
}

// node takes in another node's entry, under key: only one the node itself signed, under
// its own name, and of single addresses, at most maxNodeAddrs of them. An entry that
// expires (its node stopped refreshing it) takes its addresses with it.
func (f *Farm) node(key string, data []byte) {
	body, signer, err := f.keys.open(data)
	if err != nil {
		f.refuse("node entry", key, err)
		return
	}
	var v nodeValue
	if json.Unmarshal(body, &v) != nil || v.Node == "" {
		return
	}
	if v.Node != key || f.keys != nil && v.Node != signer { // this host's name too: someone poses as it
		f.refuse("node entry", key, fmt.Errorf("entry of %q under key %q, signed by %q: %w", v.Node, key, signer, errForged))
		return
	}
	if v.Node == f.cfg.Node {
		return
	}
	n := nodeInfo{seen: time.UnixMilli(v.At), heard: f.clock.Now(), jails: map[string]countSettings{}}
	for name, c := range v.Jails {
		if len(n.jails) < maxNodeJails && c.MaxRetry > 0 && c.FindTime > 0 {
			n.jails[name] = c
		}
	}
	for _, s := range v.Addrs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			if p, perr := netip.ParsePrefix(s); perr == nil && p.IsSingleIP() {
				a, err = p.Addr(), nil
			}
		}
		if err != nil || len(n.prefixes) == maxNodeAddrs {
			continue // a network, or one address too many: never protected
		}
		a = a.Unmap()
		n.prefixes = append(n.prefixes, netip.PrefixFrom(a, a.BitLen()))
	}
	f.mu.Lock()
	f.others[v.Node] = n
	f.mu.Unlock()
}

// maxTombstones bounds the lifts remembered.
const maxTombstones = 1 << 14

// tombstones remembers, of the keys lifted last, the newest revision lifted (the farm's
// unban, or the ban this host's own unban deleted), so that a ban delivered after its
// lift (a watch lagging behind this host's own writes, a replica replaying what it
// missed) is not applied again. Past maxTombstones the oldest are forgotten. The zero
// value is ready; the Farm's mutex guards it.
type tombstones struct {
	rev  map[string]uint64
	ring []string // keys in the order noted; next is where the next goes
	next int
}

// note remembers that key was lifted at rev, or later.
func (t *tombstones) note(key string, rev uint64) {
	if t.rev == nil {
		t.rev = map[string]uint64{}
	}
	if was, ok := t.rev[key]; ok {
		t.rev[key] = max(was, rev)
		return
	}
	if len(t.ring) < maxTombstones {
		t.ring = append(t.ring, key)
	} else {
		delete(t.rev, t.ring[t.next])
		t.ring[t.next] = key
		t.next = (t.next + 1) % maxTombstones
	}
	t.rev[key] = rev
}

// covers reports whether key's entry at rev was lifted already.
func (t *tombstones) covers(key string, rev uint64) bool {
	lifted, ok := t.rev[key]
	return ok && rev <= lifted
}

// forget drops key's lift: a newer ban of it stands.
func (t *tombstones) forget(key string) { delete(t.rev, key) }
