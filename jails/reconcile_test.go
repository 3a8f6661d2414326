package jails

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/logban/logban/actions"
)

// holder is an action that keeps what it holds as a kernel would, by jail; a shared
// one keeps it under "".
type holder struct {
	mu     sync.Mutex
	shared bool
	held   map[string]map[netip.Addr]bool
	during func() // if set, runs once, after Holds has listed and before it returns
}

func newHolder(shared bool) *holder {
	return &holder{shared: shared, held: map[string]map[netip.Addr]bool{}}
}

func (h *holder) Start(context.Context) error { return nil }
func (h *holder) Stop(context.Context) error  { return nil }
func (h *holder) Ban(_ context.Context, b actions.Ban) error {
	h.set(b.Jail, b.Addr, true)
	return nil
}
func (h *holder) Unban(_ context.Context, b actions.Ban) error {
	h.set(b.Jail, b.Addr, false)
	return nil
}

// hosts returns the addresses as the prefixes Holds lists them as.
func hosts(addrs ...netip.Addr) []netip.Prefix {
	out := make([]netip.Prefix, len(addrs))
	for i, a := range addrs {
		out[i] = actions.Host(a)
	}
	return out
}

// set changes what is held, as a call or a hand at the kernel would.
func (h *holder) set(jail string, addr netip.Addr, held bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.shared {
		jail = ""
	}
	if h.held[jail] == nil {
		h.held[jail] = map[netip.Addr]bool{}
	}
	if held {
		h.held[jail][addr] = true
	} else {
		delete(h.held[jail], addr)
	}
}

func (h *holder) Holds(_ context.Context, jail string) ([]netip.Prefix, error) {
	h.mu.Lock()
	var out []netip.Prefix
	for a := range h.held[jail] {
		out = append(out, actions.Host(a))
	}
	during := h.during
	h.during = nil
	h.mu.Unlock()
	slices.SortFunc(out, netip.Prefix.Compare)
	if during != nil {
		during()
	}
	return out, nil
}

type sharedHolder struct{ *holder }

func (sharedHolder) SharedAcrossJails() {}

// Reconciling puts back a hold the kernel lost, lifts one no ban stands behind, and
// changes nothing when the two agree: for an action per jail and for a shared one.
func TestReconcileRepairsBothWays(t *testing.T) {
	ctx := context.Background()
	m := newManager(&fakeClock{now: t0})
	defer m.Close(ctx)
	chains, routes := newHolder(false), sharedHolder{newHolder(true)}
	a3, a4 := netip.MustParseAddr("198.51.100.3"), netip.MustParseAddr("198.51.100.4")
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"chains", chains}, {"routes", routes}})
	m.SetJail(ctx, "dos", BanPolicy{BanTime: time.Hour}, []NamedAction{{"chains", chains}, {"routes", routes}})
	m.BanAll(ctx, []Ticket{{Jail: "sasl", Addr: a1}, {Jail: "sasl", Addr: a2}, {Jail: "dos", Addr: a1}})
	settle(t, m)

	reconcile := func() map[string]Repairs {
		t.Helper()
		repairs, busy, err := m.Reconcile(ctx)
		if err != nil || len(busy) > 0 {
			t.Fatalf("Reconcile: busy %v, %v", busy, err)
		}
		settle(t, m)
		return repairs
	}
	if got := reconcile(); got["chains"] != (Repairs{}) || got["routes"] != (Repairs{}) {
		t.Errorf("kernel and bans agree, yet %+v", got)
	}

	chains.set("dos", a1, false)  // a rule deleted by hand
	chains.set("dos", a3, true)   // a rule with no ban behind it
	routes.set("", a2, false)     // a route deleted by hand
	routes.set("", a4, true)      // a logban route with no ban behind it
	chains.set("other", a4, true) // a jail the action does not serve: not looked at
	got := reconcile()
	if got["chains"] != (Repairs{Restored: 1, Removed: 1}) || got["routes"] != (Repairs{Restored: 1, Removed: 1}) {
		t.Errorf("repairs %+v", got)
	}
	for jail, want := range map[string][]netip.Addr{"sasl": {a1, a2}, "dos": {a1}, "other": {a4}} {
		if held, _ := chains.Holds(ctx, jail); !slices.Equal(held, hosts(want...)) {
			t.Errorf("chains hold %v for %s, want %v", held, jail, want)
		}
	}
	if held, _ := routes.Holds(ctx, ""); !slices.Equal(held, hosts(a1, a2)) {
		t.Errorf("routes hold %v", held)
	}
	if q := m.Queues()["routes"]; q.Restored != 1 || q.Removed != 1 {
		t.Errorf("routes' repairs counted %+v", q)
	}
	if got := reconcile(); got["chains"] != (Repairs{}) || got["routes"] != (Repairs{}) {
		t.Errorf("after the repair, %+v", got)
	}
}

// An action with calls waiting is not reconciled: what it holds is about to change.
func TestReconcileLeavesABusyActionForLater(t *testing.T) {
	ctx := context.Background()
	m := newManager(&fakeClock{now: t0})
	slow := reconcilingGate{newGate(), newHolder(false)}
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"slow", slow}})
	ban(m, Ticket{Jail: "sasl", Addr: a1})
	repairs, busy, err := m.Reconcile(ctx)
	if err != nil || !slices.Equal(busy, []string{"slow"}) || len(repairs) != 0 {
		t.Errorf("Reconcile = %v, busy %v, %v", repairs, busy, err)
	}
	close(slow.gate.open)
	m.Close(ctx)
}

// reconcilingGate is a gate that can say what it holds.
type reconcilingGate struct {
	*gate
	h *holder
}

func (g reconcilingGate) Holds(ctx context.Context, jail string) ([]netip.Prefix, error) {
	return g.h.Holds(ctx, jail)
}

// An action handed a call while its holds were being listed is left for the next time:
// the list may already be out of date, and a repair from it would be counted wrongly.
func TestReconcileLeavesAnActionHandedCallsMeanwhile(t *testing.T) {
	ctx := context.Background()
	m := newManager(&fakeClock{now: t0})
	defer m.Close(ctx)
	h := newHolder(false)
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"chains", h}})
	h.during = func() {
		ban(m, Ticket{Jail: "sasl", Addr: a1}) // decided after the list was taken
		settle(t, m)
	}
	repairs, busy, err := m.Reconcile(ctx)
	if err != nil || !slices.Equal(busy, []string{"chains"}) || repairs["chains"] != (Repairs{}) {
		t.Errorf("Reconcile = %v, busy %v, %v", repairs, busy, err)
	}
	if repairs, busy, _ := m.Reconcile(ctx); len(busy) > 0 || repairs["chains"] != (Repairs{}) {
		t.Errorf("the next time: %v, busy %v", repairs, busy)
	}
}

// Reconcile with names compares only the actions so named.
func TestReconcileOnlyTheNamed(t *testing.T) {
	ctx := context.Background()
	m := newManager(&fakeClock{now: t0})
	defer m.Close(ctx)
	chains, routes := newHolder(false), sharedHolder{newHolder(true)}
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"chains", chains}, {"routes", routes}})
	chains.set("sasl", a1, true)
	routes.set("", a1, true)
	repairs, _, err := m.Reconcile(ctx, "routes")
	if err != nil || len(repairs) != 1 || repairs["routes"] != (Repairs{Removed: 1}) {
		t.Errorf("Reconcile(routes) = %v, %v", repairs, err)
	}
}

// A jail removed while the server was stopped left its bans in the kernel: at start
// they are lifted through the kernel actions the other jails still use (per jail, and
// shared unless another jail's ban stands behind the hold), not only forgotten.
func TestRestoreLiftsTheBansOfARemovedJail(t *testing.T) {
	ctx := context.Background()
	m := newManager(&fakeClock{now: t0})
	defer m.Close(ctx)
	chains, routes := newHolder(false), sharedHolder{newHolder(true)}
	// What the kernel holds after the last run: "gone" banned a1 and a2, "sasl" a2.
	chains.set("gone", a1, true)
	chains.set("gone", a2, true)
	routes.set("", a1, true)
	routes.set("", a2, true)
	m.SetJail(ctx, "sasl", BanPolicy{BanTime: time.Hour}, []NamedAction{{"chains", chains}, {"routes", routes}})
	m.Restore(ctx, each([]Record{
		{Ban: actions.Ban{Jail: "gone", Addr: a1, BannedAt: t0, Expires: t0.Add(time.Hour)}},
		{Ban: actions.Ban{Jail: "gone", Addr: a2, BannedAt: t0, Expires: t0.Add(time.Hour)}},
		{Ban: actions.Ban{Jail: "sasl", Addr: a2, BannedAt: t0, Expires: t0.Add(time.Hour)}},
	}))
	settle(t, m)
	if held, _ := chains.Holds(ctx, "gone"); len(held) != 0 {
		t.Errorf("the removed jail's chain still holds %v", held)
	}
	if held, _ := routes.Holds(ctx, ""); !slices.Equal(held, hosts(a2)) {
		t.Errorf("routes hold %v, want only %v, which sasl still bans", held, a2)
	}
}
