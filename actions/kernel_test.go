package actions

import (
	"context"
	"flag"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/logban/logban/internal/netnstest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with the kernel state the tests see")

// golden compares got with testdata/NAME.golden, or rewrites it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("kernel state differs from %s:\n--- got\n%s--- want\n%s", path, got, want)
	}
}

var quiet = slog.New(slog.DiscardHandler)

func ban(addr netip.Addr, jail string) Ban {
	now := time.Now()
	return Ban{Jail: jail, Addr: addr, Failures: 3, BannedAt: now, Expires: now.Add(time.Hour)}
}

// checkBlocking bans and unbans each client address through a, checking the connection
// from it at each step, and that the client's other address is never blocked. between
// runs while both addresses are banned.
func checkBlocking(t *testing.T, lab *netnstest.Lab, a Action, jail string, between func()) {
	t.Helper()
	ctx := context.Background()
	port := lab.Listen()
	pairs := [][2]netip.Addr{{netnstest.Client4, netnstest.Other4}, {netnstest.Client6, netnstest.Other6}}
	for _, p := range pairs {
		if err := lab.Reachable(p[0], port); err != nil {
			t.Fatalf("before the ban, %v cannot connect: %v", p[0], err)
		}
	}
	for _, p := range pairs {
		var err error
		lab.Do(func() {
			if err = a.Ban(ctx, ban(p[0], jail)); err == nil {
				err = a.Ban(ctx, ban(p[0], jail)) // twice is once
			}
		})
		if err != nil {
			t.Fatalf("ban %v: %v", p[0], err)
		}
		if err := lab.Connect(p[0], port); err == nil {
			t.Errorf("banned %v still connects", p[0])
		}
		if err := lab.Reachable(p[1], port); err != nil {
			t.Errorf("%v, not banned, cannot connect: %v", p[1], err)
		}
	}
	between()
	for _, p := range pairs {
		var err error
		lab.Do(func() {
			if err = a.Unban(ctx, ban(p[0], jail)); err == nil {
				err = a.Unban(ctx, ban(p[0], jail)) // unban of an absent ban is fine
			}
		})
		if err != nil {
			t.Fatalf("unban %v: %v", p[0], err)
		}
		if err := lab.Reachable(p[0], port); err != nil {
			t.Errorf("after unban, %v cannot connect: %v", p[0], err)
		}
	}
}

// routes returns the lab server's routes of logban's protocol, both families.
func routes(lab *netnstest.Lab) string {
	return lab.Run("ip", "-4", "route", "show", "table", "all", "proto", "178") +
		lab.Run("ip", "-6", "route", "show", "table", "all", "proto", "178")
}

func TestRouteInTheKernel(t *testing.T) {
	for _, typ := range []string{"blackhole", "unreachable", "prohibit"} {
		t.Run(typ, func(t *testing.T) {
			lab := netnstest.New(t)
			opts := &RouteOptions{Type: typ, Table: 254, Protocol: DefaultRouteProtocol}
			if err := opts.Validate(); err != nil {
				t.Fatal(err)
			}
			r := NewRoute(*opts, quiet)
			ctx := context.Background()
			var err error
			lab.Do(func() { err = r.Start(ctx) })
			if err != nil {
				t.Fatal(err)
			}
			checkBlocking(t, lab, r, "sasl", func() {
				golden(t, "route-"+typ, routes(lab))
				var got []netip.Addr
				lab.Do(func() { got, err = r.Banned() })
				if err != nil || len(got) != 2 || got[0] != netnstest.Client4 || got[1] != netnstest.Client6 {
					t.Errorf("Banned() = %v, %v", got, err)
				}
			})
			// Stop removes logban's routes and nothing else.
			lab.Run("ip", "route", "add", "blackhole", "198.51.100.9/32")
			lab.Do(func() {
				r.Ban(ctx, ban(netnstest.Client4, "sasl"))
				err = r.Stop(ctx)
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := routes(lab); got != "" {
				t.Errorf("routes left after stop:\n%s", got)
			}
			if !regexp.MustCompile(`blackhole 198\.51\.100\.9`).MatchString(lab.Run("ip", "route")) {
				t.Error("stop removed a route that was not logban's")
			}
		})
	}
}
