package jails

import (
	"context"
	"testing"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/netnstest"
)

// Two jails ban one address through one null route: the address stays blocked until the
// second ban ends, as the kernel sees it.
func TestSharedRouteHoldsUntilBothBansEnd(t *testing.T) {
	lab := netnstest.New(t)
	port := lab.Listen()
	ctx := context.Background()
	clock := &fakeClock{now: t0}
	m := newManager(clock)
	route := actions.NewRoute(actions.RouteOptions{Type: "blackhole", Table: 254, Protocol: actions.DefaultRouteProtocol}, m.logger)
	addr := netnstest.Client4
	lab.Do(func() {
		m.SetJail(ctx, "submission", BanPolicy{BanTime: 10 * time.Minute}, []NamedAction{{"blackhole", route}})
		m.SetJail(ctx, "mailbox", BanPolicy{BanTime: time.Hour}, []NamedAction{{"blackhole", route}})
		m.Ban(ctx, Ticket{Jail: "submission", Addr: addr})
		m.Ban(ctx, Ticket{Jail: "mailbox", Addr: addr})
	})
	if lab.Connect(addr, port) == nil {
		t.Fatal("banned address connects")
	}
	clock.Advance(10 * time.Minute)
	lab.Do(func() { m.ExpireDue(ctx) })
	if lab.Connect(addr, port) == nil {
		t.Error("one jail's ban ended and the address is free, though the other jail still bans it")
	}
	clock.Advance(time.Hour)
	lab.Do(func() { m.ExpireDue(ctx) })
	if err := lab.Reachable(addr, port); err != nil {
		t.Errorf("both bans ended and the address is still blocked: %v", err)
	}
}
