package jails

import (
	"context"
	"testing"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/netnstest"
)

// labRoute is a null-route action whose calls act in a lab's server namespace, whatever
// thread the action's worker runs on.
type labRoute struct {
	*actions.Route
	lab *netnstest.Lab
}

func (r labRoute) Ban(ctx context.Context, b actions.Ban) (err error) {
	r.lab.Do(func() { err = r.Route.Ban(ctx, b) })
	return err
}

func (r labRoute) Unban(ctx context.Context, b actions.Ban) (err error) {
	r.lab.Do(func() { err = r.Route.Unban(ctx, b) })
	return err
}

// Two jails ban one address through one null route: the address stays blocked until the
// second ban ends, as the kernel sees it.
func TestSharedRouteHoldsUntilBothBansEnd(t *testing.T) {
	lab := netnstest.New(t)
	port := lab.Listen()
	ctx := context.Background()
	clock := &fakeClock{now: t0}
	m := newManager(clock)
	route := labRoute{actions.NewRoute(actions.RouteOptions{Type: "blackhole", Table: 254, Protocol: actions.DefaultRouteProtocol}, m.logger), lab}
	lab.Do(func() {
		if err := route.Start(ctx); err != nil { // its netlink socket opens in the lab
			t.Fatal(err)
		}
	})
	addr := netnstest.Client4
	m.SetJail(ctx, "submission", BanPolicy{BanTime: 10 * time.Minute}, []NamedAction{{"blackhole", route}})
	m.SetJail(ctx, "mailbox", BanPolicy{BanTime: time.Hour}, []NamedAction{{"blackhole", route}})
	ban(m, Ticket{Jail: "submission", Addr: addr})
	ban(m, Ticket{Jail: "mailbox", Addr: addr})
	settle(t, m)
	if lab.Connect(addr, port) == nil {
		t.Fatal("banned address connects")
	}
	clock.Advance(10 * time.Minute)
	m.ExpireDue(ctx)
	settle(t, m)
	if lab.Connect(addr, port) == nil {
		t.Error("one jail's ban ended and the address is free, though the other jail still bans it")
	}
	clock.Advance(time.Hour)
	m.ExpireDue(ctx)
	settle(t, m)
	if err := lab.Reachable(addr, port); err != nil {
		t.Errorf("both bans ended and the address is still blocked: %v", err)
	}
}
