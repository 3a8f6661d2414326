package jails

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/logban/logban/actions"
)

// Repairs counts what reconciling one action's kernel state with the bans in force
// changed.
type Repairs struct {
	Restored int // bans in force the kernel had lost, applied again
	Removed  int // holds no ban in force stands behind, lifted
}

// reconcileJob is one Reconciler action to compare: what it holds, by jail ("" for a
// Shared action's holds, which belong to no jail).
type reconcileJob struct {
	q     *actionQueue
	r     actions.Reconciler
	added int64 // the queue's calls so far, when its holds were listed
	jails []string
	holds map[string][]netip.Prefix
}

// Reconcile compares what each Reconciler action holds in the kernel with the bans in
// force, and hands it the calls that make the two agree: a ban the kernel lost is
// applied again, and a hold no ban stands behind is lifted. An action with calls
// waiting or being made, or handed any while its holds were listed, is left for the
// next time: what it holds is changing. With names, only the actions so named are
// compared (those left for the next time, say). It returns the repairs by action name,
// those left for the next time, and the errors of actions that could not list what
// they hold.
func (m *Manager) Reconcile(ctx context.Context, names ...string) (repairs map[string]Repairs, busy []string, err error) {
	var jobs []*reconcileJob
	m.mu.Lock()
	for a, q := range m.queues {
		r, ok := a.(actions.Reconciler)
		if !ok || len(names) > 0 && !slices.Contains(names, q.name) {
			continue
		}
		if !q.idle() {
			busy = append(busy, q.name)
			continue
		}
		job := &reconcileJob{q: q, r: r, added: q.added.Load(), holds: map[string][]netip.Prefix{}}
		if !q.shared {
			for _, name := range m.jailNames() {
				if slices.ContainsFunc(m.jails[name].actions, func(na NamedAction) bool { return na.Action == a }) {
					job.jails = append(job.jails, name)
				}
			}
		} else {
			job.jails = []string{""}
		}
		jobs = append(jobs, job)
	}
	m.mu.Unlock()

	var errs []error
	for _, job := range jobs {
		for _, jail := range job.jails {
			held, err := job.r.Holds(ctx, jail)
			if err != nil {
				errs = append(errs, fmt.Errorf("action %q: listing what it holds: %w", job.q.name, err))
				job.jails = nil
				break
			}
			job.holds[jail] = held
		}
	}

	repairs = map[string]Repairs{}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, job := range jobs {
		if len(job.jails) == 0 || m.queues[job.q.action] != job.q { // failed, or retired since
			continue
		}
		if job.q.added.Load() != job.added { // handed calls since its holds were listed
			busy = append(busy, job.q.name)
			continue
		}
		var rep Repairs
		for jail, held := range job.holds {
			want := m.wanted(job.q, jail)
			have := map[netip.Prefix]bool{}
			for _, p := range held {
				have[p] = true
				if _, ok := want[p]; !ok {
					job.q.add(actionCall{ban: actions.BanOf(jail, p), unban: true})
					rep.Removed++
				}
			}
			for a, b := range want {
				if !have[a] {
					job.q.add(actionCall{ban: b})
					rep.Restored++
				}
			}
		}
		job.q.restored.Add(int64(rep.Restored))
		job.q.removed.Add(int64(rep.Removed))
		repairs[job.q.name] = rep
	}
	slices.Sort(busy)
	return repairs, busy, errors.Join(errs...)
}

// wanted returns the bans q's action should hold for jail: for a Shared action (jail
// ""), one ban per address any jail holds through it. Caller holds m.mu.
func (m *Manager) wanted(q *actionQueue, jail string) map[netip.Prefix]actions.Ban {
	want := map[netip.Prefix]actions.Ban{}
	for _, name := range m.jailNames() {
		if jail != "" && name != jail {
			continue
		}
		j := m.jails[name]
		if !slices.ContainsFunc(j.actions, func(na NamedAction) bool { return na.Action == q.action }) {
			continue
		}
		for p, h := range j.bans {
			if _, ok := want[p]; !ok {
				want[p] = j.record(p, h).Ban
			}
		}
	}
	return want
}
