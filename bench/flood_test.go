package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/logban/logban/internal/control"
)

// BenchmarkFloodMemory runs ban-server on a log that floods one of a jail's tables, and
// reports its resident memory once every line is read: each flood is 2,000,000 lines
// from distinct clients, failing once each, written by an attacker who wants the
// server's memory. A bounded table keeps max_tracked entries (500,000 by default)
// whatever comes.
//
//   - ipv4: distinct IPv4 addresses (the failure windows);
//   - ipv6-64: distinct IPv6 addresses, each in its own /64, in a jail with [subnet]
//     (the windows and the networks);
//   - accounts: one address, a new 200-byte account name on each line, in a jail keyed
//     by user (the keys).
func BenchmarkFloodMemory(b *testing.B) {
	const lines = 2_000_000
	floods := []struct {
		name string
		line func(i int) string
		jail string
	}{
		{"ipv4", func(i int) string {
			return failure(netip.AddrFrom4([4]byte{10 + byte(i>>24), byte(i >> 16), byte(i >> 8), byte(i)}))
		}, `filter = "zimbra-submission"`},
		{"ipv6-64", func(i int) string {
			return failure(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i), 15: 1}))
		}, "filter = \"zimbra-submission\"\n[jails.flood.subnet]\nipv4 = 24\nipv6 = 64\naddresses = 5"},
		{"accounts", func(i int) string {
			return fmt.Sprintf("auth failed for user %0200d from 203.0.113.%d\n", i, 1+i%250)
		}, "filter = \"userauth\"\nkey = \"user\"\nban_addresses = false\nnotify = [\"log\"]"},
	}
	for _, fl := range floods {
		b.Run(fl.name, func(b *testing.B) {
			dir := b.TempDir()
			log := filepath.Join(dir, "flood.log")
			writeLines(b, log, lines, fl.line)
			bin := buildServer(b, dir)
			conf := filepath.Join(dir, "logban.toml")
			writeFile(b, conf, fmt.Sprintf(`
[server]
socket = %q
database = %q
loglevel = "error"
[actions.log]
type = "log"
path = %q
[filters.userauth]
failregex = ['^auth failed for user <USER> from <HOST>$']
[jails.flood]
logpath = [%q]
start = "beginning"
maxretry = 5
findtime = "1d"
bantime = "1d"
actions = ["log"]
%s
`, filepath.Join(dir, "logban.sock"), filepath.Join(dir, "logban.db"), filepath.Join(dir, "bans.log"), log, fl.jail))
			for b.Loop() {
				os.Remove(filepath.Join(dir, "logban.db"))
				cmd := exec.Command(bin, "-config", conf)
				cmd.Stderr = os.Stderr
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				c := control.NewClient(filepath.Join(dir, "logban.sock"))
				start := time.Now()
				for {
					st, err := c.JailStatusBrief(context.Background(), "flood")
					if err == nil && st.TotalFailed >= lines && behind(st) == 0 || time.Since(start) > 3*time.Minute {
						break
					}
					time.Sleep(200 * time.Millisecond)
				}
				time.Sleep(5 * time.Second) // steady state
				r := residentKiB(b, cmd.Process.Pid)
				st, _ := c.JailStatusBrief(context.Background(), "flood")
				cmd.Process.Signal(os.Interrupt)
				cmd.Wait()
				b.ReportMetric(float64(r.now)/1024, "RSS-MiB")
				b.ReportMetric(float64(r.anon)/1024, "anon-MiB")
				b.ReportMetric(float64(r.peak)/1024, "peak-RSS-MiB")
				b.ReportMetric(float64(st.CurrentlyFailed), "tracked")
				b.ReportMetric(float64(st.Evicted), "evicted")
			}
		})
	}
}

// behind is how many bytes of its files a jail has still to read.
func behind(st control.JailStatus) int64 {
	var n int64
	for _, f := range st.Files {
		n += f.Behind
	}
	return n
}
