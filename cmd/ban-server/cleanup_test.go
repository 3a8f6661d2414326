package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/netnstest"
	"github.com/logban/logban/internal/testenv"
)

func TestCleanupCommand(t *testing.T) {
	testenv.RequireTool(t, "iptables", "iptables")
	lab := netnstest.New(t)
	ctx := context.Background()
	now := time.Now()
	ban := actions.Ban{Jail: "sasl", Addr: netnstest.Client4, BannedAt: now, Expires: now.Add(time.Hour)}
	lab.Do(func() {
		ipt, _ := actions.NewIPTables(actions.FirewallOptions{Chain: "INPUT", Protocol: "all", BlockType: "DROP"}, quietLogger)
		set := actions.NewIPSet(actions.FirewallOptions{Chain: "INPUT", Protocol: "all", BlockType: "DROP"}, quietLogger)
		route := actions.NewRoute(actions.RouteOptions{Type: "blackhole", Table: 254, Protocol: actions.DefaultRouteProtocol}, quietLogger)
		for _, a := range []actions.Action{ipt, set, route} {
			if err := a.Ban(ctx, ban); err != nil {
				t.Error(err)
			}
		}
	})
	state := func() string {
		return lab.Run("iptables", "-S") + lab.Run("ipset", "list", "-n") + lab.Run("ip", "route", "show", "proto", "178")
	}
	if !strings.Contains(state(), "logban-sasl") {
		t.Fatalf("nothing to clean:\n%s", state())
	}
	var out bytes.Buffer
	var err error
	lab.Do(func() {
		err = run(ctx, []string{"-cleanup", "-config", filepath.Join(t.TempDir(), "none.toml")}, &out, &out)
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if got := state(); strings.Contains(got, "logban") || strings.Contains(got, "192.0.2.2") {
		t.Errorf("left after -cleanup:\n%s", got)
	}
	for _, kind := range []string{"cleaned: route (defaults)", "cleaned: iptables (defaults)", "cleaned: ipset (defaults)"} {
		if !strings.Contains(out.String(), kind) {
			t.Errorf("output lacks %q:\n%s", kind, out.String())
		}
	}
}
