package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logban/logban/internal/control"
)

// mobileConfig has two rate jails keyed by device on the proxy's access log, with
// Carbonio Mobile's anti-DoS defaults: one bans the device alone, the other the
// addresses it sent from too.
const mobileConfig = `
[server]
socket = "run/logban.sock"
database = "run/logban.db"
metrics = "127.0.0.1:0"

[actions.log]
type = "log"
path = "bans.log"

[jails.mobile]
filter = "zimbra-activesync"
logpath = ["nginx.access.log"]
mode = "rate"
key = "device"
maxretry = 150
findtime = "30s"
bantime = "10m"
actions = ["log"]

[jails.mobile-addrs]
filter = "zimbra-activesync"
logpath = ["nginx.access.log"]
mode = "rate"
key = "device"
ban_addresses = true
maxretry = 150
findtime = "30s"
bantime = "10m"
actions = ["log"]
`

// activeSync appends n ActiveSync requests of device (none if "") from addrs in turn,
// spread evenly over the span before at.
func (h *harness) activeSync(device string, addrs []string, n int, at time.Time, span time.Duration) {
	h.t.Helper()
	var b strings.Builder
	for i := range n {
		t := at.Add(-span + span*time.Duration(i)/time.Duration(n))
		query := "User=anna&DeviceType=iPhone&Cmd=Ping"
		if device != "" {
			query += "&DeviceId=" + device
		}
		fmt.Fprintf(&b, "%s:%d - - [%s]  \"POST https://mail.example.com/Microsoft-Server-ActiveSync?%s HTTP/1.1\" 200 250 \"-\" \"Apple-iPhone9C1/1602.92\" \"192.0.2.20:8080\" \"192.0.2.10:443\"\n",
			addrs[i%len(addrs)], 40000+i, t.Format("02/Jan/2006:15:04:05 -0700"), query)
	}
	f, err := os.OpenFile(filepath.Join(h.dir, "nginx.access.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(b.String()); err != nil {
		h.t.Fatal(err)
	}
}

// A device sending 150 requests within 30 s is banned for 10 minutes, whatever its
// addresses: the log action hears of it with the device named, and of its end; its
// addresses are banned only in the jail that says ban_addresses. A device under the
// rate, and requests naming no device, ban nothing. The ban survives a restart.
func TestDeviceRateJail(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	clock := &stoppedClock{}
	clock.at.Store(&now)
	h := start(t, mobileConfig, Options{Clock: clock})
	office := []string{"203.0.113.10", "203.0.113.11", "2001:db8::11"}
	h.activeSync("SEC1QUIET", office[:1], 149, now, 29*time.Second)
	h.activeSync("", office[:1], 400, now, 29*time.Second)
	h.activeSync("ApplF17XK0ZZHG7F", office, 150, now, 29*time.Second)
	s := h.waitFor("mobile", func(s control.JailStatus) bool { return len(s.KeyBans) == 1 })
	if b := s.KeyBans[0]; b.Key != "ApplF17XK0ZZHG7F" || b.Kind != "device" || b.Count != 150 || len(b.Addrs) != 3 || !b.Expires.Equal(now.Add(10*time.Minute)) {
		t.Errorf("the device's ban: %+v", b)
	}
	hasMetrics(t, metricsText(t, h), `logban_jail_key_bans_active{jail="mobile"} 1`)
	if s.CurrentlyBanned != 0 || s.Mode != "rate" || s.Key != "device" {
		t.Errorf("mobile: %d addresses banned (want none), mode %q, key %q", s.CurrentlyBanned, s.Mode, s.Key)
	}
	s = h.waitFor("mobile-addrs", func(s control.JailStatus) bool { return len(s.KeyBans) == 1 && s.CurrentlyBanned == 3 })
	if got := strings.Join(bannedAddrs(s), " "); got != "203.0.113.10 203.0.113.11 2001:db8::11" {
		t.Errorf("mobile-addrs banned %s", got)
	}
	want := `notice jail=mobile kind=device-ban addr=2001:db8::11 user="anna" device=ApplF17XK0ZZHG7F what="device ApplF17XK0ZZHG7F: 150 requests within 30s, from 3 addresses"`
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(h.banLog(), want) && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
	}
	if log := h.banLog(); strings.Count(log, want) != 1 || strings.Contains(log, "SEC1QUIET") {
		t.Errorf("the log action's file:\n%s\nwant one %s", log, want)
	}

	// By hand: one jail's device ban lifted; asked again, it is not banned.
	if b, err := h.client.UnbanKey(ctx, "mobile-addrs", "ApplF17XK0ZZHG7F"); err != nil || b.Key != "ApplF17XK0ZZHG7F" {
		t.Fatalf("unbankey: %+v %v", b, err)
	}
	if _, err := h.client.UnbanKey(ctx, "mobile-addrs", "ApplF17XK0ZZHG7F"); err == nil || !strings.Contains(err.Error(), "not banned") {
		t.Errorf("unbankey twice: %v", err)
	}

	h.shutdown()
	h.run(Options{Clock: clock})
	if s := h.waitFor("mobile", func(control.JailStatus) bool { return true }); len(s.KeyBans) != 1 {
		t.Fatalf("after a restart: %+v", s.KeyBans)
	}
	if s := h.waitFor("mobile-addrs", func(control.JailStatus) bool { return true }); len(s.KeyBans) != 0 {
		t.Fatalf("after a restart, the ban lifted by hand is back: %+v", s.KeyBans)
	}

	later := now.Add(10 * time.Minute)
	clock.at.Store(&later)
	h.waitFor("mobile", func(s control.JailStatus) bool { return len(s.KeyBans) == 0 })
	ended := `kind=device-unban addr=2001:db8::11 user="anna" device=ApplF17XK0ZZHG7F what="ban ended: expired"`
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(h.banLog(), ended) && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
	}
	if !strings.Contains(h.banLog(), ended) {
		t.Errorf("no notice of the ban's end:\n%s", h.banLog())
	}
}
