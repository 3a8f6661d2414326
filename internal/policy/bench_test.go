package policy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkPolicyRequests sends policy requests over 100 connections at once, as 100
// smtpd processes of a busy MTA do, each waiting for its answer before the next, and
// reports requests/s and the latency of a request (p50, p99) as Postfix sees it. The
// policy has a quota and compromised-account detection on, and a ban lookup.
//
// saturated: each connection sends its next request as soon as it has its answer (the
// most the server answers; by Little's law the latency is then 100 over that rate).
// 20k-per-second: each connection sends one request every 5 ms, 20,000 a second in
// all, as a busy MTA's smtpd processes do: the latency a request sees at that load.
func BenchmarkPolicyRequests(b *testing.B) {
	for _, tt := range []struct {
		name  string
		every time.Duration
	}{{"saturated", 0}, {"20k-per-second", 5 * time.Millisecond}} {
		b.Run(tt.name, func(b *testing.B) { benchPolicy(b, tt.every) })
	}
}

func benchPolicy(b *testing.B, every time.Duration) {
	const conns = 100
	c := &clock{time.Now()}
	p := New(Settings{RejectBanned: "REJECT", Default: "DUNNO",
		Quotas:      []Quota{{Name: "outbound", Key: "sasl_username", Messages: 1 << 30, Window: time.Hour, Action: "DEFER_IF_PERMIT"}},
		Compromised: Compromised{Addresses: 10, Window: time.Hour}},
		Deps{Now: c.Now, Banned: quotaPolicy(c).deps.Banned})
	addr, _ := serve(b, p, time.Second)
	var mu sync.Mutex
	var lat []time.Duration
	per := max(b.N/conns, 1)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			defer conn.Close()
			r := bufio.NewReader(conn)
			mine := make([]time.Duration, 0, per)
			next := time.Now().Add(time.Duration(i) * every / conns) // spread over the interval
			for k := range per {
				if every > 0 {
					time.Sleep(time.Until(next))
					next = next.Add(every)
				}
				state := "RCPT"
				if k%4 == 0 {
					state = "DATA"
				}
				req := request(state, fmt.Sprintf("198.51.%d.%d", i, k%250))
				t0 := time.Now()
				io.WriteString(conn, req)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						b.Error(err)
						return
					}
					if line == "\n" {
						break
					}
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	took := time.Since(start)
	slices.Sort(lat)
	if len(lat) == 0 {
		return
	}
	b.ReportMetric(float64(len(lat))/took.Seconds(), "requests/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
