package daemon

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// zimbraLines returns n zimbra.log lines stamped now: 5% SASL failures from 2,000
// attackers, the rest ordinary Postfix traffic, as genlogs.py writes them. It also
// returns how many attackers failed at least three times.
func zimbraLines(n int) ([]byte, int) {
	r := rand.New(rand.NewPCG(1, 2))
	stamp := time.Now().Format(time.Stamp)
	attackers := make([]netip.Addr, 2000)
	for i := range attackers {
		attackers[i] = netip.AddrFrom4([4]byte{203, byte(r.IntN(256)), byte(r.IntN(256)), byte(1 + r.IntN(254))})
	}
	fails := map[netip.Addr]int{}
	var b bytes.Buffer
	for i := range n {
		if r.IntN(100) < 5 {
			a := attackers[r.IntN(len(attackers))]
			fails[a]++
			fmt.Fprintf(&b, "%s mta1 postfix/submission/smtpd[%d]: warning: unknown[%s]: SASL LOGIN authentication failed: authentication failure\n", stamp, 1000+i%30000, a)
			continue
		}
		switch i % 3 {
		case 0:
			fmt.Fprintf(&b, "%s mta1 postfix/smtpd[%d]: connect from unknown[198.51.100.%d]\n", stamp, 1000+i%30000, i%250)
		case 1:
			fmt.Fprintf(&b, "%s mta1 postfix/qmgr[%d]: %010X: from=<user%d@example.com>, size=%d, nrcpt=1 (queue active)\n", stamp, 1000+i%30000, i, i%3000, 500+i%90000)
		default:
			fmt.Fprintf(&b, "%s mta1 postfix/submission/smtpd[%d]: %010X: client=unknown[198.51.100.%d], sasl_method=PLAIN, sasl_username=user%d@example.com\n", stamp, 1000+i%30000, i, i%250, i%3000)
		}
	}
	banned := 0
	for _, n := range fails {
		if n >= 3 {
			banned++
		}
	}
	return b.Bytes(), banned
}

// BenchmarkDaemonThroughput runs ban-server's daemon with three jails and the log action
// on one file, appends 1M lines to it at full speed, and reports lines/s until the last
// line is read and every expected ban made. The jails read no logins (a third of the
// lines are): what trusting them costs is BenchmarkServerThroughput/trusting-logins's.
func BenchmarkDaemonThroughput(b *testing.B) {
	const n = 1_000_000
	data, wantBans := zimbraLines(n)
	for b.Loop() {
		dir := b.TempDir()
		cfg := `
[server]
socket = "logban.sock"
database = "logban.db"
loglevel = "error"
[actions.log]
type = "log"
path = "bans.log"
[jails.zimbra-submission]
logpath = ["zimbra.log"]
maxretry = 3
findtime = "1h"
trust_time = 0
actions = ["log"]
[jails.zimbra-smtp-auth]
logpath = ["zimbra.log"]
maxretry = 3
findtime = "1h"
trust_time = 0
actions = ["log"]
[jails.zimbra-mailbox-auth]
logpath = ["zimbra.log"]
trust_time = 0
actions = ["log"]
`
		os.WriteFile(filepath.Join(dir, "logban.toml"), []byte(cfg), 0o644)
		log := filepath.Join(dir, "zimbra.log")
		os.WriteFile(log, nil, 0o644)
		d, err := New(Options{ConfigPath: filepath.Join(dir, "logban.toml"), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		<-d.Ready()
		start := time.Now()
		f, _ := os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0)
		for rest := data; len(rest) > 0; {
			k := min(len(rest), 64<<10)
			f.Write(rest[:k])
			rest = rest[k:]
		}
		f.Close()
		for {
			d.mu.RLock()
			lines := d.readers[log].Stats().Lines
			d.mu.RUnlock()
			c, _ := d.manager.Counts("zimbra-submission")
			if lines == n && c.CurrentlyBanned == wantBans {
				break
			}
			if time.Since(start) > time.Minute {
				b.Fatalf("after a minute: %d lines read, %d bans of %d", lines, c.CurrentlyBanned, wantBans)
			}
			time.Sleep(time.Millisecond)
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "lines/s")
		cancel()
		<-done
	}
}
