// Package bench holds the benchmarks that run whole servers: ban-server, and fail2ban-server
// beside it in the same harness, inside network namespaces the benchmark makes, measured
// from a line written to a log to an address in the kernel. bench/run.sh runs them.
package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/control"
	"github.com/logban/logban/internal/netnstest"
	"github.com/logban/logban/internal/testenv"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// failure is a zimbra.log line for a SASL failure of addr, stamped now.
func failure(addr netip.Addr) string {
	return fmt.Sprintf("%s mta1 postfix/submission/smtpd[4242]: warning: unknown[%s]: SASL LOGIN authentication failed: authentication failure\n",
		time.Now().Format(time.Stamp), addr)
}

// burst is maxretry failures of addr, written at once.
func burst(addr netip.Addr, maxretry int) []byte {
	return []byte(strings.Repeat(failure(addr), maxretry))
}

// trialAddr is the i-th address a benchmark bans: 198.18.0.0/15, the benchmarking range.
func trialAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18 + byte(i>>16&1), byte(i >> 8), byte(i)})
}

// server is a ban server running inside the lab's server namespace.
type server interface {
	// start runs the server on log, banning through null routes after maxretry failures,
	// and returns its process ID.
	start(b *testing.B, lab *netnstest.Lab, dir, log string, maxretry int) int
}

// logban runs ban-server, built for the benchmark.
type logban struct {
	action string
	// hung adds two actions before the ban action in the jail: an exec that hangs for
	// its whole timeout and a webhook to a server that never answers.
	hung bool
}

func (s logban) start(b *testing.B, lab *netnstest.Lab, dir, log string, maxretry int) int {
	bin := buildServer(b, dir)
	hung, acts := "", `["ban"]`
	if s.hung {
		hung = fmt.Sprintf(`
[actions.hung]
type = "exec"
ban = ["sleep", "60"]
unban = ["sleep", "60"]
timeout = "60s"
[actions.hook]
type = "webhook"
url = "http://%s/ban"
timeout = "60s"
`, netnstest.SilentServer(b, lab.Do))
		acts = `["hung", "hook", "ban"]`
	}
	cfg := fmt.Sprintf(`
[server]
socket = %q
database = %q
loglevel = "warn"
[actions.ban]
type = %q
%s
[jails.sasl]
filter = "zimbra-submission"
logpath = [%q]
maxretry = %d
findtime = "1h"
bantime = "1h"
actions = %s
`, filepath.Join(dir, "logban.sock"), filepath.Join(dir, "logban.db"), s.action, hung, log, maxretry, acts)
	conf := filepath.Join(dir, "logban.toml")
	writeFile(b, conf, cfg)
	pid := startProcess(b, lab, filepath.Join(dir, "ban-server.log"), bin, "-config", conf)
	c := control.NewClient(filepath.Join(dir, "logban.sock"))
	waitFor(b, "ban-server to answer", func() bool { return c.Ping(context.Background()) == nil })
	return pid
}

// fail2ban runs Debian's fail2ban-server with the same regex, its route action and its
// pyinotify backend (the fastest it has for a plain file).
type fail2ban struct{}

func (fail2ban) start(b *testing.B, lab *netnstest.Lab, dir, log string, maxretry int) int {
	testenv.RequireTool(b, "fail2ban-server", "fail2ban")
	conf := filepath.Join(dir, "fail2ban")
	files := map[string]string{
		"fail2ban.conf": fmt.Sprintf("[Definition]\nloglevel = WARNING\nlogtarget = %s\nsocket = %s\npidfile = %s\ndbfile = :memory:\n",
			filepath.Join(dir, "fail2ban.log"), filepath.Join(dir, "f2b.sock"), filepath.Join(dir, "f2b.pid")),
		"filter.d/sasl.conf":  "[Definition]\nfailregex = postfix/submission/smtpd\\[\\d+\\]: warning: [-._\\w]+\\[<HOST>\\](?::\\d+)?: SASL [-\\w]+ authentication failed\n",
		"action.d/route.conf": "[Definition]\nactionban = ip route add <blocktype> <ip>\nactionunban = ip route del <blocktype> <ip>\n[Init]\nblocktype = blackhole\n",
		"jail.conf":           fmt.Sprintf("[DEFAULT]\nbackend = pyinotify\n[sasl]\nenabled = true\nfilter = sasl\nlogpath = %s\nmaxretry = %d\nfindtime = 3600\nbantime = 3600\naction = route\n", log, maxretry),
	}
	for name, text := range files {
		writeFile(b, filepath.Join(conf, name), text)
	}
	pid := startProcess(b, lab, filepath.Join(dir, "fail2ban-server.out"), "fail2ban-server", "-f", "-x", "-c", conf)
	waitFor(b, "fail2ban-server's jail to start", func() bool {
		return exec.Command("fail2ban-client", "-c", conf, "status", "sasl").Run() == nil
	})
	return pid
}

// buildServer builds ban-server into dir and returns its path. LOGBAN_BENCH_SERVER, when
// set, names a ban-server built before to copy instead: two builds, run in turn, compare
// a change with what came before it.
func buildServer(b testing.TB, dir string) string {
	bin := filepath.Join(dir, "ban-server")
	if prebuilt := os.Getenv("LOGBAN_BENCH_SERVER"); prebuilt != "" {
		copyFile(b, prebuilt, bin)
		return bin
	}
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/logban/logban/cmd/ban-server").CombinedOutput(); err != nil {
		b.Fatalf("building ban-server: %v\n%s", err, out)
	}
	return bin
}

// copyFile copies the file at from to a new executable file at to, and syncs it, as a
// package's installation does: the kernel writes a dirty page back before it may drop it.
func copyFile(b testing.TB, from, to string) {
	data, err := os.ReadFile(from)
	if err != nil {
		b.Fatal(err)
	}
	f, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
}

// writeFile writes text to path, making its folder.
func writeFile(b testing.TB, path, text string) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		b.Fatal(err)
	}
}

// startProcess starts a command inside the lab's server namespace, its output to out,
// stopped when the benchmark ends, and returns its process id.
func startProcess(b *testing.B, lab *netnstest.Lab, out, name string, args ...string) int {
	f, err := os.Create(out)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	lab.Do(func() { err = cmd.Start() })
	if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(unix.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		f.Close()
		if b.Failed() {
			text, _ := os.ReadFile(out)
			b.Logf("%s said:\n%s", name, text)
		}
	})
	return cmd.Process.Pid
}

func waitFor(b testing.TB, what string, ok func() bool) {
	b.Helper()
	waitWithin(b, 30*time.Second, what, ok)
}

// waitWithin waits up to d for ok, and fails with what if it never holds.
func waitWithin(b testing.TB, d time.Duration, what string, ok func() bool) {
	b.Helper()
	for deadline := time.Now().Add(d); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("waited %v for %s", d, what)
		}
	}
}

// routes reports every null route the kernel adds to the main table in the lab's server
// namespace, as the kernel announces it.
func routes(b *testing.B, lab *netnstest.Lab) <-chan netip.Addr {
	return routesIn(b, lab, unix.RT_TABLE_MAIN)
}

// awaitRoute waits until added reports addr, for at most 30 s.
func awaitRoute(b *testing.B, added <-chan netip.Addr, addr netip.Addr, trial int) {
	timeout := time.After(30 * time.Second)
	for {
		select {
		case a := <-added:
			if a == addr {
				return
			}
		case <-timeout:
			b.Fatalf("trial %d: %v not in the kernel after 30 s", trial, addr)
		}
	}
}

// BenchmarkDetectionLatency measures, per trial, the time from a burst of maxretry
// failures of a new address written to the log to the null route for it in the kernel,
// as the kernel announces it. Run it with -benchtime 1000x: each op is one trial; p50
// and p99 are reported beside the mean (ns/op).
func BenchmarkDetectionLatency(b *testing.B) {
	for _, peer := range []struct {
		name string
		s    server
	}{
		{"logban", logban{action: "route"}},
		{"logban-beside-hung-actions", logban{action: "route", hung: true}},
		{"fail2ban", fail2ban{}},
	} {
		b.Run(peer.name, func(b *testing.B) {
			const maxretry = 3
			lab := netnstest.New(b)
			dir := b.TempDir()
			log := filepath.Join(dir, "zimbra.log")
			writeFile(b, log, "")
			peer.s.start(b, lab, dir, log, maxretry)
			latencyTrials(b, log, routes(b, lab), maxretry)
		})
	}
}

// latencyTrials runs one trial per benchmark op: maxretry failures of a new address
// written to log at once, timed until added reports the address's route. It reports
// p50 and p99 beside the mean.
func latencyTrials(b *testing.B, log string, added <-chan netip.Addr, maxretry int) {
	f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var took []time.Duration
	i := 0
	for b.Loop() {
		addr := trialAddr(i)
		i++
		line := burst(addr, maxretry)
		start := time.Now()
		if _, err := f.Write(line); err != nil {
			b.Fatal(err)
		}
		awaitRoute(b, added, addr, i)
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	b.ReportMetric(float64(percentile(took, 50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(took, 99).Microseconds())/1000, "p99-ms")
}

// percentile returns the p-th percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p+99)/100 - 1
	return sorted[max(i, 0)]
}

// BenchmarkBanBurst writes 10,000 new addresses' maxretry failures to the log at once and
// measures until every one of them is banned in the kernel: a null route announced, or
// an entry in the jail's ipset. Each op is one burst; bans/s is what counts.
func BenchmarkBanBurst(b *testing.B) {
	const n, maxretry = 10_000, 3
	for _, action := range []string{"route", "ipset", "nftables"} {
		b.Run(action, func(b *testing.B) {
			lab := netnstest.New(b)
			dir := b.TempDir()
			log := filepath.Join(dir, "zimbra.log")
			writeFile(b, log, "")
			pid := logban{action: action}.start(b, lab, dir, log, maxretry)
			inKernel := kernelCounter(b, lab, action)
			f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			var took, cpu time.Duration
			first := 0
			for b.Loop() {
				var lines []byte
				for i := first; i < first+n; i++ {
					lines = append(lines, burst(trialAddr(i), maxretry)...)
				}
				first += n
				used := cpuTime(b, pid)
				start := time.Now()
				if _, err := f.Write(lines); err != nil {
					b.Fatal(err)
				}
				for got := 0; got < first; got = inKernel() {
					if time.Since(start) > time.Minute {
						b.Fatalf("after a minute %d of %d addresses in the kernel", got, first)
					}
					time.Sleep(time.Millisecond)
				}
				took += time.Since(start)
				cpu += cpuTime(b, pid) - used
			}
			// What was counted as it came, the kernel's own lists say too.
			if action == "ipset" {
				if listed := ipsetEntries(b, lab); listed != first {
					b.Fatalf("the ipsets list %d entries, their headers counted %d", listed, first)
				}
			}
			if action == "nftables" {
				if listed := nftCounter(b, lab)(); listed != first {
					b.Fatalf("the nftables sets list %d elements, %d were announced", listed, first)
				}
			}
			b.ReportMetric(float64(first)/took.Seconds(), "bans/s")
			// The server's CPU until the last ban is in the kernel (what it records behind
			// included, as far as it got): its own share of a burst, apart from the harness's.
			b.ReportMetric(float64(cpu.Microseconds())/float64(first), "server-cpu-µs/ban")
		})
	}
}

// BenchmarkWriterBurst is an attack as the log's writer sees it: 10,000 new addresses
// failing 4 times each (maxretry 3), each line its own write, as fast as one writer
// goes, into ban-server's log, null routes in a namespace. It reports how far behind the
// writer the bans are: how many addresses were in the kernel when the writer ended, and
// how long after it the last one came.
func BenchmarkWriterBurst(b *testing.B) {
	const n, failures, maxretry = 10_000, 4, 3
	lab := netnstest.New(b)
	dir := b.TempDir()
	log := filepath.Join(dir, "zimbra.log")
	writeFile(b, log, "")
	pid := logban{action: "route"}.start(b, lab, dir, log, maxretry)
	inKernel := kernelCounter(b, lab, "route")
	f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var writing, after, cpu time.Duration
	atEnd, first := 0, 0
	for b.Loop() {
		lines := make([][]byte, 0, n*failures)
		for i := first; i < first+n; i++ {
			line := []byte(failure(trialAddr(i)))
			for range failures {
				lines = append(lines, line)
			}
		}
		before := inKernel()
		used := cpuTime(b, pid)
		start := time.Now()
		for _, line := range lines {
			if _, err := f.Write(line); err != nil {
				b.Fatal(err)
			}
		}
		end := time.Now()
		atEnd += inKernel() - before
		first += n
		for got := inKernel(); got < first; got = inKernel() {
			if time.Since(end) > time.Minute {
				b.Fatalf("a minute after the writer, %d of %d addresses in the kernel", got, first)
			}
			time.Sleep(100 * time.Microsecond)
		}
		writing += end.Sub(start)
		after += time.Since(end)
		cpu += cpuTime(b, pid) - used
		time.Sleep(2 * time.Second) // the burst's records are written before the next
	}
	b.ReportMetric(writing.Seconds()/float64(b.N), "s-writing")
	b.ReportMetric(float64(atEnd)/float64(b.N), "banned-at-writer-end")
	b.ReportMetric(after.Seconds()*1000/float64(b.N), "ms-after-writer")
	b.ReportMetric(float64(cpu.Microseconds())/float64(first), "server-cpu-µs/ban")
}

// cpuTime returns the CPU time, user and system, that process pid has used so far.
func cpuTime(b *testing.B, pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command's name, which is in parentheses and may hold spaces:
	// utime and stime are the 12th and 13th, in clock ticks (100 a second on Linux).
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			b.Fatalf("/proc/%d/stat: %v", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// routeCounter returns a function that counts the null routes logban has added to table
// in the lab's kernel, as the kernel announces them: a count costs nothing, where
// listing 100,000 routes takes the CPU the server needs. The socket's buffer holds a
// whole burst's announcements; if it overflows all the same, the benchmark fails.
func routeCounter(b *testing.B, lab *netnstest.Lab, table int) func() int {
	updates, lost := routeUpdates(b, lab)
	var n atomic.Int64
	go func() {
		for u := range updates {
			if u.Type == unix.RTM_NEWROUTE && u.Table == table && u.Protocol == actions.DefaultRouteProtocol {
				n.Add(1)
			}
		}
	}()
	return func() int {
		if lost() {
			b.Fatal("route announcements were lost: the socket's buffer overflowed")
		}
		return int(n.Load())
	}
}

// kernelCounter returns a function that counts the addresses logban has banned in the
// lab's kernel through action, without listing them: a count must not take the CPU the
// server needs.
func kernelCounter(b *testing.B, lab *netnstest.Lab, action string) func() int {
	if action == "route" {
		return routeCounter(b, lab, unix.RT_TABLE_MAIN)
	}
	if action == "nftables" {
		return nftElementCounter(b, lab)
	}
	return ipsetCounter(b, lab)
}

// nftElementCounter returns a function that counts the set elements nftables adds in
// the lab, as the kernel announces them (one message an element, what nft monitor
// prints): listing every element of the sets at each poll takes the CPU the server needs.
// The socket's buffer holds a whole burst's announcements; if it overflows all the
// same, the benchmark fails. nftables' own Monitor hears the same, but decodes every
// element and hands each over on an unbuffered channel: the harness then takes a fifth
// of the server's speed (44-47k against 53-61k bans/s, in turn), so only the messages'
// headers are read here.
func nftElementCounter(b *testing.B, lab *netnstest.Lab) func() int {
	var fd int
	var err error
	lab.Do(func() {
		if fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER); err != nil {
			return
		}
		if err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20); err != nil {
			return
		}
		err = unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (unix.NFNLGRP_NFTABLES - 1)})
	})
	if err != nil {
		b.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "nftables-monitor") // non-blocking: Close ends a Read
	b.Cleanup(func() { f.Close() })
	var n atomic.Int64
	var lost atomic.Bool
	go func() {
		buf := make([]byte, 1<<20)
		for {
			k, err := f.Read(buf)
			if errors.Is(err, unix.ENOBUFS) {
				lost.Store(true)
				continue
			}
			if err != nil {
				return // closed
			}
			msgs, err := syscall.ParseNetlinkMessage(buf[:k])
			if err != nil {
				continue
			}
			for _, m := range msgs {
				if m.Header.Type == unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWSETELEM {
					n.Add(1)
				}
			}
		}
	}()
	return func() int {
		if lost.Load() {
			b.Fatal("nftables' announcements were lost: the socket's buffer overflowed")
		}
		return int(n.Load())
	}
}

// ipsetCounter returns a function that counts the entries of logban's ipsets in the
// lab, from the sets' headers alone (ipset list -terse): the kernel keeps each set's
// count, where listing 100,000 entries takes the CPU the server needs.
func ipsetCounter(b *testing.B, lab *netnstest.Lab) func() int {
	return func() int {
		var msgs [][]byte
		var err error
		lab.Do(func() {
			req := nl.NewNetlinkRequest(nl.IPSET_CMD_LIST|unix.NFNL_SUBSYS_IPSET<<8, nl.GetIpsetFlags(nl.IPSET_CMD_LIST))
			req.AddData(&nl.Nfgenmsg{NfgenFamily: unix.AF_NETLINK, Version: nl.NFNETLINK_V0})
			req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_PROTOCOL, nl.Uint8Attr(nl.IPSET_PROTOCOL)))
			req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_FLAGS|int(nl.NLA_F_NET_BYTEORDER), binary.BigEndian.AppendUint32(nil, ipsetFlagListHeader)))
			msgs, err = req.Execute(unix.NETLINK_NETFILTER, 0)
		})
		if err != nil {
			b.Fatal(err)
		}
		total := 0
		for _, m := range msgs {
			attrs, err := nl.ParseRouteAttr(m[nl.SizeofNfgenmsg:])
			if err != nil {
				b.Fatal(err)
			}
			var name string
			var entries int
			for _, a := range attrs {
				switch a.Attr.Type & nl.NLA_TYPE_MASK {
				case nl.IPSET_ATTR_SETNAME:
					name = strings.TrimRight(string(a.Value), "\x00")
				case nl.IPSET_ATTR_DATA:
					data, err := nl.ParseRouteAttr(a.Value)
					if err != nil {
						b.Fatal(err)
					}
					for _, d := range data {
						if d.Attr.Type&nl.NLA_TYPE_MASK == nl.IPSET_ATTR_ELEMENTS {
							entries = int(binary.BigEndian.Uint32(d.Value))
						}
					}
				}
			}
			if strings.HasPrefix(name, "logban-") {
				total += entries
			}
		}
		return total
	}
}

// ipsetEntries lists the entries of logban's ipsets in the lab, and returns how many.
func ipsetEntries(b *testing.B, lab *netnstest.Lab) int {
	h, err := netlink.NewHandleAt(lab.Server, unix.NETLINK_NETFILTER)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	sets, err := h.IpsetListAll()
	if err != nil {
		b.Fatal(err)
	}
	total := 0
	for _, s := range sets {
		if strings.HasPrefix(s.SetName, "logban-") {
			total += len(s.Entries)
		}
	}
	return total
}

// ipsetFlagListHeader asks IPSET_CMD_LIST for the sets' headers only (the kernel's
// IPSET_FLAG_LIST_HEADER).
const ipsetFlagListHeader = 1 << 2

// nftCounter returns a function that counts the elements of the sets of logban's
// nftables table in the lab, by listing them.
func nftCounter(b *testing.B, lab *netnstest.Lab) func() int {
	c, err := nftables.New(nftables.WithNetNSFd(int(lab.Server)))
	if err != nil {
		b.Fatal(err)
	}
	table := &nftables.Table{Family: nftables.TableFamilyINet, Name: actions.NFTablesTable}
	return func() int {
		time.Sleep(20 * time.Millisecond) // listing 10,000s of elements is work too
		sets, err := c.GetSets(table)
		if err != nil {
			return 0 // not made yet
		}
		total := 0
		for _, s := range sets {
			elems, err := c.GetSetElements(s)
			if err != nil {
				b.Fatal(err)
			}
			total += len(elems)
		}
		return total
	}
}
