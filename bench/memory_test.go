package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logban/logban/internal/control"
)

// BenchmarkServerMemory runs ban-server with one jail (maxretry 3, the log action) on a
// log in which 1,000,000 addresses fail once each (tracked, not banned) and 100,000 fail
// three times (banned), and reports the process's resident memory once every line is
// read and every ban made and the server has been idle for 20 s: in all, and per tracked
// address (and, as 5s-RSS-bytes/addr, 5 s after, the burst's tail), and its peak while
// reading.
func BenchmarkServerMemory(b *testing.B) {
	const tracked, banned, maxretry = 1_000_000, 100_000, 3
	dir := b.TempDir()
	log := filepath.Join(dir, "zimbra.log")
	writeLines(b, log, tracked+banned, func(i int) string {
		if i < tracked {
			return failure(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
		}
		return strings.Repeat(failure(trialAddr(i-tracked)), maxretry)
	})

	bin := buildServer(b, dir)
	cfg := fmt.Sprintf(`
[server]
socket = %q
database = %q
loglevel = "warn"
[actions.log]
type = "log"
path = %q
[jails.sasl]
filter = "zimbra-submission"
logpath = [%q]
start = "beginning"
maxretry = %d
findtime = "1d"
bantime = "1d"
actions = ["log"]
max_tracked = 2000000 # every address kept, as this measures what one costs
`, filepath.Join(dir, "logban.sock"), filepath.Join(dir, "logban.db"), filepath.Join(dir, "bans.log"), log, maxretry)
	conf := filepath.Join(dir, "logban.toml")
	writeFile(b, conf, cfg)
	for b.Loop() {
		os.Remove(filepath.Join(dir, "logban.db"))
		cmd := exec.Command(bin, "-config", conf)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		// Wait on the log action's file, one line a ban: asking the server for the jail's
		// status would list 100,000 bans each time and weigh on what is measured.
		start := time.Now()
		for {
			text, _ := os.ReadFile(filepath.Join(dir, "bans.log"))
			if bytes.Count(text, []byte("\n")) >= banned {
				break
			}
			if time.Since(start) > 2*time.Minute {
				cmd.Process.Kill()
				b.Fatalf("after 2 minutes %d bans of %d", bytes.Count(text, []byte("\n")), banned)
			}
			time.Sleep(100 * time.Millisecond)
		}
		loaded := time.Since(start)
		// The burst's tail, then the steady state: what the server holds, not its last
		// burst. ban-server counts as busy for 10 s after a burst (its collector leaves the
		// heap room meanwhile) and gives free heap, and its binary's pages, back once
		// quiet (cmd/ban-server/gc.go), so 20 s after is settled.
		time.Sleep(5 * time.Second)
		tail := residentKiB(b, cmd.Process.Pid)
		time.Sleep(15 * time.Second)
		r := residentKiB(b, cmd.Process.Pid)
		st, err := control.NewClient(filepath.Join(dir, "logban.sock")).JailStatusBrief(context.Background(), "sasl")
		if err != nil || st.CurrentlyBanned != banned || st.TotalFailed != tracked+banned*maxretry || st.CurrentlyFailed != tracked {
			b.Errorf("jail status %+v, %v; want %d banned, %d tracked", st, err, banned, tracked)
		}
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		b.ReportMetric(float64(r.now)/1024, "RSS-MiB")
		b.ReportMetric(float64(r.anon)/1024, "anon-MiB")
		b.ReportMetric(float64(r.peak)/1024, "peak-RSS-MiB")
		b.ReportMetric(float64(r.now*1024)/tracked, "RSS-bytes/addr")
		b.ReportMetric(float64(tail.now*1024)/tracked, "5s-RSS-bytes/addr")
		b.ReportMetric(loaded.Seconds(), "s-to-load")
	}
}

// writeLines writes n lines, line(0) to line(n-1), to a new file at path.
func writeLines(b *testing.B, path string, n int, line func(i int) string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := range n {
		w.WriteString(line(i))
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// resident is a process's resident set, in KiB: now, at its peak, and of now, the part
// that is its own (anonymous: heap, stacks) rather than its binary's pages, which the
// kernel maps from the page cache and may drop and read again.
type resident struct{ now, peak, anon int64 }

// residentKiB reads a process's resident set.
func residentKiB(b testing.TB, pid int) resident {
	text, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	var r resident
	for _, line := range strings.Split(string(text), "\n") {
		k, v, _ := strings.Cut(line, ":")
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			r.now = n
		case "VmHWM":
			r.peak = n
		case "RssAnon":
			r.anon = n
		}
	}
	return r
}
