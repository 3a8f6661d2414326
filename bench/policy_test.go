package bench

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logban/logban/internal/policy"
)

// BenchmarkPolicyService sends Postfix policy requests over 100 connections at once, as
// 100 smtpd processes of a busy MTA do, each waiting for its answer before its next,
// to logban's policy service (over TCP, and over a unix socket) and, side by side, to
// postfwd (Debian's postfwd 1.35,
// apt-get install postfwd) with the same quota as a rate limit; it reports requests/s
// and the latency Postfix sees (p50, p99). Each service has a quota per SASL user
// that no request reaches; logban also looks each client up among its bans and keeps
// the logins for compromised-account detection.
//
// floor and floor-unix-socket are no service at all: a responder that answers DUNNO to
// each request without reading it. They show what the load and the machine cost alone,
// the least latency any service could show here.
//
// saturated: each connection sends its next request as soon as it has its answer: the
// most the service answers (by Little's law the latency is then 100 over that rate).
// 20k-per-second: each connection sends one request every 5 ms, 20,000 a second in all:
// the latency at that load. Load and service share the machine's cores.
func BenchmarkPolicyService(b *testing.B) {
	services := []struct {
		name  string
		start func(b *testing.B) string
	}{
		{"floor", func(b *testing.B) string { return startFloor(b, "tcp", "127.0.0.1:0") }},
		{"floor-unix-socket", func(b *testing.B) string {
			return "unix:" + startFloor(b, "unix", filepath.Join(b.TempDir(), "floor.sock"))
		}},
		{"logban", startLogbanPolicy}, {"logban-unix-socket", startLogbanPolicyUnix}, {"postfwd", startPostfwd},
	}
	for _, s := range services {
		for _, load := range []struct {
			name  string
			every time.Duration
		}{{"saturated", 0}, {"20k-per-second", 5 * time.Millisecond}} {
			b.Run(s.name+"/"+load.name, func(b *testing.B) { policyLoad(b, s.start(b), load.every) })
		}
	}
}

func startLogbanPolicy(b *testing.B) string { return startLogbanPolicyOn(b, "tcp", "127.0.0.1:0") }

// startLogbanPolicyUnix serves on a unix socket, as a Postfix on the same host may ask
// (check_policy_service unix:private/logban): no TCP stack between them.
func startLogbanPolicyUnix(b *testing.B) string {
	return "unix:" + startLogbanPolicyOn(b, "unix", filepath.Join(b.TempDir(), "policy.sock"))
}

func startLogbanPolicyOn(b *testing.B, network, address string) string {
	p := policy.New(policy.Settings{RejectBanned: "REJECT", Default: "DUNNO",
		Quotas:      []policy.Quota{{Name: "outbound", Key: "sasl_username", Messages: 1 << 30, Window: time.Hour, Action: "DEFER_IF_PERMIT"}},
		Compromised: policy.Compromised{Addresses: 10, Window: time.Hour}},
		policy.Deps{Banned: func(netip.Addr) (string, bool) { return "", false }})
	ln, err := net.Listen(network, address)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- policy.NewServer(p, time.Second, slog.New(slog.DiscardHandler)).Serve(ctx, ln) }()
	b.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

// startFloor answers DUNNO to each request on network and address, reading no more
// than its end, until the benchmark ends.
func startFloor(b *testing.B, network, address string) string {
	ln, err := net.Listen(network, address)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				r := bufio.NewReader(conn)
				for {
					line, err := r.ReadSlice('\n')
					if err != nil {
						return
					}
					if len(line) == 1 {
						conn.Write([]byte("action=DUNNO\n\n"))
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// startPostfwd runs postfwd1 on a free loopback port with one rate limit per SASL user,
// and stops it when the benchmark ends.
func startPostfwd(b *testing.B) string {
	bin, err := exec.LookPath("postfwd1")
	if err != nil {
		b.Skip("postfwd is not installed (apt-get install postfwd)")
	}
	dir := b.TempDir()
	rules := filepath.Join(dir, "rules.cf")
	writeFile(b, rules, "id=QUOTA; sasl_username=~.; action=rate(sasl_username/1000000000/3600/DEFER_IF_PERMIT quota)\n")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	pidfile := filepath.Join(dir, "postfwd.pid")
	if out, err := exec.Command(bin, "-d", "-f", rules, "-i", "127.0.0.1", "-p", strconv.Itoa(port), "-u", "nobody", "-g", "nogroup",
		"--pidfile", pidfile).CombinedOutput(); err != nil {
		b.Fatalf("postfwd: %v\n%s", err, out)
	}
	b.Cleanup(func() {
		if pid, err := os.ReadFile(pidfile); err == nil {
			if n, err := strconv.Atoi(strings.TrimSpace(string(pid))); err == nil {
				syscall.Kill(n, syscall.SIGTERM)
			}
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitFor(b, "postfwd to answer", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

// policyLoad sends b.N requests over 100 connections to addr, each connection one
// request every every (0: at once after the last answer), and reports the figures.
func policyLoad(b *testing.B, addr string, every time.Duration) {
	const conns = 100
	per := max(b.N/conns, 1)
	var mu sync.Mutex
	var lat []time.Duration
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			network, address := "tcp", addr
			if path, ok := strings.CutPrefix(addr, "unix:"); ok {
				network, address = "unix", path
			}
			conn, err := net.Dial(network, address)
			if err != nil {
				b.Error(err)
				return
			}
			defer conn.Close()
			r := bufio.NewReader(conn)
			// The load allocates little of its own: it shares the process, and its
			// garbage would be collected in the service's time.
			var reqs [250][]byte
			for k := range reqs {
				state := "RCPT"
				if k%4 == 0 {
					state = "DATA"
				}
				reqs[k] = fmt.Appendf(nil, "request=smtpd_access_policy\nprotocol_state=%s\nclient_address=198.51.%d.%d\nsasl_username=user%d@example.com\nrecipient_count=1\n\n",
					state, i, k, i)
			}
			mine := make([]time.Duration, 0, per)
			next := time.Now().Add(time.Duration(i) * every / conns) // spread over the interval
			for k := range per {
				if every > 0 {
					time.Sleep(time.Until(next))
					next = next.Add(every)
				}
				t0 := time.Now()
				conn.Write(reqs[k%len(reqs)])
				for {
					line, err := r.ReadSlice('\n')
					if err != nil {
						b.Error(err)
						return
					}
					if len(line) == 1 {
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
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(len(lat))/took.Seconds(), "requests/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
