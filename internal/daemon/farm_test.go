package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/control"
	"github.com/logban/logban/internal/natsserver/natstest"
)

// TestSingleHostNeverDials runs a daemon without [farm] beside a listener on NATS's
// port: it bans, and nothing ever connects.
func TestSingleHostNeverDials(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:4222")
	if err != nil {
		t.Skipf("NATS's port is taken here, so a dial could not be seen: %v", err)
	}
	defer ln.Close()
	dialed := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
			dialed <- struct{}{}
		}
	}()
	h := start(t, baseConfig, Options{})
	h.fail("203.0.113.5", 3)
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 1 })
	if _, err := h.client.Farm(context.Background()); !isNotFound(err) {
		t.Errorf("farm status without [farm]: %v; want not found", err)
	}
	h.shutdown()
	ln.Close()
	select {
	case <-dialed:
		t.Fatal("a single-host daemon dialled NATS's port")
	default:
	}
	if h.d.farm != nil {
		t.Fatal("a daemon without [farm] made a farm membership")
	}
}

func isNotFound(err error) bool {
	var re *control.RemoteError
	return errors.As(err, &re) && re.Code == control.CodeNotFound
}

// farmConfig is a node of a farm on servers, with the log action; enforce as given.
func farmConfig(node string, servers []string, enforce bool) string {
	return fmt.Sprintf(`
[server]
socket = "run/logban.sock"
database = "run/logban.db"
metrics = "127.0.0.1:0"

[farm]
name = "test"
node = %q
servers = ["%s"]
enforce = %v

[actions.log]
type = "log"
path = "bans.log"

[jails.sasl]
filter = "zimbra-submission"
logpath = ["zimbra.log"]
maxretry = 5
findtime = "1h"
bantime = "10h"
actions = ["log"]
`, node, strings.Join(servers, `", "`), enforce)
}

// TestDaemonsOfAFarmCountTogetherAndShareBans runs three daemons from their
// configurations on a real three-server cluster: failures logged on each add up to one
// ban, which every enforcing daemon applies through its action and a detect-only one
// does not; an unban on one lifts it everywhere.
func TestDaemonsOfAFarmCountTogetherAndShareBans(t *testing.T) {
	c := natstest.Start(t, 3)
	var hs []*harness
	for i, node := range []string{"mta1", "mta2", "mbox1"} {
		hs = append(hs, start(t, farmConfig(node, append([]string{c.URL(i)}, c.URLs()...), node != "mbox1"), Options{}))
	}
	for _, h := range hs {
		waitFarm(t, h, func(s control.FarmStatus) bool { return s.State == "connected" && s.Synced && len(s.Nodes) == 2 })
	}
	var wg sync.WaitGroup
	for _, h := range hs {
		wg.Go(func() { h.fail("203.0.113.5", 2) }) // 6 failures in the farm, none of the hosts reaches 5
	}
	wg.Wait()
	mta1, mta2, mbox := hs[0], hs[1], hs[2]
	for _, h := range []*harness{mta1, mta2} {
		s := h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 1 })
		if b := s.Bans[0]; b.Why != "5 failures across the farm" || b.By == "" {
			t.Errorf("ban held as decided by %q for %q", b.By, b.Why)
		}
		waitText(t, h.banLog, " ban ")
	}
	// When two hosts decide at once, the one that lost the race takes the farm's
	// decision once its watch delivers it: the hosts agree on one decider soon after.
	var decided map[string]bool
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		decided = map[string]bool{}
		for _, h := range hs {
			bans, _ := h.client.List(context.Background(), "sasl")
			for _, b := range bans {
				decided[b.By] = true
			}
		}
		if len(decided) == 1 || time.Now().After(deadline) {
			break
		}
	}
	if len(decided) != 1 {
		t.Errorf("bans held as decided by %v; want one node", decided)
	}
	for i, node := range []string{"mta1", "mta2", "mbox1"} {
		if !decided[node] {
			continue
		}
		// The decider records the lines it read of the address, as a ban decided on
		// one host does, and its jail forgets them.
		why, err := hs[i].client.Why(context.Background(), netip.MustParsePrefix("203.0.113.5/32"))
		if err != nil || len(why.Bans) != 1 || len(why.Bans[0].Lines) != 2 {
			t.Errorf("%s decided the ban and shows %+v (%v); want the 2 lines it read", node, why.Bans, err)
		}
	}
	if by := firstKey(decided); by != "mbox1" {
		if n := strings.Count(mbox.banLog(), " ban "); n != 0 {
			t.Errorf("the detect-only node applied %d farm bans decided by %s", n, by)
		}
	}

	if _, err := mta2.client.UnbanIP(context.Background(), "", actions.Host(netip.MustParseAddr("203.0.113.5"))); err != nil {
		t.Fatal(err)
	}
	mta1.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 0 })
	waitText(t, mta1.banLog, " unban ")
	fs, err := mta1.client.Farm(context.Background())
	if err != nil || fs.Outbox != 0 || fs.Node != "mta1" || fs.Nodes[0].Name != "mbox1" {
		t.Errorf("farm status %+v, %v", fs, err)
	}
	// unban --all --local lifts every ban on one host only.
	mta1.fail("203.0.113.6", 5)
	mta2.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 1 })
	if n, err := mta2.client.UnbanAllHere(context.Background()); n != 1 || err != nil {
		t.Fatalf("unban --all --local: %d, %v", n, err)
	}
	if s, _ := mta1.client.JailStatus(context.Background(), "sasl"); s.CurrentlyBanned != 1 {
		t.Errorf("unban --all --local on mta2 lifted mta1's ban")
	}
	if fs, _ := mta2.client.Farm(context.Background()); fs.Outbox != 0 || fs.Bans != 1 {
		t.Errorf("after unban --all --local on mta2 the farm holds %d bans and the outbox %d; want 1 and 0", fs.Bans, fs.Outbox)
	}

	// mta1 decided the second ban itself: it has published one at least.
	wants := []string{"logban_farm_connected 1\n", "logban_farm_outbox 0\n",
		`logban_farm_failures_total{shared="yes"} 7` + "\n", // 2 of the first address, 5 of the second
		`logban_farm_latency_seconds_count{stage="publish"} `}
	waitText(t, func() string {
		resp, err := http.Get("http://" + mta1.d.MetricsAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, want := range wants {
			if !strings.Contains(string(body), want) {
				return "lacks " + want
			}
		}
		return "every farm metric"
	}, "every farm metric")
}

func firstKey(m map[string]bool) string {
	for k := range m {
		return k
	}
	return ""
}

func waitFarm(t *testing.T, h *harness, cond func(control.FarmStatus) bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s, err := h.client.Farm(context.Background())
		if err == nil && cond(s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("farm status %+v, %v", s, err)
		}
	}
}

func waitText(t *testing.T, read func() string, text string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(read(), text); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never %q in %q", text, read())
		}
	}
}
